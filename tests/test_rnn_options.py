"""Dropout in the RNN kernels (`dropout`, `recurrent_dropout`, `dropout_key`) as properties.

Keras' random masks cannot be copied, so the semantics are pinned down instead: the
kernel equals the slow reference given the same explicit masks (one per row, reused at
every step), rate 0 equals no dropout, the result does not depend on the padding
layout, NaN padding and empty rows stay harmless, and the masks drop the right fraction.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rnn_reference import MASK_ROWS, padded_inputs, random_params, random_state, rnn_ref

import masking_jax as mj
from masking_jax._rnn._dropout import dropout_scales

KERNELS = {"simple_rnn": mj.simple_rnn, "lstm": mj.lstm, "gru": mj.gru}
# (kernel name, cell options): GRU with reset_after=False drops h in its candidate matmul too.
CASES = [("simple_rnn", {}), ("lstm", {}), ("gru", {}), ("gru", {"reset_after": False})]
IDS = ["simple_rnn", "lstm", "gru", "gru_reset_before"]
B, T = MASK_ROWS.shape
D, H = 3, 4
RATES = {"dropout": 0.3, "recurrent_dropout": 0.4}
KEY = jax.random.key(7)


def make_case(cell, options, mask=MASK_ROWS):
    rng = np.random.default_rng(0)
    params = random_params(cell, rng, D, H, **options)
    return params, padded_inputs(rng, mask, D, np.nan), random_state(cell, rng, mask.shape[0], H)


def weights(mask):
    """Loss weights: `(B, T, H)` for the outputs, zero at padded steps, and `(B, H)` for the
    final states. Each row's real steps get the same weights whatever the layout."""
    rng = np.random.default_rng(1)
    per_step = rng.standard_normal((B, T, H)).astype(np.float32)
    w_out = np.zeros((*mask.shape, H), np.float32)
    for b in range(B):
        w_out[b, mask[b]] = per_step[b, : mask[b].sum()]
    return w_out, rng.standard_normal((B, H)).astype(np.float32)


def loss_of(run):
    def loss(params, x, mask, state, key, w_out, w_state):
        outputs, final = run(params, x, mask, state, key)
        value = jnp.sum(jnp.where(mask[..., None], outputs, 0) * w_out)
        return value + sum(jnp.sum(s * w_state) for s in jax.tree.leaves(final)), (outputs, final)

    return loss


def _run_kernel(params, x, mask, state, key, *, cell, options, rates):
    return KERNELS[cell](
        params, x, mask, initial_state=state, dropout_key=key, **dict(options), **dict(rates)
    )


@functools.partial(jax.jit, static_argnames=("cell", "options", "rates"))
def _kernel_value_and_grad(params, x, mask, state, key, w_out, w_state, **config):
    run = functools.partial(_run_kernel, **config)
    grad = jax.value_and_grad(loss_of(run), argnums=(0, 1, 3), has_aux=True)
    return grad(params, x, mask, state, key, w_out, w_state)


def kernel(cell, options, rates=RATES, mask=MASK_ROWS):
    """`run(params, x, state, key) -> ((loss, (outputs, final)), grads)`, one compile per
    configuration (the mask and the loss weights are arguments)."""
    config = {"cell": cell, "options": tuple(options.items()), "rates": tuple(rates.items())}
    return lambda params, x, state, key: _kernel_value_and_grad(
        params, x, mask, state, key, *weights(mask), **config
    )


def reference(cell, options, rates=RATES):
    """The slow reference, as `kernel`, with the masks the kernel draws from `key`."""

    def run(params, x, mask, state, key):
        scales = dropout_scales(key, B, D, H, rates["dropout"], rates["recurrent_dropout"],
                                jnp.float32)  # fmt: skip
        return rnn_ref(cell, params, x, mask, initial_state=state, input_scale=scales[0],
                       recurrent_scale=scales[1], **options)  # fmt: skip

    grad = jax.value_and_grad(loss_of(run), argnums=(0, 1, 3), has_aux=True)
    return lambda params, x, state, key: grad(params, x, MASK_ROWS, state, key, *weights(MASK_ROWS))


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=rtol, atol=atol),
                 actual, expected)  # fmt: skip


@pytest.mark.parametrize(("cell", "options"), CASES, ids=IDS)
def test_value_and_grad_equal_the_reference_with_the_same_masks(cell, options):
    """NaN padding and an all-padding row (MASK_ROWS) included: values and grads agree."""
    params, x, state = make_case(cell, options)
    (value, (outputs, final)), grads = kernel(cell, options)(params, x, state, KEY)
    (ref_value, ref_results), ref_grads = reference(cell, options)(params, x, state, KEY)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-5)
    assert_close((outputs, final), ref_results, atol=1e-5)
    assert_close(grads, ref_grads, rtol=1e-4, atol=1e-5)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert (np.asarray(grads[1])[~MASK_ROWS] == 0).all()  # padding gets no gradient
    empty = ~MASK_ROWS.any(axis=1)  # an all-padding row keeps its initial state
    jax.tree.map(lambda f, s: np.testing.assert_array_equal(np.asarray(f)[empty], s[empty]),
                 final, state)  # fmt: skip


def test_rate_zero_equals_no_dropout_and_a_nonzero_rate_changes_results():
    params, x, state = make_case("lstm", {})
    zero = {"dropout": 0.0, "recurrent_dropout": 0.0}
    got = kernel("lstm", {}, zero)(params, x, state, KEY)
    plain = kernel("lstm", {}, {})(params, x, state, None)
    jax.tree.map(np.testing.assert_array_equal, got, plain)
    (_, (dropped, _)), _ = kernel("lstm", {})(params, x, state, KEY)
    assert not np.allclose(dropped, got[0][1][0])


