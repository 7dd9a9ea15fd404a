"""The masked scan and its custom VJP, over the skipping skeleton (`_skip.py`).

`masked_scan(options, cell, ...)` runs time-major rows at their input positions,
any mask layout: at a padded step a row holds its state and outputs the previous
output, or zeros with `zero_output_for_mask`. The previous output is read off the
held state where the cell says how (`Cell.output_of_state`, the Keras cells' h),
else carried along (`fill` before a row's first real step). A skipped chunk
writes nothing: the loop notes each row's last output after every chunk, and the
skipped chunks' steps get it after the loop.

The forward and the backward pass both run `_skip.skipping_loop`, which skips the
chunks that are padding in every row. What a step keeps (written with its output
into one buffer per dtype, `_packing`) and how its gradient is taken is the cell's
tape:

- `StepTape`, any `Cell`: the forward keeps the state before each step; the
  backward re-runs `jax.vjp` of `cell.step` there and sums the parameter
  gradients step by step.
- `GatedTape`, a `GatedCell` (the Keras cells): the forward keeps the gate
  pre-activations and the state before each step; the backward carries only the
  state cotangent through the elementwise gate math and the recurrent matmul, and
  does the weight gradients as one GEMM per chunk.

The inputs at padded steps are zeros (the driver's job), so whatever the padding
held never enters a step. Reverse mode works to any order (the backward pass is
itself differentiable); forward mode (`jax.jvp`) does not go through a custom VJP.

Shape legend: N chunks of K steps, B batch, D input features, H outputs, T = N * K.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from ._contract import Cell, GatedCell, recurrent_matmul
from ._packing import Packing
from ._skip import chunk_runs, chunking, read_steps, rows_where, skipping_loop, write_steps


def _add(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.add, a, b)


def _zeros(tree: Any) -> Any:
    return jax.tree.map(jnp.zeros_like, tree)


class StepTape:
    """Any cell: keep the state before each step; re-run the step's `jax.vjp` backward.

    Only the floating leaves of the params are differentiated; any others (integer
    tables, PRNG keys) pass through and get no gradient.
    """

    @staticmethod
    def prepare(cell: Cell, params: Any) -> Any:
        del cell
        return params

    @staticmethod
    def forward_step(cell: Cell, params: Any, state: Any, x_t: jax.Array) -> tuple:
        new, y = cell.step(params, state, x_t)
        return new, y, state

    @staticmethod
    def backward_step(
        cell: Cell, params: Any, before: Any, x_t: jax.Array, d_new: Any, d_y: jax.Array
    ) -> tuple[Any, Any, jax.Array]:
        """`(d_before, d_params of this step (floating leaves), d_x_t)`."""
        floating, rebuild = _floating_leaves(params)
        _, pull = jax.vjp(lambda p, s, x: cell.step(rebuild(p), s, x), floating, before, x_t)
        d_params, d_before, d_x = pull((d_new, d_y))
        return d_before, d_params, d_x

    @staticmethod
    def backward_chunk(
        cell: Cell, params: Any, x_chunk: Any, kept: Any, d_x: Any, d_params: Any
    ) -> tuple[Any, jax.Array]:
        """`(d_params, d_x)` of a chunk: the steps' own, already summed over the chunk."""
        del cell, params, x_chunk, kept
        return d_params, d_x

    @staticmethod
    def gradient_zeros(params: Any) -> Any:
        """The zero of what `backward_chunk` accumulates: the floating leaves' gradients."""
        return _zeros(_floating_leaves(params)[0])

    @staticmethod
    def cotangent(params: Any, d_params: Any) -> Any:
        """The params' cotangent: `d_params` at the floating leaves, `None` (zero) elsewhere."""
        return _floating_leaves(params)[1](d_params, fill=None)


def _floating_leaves(tree: Any) -> tuple[list[jax.Array], Any]:
    """The floating leaves of `tree`, and `rebuild(leaves, fill=...)` that puts them back.

    `rebuild` fills the other leaves with their values in `tree`, or with `fill`.
    """
    leaves, treedef = jax.tree.flatten(tree)
    floating = [jnp.issubdtype(jnp.result_type(leaf), jnp.floating) for leaf in leaves]
    keep = object()

    def rebuild(float_leaves: list[jax.Array], fill: Any = keep) -> Any:
        it = iter(float_leaves)
        return jax.tree.unflatten(
            treedef,
            [next(it) if f else (leaf if fill is keep else fill)
             for leaf, f in zip(leaves, floating, strict=True)],
        )  # fmt: skip

    return [leaf for leaf, f in zip(leaves, floating, strict=True) if f], rebuild


