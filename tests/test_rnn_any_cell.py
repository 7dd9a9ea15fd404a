"""`masking_jax.rnn(step, ...)`: any cell through the public contract, against a slow per-row
reference (a Python loop over each row's real steps) in values and gradients, on every mask
layout, with NaN in the padding; the Keras cells as instances of the same contract."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import LAYOUTS, random_mask
from rnn_reference import gru_step, lstm_step, random_params

import masking_jax as mj

B, T, D, H = 6, 11, 3, 4


def peephole_lstm(params, state, x_t):
    """A user cell the package does not ship: an LSTM whose gates also read c (peepholes),
    with a dict state and a second output width (y = [h, c] projected to H)."""
    h, c = state["h"], state["c"]
    z = x_t @ params["w"] + h @ params["u"] + params["b"][None]
    i, f, g, o = jnp.split(z, 4, axis=-1)
    peep = params["p"][:, None]  # (3, 1, H)
    i = jax.nn.sigmoid(i + c * peep[0])
    f = jax.nn.sigmoid(f + c * peep[1])
    c = f * c + i * jnp.tanh(g)
    o = jax.nn.sigmoid(o + c * peep[2])
    h = o * jnp.tanh(c)
    return {"h": h, "c": c}, jnp.concatenate([h, c], axis=-1) @ params["v"]


def peephole_params(rng):
    def normal(*shape):
        return jnp.asarray(0.5 * rng.standard_normal(shape), jnp.float32)

    return {
        "w": normal(D, 4 * H), "u": normal(H, 4 * H), "b": normal(4 * H), "p": normal(3, H),
        "v": normal(2 * H, H),
    }  # fmt: skip


def step_ref(step, params, state, x, mask, *, reverse=False, zero_output_for_mask=False):
    """The slow reference: row by row, only the real steps, in processing order, with `step`
    on a batch of one; padded steps output the previous output (zeros before the first real
    step) or zeros.

    `step` is jitted and x and the state are split into rows and steps once, only so that
    the loop costs one dispatch per step and compiles a few programs (eager, every slice
    position and step op is a program of its own); the loop and the math are the same."""
    batch, steps = mask.shape
    step = _jitted(step)
    x_steps = [[x_t[:, 0] for x_t in jnp.split(row, steps, axis=1)] for row in jnp.split(x, batch)]
    row_states = [
        jax.tree.unflatten(jax.tree.structure(state), leaves)
        for leaves in zip(*(jnp.split(s, batch) for s in jax.tree.leaves(state)), strict=True)
    ]
    outputs, finals = [], []
    for b in range(batch):
        row_state = row_states[b]
        previous = None
        row = [None] * steps
        for t in range(steps - 1, -1, -1) if reverse else range(steps):
            if mask[b, t]:
                row_state, y = step(params, row_state, x_steps[b][t])
                previous = row[t] = y[0]
            else:
                row[t] = None if zero_output_for_mask else previous
        outputs.append(row)
        finals.append(row_state)
    width = jax.eval_shape(step, params, state, x[:, 0])[1].shape[-1]
    zeros = jnp.zeros((width,), jnp.float32)
    stacked = jnp.stack([jnp.stack([zeros if y is None else y for y in row]) for row in outputs])
    final = jax.tree.map(lambda *rows: jnp.concatenate(rows), *finals)
    return stacked, final


_jitted = functools.cache(jax.jit)


def layout_case(layout, seed=0):
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, B, T, layout)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    x[~mask] = np.nan  # padding never reaches a result or a gradient
    state = {
        "h": jnp.asarray(0.5 * rng.standard_normal((B, H)), jnp.float32),
        "c": jnp.asarray(0.5 * rng.standard_normal((B, H)), jnp.float32),
    }
    return peephole_params(rng), jnp.asarray(x), mask, state


def weighted_loss(outputs, final, mask):
    """A loss that reads every output at real steps and the whole final state."""
    weights = jnp.cos(jnp.arange(outputs.shape[-1], dtype=jnp.float32))[None, None]
    real = jnp.where(mask[:, :, None], outputs, 0.0)
    return jnp.sum(jnp.sin(real) * weights) + sum(jnp.sum(s**2) for s in jax.tree.leaves(final))


@jax.jit
def ours_value_and_grad(params, x, mask, state):
    """One compile for every layout and direction: the mask is an argument."""

    def loss(params, x, state, reverse):
        outputs, final = mj.rnn(peephole_lstm, params, x, mask, state, reverse=reverse)
        return weighted_loss(outputs, final, mask)

    grads = jax.value_and_grad(loss, argnums=(0, 1, 2))
    return grads(params, x, state, False), grads(params, x, state, True)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_user_cell_equals_the_slow_reference_in_values_and_gradients(layout):
    params, x, mask, state = layout_case(layout)
    got = ours_value_and_grad(params, x, jnp.asarray(mask), state)
    x_clean = jnp.where(mask[:, :, None], x, 0.0)
    for reverse, (value, grads) in zip((False, True), got, strict=True):

        def loss(params, x, state, reverse=reverse):
            outputs, final = step_ref(peephole_lstm, params, state, x, mask, reverse=reverse)
            return weighted_loss(outputs, final, mask)

        ref_value, ref_grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(params, x_clean, state)
        np.testing.assert_allclose(value, ref_value, rtol=2e-5)
        for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
            np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-5)
        assert (np.asarray(grads[1])[~mask] == 0).all()  # padding gets exactly zero gradient


@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_outputs_and_final_state_at_padded_steps(zero_output_for_mask):
    params, x, mask, state = layout_case("empty_rows", seed=1)
    outputs, final = mj.rnn(
        peephole_lstm, params, x, mask, state, zero_output_for_mask=zero_output_for_mask
    )
    ref_outputs, ref_final = step_ref(
        peephole_lstm, params, state, x, mask, zero_output_for_mask=zero_output_for_mask
    )
    np.testing.assert_allclose(outputs, ref_outputs, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 final, ref_final)  # fmt: skip
    assert not mask[0].any()  # the empty row keeps its initial state, outputs zeros
    np.testing.assert_array_equal(final["h"][0], state["h"][0])
    assert (np.asarray(outputs[0]) == 0).all()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_keras_cells_through_the_generic_contract_equal_their_fast_kernels(cell):
    """The built-in kernels are instances of the contract: their step, run by `rnn` through the
    generic custom VJP, gives the specialised path's values and gradients."""
    rng = np.random.default_rng(2)
    mask = random_mask(rng, B, T, "gappy")
    x = jnp.asarray(rng.standard_normal((B, T, D)), jnp.float32)
    params = jax.tree.map(jnp.asarray, random_params(cell, rng, D, H))
    kernel = {"lstm": mj.lstm, "gru": mj.gru}[cell]
    state = jnp.zeros((B, H)) if cell == "gru" else (jnp.zeros((B, H)), jnp.zeros((B, H)))

    def step(params, state, x_t):  # the reference cells, written for one row
        if cell == "lstm":
            h, c = jax.vmap(lambda x, s: lstm_step(params, x, s, s[0]))(x_t, state)
            return (h, c), h
        (h,) = jax.vmap(lambda x, s: gru_step(params, x, (s,), s))(x_t, state)
        return h, h

    def loss(run, params, x):
        outputs, final = run(params, x)
        return weighted_loss(outputs, final, mask)

    generic = functools.partial(loss, lambda p, x: mj.rnn(step, p, x, mask, state, reverse=True))
    fast = functools.partial(loss, lambda p, x: kernel(p, x, mask, reverse=True))
    got = jax.jit(jax.value_and_grad(generic, argnums=(0, 1)))(params, x)
    expected = jax.jit(jax.value_and_grad(fast, argnums=(0, 1)))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 got, expected)  # fmt: skip


