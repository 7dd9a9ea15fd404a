"""The fast path of the RNN kernels: chunk skipping (`_rnn/_skip.py`) and the custom VJP
(`_rnn/_vjp.py`) over any mask layout, against the plain driver (autodiff through a `lax.scan`
over every step) and the slow reference, in values and gradients wrt x, params and the initial
state; and the compaction of any mask layout (`masking_jax/_layout.py`) that cuDNN runs on."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from plain_scan import run_cell_plain
from rnn_reference import padded_inputs, random_params, random_state, rnn_ref

import masking_jax as mj
from masking_jax import _layout
from masking_jax._rnn import _driver, _packing, _skip
from masking_jax._rnn._cells import GRUCell, LSTMCell, SimpleRNNCell
from masking_jax._rnn._contract import StepCell

CELLS = {
    "simple_rnn": SimpleRNNCell(jnp.tanh),
    "lstm": LSTMCell(jnp.tanh, jax.nn.sigmoid),
    "gru": GRUCell(jnp.tanh, jax.nn.sigmoid),
    "gru_reset_before": GRUCell(jnp.tanh, jax.nn.sigmoid, reset_after=False),
}
# The LSTM's step as any cell: the scan carries the last output (zeros before the first real
# step) instead of reading it off the held state, and takes gradients by `jax.vjp` per step.
CELLS["lstm_step_cell"] = StepCell(CELLS["lstm"].step)
D, H = 3, 4
CHUNK = _skip.CHUNK


def lengths_mask(lengths, steps, layout, rng):
    """A (B, T) mask with the given row lengths: post-, pre-padded, or spread with holes."""
    lengths = np.asarray(lengths)
    pos = np.arange(steps)
    if layout == "post":
        return pos[None, :] < lengths[:, None]
    if layout == "pre":
        return pos[None, :] >= steps - lengths[:, None]
    mask = np.zeros((len(lengths), steps), bool)
    for b, n in enumerate(lengths):
        mask[b, np.sort(rng.choice(steps, n, replace=False))] = True
    return mask


# Lengths on chunk boundaries exactly (0, C, 2C, 4C, T), one off them, and a batch of 50 rows
# (wider than most tests). T is just past `ONE_CHUNK_UP_TO`, so it runs in chunks.
STEPS = 4 * CHUNK + 3  # not a multiple of the chunk: the last chunk is padded
assert STEPS > _skip.ONE_CHUNK_UP_TO
BOUNDARY_LENGTHS = [STEPS, 0, CHUNK, 2 * CHUNK, CHUNK - 1, CHUNK + 1, 1, 4 * CHUNK, 5, STEPS]
BOUNDARY_LENGTHS += [2 * CHUNK + 1, 0, 4, 11, 3 * CHUNK - 1, 2, 7, 13, 4 * CHUNK + 1, 6]
BOUNDARY_LENGTHS += [STEPS, 3 * CHUNK, 2 * CHUNK + 2] * 10


def run_fast(cell, params, x, mask, state, *, reverse, zero_output_for_mask, unroll):
    """`_driver.run` with `run_cell_plain`'s signature."""
    return _driver.run(
        cell, params, x, mask, state, reverse=reverse, zero_output_for_mask=zero_output_for_mask,
        unroll=unroll,
    )  # fmt: skip


def case(cell, mask, seed=0):
    rng = np.random.default_rng(seed)
    name = next(name for name in ("simple_rnn", "lstm", "gru") if cell.startswith(name))
    params = random_params(name, rng, D, H, reset_after=cell != "gru_reset_before")
    x = padded_inputs(rng, mask, D, np.nan)
    state = random_state(name, rng, mask.shape[0], H)
    return params, x, state


def run(driver, cell, params, x, mask, state, **options):
    options = {"reverse": False, "zero_output_for_mask": False, "unroll": 1} | options
    params = jax.tree.map(jnp.asarray, params)
    return driver(CELLS[cell], params, jnp.asarray(x), jnp.asarray(mask), state, **options)


def loss_grads_and_outputs(variants, cell, params, x, mask, state):
    """`((loss, grads wrt (params, x, state)), (outputs, final))` for each `(driver, options)`
    in `variants`, all computed by one compiled program (its forward-only run included)."""
    w_out = jnp.asarray(np.random.default_rng(1).standard_normal((*mask.shape, H)), jnp.float32)
    variants = tuple((driver, tuple(sorted(options.items()))) for driver, options in variants)
    return _loss_grads_and_outputs(params, x, mask, state, w_out, variants=variants, cell=cell)


