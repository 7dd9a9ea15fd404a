"""`bidirectional`, `stacked_rnn` and the initialisers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rnn_reference import MASK_ROWS, padded_inputs, random_params, rnn_ref

import masking_jax as mj

B, T = MASK_ROWS.shape
D, H = 3, 4


def pad(sequences, steps, side):
    """Stacks (L_i, D) sequences into x (B, T, D) with NaN padding on `side`, and its mask."""
    x = np.full((len(sequences), steps, D), np.nan, np.float32)
    mask = np.zeros((len(sequences), steps), bool)
    for b, seq in enumerate(sequences):
        where = slice(0, len(seq)) if side == "post" else slice(steps - len(seq), steps)
        x[b, where], mask[b, where] = seq, True
    return x, mask


def valid(outputs, mask):
    """The outputs at the valid steps, row by row, as one (N, ...) array."""
    return np.concatenate([np.asarray(outputs[b])[mask[b]] for b in range(mask.shape[0])])


@pytest.fixture(scope="module")
def bi_params():
    rng = np.random.default_rng(0)
    return random_params("gru", rng, D, H), random_params("gru", rng, D, H)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merges_a_forward_and_a_reverse_pass(bi_params, merge_mode):
    x = padded_inputs(np.random.default_rng(1), MASK_ROWS, D)
    outputs, (h_f, h_b) = mj.bidirectional(mj.gru, bi_params, x, MASK_ROWS, merge_mode=merge_mode)
    out_f, ref_f = rnn_ref("gru", bi_params[0], x, MASK_ROWS, zero_output_for_mask=True)
    out_b, ref_b = rnn_ref(
        "gru", bi_params[1], x, MASK_ROWS, reverse=True, zero_output_for_mask=True
    )
    expected = {
        "concat": np.concatenate([out_f, out_b], -1),
        "sum": out_f + out_b,
        "mul": out_f * out_b,
        "ave": (out_f + out_b) / 2,
        None: (out_f, out_b),
    }[merge_mode]
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5),
        (outputs, h_f, h_b),
        (expected, ref_f, ref_b),
    )


def test_bidirectional_pre_and_post_padding_agree(bi_params):
    rng = np.random.default_rng(2)
    sequences = [rng.standard_normal((n, D)).astype(np.float32) for n in (5, 1, 0, 7, 3)]
    results = {}
    for side in ("post", "pre"):
        x, mask = pad(sequences, 8, side)
        outputs, states = mj.bidirectional(mj.gru, bi_params, x, mask, merge_mode=None)
        results[side] = (valid(outputs[0], mask), valid(outputs[1], mask), states)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
        results["pre"],
        results["post"],
    )


def test_bidirectional_initial_state_and_kernel_options():
    rng = np.random.default_rng(3)
    params = tuple(random_params("lstm", rng, D, H) for _ in range(2))
    x = padded_inputs(rng, MASK_ROWS, D)
    states = tuple((rng.standard_normal((B, H)).astype(np.float32),) * 2 for _ in range(2))
    options = {"activation": "relu", "zero_output_for_mask": False}
    outputs, (s_f, s_b) = mj.bidirectional(
        mj.lstm, params, x, MASK_ROWS, merge_mode="sum", initial_state=states, **options
    )
    ref_f = rnn_ref("lstm", params[0], x, MASK_ROWS, initial_state=states[0], **options)
    ref_b = rnn_ref(
        "lstm", params[1], x, MASK_ROWS, initial_state=states[1], reverse=True, **options
    )
    np.testing.assert_allclose(outputs, ref_f[0] + ref_b[0], rtol=1e-5, atol=1e-5)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5),
        (s_f, s_b),
        (ref_f[1], ref_b[1]),
    )


def test_stacked_layers_pass_the_mask_on():
    """Layer 2 reads only the valid outputs of layer 1, whatever layer 1 put at masked steps,
    with one kernel per layer (LSTM, then a GRU with reset_after=False)."""
    rng = np.random.default_rng(4)
    p1 = random_params("lstm", rng, D, H)
    p2 = random_params("gru", rng, H, H, reset_after=False)
    x = padded_inputs(rng, MASK_ROWS, D)
    kernels = [mj.lstm, functools.partial(mj.gru, reset_after=False)]
    loss_inputs = (p1, p2, x)

    def loss(kernel_fn, p1, p2, x):
        outputs, states = kernel_fn([p1, p2], x)
        outputs = jnp.where(MASK_ROWS[:, :, None], outputs, 0)
        return jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(s) for s in jax.tree.leaves(states))

    def ours(params, x):
        return mj.stacked_rnn(kernels, params, x, MASK_ROWS, reverse=True)

    def oracle(params, x):
        out1, s1 = rnn_ref("lstm", params[0], x, MASK_ROWS, reverse=True)
        out2, s2 = rnn_ref("gru", params[1], out1, MASK_ROWS, reverse=True, reset_after=False)
        return out2, [s1, s2]

    got = jax.value_and_grad(functools.partial(loss, ours), argnums=(0, 1, 2))(*loss_inputs)
    expected = jax.value_and_grad(functools.partial(loss, oracle), argnums=(0, 1, 2))(*loss_inputs)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5), got, expected)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(got))


def test_stacked_bidirectional_layers_and_initial_states(bi_params):
    rng = np.random.default_rng(5)
    second = (random_params("gru", rng, 2 * H, H), random_params("gru", rng, 2 * H, H))
    x = padded_inputs(rng, MASK_ROWS, D)
    layer = functools.partial(mj.bidirectional, mj.gru)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    initial = [None, (h0, h0)]
    outputs, states = mj.stacked_rnn(
        layer, [bi_params, second], x, MASK_ROWS, initial_state=initial
    )
    first_out, first_states = layer(bi_params, x, MASK_ROWS)
    expected_out, expected_states = layer(second, first_out, MASK_ROWS, initial_state=(h0, h0))
    np.testing.assert_allclose(outputs, expected_out, rtol=1e-6, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, states, [first_states, expected_states])
    assert outputs.shape == (B, T, 2 * H)


@pytest.mark.parametrize(
    ("init", "gates", "bias_shape"),
    [
        (mj.init_simple_rnn_params, 1, (H,)),
        (mj.init_lstm_params, 4, (4 * H,)),
        (mj.init_gru_params, 3, (2, 3 * H)),
        (functools.partial(mj.init_gru_params, reset_after=False), 3, (3 * H,)),
    ],
)
def test_initialisers_follow_keras_defaults(init, gates, bias_shape):
    params = init(jax.random.key(0), 16, H)
    kernel, recurrent, bias = params["kernel"], params["recurrent_kernel"], params["bias"]
    assert kernel.shape == (16, gates * H) and recurrent.shape == (H, gates * H)
    assert bias.shape == bias_shape
    # glorot uniform: inside the limit, and spread over it.
    limit = np.sqrt(6 / (16 + gates * H))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > limit / 2
    # orthogonal: orthonormal rows (H <= G*H).
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(H), atol=1e-5)
    expected_bias = np.zeros(bias_shape, np.float32)
    if gates == 4:
        expected_bias[H : 2 * H] = 1.0  # unit forget bias
    np.testing.assert_array_equal(bias, expected_bias)
    # Pure functions of the key.
    again = init(jax.random.key(0), 16, H)
    jax.tree.map(np.testing.assert_array_equal, params, again)
    other = init(jax.random.key(1), 16, H)
    assert not np.allclose(other["kernel"], kernel)


def test_initialiser_options():
    params = mj.init_lstm_params(
        jax.random.key(0), 2, H, unit_forget_bias=False, dtype=jnp.bfloat16
    )
    assert all(p.dtype == jnp.bfloat16 for p in params.values())
    assert (np.asarray(params["bias"], np.float32) == 0).all()
    outputs, _ = mj.lstm(params, jnp.ones((1, 3, 2), jnp.bfloat16))
    assert outputs.dtype == jnp.bfloat16
