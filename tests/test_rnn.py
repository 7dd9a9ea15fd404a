"""The masked RNN kernels against the slow reference (`rnn_reference.py`), and their masking
properties: padding content and layout never change the valid steps, forward or backward."""

import functools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from rnn_reference import MASK_ROWS, padded_inputs, random_params, random_state, rnn_ref

import masking_jax as mj

KERNELS = {"simple_rnn": mj.simple_rnn, "lstm": mj.lstm, "gru": mj.gru}
CELLS = tuple(KERNELS)
B, T = MASK_ROWS.shape
D, H = 3, 4
TOL = {"rtol": 1e-5, "atol": 1e-5}


def make_case(cell, seed=0, *, mask=MASK_ROWS, pad_value=np.nan, **param_options):
    rng = np.random.default_rng(seed)
    params = random_params(cell, rng, D, H, **param_options)
    x = padded_inputs(rng, mask, D, pad_value)
    state = random_state(cell, rng, mask.shape[0], H)
    return params, x, state


def assert_tree_close(actual, expected, **tol):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), **(tol or TOL)),
        actual,
        expected,
    )


def weighted_loss(kernel, seed=1, **options):
    """A scalar of all outputs and the final state with fixed random weights (not a plain sum,
    so every output position and state entry gets its own gradient)."""
    rng = np.random.default_rng(seed)
    w_out = jnp.asarray(rng.standard_normal((B, T, H)), jnp.float32)
    w_state = jnp.asarray(rng.standard_normal((B, H)), jnp.float32)

    def loss(params, x, state, mask):
        outputs, final = kernel(params, x, mask, initial_state=state, **options)
        return jnp.sum(outputs * w_out) + sum(jnp.sum(s * w_state) for s in jax.tree.leaves(final))

    return loss


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
@pytest.mark.parametrize("given_state", [False, True])
def test_matches_reference_with_nan_padding(cell, reverse, zero_output_for_mask, given_state):
    params, x, state = make_case(cell)  # NaN at every masked step, every mask layout
    options = {"reverse": reverse, "zero_output_for_mask": zero_output_for_mask}
    initial = state if given_state else None
    outputs, final = KERNELS[cell](params, x, MASK_ROWS, initial_state=initial, **options)
    expected = rnn_ref(cell, params, x, MASK_ROWS, initial_state=initial, **options)
    assert outputs.shape == (B, T, H) and outputs.dtype == jnp.float32
    assert np.isfinite(outputs).all()
    assert_tree_close((outputs, final), expected)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_value_and_grad_match_reference_with_nan_padding(cell, reverse):
    params, x, state = make_case(cell)
    kernel = jax.jit(jax.value_and_grad(weighted_loss(KERNELS[cell], reverse=reverse), (0, 1, 2)))
    oracle = weighted_loss(functools.partial(rnn_ref, cell), reverse=reverse)
    value, grads = kernel(params, x, state, MASK_ROWS)
    ref_value, ref_grads = jax.value_and_grad(oracle, argnums=(0, 1, 2))(
        params, x, state, MASK_ROWS
    )
    # atol too: the GRU loss is a near-cancelling sum (about -0.05) of O(1) float32 terms.
    np.testing.assert_allclose(value, ref_value, **TOL)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert_tree_close(grads, ref_grads, rtol=1e-4, atol=1e-5)
    # Padded inputs get exactly zero gradient.
    assert (np.asarray(grads[1])[~MASK_ROWS] == 0).all()


@pytest.mark.parametrize("cell", CELLS)
def test_padding_values_never_matter(cell):
    """Zeros, NaN, inf or garbage in the padding: identical outputs and gradients."""
    results = []
    loss = weighted_loss(KERNELS[cell], zero_output_for_mask=True)
    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    for pad_value in (0.0, np.nan, np.inf, -np.inf, 1e30):
        params, x, state = make_case(cell, pad_value=pad_value)
        results.append(value_and_grad(params, x, state, MASK_ROWS))
    for result in results[1:]:
        assert_tree_close(result, results[0], rtol=0, atol=0)


