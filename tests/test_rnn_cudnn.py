"""`lstm(..., use_cudnn=True)`: the cuDNN path gives the scan's results for every mask layout.

Without a GPU, cuDNN is replaced by `jax.experimental.rnn.lstm_ref` (JAX's own reference
for its cuDNN LSTM, same flat weights and `seq_lengths`), poisoned with NaN for rows of
length 0 (which crash cuDNN), so the compaction, the weight layout and the zero-length
guard are all checked on CPU. On a CUDA GPU the same tests also run real cuDNN.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import random_mask
from rnn_reference import padded_inputs, random_params, random_state, rnn_ref

import masking_jax as mj
from masking_jax import nnx as mnx
from masking_jax._rnn import _cudnn
from masking_jax._rnn._cells import GRUCell

D, H = 3, 5
LAYOUTS = ("post", "pre", "gappy")


def reference_cudnn(x, h0, c0, weights, lengths):
    """`_cudnn.cudnn_lstm` on `lstm_ref`; all NaN where cuDNN would fail (a length below 1)."""
    from jax.experimental import rnn

    features, hidden = x.shape[-1], h0.shape[-1]
    unpacked = rnn.unpack_lstm_weights(weights, features, hidden, 1, False)
    y, h_n, c_n = rnn.lstm_ref(
        x, h0[None], c0[None], *unpacked, lengths, features, hidden, 1, 0.0, False
    )
    crashed = jnp.any(lengths < 1)  # cuDNN fails the whole call, not just the row
    return jax.tree.map(lambda a: jnp.where(crashed, jnp.nan, a), (y, h_n[0], c_n[0]))


@pytest.fixture(scope="module", params=["lstm_ref", "cudnn"])
def cudnn(request):
    """The cuDNN path on the CPU stand-in, or on real cuDNN where a CUDA GPU is present.

    Module-scoped: the tests of one implementation run together and share its compiled
    programs; the caches are cleared only when the implementation changes.
    """
    if request.param == "cudnn":
        reason = _cudnn.cudnn_unavailable()
        if reason:
            pytest.skip(f"real cuDNN: {reason}")
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "lstm_ref":
            patch.setattr(_cudnn, "cudnn_lstm", reference_cudnn)
            patch.setattr(_cudnn, "cudnn_unavailable", lambda: None)
        jax.clear_caches()  # the jitted path must trace the implementation chosen here
        yield request.param
    jax.clear_caches()


def problem(layout, seed=0, batch=6, steps=7):
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, batch, steps, layout)
    mask[1] = False  # an empty row: cuDNN's crash case
    params = jax.tree.map(jnp.asarray, random_params("lstm", rng, D, H))
    x = jnp.asarray(padded_inputs(rng, mask, D, np.nan))  # NaN in every padded step
    state = tuple(map(jnp.asarray, random_state("lstm", rng, batch, H)))
    return params, x, jnp.asarray(mask), state


def loss_and_grads(params, x, mask, state, **options):
    def loss(params, x, state):
        outputs, (h, c) = mj.lstm(params, x, mask, initial_state=state, **options)
        return jnp.sum(jnp.sin(outputs)) + jnp.sum(h**2) + jnp.sum(jnp.cos(c))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, x, state)


def assert_close(actual, expected, tol=2e-5):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reverse", [False, True])
def test_values_and_gradients_equal_the_scan(cudnn, layout, reverse):
    params, x, mask, state = problem(layout)
    options = {"reverse": reverse, "zero_output_for_mask": layout == "gappy"}
    fast = loss_and_grads(params, x, mask, state, use_cudnn=True, **options)
    scan = loss_and_grads(params, x, mask, state, **options)
    assert all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(fast))
    assert_close(fast, scan)
    assert (np.asarray(fast[1][1])[~np.asarray(mask)] == 0).all()  # padding: zero gradient
    outputs, final = mj.lstm(params, x, mask, initial_state=state, use_cudnn=True, **options)
    ref = rnn_ref("lstm", params, x, np.asarray(mask), initial_state=state, **options)
    assert_close((outputs, final), ref)
    assert_close((final[0][1], final[1][1]), (state[0][1], state[1][1]))  # empty row: initial


def test_no_bias_low_precision_and_empty_shapes(cudnn):
    params, x, mask, _ = problem("pre", seed=1)
    params = {**params, "bias": None}
    for dtype in (jnp.float32, jnp.bfloat16):
        got = mj.lstm(params, x.astype(dtype), mask, use_cudnn=True)
        want = mj.lstm(params, x.astype(dtype), mask)
        assert got[0].dtype == dtype and got[1][0].dtype == jnp.float32
        assert_close(jax.tree.map(lambda a: a.astype(jnp.float32), got), want, tol=1e-2)
    outputs, (h, c) = mj.lstm(params, jnp.zeros((2, 0, D)), use_cudnn=True)
    assert outputs.shape == (2, 0, H) and h.shape == c.shape == (2, H)


def test_nnx_layer_option(cudnn):
    _, x, mask, _ = problem("gappy", seed=2)
    make = lambda **kw: mnx.LSTM(D, H, return_sequences=True, rngs=nnx.Rngs(0), **kw)  # noqa: E731
    assert_close(make(use_cudnn=True)(x, mask), make()(x, mask))


def test_cudnn_weights_layout():
    """W_ih = kernel.T, W_hh = recurrent_kernel.T, b_ih = bias, b_hh = 0 (gates i, f, g/c, o)."""
    from jax.experimental import rnn

    params = random_params("lstm", np.random.default_rng(3), D, H)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(_cudnn.cudnn_weights(params), D, H, 1, False)
    np.testing.assert_array_equal(w_ih[0], params["kernel"].T)
    np.testing.assert_array_equal(w_hh[0], params["recurrent_kernel"].T)
    np.testing.assert_array_equal(b_ih[0], params["bias"])
    np.testing.assert_array_equal(b_hh[0], 0)


def test_errors_say_what_is_missing():
    params = mj.init_lstm_params(jax.random.key(0), D, H)
    x = jnp.ones((2, 4, D))
    reason = _cudnn.cudnn_unavailable()
    if reason:  # no GPU: the backend is named
        with pytest.raises(ValueError, match=r"`use_cudnn=True` cannot run here: .*CUDA GPU"):
            mj.lstm(params, x, use_cudnn=True)
    with pytest.raises(ValueError, match="activation='tanh' with recurrent_activation='sigmoid'"):
        mj.lstm(params, x, use_cudnn=True, recurrent_activation="hard_sigmoid")
    with jax.enable_x64(True), pytest.raises(ValueError, match="in float32, not float64"):
        mj.lstm(params, x.astype(jnp.float64), use_cudnn=True)
    with pytest.raises(TypeError, match="`use_cudnn` must be a Python bool"):
        mj.lstm(params, x, use_cudnn="auto")
    with pytest.raises(ValueError, match="cuDNN runs only the LSTM, not GRU"):
        _cudnn.check_cudnn(GRUCell(jnp.tanh, jax.nn.sigmoid), jnp.float32)
