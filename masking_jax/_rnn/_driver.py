"""The masked scan driver: any mask layout in, the skipping scan, outputs back in place.

`run` is the whole kernel after argument checks, for one direction. The masking
rules:

- a masked step carries every state unchanged (the step is skipped);
- its output is the previous output (`cell.initial_output` before any real step),
  or zeros with `zero_output_for_mask=True`;
- NaN or inf in the padding reaches neither the outputs nor the gradients of real
  steps; fully masked rows give the initial state and finite gradients.

How it runs:

0. Dropout, when asked (`_dropout`): `x` scaled by each row's input mask; a
   recurrent mask joins the state and the cell becomes `RecurrentDropout`.
1. Compaction (`_layout`): each row's real steps, in processing order, to the front
   of a time-major array, zeros after, so every layout runs one post-padded loop.
2. The skipping scan with its custom VJP (`_vjp.compacted_scan`).
3. The outputs at input positions (`_layout.outputs_at_inputs`): one gather.

Under `jax.vmap` with a batched mask a chunk runs where any vmapped batch needs
it, with selects: results stay exact, but less is skipped (fold the vmapped axis
into B where speed matters).

Shape legend: B batch, T time steps, D input features, H outputs per step,
N chunks of K steps.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._layout import compacted_inputs, compaction, outputs_at_inputs
from ._contract import Cell
from ._dropout import RecurrentDropout, drop_inputs
from ._skip import chunking
from ._vjp import compacted_scan

_STATIC = ("reverse", "zero_output_for_mask", "unroll")


@functools.partial(jax.jit, static_argnums=0, static_argnames=_STATIC)
def run(
    cell: Cell,
    params: Any,
    x: jax.Array,
    mask: jax.Array,
    state: Any,
    *,
    reverse: bool,
    zero_output_for_mask: bool,
    unroll: bool | int,
    input_scale: jax.Array | None = None,
    recurrent_scale: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """Runs `cell` over checked arguments.

    Args:
        cell: the cell (static).
        params: the cell's params pytree.
        x: `(B, T, D)`.
        mask: bool `(B, T)`, True = real step.
        state: the initial state, a pytree of `(B, ...)` arrays.
        reverse: consume each row's real steps from last to first.
        zero_output_for_mask: zeros at padded steps instead of the previous output.
        unroll: steps of a chunk unrolled in the scan (`True`: the whole chunk).
        input_scale: `(B, D)` input dropout scale of each row, or `None` (`_dropout`).
        recurrent_scale: `(B, H)` recurrent dropout scale of each row, or `None`;
            needs a `KerasCell`.

    Returns:
        `(outputs, final_state)`: outputs `(B, T, H)` in the dtype of the cell's
        output, the state after each row's last real step.
    """
    x = drop_inputs(x, input_scale)
    if recurrent_scale is not None:  # the scale rides in the state: `(state, scale)`
        cell, state = RecurrentDropout(cell), (state, recurrent_scale)
    batch, steps = x.shape[:2]
    x_t = jax.ShapeDtypeStruct((batch, *x.shape[2:]), x.dtype)
    output = jax.eval_shape(cell.step, params, state, x_t)[1]  # (B, H)
    initial_output = cell.initial_output(params, state, output)
    if steps == 0 or batch == 0:  # nothing to run: the initial state, no outputs
        return jnp.zeros((batch, steps, *output.shape[1:]), output.dtype), _own(cell, state)

    # A mask known at compile time (closed over) must not be constant-folded: XLA would
    # evaluate the compaction, and the scatter in its gradient, while compiling.
    mask = jax.lax.optimization_barrier(mask)
    compacted = compaction(mask, reverse=reverse)
    n_chunks, chunk = chunking(steps)
    x_c = compacted_inputs(x, compacted, time_major=True)  # (T, B, D)
    x_c = jnp.pad(x_c, ((0, n_chunks * chunk - steps), (0, 0), (0, 0)))  # (N*K, B, D)
    inner_unroll = chunk if unroll is True else max(1, min(int(unroll), chunk))
    out_c, final = compacted_scan(cell, inner_unroll, params, x_c, compacted.lengths, state)
    outputs = outputs_at_inputs(
        out_c, mask, compacted, initial_output, zero_output_for_mask=zero_output_for_mask,
        time_major=True,
    )  # fmt: skip
    return outputs, _own(cell, final)


def _own(cell: Cell, state: Any) -> Any:
    """The cell's own state, without a recurrent dropout scale riding along."""
    return state[0] if isinstance(cell, RecurrentDropout) else state