@st.composite
def gappy_batches(draw):
    mask = draw(hnp.arrays(bool, (3, 6)))
    x = draw(hnp.arrays(np.float32, (3, 6, D), elements=st.floats(-2, 2, width=32)))
    garbage = draw(st.sampled_from([np.nan, np.inf, 0.0, 7.0]))
    x[~mask] = garbage
    return mask, x


def _compact(mask, x, side):
    """Moves each row's valid steps to the front ("post" padding) or the back ("pre")."""
    out_mask, out_x, index = np.zeros_like(mask), np.zeros_like(x), np.zeros_like(mask, int)
    for b in range(mask.shape[0]):
        (valid,) = np.nonzero(mask[b])
        pos = (
            np.arange(len(valid))
            if side == "post"
            else mask.shape[1] - len(valid) + np.arange(len(valid))
        )
        out_mask[b, pos], out_x[b, pos], index[b, valid] = True, x[b, valid], pos
    return out_mask, out_x, index


@functools.partial(jax.jit, static_argnames=("cell", "reverse"))
def _valid_outputs_and_grads(params, x, state, mask, index, valid, *, cell, reverse):
    """Outputs gathered at the valid steps (`index` maps a step to its position in `x`), the
    final state, and the gradients of a scalar of both wrt params and initial state."""

    def loss(params, state):
        outputs, final = KERNELS[cell](params, x, mask, initial_state=state, reverse=reverse)
        picked = jnp.take_along_axis(outputs, index[:, :, None], axis=1)
        picked = jnp.where(valid[:, :, None], picked, 0)
        total = jnp.sum(jnp.sin(picked)) + sum(jnp.sum(s**2) for s in jax.tree.leaves(final))
        return total, (picked, final)

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, state)


@pytest.mark.parametrize("cell", CELLS)
@settings(max_examples=10, deadline=None)
@given(batch=gappy_batches(), side=st.sampled_from(["post", "pre"]), reverse=st.booleans())
def test_mask_layout_never_matters(cell, batch, side, reverse):
    """A gappy row equals the same valid steps packed post- or pre-padded, in the outputs at
    the valid steps, the final state, and the gradients wrt params and initial state."""
    mask, x = batch
    params, _, state = make_case(cell)
    state = jax.tree.map(lambda s: s[:3], state)
    packed_mask, packed_x, index = _compact(mask, x, side)
    identity = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    run = functools.partial(_valid_outputs_and_grads, cell=cell, reverse=reverse)
    gappy = run(params, x, state, mask, identity, mask)
    packed = run(params, packed_x, state, packed_mask, index, mask)
    assert_tree_close(packed, gappy, rtol=1e-5, atol=1e-5)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(gappy))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_fully_masked_rows_return_initial_state(cell, zero_output_for_mask):
    params, x, state = make_case(cell, mask=np.zeros((B, T), bool))
    mask = np.zeros((B, T), bool)
    kernel = functools.partial(KERNELS[cell], zero_output_for_mask=zero_output_for_mask)
    outputs, final = kernel(params, x, mask, initial_state=state)
    assert_tree_close(final, state, rtol=0, atol=0)
    h0 = jax.tree.leaves(state)[0]
    expected = np.zeros((B, T, H)) if zero_output_for_mask else np.repeat(h0[:, None], T, 1)
    np.testing.assert_array_equal(outputs, expected)
    _, default_final = kernel(params, x, mask)
    assert all((np.asarray(s) == 0).all() for s in jax.tree.leaves(default_final))
    grads = jax.jit(jax.grad(weighted_loss(kernel), argnums=(0, 1, 2)))(params, x, state, mask)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert all((np.asarray(g) == 0).all() for g in jax.tree.leaves(grads[:2]))