@functools.partial(jax.jit, static_argnames=("variants", "cell"))
def _loss_grads_and_outputs(params, x, mask, state, w_out, *, variants, cell):
    """One compiled program per shape, cell and variants: masks of every layout share it."""

    def loss_and_grads(driver, options):
        def loss(params, x, state):
            outputs, final = run(driver, cell, params, x, mask, state, **options)
            final_sum = sum(jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(final))
            return jnp.sum(jnp.sin(outputs) * w_out) + final_sum

        return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x, state)

    return tuple(
        (loss_and_grads(driver, dict(options)), run(driver, cell, params, x, mask, state,
                                                    **dict(options)))
        for driver, options in variants
    )  # fmt: skip


def assert_close(actual, expected, rtol=2e-5, atol=2e-5):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol),
        actual,
        expected,
    )


def assert_matches_plain_scan(cell, params, x, mask, state, options):
    """The fast path's loss, gradients and outputs equal the plain scan's: finite, and exactly
    zero gradient wrt x in the padding."""
    (fast, outputs), (plain, plain_outputs) = loss_grads_and_outputs(
        [(run_fast, options), (run_cell_plain, options)], cell, params, x, mask, state
    )
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(fast))
    assert_close(fast, plain)
    assert (np.asarray(fast[1][1])[~mask] == 0).all()  # padding gets exactly zero gradient
    assert_close(outputs, plain_outputs)


def test_chunking_policy():
    assert _skip.chunking(3) == (1, 3)
    assert _skip.chunking(_skip.ONE_CHUNK_UP_TO) == (1, _skip.ONE_CHUNK_UP_TO)  # short: one chunk
    assert _skip.chunking(STEPS) == (5, CHUNK)