def _layouts(mask):
    """The same rows post-padded, pre-padded and with the real steps spread (with holes)."""
    lengths = mask.sum(axis=1)
    pos = np.arange(T)
    return {"post": pos < lengths[:, None], "pre": pos >= T - lengths[:, None], "gappy": mask}


@pytest.mark.parametrize(("cell", "options"), [CASES[1], CASES[3]], ids=[IDS[1], IDS[3]])
def test_layout_invariance_with_the_same_key(cell, options):
    """Pre-, post-padded and gappy rows with the same real steps: same real outputs, final
    states and gradients, since a row's masks depend on the key alone."""
    params, x_gappy, state = make_case(cell, options)
    results = {}
    for name, mask in _layouts(MASK_ROWS).items():
        x = np.full_like(x_gappy, np.nan)
        for b in range(B):
            x[b, mask[b]] = x_gappy[b, MASK_ROWS[b]]
        (value, (outputs, final)), grads = kernel(cell, options, mask=mask)(params, x, state, KEY)
        real_outputs = [np.asarray(outputs)[b, mask[b]] for b in range(B)]
        real_x_grads = [np.asarray(grads[1])[b, mask[b]] for b in range(B)]
        results[name] = value, real_outputs, final, grads[0], grads[2], real_x_grads
    for name in ("pre", "gappy"):
        assert_close(results[name], results["post"])


@pytest.mark.parametrize("rate", [0.25, 0.6])
def test_masks_drop_the_rate_and_scale_the_rest(rate):
    """Over a large draw the zeroed fraction is the rate; kept units are scaled by 1/(1-rate);
    the input mask does not change when recurrent dropout is switched on."""
    x_scale, h_scale = dropout_scales(KEY, 500, 64, 32, rate, rate, jnp.float32)
    for scale in (x_scale, h_scale):
        scale = np.asarray(scale)
        assert abs((scale == 0).mean() - rate) < 0.01
        np.testing.assert_allclose(scale[scale != 0], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(dropout_scales(KEY, 500, 64, 32, rate, 0.0, jnp.float32)[0],
                                  x_scale)  # fmt: skip


def test_bidirectional_and_stacked_split_the_key():
    params, x, _ = make_case("gru", {})
    p2 = random_params("gru", np.random.default_rng(3), D, H)
    mask = jnp.asarray(MASK_ROWS)
    both, (h_f, h_b) = mj.bidirectional(mj.gru, (params, p2), x, mask, dropout_key=KEY, **RATES)
    k_f, k_b = jax.random.split(KEY)
    out_f, h_f1 = mj.gru(params, x, mask, zero_output_for_mask=True, dropout_key=k_f, **RATES)
    out_b, h_b1 = mj.gru(p2, x, mask, zero_output_for_mask=True, reverse=True, dropout_key=k_b,
                         **RATES)  # fmt: skip
    np.testing.assert_allclose(both, jnp.concatenate([out_f, out_b], -1), rtol=1e-6)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-6), (h_f, h_b),
                 (h_f1, h_b1))  # fmt: skip
    p3 = random_params("gru", np.random.default_rng(4), H, H)
    out, _ = mj.stacked_rnn(mj.gru, [params, p3], x, mask, dropout_key=KEY, **RATES)
    k1, k2 = jax.random.split(KEY)
    first, _ = mj.gru(params, x, mask, dropout_key=k1, **RATES)
    np.testing.assert_allclose(out, mj.gru(p3, first, mask, dropout_key=k2, **RATES)[0],
                               rtol=1e-6)  # fmt: skip


def test_rnn_any_cell_input_dropout_equals_scaled_inputs():
    """`mj.rnn` with `dropout` equals the same cell on `x` scaled by the drawn input mask."""
    params = jax.tree.map(jnp.asarray, random_params("simple_rnn", np.random.default_rng(0), D, H))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((B, T, D)), jnp.float32)

    def step(p, h, x_t):
        h = jnp.tanh(x_t @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"][None])
        return h, h

    h0 = jnp.zeros((B, H))
    got = mj.rnn(step, params, x, MASK_ROWS, h0, dropout=0.5, dropout_key=KEY)
    scale, _ = dropout_scales(KEY, B, D, 0, 0.5, 0.0, jnp.float32)
    expected = mj.rnn(step, params, x * scale[:, None, :], MASK_ROWS, h0)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-6), got, expected)


def test_integer_and_bool_inputs_are_cast_to_the_computation_dtype():
    """As Keras and Flax do: integer-valued features need no cast by hand."""
    params = random_params("gru", np.random.default_rng(0), D, H)
    ints = np.random.default_rng(1).integers(-3, 4, (B, T, D)).astype(np.int32)
    outputs, h = mj.gru(params, ints, MASK_ROWS)
    expected = mj.gru(params, ints.astype(np.float32), MASK_ROWS)
    assert outputs.dtype == h.dtype == jnp.float32
    jax.tree.map(np.testing.assert_array_equal, (outputs, h), expected)
    flags = ints > 0
    as_float = mj.gru(params, flags.astype(np.float32), MASK_ROWS)[0]
    np.testing.assert_array_equal(mj.gru(params, flags, MASK_ROWS)[0], as_float)

    def step(p, h, x_t):
        h = jnp.tanh(x_t @ p["kernel"][:, :H] + h @ p["recurrent_kernel"][:, :H])
        return h, h

    h0 = jnp.zeros((B, H))
    got = mj.rnn(step, params, ints, MASK_ROWS, h0)
    assert got[0].dtype == jnp.float32
    expected = mj.rnn(step, params, ints.astype(np.float32), MASK_ROWS, h0)
    jax.tree.map(np.testing.assert_array_equal, got, expected)