class GatedTape:
    """A `GatedCell`: keep the pre-activations; weight gradients as one GEMM per chunk."""

    @staticmethod
    def prepare(cell: GatedCell, params: Any) -> Any:
        rec, rec_bias = cell.recurrent_kernel(params), cell.recurrent_bias(params)
        return params, rec, rec_bias, cell.gate_params(params)

    @staticmethod
    def forward_step(cell: GatedCell, prepared: Any, state: Any, x_t: jax.Array) -> tuple:
        params, rec, rec_bias, gate_params = prepared
        # The input projection inside the step: on CPU it beats one GEMM per chunk.
        hr = recurrent_matmul(cell.output(state), rec, rec_bias)
        preact = cell.preact(cell.project(params, x_t), hr)
        new, y = cell.gate_math(gate_params, preact, state)
        return new, y, (preact, state)

    @staticmethod
    def backward_step(
        cell: GatedCell, prepared: Any, kept: Any, x_t: jax.Array, d_new: Any, d_y: jax.Array
    ) -> tuple[Any, Any, Any]:
        """`(d_before, d_gate_params, (d_xp, d_hr))`: the matmul inputs' cotangents."""
        params, rec, _, gate_params = prepared
        preact, before = kept
        _, pull = jax.vjp(cell.gate_math, gate_params, preact, before)
        d_gate_params, d_preact, d_before = pull((d_new, d_y))
        xp = jax.eval_shape(cell.project, params, x_t)
        hr = jax.ShapeDtypeStruct(xp.shape[:-1] + rec.shape[1:], rec.dtype)
        d_xp, d_hr = jax.linear_transpose(cell.preact, xp, hr)(d_preact)
        _, pull_output = jax.vjp(cell.output, before)
        (d_h,) = pull_output(d_hr @ rec.T)
        # `preact` = xp + hr (LSTM, SimpleRNN): one cotangent for both, kept once.
        return _add(d_before, d_h), d_gate_params, (d_xp, None if d_hr is d_xp else d_hr)

    @staticmethod
    def backward_chunk(
        cell: GatedCell, prepared: Any, x_chunk: Any, kept: Any, d_matmuls: Any, d_gp: Any
    ) -> tuple[Any, jax.Array]:
        """`(d_params, d_x)` of a chunk `(K, B, ...)`: the weight gradients as GEMMs."""
        params = prepared[0]
        _, before = kept
        d_xp, d_hr = d_matmuls
        d_hr = d_xp if d_hr is None else d_hr
        d_rec = jnp.einsum("kbh,kbg->hg", cell.output(before), d_hr)
        d_rec_bias = None if prepared[2] is None else jnp.sum(d_hr, axis=(0, 1))
        _, pull_split = jax.vjp(
            lambda p: (cell.recurrent_kernel(p), cell.recurrent_bias(p), cell.gate_params(p)),
            params,
        )
        (d_split,) = pull_split((d_rec, d_rec_bias, d_gp))
        _, pull_project = jax.vjp(cell.project, params, x_chunk)
        d_project, d_x = pull_project(d_xp)
        return _add(d_split, d_project), d_x

    @staticmethod
    def gradient_zeros(params: Any) -> Any:
        return _zeros(params)

    @staticmethod
    def cotangent(params: Any, d_params: Any) -> Any:
        del params
        return d_params


def tape_of(cell: Cell) -> type[StepTape] | type[GatedTape]:
    return GatedTape if isinstance(cell, GatedCell) else StepTape


@dataclasses.dataclass(frozen=True)
class ScanOptions:
    """The static options of `masked_scan`.

    Attributes:
        unroll: steps of a chunk unrolled in its loop.
        reverse: process the steps last to first.
        zero_output_for_mask: zeros at padded steps instead of the previous output.
    """

    unroll: int
    reverse: bool
    zero_output_for_mask: bool


def _padded_output(options: ScanOptions, cell: Cell, state: Any) -> str:
    """What a padded step outputs: `"zeros"` (`zero_output_for_mask`), the `"held"`
    state's output (`cell.output_of_state`), or the `"carried"` last output."""
    if options.zero_output_for_mask:
        return "zeros"
    return "carried" if jax.eval_shape(cell.output_of_state, state) is None else "held"