@pytest.mark.parametrize(
    ("cell", "batch", "steps"),
    [("simple_rnn", 2, 0), ("lstm", 2, 0), ("gru", 0, 3), ("lstm", 0, 0)],
)
def test_empty_batch_or_time(cell, batch, steps):
    params, _, _ = make_case(cell)
    x = np.zeros((batch, steps, D), np.float32)
    state = random_state(cell, np.random.default_rng(0), batch, H)
    outputs, final = KERNELS[cell](params, x, np.ones((batch, steps), bool), initial_state=state)
    assert outputs.shape == (batch, steps, H)
    assert_tree_close(final, state, rtol=0, atol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_mask_none_means_all_steps_real(cell):
    params, x, _ = make_case(cell, mask=np.ones((B, T), bool))
    expected = KERNELS[cell](params, x, np.ones((B, T), bool))
    assert_tree_close(KERNELS[cell](params, x), expected, rtol=0, atol=0)
    assert_tree_close(KERNELS[cell](params, x, None), expected, rtol=0, atol=0)


def test_broadcast_mask_axes():
    """A (B, 1) mask keeps or drops whole rows; a (1, T) mask is shared by every row."""
    params, x, _ = make_case("gru", pad_value=0.0)
    rows = np.array([True, False, True, True, False, True])[:, None]
    assert_tree_close(
        mj.gru(params, x, rows), mj.gru(params, x, np.broadcast_to(rows, (B, T))), rtol=0, atol=0
    )
    steps = MASK_ROWS[3:4]
    assert_tree_close(
        mj.gru(params, x, steps), mj.gru(params, x, np.broadcast_to(steps, (B, T))), rtol=0, atol=0
    )


@pytest.mark.parametrize(
    ("cell", "unroll"), [("simple_rnn", True), ("lstm", True), ("lstm", 3), ("gru", 2)]
)
def test_unroll_changes_nothing(cell, unroll):
    params, x, state = make_case(cell)
    kernel = functools.partial(KERNELS[cell], initial_state=state, reverse=True)
    assert_tree_close(kernel(params, x, MASK_ROWS, unroll=unroll), kernel(params, x, MASK_ROWS))


@pytest.mark.parametrize(
    ("cell", "activations"),
    [
        ("simple_rnn", {"activation": "relu"}),
        ("simple_rnn", {"activation": "sigmoid"}),
        ("simple_rnn", {"activation": "hard_sigmoid"}),
        ("simple_rnn", {"activation": "linear"}),
        ("simple_rnn", {"activation": None}),
        ("lstm", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
        ("lstm", {"activation": jax.nn.gelu, "recurrent_activation": "sigmoid"}),
        ("gru", {"activation": "linear", "recurrent_activation": "hard_sigmoid"}),
    ],
)
def test_activations_match_reference(cell, activations):
    params, x, state = make_case(cell)
    ref_activations = {k: "linear" if v is None else v for k, v in activations.items()}
    outputs, final = KERNELS[cell](params, x, MASK_ROWS, initial_state=state, **activations)
    expected = rnn_ref(cell, params, x, MASK_ROWS, initial_state=state, **ref_activations)
    assert_tree_close((outputs, final), expected)


@pytest.mark.parametrize("reverse", [False, True])
def test_gru_reset_before_matmul_matches_reference(reverse):
    params, x, state = make_case("gru", reset_after=False)
    assert params["bias"].shape == (3 * H,)
    got = mj.gru(params, x, MASK_ROWS, initial_state=state, reset_after=False, reverse=reverse)
    expected = rnn_ref(
        "gru", params, x, MASK_ROWS, initial_state=state, reset_after=False, reverse=reverse
    )
    assert_tree_close(got, expected)


@pytest.mark.parametrize("cell", CELLS)
def test_no_bias_matches_reference(cell):
    params, x, state = make_case(cell, use_bias=False)
    got = KERNELS[cell](params, x, MASK_ROWS, initial_state=state)
    assert_tree_close(got, rnn_ref(cell, params, x, MASK_ROWS, initial_state=state))


@pytest.mark.parametrize("cell", CELLS)
def test_bfloat16_inputs_accumulate_in_float32(cell):
    params, x, state = make_case(cell, pad_value=0.0)
    x16 = jnp.asarray(x, jnp.bfloat16)
    outputs, final = KERNELS[cell](params, x16, MASK_ROWS, initial_state=state)
    assert outputs.dtype == jnp.bfloat16
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(final))
    # The same as float32 on the bf16-rounded inputs, up to the bf16 rounding of the outputs.
    out32, final32 = KERNELS[cell](params, x16.astype(jnp.float32), MASK_ROWS, initial_state=state)
    assert_tree_close(final, final32, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outputs.astype(np.float32), out32, rtol=1e-2, atol=1e-2)
    # bfloat16 params are upcast too.
    params16 = jax.tree.map(lambda p: jnp.asarray(p, jnp.bfloat16), params)
    _, final16 = KERNELS[cell](params16, x16, MASK_ROWS, initial_state=state)
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(final16))
    assert all(np.isfinite(s).all() for s in jax.tree.leaves(final16))


