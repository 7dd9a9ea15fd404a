"""The masked scan driver: any mask layout in, the skipping scan, outputs in place.

`run` is the whole kernel after argument checks, for one direction. The masking
rules:

- a masked step carries every state unchanged (the step is skipped);
- its output is the previous output (`cell.initial_output` before any real step),
  or zeros with `zero_output_for_mask=True`;
- NaN or inf in the padding reaches neither the outputs nor the gradients of real
  steps; fully masked rows give the initial state and finite gradients.

How it runs:

0. Dropout, when asked (`_dropout`): `x` scaled by each row's input mask; a
   recurrent mask joins the state and the cell becomes `RecurrentDropout`. A batch
   of one row projects its inputs up front (`project_up_front`).
1. `x` and the mask time-major, zeros at padded steps (whatever the padding held
   never enters a step), padded to whole chunks.
2. The skipping scan with its custom VJP (`_vjp.masked_scan`): every layout runs
   at its input positions, so the outputs need no reordering.

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

from ._contract import Cell, GatedCell, ProjectedInputs
from ._dropout import RecurrentDropout, drop_inputs
from ._skip import chunking
from ._vjp import ScanOptions, masked_scan

PROJECT_UP_FRONT_UP_TO = 1  # rows: a batch this small projects its inputs in one GEMM


def project_up_front(cell: Cell, x: jax.Array, recurrent_scale: jax.Array | None) -> bool:
    """Whether the inputs of every step are projected before the scan, in one GEMM.

    A policy of the static shapes: a `GatedCell` on at most `PROJECT_UP_FRONT_UP_TO`
    rows (batch-1 inference), where a matmul per step is a matrix-vector product;
    larger batches project inside the step, which is faster there on CPU. Not with
    recurrent dropout (its cell wraps the Keras cell itself).
    """
    return (
        isinstance(cell, GatedCell)
        and x.shape[0] <= PROJECT_UP_FRONT_UP_TO
        and recurrent_scale is None
    )


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
    if project_up_front(cell, x, recurrent_scale):
        # The padding zeroed first: NaN there would reach the projection's gradient.
        x = cell.project(params, jnp.where(mask[..., None], x, 0))  # (B, T, G*H)
        cell = ProjectedInputs(cell)
    if recurrent_scale is not None:  # the scale rides in the state: `(state, scale)`
        cell, state = RecurrentDropout(cell), (state, recurrent_scale)
    batch, steps = x.shape[:2]
    x_t = jax.ShapeDtypeStruct((batch, *x.shape[2:]), x.dtype)
    output = jax.eval_shape(cell.step, params, state, x_t)[1]  # (B, H)
    initial_output = cell.initial_output(params, state, output)
    if steps == 0 or batch == 0:  # nothing to run: the initial state, no outputs
        return jnp.zeros((batch, steps, *output.shape[1:]), output.dtype), _own(cell, state)

    # A mask known at compile time (closed over) must not be constant-folded: XLA would
    # evaluate the selects on it while compiling.
    mask = jax.lax.optimization_barrier(mask)
    n_chunks, chunk = chunking(steps)
    to_chunks = ((0, n_chunks * chunk - steps),)  # pad T to N*K steps of padding
    real = jnp.pad(mask.T, (*to_chunks, (0, 0)))  # (N*K, B)
    x_tm = jnp.pad(jnp.swapaxes(x, 0, 1), to_chunks + ((0, 0),) * (x.ndim - 1))
    x_tm = jnp.where(real.reshape(real.shape + (1,) * (x.ndim - 2)), x_tm, 0)  # (N*K, B, D)
    inner_unroll = chunk if unroll is True else max(1, min(int(unroll), chunk))
    options = ScanOptions(inner_unroll, reverse, zero_output_for_mask)
    out_tm, final = masked_scan(options, cell, params, x_tm, real, state, initial_output)
    outputs = jnp.swapaxes(out_tm[:steps], 0, 1)
    return outputs, _own(cell, final)


def _own(cell: Cell, state: Any) -> Any:
    """The cell's own state, without a recurrent dropout scale riding along."""
    return state[0] if isinstance(cell, RecurrentDropout) else state