def test_non_floating_params_pass_through_without_gradient():
    """An integer table and a PRNG key in the params: used by the step, never differentiated."""
    rng = np.random.default_rng(3)
    mask = jnp.asarray(random_mask(rng, B, T, "pre"))
    x = jnp.asarray(rng.standard_normal((B, T, D)), jnp.float32)

    def step(params, h, x_t):
        shift = params["table"][1].astype(x_t.dtype)  # 2.0
        h = jnp.tanh(x_t @ params["w"] + h + shift)
        return h, h

    params = {"w": jnp.ones((D, H)) * 0.1, "table": jnp.arange(3), "key": jax.random.key(0)}
    grads = jax.grad(
        lambda p: jnp.sum(mj.rnn(step, p, x, mask, jnp.zeros((B, H)))[0]), allow_int=True
    )(params)
    assert grads["table"].dtype == jax.dtypes.float0
    assert np.isfinite(grads["w"]).all() and np.abs(grads["w"]).sum() > 0


def test_jit_vmap_and_no_retrace_for_new_masks():
    params, x, _, state = layout_case("post")
    traces = []

    @jax.jit
    def run(x, mask):
        traces.append(None)
        return mj.rnn(peephole_lstm, params, x, mask, state)

    rng = np.random.default_rng(4)
    masks = [random_mask(rng, B, T, layout) for layout in ("post", "gappy", "empty_rows")]
    xs = jnp.nan_to_num(x)
    for mask in masks:
        run(xs, mask)
    assert len(traces) == 1
    batched = jax.vmap(run, in_axes=(None, 0))(xs, jnp.asarray(np.stack(masks)))
    for i, mask in enumerate(masks):
        single = run(xs, mask)
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, atol=1e-6),
                     batched, single)  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda a: mj.rnn("lstm", *a), TypeError, r"`step` must be a function"),
        (lambda a: mj.rnn(lambda p, s, x: s, *a), TypeError, r"pair \(new_state, y_t\)"),
        (
            lambda a: mj.rnn(lambda p, s, x: ({"h": s["h"]}, s["h"]), *a),
            ValueError,
            "structure, shapes and dtypes of `initial_state`",
        ),
        (lambda a: mj.rnn(lambda p, s, x: (s, x[:, 0]), *a), ValueError, r"y_t of shape \(B, H\)"),
        (
            lambda a: mj.rnn(peephole_lstm, a[0], a[1], a[2], {"h": a[3]["h"][:2], "c": a[3]["c"]}),
            ValueError,
            r"batch of x, B=6",
        ),
        (
            lambda a: mj.rnn(peephole_lstm, a[0], a[1], a[2], jnp.arange(B)),
            TypeError,
            "must be a floating array",
        ),
        (lambda a: mj.rnn(peephole_lstm, {"w": "x"}, *a[1:]), TypeError, r"`params\['w'\]`"),
        (lambda a: mj.rnn(peephole_lstm, *a, reverse=1), TypeError, "`reverse` must be"),
        (lambda a: mj.rnn(peephole_lstm, a[0], a[1][0], a[2], a[3]), ValueError, "`x` must be 3-D"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, match):
    params, x, mask, state = layout_case("post")
    with pytest.raises(error, match=match):
        call((params, jnp.nan_to_num(x), mask, state))
