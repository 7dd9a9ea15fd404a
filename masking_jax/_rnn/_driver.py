"""The masked scan driver: any mask layout in, the skipping scan, outputs back in place.

`run` is the whole kernel after argument checks, for one direction or for both
directions of a bidirectional layer in one scan. The masking rules:

- a masked step carries every state unchanged (the step is skipped);
- its output is the previous output (`cell.initial_output` before any real step),
  or zeros with `zero_output_for_mask=True`;
- NaN or inf in the padding reaches neither the outputs nor the gradients of real
  steps; fully masked rows give the initial state and finite gradients.

How it runs:

1. Compaction (`_layout`): each row's real steps, in processing order, to the front
   of a time-major array, zeros after, so every layout runs one post-padded loop.
   With more than one block of rows (`_skip.blocking`) the rows are also sorted
   longest first, so the rows still running are always a prefix, and padded with
   empty rows to whole blocks.
2. The skipping scan with its custom VJP (`_vjp.compacted_scan`). Both directions
   of a bidirectional layer share it: they have the same lengths, so they stack on
   a direction axis and each step's matmuls are batched over it.
3. The outputs at input positions (`_layout.outputs_at_inputs`): one gather.

Under `jax.vmap` with a batched mask each chunk's `lax.cond` becomes a select over
both branches: results stay exact, but no chunk is skipped (fold the vmapped axis
into B where speed matters).

Shape legend: B batch, T time steps, D input features, H outputs per step,
N chunks of K steps.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._layout import Compaction, compacted_inputs, compaction, outputs_at_inputs
from ._contract import Cell
from ._skip import blocking, chunking
from ._vjp import compacted_scan

_STATIC = ("directions", "zero_output_for_mask", "unroll")


@functools.partial(jax.jit, static_argnums=0, static_argnames=_STATIC)
def run(
    cell: Cell,
    params: tuple[Any, ...],
    x: jax.Array,
    mask: jax.Array,
    states: tuple[Any, ...],
    *,
    directions: tuple[bool, ...],
    zero_output_for_mask: bool,
    unroll: bool | int,
) -> tuple[tuple[jax.Array, ...], tuple[Any, ...]]:
    """Runs `cell` over checked arguments once per direction (`directions[i]`: reverse).

    Args:
        cell: the cell (static).
        params: one params pytree per direction (same structure and shapes).
        x: `(B, T, D)`.
        mask: bool `(B, T)`, True = real step.
        states: one initial state per direction, each a pytree of `(B, ...)` arrays.
        directions: `(False,)`, `(True,)` or `(False, True)` (a bidirectional layer).
        zero_output_for_mask: zeros at padded steps instead of the previous output.
        unroll: steps of a chunk unrolled in the scan (`True`: the whole chunk).

    Returns:
        `(outputs, final_states)`, one per direction: outputs `(B, T, H)` in the dtype
        of the cell's output, the state after each row's last real step.
    """
    batch, steps = x.shape[:2]
    x_t = jax.ShapeDtypeStruct((batch, *x.shape[2:]), x.dtype)
    output = jax.eval_shape(cell.step, params[0], states[0], x_t)[1]  # (B, H)
    initial_outputs = [
        cell.initial_output(p, s, output) for p, s in zip(params, states, strict=True)
    ]
    if steps == 0 or batch == 0:  # nothing to run: the initial states, no outputs
        empty = jnp.zeros((batch, steps, *output.shape[1:]), output.dtype)
        return tuple(empty for _ in directions), states

    # A mask known at compile time (closed over) must not be constant-folded: XLA would
    # evaluate the compaction, and the scatter in its gradient, while compiling.
    mask = jax.lax.optimization_barrier(mask)
    compactions = [compaction(mask, reverse=r) for r in directions]
    lengths = compactions[0].lengths
    blocks, width = blocking(batch)
    if blocks > 1:  # rows longest first: the running rows are a prefix
        rows = jnp.argsort(-lengths, stable=True).astype(jnp.int32)
        where_row = jnp.argsort(rows).astype(jnp.int32)
    else:
        rows = where_row = jnp.arange(batch, dtype=jnp.int32)
    extra_rows = blocks * width - batch  # empty rows that fill the last block

    n_chunks, chunk = chunking(steps)

    def chunked_inputs(c: Compaction) -> jax.Array:
        x_c = compacted_inputs(x, c, where_row)  # (T, B, D), rows sorted
        return jnp.pad(x_c, ((0, n_chunks * chunk - steps), (0, extra_rows), (0, 0)))

    def by_rows(tree: Any) -> Any:  # sorted, and padded to whole blocks
        return jax.tree.map(
            lambda a: jnp.pad(a[rows], [(0, extra_rows)] + [(0, 0)] * (a.ndim - 1)), tree
        )

    lead = len(directions) - 1  # 1: both directions on an axis before the rows
    x_c = [chunked_inputs(c) for c in compactions]
    state = [by_rows(s) for s in states]
    x_c, state, stacked_params = (
        (_stack(x_c, axis=1), _stack(state), _stack(params))  # (N*K, 2, M*W, D), (2, M*W, ...)
        if lead
        else (x_c[0], state[0], params[0])
    )
    inner_unroll = chunk if unroll is True else max(1, min(int(unroll), chunk))
    out_c, final = compacted_scan(
        cell, inner_unroll, lead, stacked_params, x_c, jnp.pad(lengths[rows], (0, extra_rows)),
        state,
    )  # fmt: skip

    outputs, finals = [], []
    for d, c in enumerate(compactions):
        out_d = out_c[:, d] if lead else out_c
        final_d = jax.tree.map(lambda f, d=d: f[d], final) if lead else final
        outputs.append(
            outputs_at_inputs(
                out_d, mask, c, initial_outputs[d],
                zero_output_for_mask=zero_output_for_mask, where_row=where_row,
            )
        )  # fmt: skip
        finals.append(jax.tree.map(lambda f: f[where_row], final_d))
    return tuple(outputs), tuple(finals)


def _stack(trees: list[Any], axis: int = 0) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves, axis=axis), *trees)