def _forward(
    options: ScanOptions, cell: Cell, params: Any, x: jax.Array, real: jax.Array, state: Any,
    fill: jax.Array, *, keep: bool,
) -> tuple[tuple[jax.Array, Any], Any]:  # fmt: skip
    """The forward scan: `((outputs, final_state), tape)`.

    With `keep` the tape is `(packing, buffers)`: every step's output and what the
    backward pass needs, packed (`_packing`); without it, `None`.
    """
    tape = tape_of(cell)
    prepared = tape.prepare(cell, params)
    forward_step = functools.partial(tape.forward_step, cell)
    steps, batch = real.shape
    _, chunk = chunking(steps)
    _, y, kept = jax.eval_shape(forward_step, prepared, state, x[0])
    # Every step's output (first) and residuals, packed, written in place.
    packing = Packing.of((y, kept) if keep else (y,))
    buffers = packing.zeros((steps, batch))

    padded_output = _padded_output(options, cell, state)
    held = padded_output == "held"

    def chunk_fn(start: jax.Array, carry: Any) -> Any:
        def step(i: jax.Array, carry: Any) -> Any:
            state, last, buffers = carry
            k = start + (chunk - 1 - i if options.reverse else i)
            new, y, kept = forward_step(prepared, state, x[k])
            state = rows_where(real[k], new, state)  # a padded step holds the state
            if held:  # ... and outputs the held state's output
                y = cell.output_of_state(state).astype(y.dtype)
            else:  # ... and outputs the previous output, or zeros
                y = rows_where(real[k], y, last)
                last = last if options.zero_output_for_mask else y
            written = packing.pack((y, kept) if keep else (y,))
            return state, last, write_steps(buffers, k, tuple(w[None] for w in written))

        return jax.lax.fori_loop(0, chunk, step, carry, unroll=options.unroll)

    # The last output, carried where the cell cannot read it off its state; zeros
    # stand for it with `zero_output_for_mask`.
    last = None if held else jnp.zeros_like(fill) if padded_output == "zeros" else fill

    def note_fn(carry: Any) -> jax.Array:
        """What each row output last: every step of a skipped chunk outputs it."""
        state, last, _ = carry
        return cell.output_of_state(state).astype(y.dtype) if held else last

    (state, _, buffers), fills = skipping_loop(
        chunk_fn, (state, last, buffers), real, chunk, reverse=options.reverse,
        note_fn=None if padded_output == "zeros" else note_fn,
    )  # fmt: skip
    outputs = packing.unpack(buffers)[0]
    if fills is not None:  # (N, B, H), with N > 1 chunks
        ran = chunk_runs(real, chunk)[:, None, None, None]
        by_chunk = outputs.reshape(fills.shape[0], chunk, *outputs.shape[1:])
        outputs = jnp.where(ran, by_chunk, fills[:, None]).reshape(outputs.shape)
    return (outputs, state), ((packing, buffers) if keep else None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def masked_scan(
    options: ScanOptions, cell: Cell, params: Any, x: jax.Array, real: jax.Array, state: Any,
    fill: jax.Array,
) -> tuple[jax.Array, Any]:  # fmt: skip
    """Outputs `(T, B, H)` and the final state of time-major inputs `x` `(T, B, D)`.

    Args:
        options: `ScanOptions` (static).
        cell: the cell (static).
        params: the cell's params pytree.
        x: `(T, B, D)` inputs, zeros at padded steps; `T` a whole number of chunks
            (`_skip.chunking`).
        real: bool `(T, B)`, True = real step.
        state: the initial state, a pytree of `(B, ...)` arrays.
        fill: `(B, H)`, the output at padded steps before a row's first real one,
            for a cell without `output_of_state` (the others read it off the held
            state; `zero_output_for_mask` outputs zeros).
    """
    return _forward(options, cell, params, x, real, state, fill, keep=False)[0]


def _masked_scan_fwd(
    options: ScanOptions, cell: Cell, params: Any, x: jax.Array, real: jax.Array, state: Any,
    fill: jax.Array,
) -> tuple[tuple[jax.Array, Any], Any]:  # fmt: skip
    result, tape = _forward(options, cell, params, x, real, state, fill, keep=True)
    return result, (params, x, real, tape)  # tape: `(Packing, packed buffers)`


def _masked_scan_bwd(
    options: ScanOptions, cell: Cell, residuals: Any, cotangents: Any
) -> tuple[Any, jax.Array, None, Any, jax.Array]:
    params, x, real, (packing, packed) = residuals
    d_outputs, d_final = cotangents
    tape = tape_of(cell)
    prepared = tape.prepare(cell, params)
    backward_step = functools.partial(tape.backward_step, cell)
    backward_chunk = functools.partial(tape.backward_chunk, cell)
    _, chunk = chunking(real.shape[0])
    padded_output = _padded_output(options, cell, d_final)

    def chunk_fn(start: jax.Array, carry: Any) -> Any:
        d_state, d_last, d_params, d_x = carry
        chunk_inputs = read_steps((real, x, packed, d_outputs), start, chunk)
        kept_chunk = packing.unpack(chunk_inputs[2])[1]  # (K, B, ...)

        def step(carry: Any, inputs: Any) -> tuple[Any, Any]:
            d_state, d_last, d_acc = carry
            real_t, x_t, packed_t, d_y = inputs
            kept_t = packing.unpack(packed_t)[1]  # one read of the packed step
            # A padded step passes the state's cotangent through, plus its output's
            # where that was read off the held state.
            d_passed = d_state
            if padded_output == "held":
                d_passed = _add(d_state, _output_of_state_transpose(cell, d_final, d_y))
            elif padded_output == "carried":  # a padded step's output came from before
                d_y = d_y + d_last
                d_last = rows_where(real_t, jnp.zeros_like(d_y), d_y)
            d_y = rows_where(real_t, d_y, jnp.zeros_like(d_y))
            d_new = rows_where(real_t, d_state, _zeros(d_state))
            d_before, d_acc_t, emitted = backward_step(prepared, kept_t, x_t, d_new, d_y)
            d_prev = rows_where(real_t, d_before, d_passed)
            return (d_prev, d_last, _add(d_acc, d_acc_t)), emitted

        first = _first(kept_chunk, chunk_inputs[1], chunk_inputs[3])
        acc0 = _zeros(jax.eval_shape(backward_step, prepared, first[0], first[1], d_state,
                                     first[2])[1])  # fmt: skip
        (d_state, d_last, d_acc), emitted = jax.lax.scan(
            step, (d_state, d_last, acc0), chunk_inputs, reverse=not options.reverse,
            unroll=options.unroll,
        )  # fmt: skip
        d_params_chunk, d_x_chunk = backward_chunk(
            prepared, chunk_inputs[1], kept_chunk, emitted, d_acc
        )
        return d_state, d_last, _add(d_params, d_params_chunk), write_steps(d_x, start, d_x_chunk)

    def skip_fn(start: jax.Array, carry: Any) -> Any:
        """A chunk of padding output what came before it: that gets their cotangents."""
        d_state, d_last, d_params, d_x = carry
        d_chunk = jnp.sum(read_steps(d_outputs, start, chunk), axis=0)  # (B, H)
        if padded_output == "held":
            d_state = _add(d_state, _output_of_state_transpose(cell, d_final, d_chunk))
        else:
            d_last = d_last + d_chunk
        return d_state, d_last, d_params, d_x

    d_fill = jnp.zeros(d_outputs.shape[1:], d_outputs.dtype)  # what the last output gets
    d_last = d_fill if padded_output == "carried" else None
    (d_state, d_last, d_params, d_x), _ = skipping_loop(
        chunk_fn, (d_final, d_last, tape.gradient_zeros(params), jnp.zeros_like(x)), real, chunk,
        reverse=not options.reverse, skip_fn=None if padded_output == "zeros" else skip_fn,
    )  # fmt: skip
    d_fill = d_fill if d_last is None else d_last
    return tape.cotangent(params, d_params), d_x, None, d_state, d_fill


def _output_of_state_transpose(cell: Cell, state: Any, d_output: jax.Array) -> Any:
    """The state's cotangent from its output's, `cell.output_of_state` being linear.

    `state` gives the shapes and dtypes only.
    """
    output = jax.eval_shape(cell.output_of_state, state)
    (d_state,) = jax.linear_transpose(cell.output_of_state, state)(d_output.astype(output.dtype))
    return d_state


def _first(*trees: Any) -> Any:
    """Step 0 of chunk trees `(K, ...)` (for shapes): one tree, or a tuple of them."""
    firsts = tuple(jax.tree.map(lambda a: a[0], t) for t in trees)
    return firsts if len(firsts) > 1 else firsts[0]


masked_scan.defvjp(_masked_scan_fwd, _masked_scan_bwd)