@pytest.mark.parametrize("cell", CELLS)
def test_float64_and_check_grads(cell):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        mask = np.array([[True, False, True], [False, True, True]])
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), random_params(cell, rng, 2, 3))
        x = jnp.asarray(rng.standard_normal((2, 3, 2)))
        state = jax.tree.map(jnp.asarray, random_state(cell, rng, 2, 3))
        state = jax.tree.map(lambda s: s.astype(jnp.float64), state)
        outputs, final = KERNELS[cell](params, x, mask, initial_state=state, reverse=True)
        assert outputs.dtype == jnp.float64
        expected = rnn_ref(cell, params, x, mask, initial_state=state, reverse=True)
        assert_tree_close((outputs, final), expected, rtol=1e-12, atol=1e-12)

        def f(params, x, state):
            return KERNELS[cell](params, x, mask, initial_state=state)

        check_grads(jax.jit(f), (params, x, state), order=1, modes=("rev",))


@pytest.mark.parametrize("cell", CELLS)
def test_vmap_over_batches_and_params(cell):
    params, x, _ = make_case(cell, pad_value=0.0)
    kernel = functools.partial(KERNELS[cell], reverse=True)
    # vmap over a leading axis of (x, mask): two batches of 3 rows.
    xs, masks = x.reshape(2, 3, T, D), MASK_ROWS.reshape(2, 3, T)
    got = jax.vmap(kernel, in_axes=(None, 0, 0))(params, xs, masks)
    for i in range(2):
        assert_tree_close(jax.tree.map(lambda a, i=i: a[i], got), kernel(params, xs[i], masks[i]))
    # vmap over an ensemble of params.
    stacked = jax.tree.map(lambda p: np.stack([p, 2 * p]), params)
    got = jax.jit(jax.vmap(kernel, in_axes=(0, None, None)))(stacked, x, MASK_ROWS)
    doubled = jax.tree.map(lambda p: 2 * p, params)
    assert_tree_close(jax.tree.map(lambda a: a[1], got), kernel(doubled, x, MASK_ROWS))


def test_new_mask_values_do_not_retrace():
    params, x, _ = make_case("lstm", pad_value=0.0)
    traces = []

    @jax.jit
    def run(params, x, mask):
        traces.append(None)
        return mj.lstm(params, x, mask)

    rng = np.random.default_rng(0)
    for _ in range(3):
        run(params, x, rng.random((B, T)) < 0.5)
    assert len(traces) == 1
    # The kernel's own jit cache does not grow with new masks either.
    from masking_jax._rnn._driver import run as run_cell

    mj.lstm(params, x, MASK_ROWS)
    size = run_cell._cache_size()
    for _ in range(3):
        mj.lstm(params, x, rng.random((B, T)) < 0.5)
    assert run_cell._cache_size() == size