@pytest.mark.parametrize("reverse", [False, True])
def test_each_chunk_that_holds_a_real_step_runs_once_in_time_order(reverse):
    n_chunks, chunk = _skip.chunking(STEPS)
    real = np.zeros((n_chunks * chunk, 6), bool)
    real[3, 0] = real[2 * chunk + 1, 4] = True  # chunks 0 and 2 hold a real step: 1, 3, 4 do not
    real[3 * chunk - 1, 5] = True

    def chunk_fn(start, carry):
        seen, order, skipped = carry
        i = start // chunk
        return seen.at[i].add(1), order.at[i].set(order.max() + 1), skipped

    def skip_fn(start, carry):
        seen, order, skipped = carry
        return seen, order, skipped.at[start // chunk].add(1)

    zeros = jnp.zeros(n_chunks, int)
    (seen, order, skipped), notes = _skip.skipping_loop(
        chunk_fn, (zeros, zeros, zeros), jnp.asarray(real), chunk, reverse=reverse,
        skip_fn=skip_fn, note_fn=lambda carry: carry[1].max(),  # how many chunks ran so far
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(seen), [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(skipped), [0, 1, 0, 1, 1])
    ran = [int(o) for o in order if o > 0]
    assert ran == (sorted(ran, reverse=True) if reverse else sorted(ran))  # in time order
    # Noted after each chunk, stacked in chunk order.
    expected_notes = [2, 1, 1, 0, 0] if reverse else [1, 1, 2, 2, 2]
    np.testing.assert_array_equal(np.asarray(notes), expected_notes)


@pytest.mark.parametrize("layout", ["post", "pre", "gappy"])
@pytest.mark.parametrize("reverse", [False, True])
def test_compaction(layout, reverse):
    """`dest` sends each row's real steps to the front in processing order, the padded ones
    after them; `count` is the number of real steps consumed once each input position is done."""
    rng = np.random.default_rng(0)
    mask = lengths_mask(BOUNDARY_LENGTHS, STEPS, layout, rng)
    dest, lengths, count = map(np.asarray, _layout.compaction(jnp.asarray(mask), reverse=reverse))
    np.testing.assert_array_equal(lengths, mask.sum(1))
    for b in range(mask.shape[0]):
        (real,) = np.nonzero(mask[b])
        real = real[::-1] if reverse else real
        np.testing.assert_array_equal(dest[b, real], np.arange(len(real)))
        assert sorted(dest[b]) == list(range(STEPS))  # a permutation
        seen = np.cumsum(mask[b, ::-1])[::-1] if reverse else np.cumsum(mask[b])
        np.testing.assert_array_equal(count[b], seen)
    x = rng.standard_normal((*mask.shape, 2)).astype(np.float32)
    packed = np.asarray(_layout.compacted_inputs(jnp.asarray(x), _layout.compaction(
        jnp.asarray(mask), reverse=reverse)))  # fmt: skip
    for b in range(mask.shape[0]):
        (real,) = np.nonzero(mask[b])
        real = real[::-1] if reverse else real
        np.testing.assert_array_equal(packed[b, : len(real)], x[b, real])
        assert (packed[b, len(real) :] == 0).all()


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layout", ["post", "pre", "gappy"])
@pytest.mark.parametrize("reverse", [False, True])
def test_custom_vjp_matches_autodiff_of_the_plain_scan(cell, layout, reverse):
    """Values and gradients wrt params, x and the initial state; lengths on chunk boundaries,
    several row widths, empty rows, NaN padding."""
    mask = lengths_mask(BOUNDARY_LENGTHS, STEPS, layout, np.random.default_rng(2))
    params, x, state = case(cell, mask)
    options = {"reverse": reverse, "zero_output_for_mask": layout == "gappy"}
    assert_matches_plain_scan(cell, params, x, mask, state, options)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru", "gru_reset_before"])
def test_one_row_projects_up_front_and_matches_the_plain_scan(cell):
    """A batch of one row projects its inputs in one GEMM before the scan: values and
    gradients as before, with NaN padding, chunks skipped before and after the row's real
    steps (holes in it), both directions."""
    assert _driver.project_up_front(CELLS[cell], jnp.zeros((1, STEPS, D)), None)
    assert not _driver.project_up_front(CELLS[cell], jnp.zeros((2, STEPS, D)), None)
    mask = np.zeros((1, STEPS), bool)
    mask[0, [CHUNK + 1, CHUNK + 3, 2 * CHUNK, 2 * CHUNK + 5]] = True  # chunks 0, 3, 4 skipped
    params, x, state = case(cell, mask)
    for options in ({"reverse": False}, {"reverse": True, "zero_output_for_mask": True}):
        assert_matches_plain_scan(cell, params, x, mask, state, options)


def test_reverse_over_reverse_through_skipped_chunks_matches_the_plain_scan():
    """The gradient of a gradient, with chunks skipped and run: the backward pass is itself
    differentiable (no loop of traced length), and equal to autodiff of the plain scan."""
    mask = lengths_mask(np.minimum(BOUNDARY_LENGTHS, 3 * CHUNK), STEPS, "gappy",
                        np.random.default_rng(5))  # fmt: skip
    params, x, state = case("lstm", mask)
    x = np.nan_to_num(x)  # the plain scan's own gradient is not NaN-safe

    def grad_norm(driver):
        def loss(params, x):
            outputs, final = run(driver, "lstm", params, x, mask, state, reverse=True)
            return jnp.sum(jnp.sin(outputs)) + jnp.sum(final[1] ** 2)

        def norm(params, x):
            return sum(jnp.sum(g**2) for g in jax.tree.leaves(jax.grad(loss, (0, 1))(params, x)))

        return jax.jit(jax.grad(norm, argnums=(0, 1)))(jax.tree.map(jnp.asarray, params), x)

    # float32 over two orders of differentiation: values reach hundreds.
    assert_close(grad_norm(run_fast), grad_norm(run_cell_plain), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(("cell", "layout", "reverse"), [
    ("lstm", "post", False), ("gru", "pre", True), ("lstm_step_cell", "post", True),
    ("simple_rnn", "pre", False), ("lstm_step_cell", "pre", False),
])  # fmt: skip
def test_global_maxlen_padding_is_skipped_exactly(cell, layout, reverse):
    """Data padded far past the longest row (later or earlier chunks skipped) equals the plain
    scan, forward and backward, with every output in the loss: a skipped chunk outputs what
    came before it, and its outputs' cotangents flow back there. Its real part equals the same
    data cut to the longest row."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 2 * CHUNK + 1, size=12)
    lengths[0] = 2 * CHUNK
    long_mask = lengths_mask(lengths, 8 * CHUNK, layout, rng)
    params, x, state = case(cell, long_mask)
    assert_matches_plain_scan(cell, params, x, long_mask, state, {"reverse": reverse})
    outputs, final = run(run_fast, cell, params, x, long_mask, state, reverse=reverse)
    cut = slice(0, 2 * CHUNK) if layout == "post" else slice(6 * CHUNK, None)
    short = run(run_fast, cell, params, x[:, cut], long_mask[:, cut], state, reverse=reverse)
    assert_close((outputs[:, cut], final), short)
    if (cell, layout, reverse) == ("lstm", "post", False):
        ref = rnn_ref(cell, params, x, long_mask, initial_state=state)
        assert_close((outputs, final), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unroll_and_chunk_boundaries_change_nothing(cell):
    mask = lengths_mask(BOUNDARY_LENGTHS, STEPS, "gappy", np.random.default_rng(4))
    params, x, state = case(cell, mask)
    base, *unrolled = loss_grads_and_outputs(
        [(run_fast, {"reverse": True, "unroll": unroll}) for unroll in (1, True, 3)],
        cell, params, x, mask, state,
    )  # fmt: skip
    for got in unrolled:
        assert_close(got, base)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_check_grads_first_and_second_order(cell):
    """Numerical gradients (float64) of the custom VJP, first order and reverse-over-reverse."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        mask = np.array([[True, False, True], [False, False, False], [False, True, True]])
        params = random_params(cell, rng, 2, 3)
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        x = jnp.asarray(rng.standard_normal((3, 3, 2)))
        state = jax.tree.map(lambda s: jnp.asarray(s, jnp.float64), random_state(cell, rng, 3, 3))
        kernel = {"simple_rnn": mj.simple_rnn, "lstm": mj.lstm, "gru": mj.gru}[cell]

        def f(params, x, state):
            outputs, final = kernel(params, x, mask, initial_state=state, reverse=True)
            return jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(s**2) for s in jax.tree.leaves(final))

        # Order 2 checks the first-order VJP too, then the VJP of the VJP.
        check_grads(jax.jit(f), (params, x, state), order=2, modes=("rev",))


def test_forward_mode_raises_a_clear_error():
    """Forward mode (jvp, jacfwd) cannot go through the custom VJP: we say so, naming the fix."""
    mask = np.array([[True, True, False]])
    params, x, _ = case("lstm", mask)
    x = np.nan_to_num(x)

    def f(x):
        return mj.lstm(params, x, mask)[0]

    with pytest.raises(TypeError, match=r"forward mode.*Replace `jax.jvp`"):
        jax.jvp(f, (x,), (jnp.ones_like(x),))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_vmap_checkpoint_and_grad_of_the_fast_path(cell):
    """vmap over batches (lengths batched: every chunk branch runs, results exact),
    jax.checkpoint, and grad agree with the unbatched, un-rematerialised gradients."""
    rng = np.random.default_rng(5)
    masks = np.stack([lengths_mask(BOUNDARY_LENGTHS, STEPS, lay, rng) for lay in ("post", "gappy")])
    params, x0, state = case(cell, masks[0])
    xs = np.stack([x0, padded_inputs(rng, masks[1], D)])
    kernel = {"lstm": mj.lstm, "gru": mj.gru}[cell]

    def loss(params, x, mask):
        outputs, final = kernel(params, x, mask, initial_state=state)
        return jnp.sum(jnp.where(mask[:, :, None], outputs, 0) ** 2) + jnp.sum(
            jax.tree.leaves(final)[0]
        )

    grad = jax.grad(loss, argnums=(0, 1))
    batched = jax.jit(jax.vmap(grad, in_axes=(None, 0, 0)))(params, xs, masks)
    remat = jax.jit(jax.grad(jax.checkpoint(loss), argnums=(0, 1)))
    for i in range(2):
        single = jax.jit(grad)(params, xs[i], masks[i])
        assert_close(jax.tree.map(lambda a, i=i: a[i], batched), single)
        assert_close(remat(params, xs[i], masks[i]), single)


def test_packing_round_trips_any_pytree_of_rows():
    """What a step keeps travels as one array per dtype and comes back unchanged, with or
    without leading (time) axes; leaves of several dtypes and ranks, None kept as None."""
    rng = np.random.default_rng(0)
    tree = {
        "h": rng.standard_normal((3, 4)).astype(np.float32),
        "pair": (rng.standard_normal((3, 2, 5)).astype(np.float32), None),
        "count": rng.integers(0, 9, (3,)).astype(np.int32),
        "half": rng.standard_normal((3, 1)).astype(np.float16),
    }
    packing = _packing.Packing.of(tree)
    # One array per dtype, in the order of the leaves (keys sorted: count, h, half, pair).
    assert packing.dtypes == (np.int32, np.float32, np.float16)
    assert packing.widths == (1, 4 + 10, 1)

    @jax.jit
    def round_trip(tree):
        packed = packing.pack(tree)
        stacked = tuple(jnp.stack([p, p]) for p in packed)  # (2, B, n): a time axis in front
        return packing.unpack(packed), packing.unpack(stacked)

    back, stacked = round_trip(tree)
    jax.tree.map(np.testing.assert_array_equal, back, tree)
    jax.tree.map(lambda s, t: np.testing.assert_array_equal(s, np.stack([t, t])), stacked, tree)
    assert back["pair"][1] is None
