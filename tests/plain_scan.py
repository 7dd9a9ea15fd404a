"""The plain masked scan: every step computed, selects after, autodiff through `lax.scan`.

The oracle for the fast path's custom VJP (`masking_jax/_rnn/_scan.py`): same
arguments as `run_cell`, the simplest correct implementation of the masking rules.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from masking_jax._rnn._cells import Cell

State = Any


def masked_scan(
    step: Callable[[State, jax.Array], tuple[jax.Array, State]],
    output_of: Callable[[State], jax.Array],
    state: State,
    inputs: jax.Array,
    mask: jax.Array,
    *,
    reverse: bool,
    zero_output_for_mask: bool,
    unroll: bool | int,
) -> tuple[jax.Array, State]:
    """Scans `step` over time, skipping masked steps (the plain driver).

    Args:
        step: `(state, inputs_t) -> (output_t, new_state)`, batched over B.
        output_of: the output a carried state stands for (its h).
        state: the initial state, a pytree of `(B, H)` arrays.
        inputs: time-major `(T, B, G)` step inputs, already zero at masked steps.
        mask: time-major boolean `(T, B)`; True = real step, False = padding.
        reverse: consume steps from last to first; outputs stay aligned with inputs.
        zero_output_for_mask: zeros, not the previous output, at masked steps.
        unroll: passed to `lax.scan`.

    Returns:
        Time-major outputs `(T, B, H)` and the final state (after the last valid step).
    """

    def body(carry: State, step_in: tuple[jax.Array, jax.Array]) -> tuple[State, jax.Array]:
        x_t, m_t = step_in
        out_t, new = step(carry, x_t)
        keep = m_t[:, None]  # (B, 1)
        new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry)
        fill = jnp.zeros_like(out_t) if zero_output_for_mask else output_of(carry)
        return new, jnp.where(keep, out_t, fill)

    state, outputs = jax.lax.scan(body, state, (inputs, mask), reverse=reverse, unroll=unroll)
    return outputs, state


@functools.partial(
    jax.jit, static_argnums=0, static_argnames=("reverse", "zero_output_for_mask", "unroll")
)
def run_cell_plain(
    cell: Cell,
    params: dict[str, Any],
    x: jax.Array,
    mask: jax.Array,
    state: State,
    *,
    reverse: bool,
    zero_output_for_mask: bool,
    unroll: bool | int,
) -> tuple[jax.Array, State]:
    """`run_cell` by the plain driver: all T steps, selects, autodiff through `lax.scan`."""
    dtype = jax.tree.leaves(state)[0].dtype
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    x_filled = jnp.where(mask[:, :, None], x.astype(dtype), 0)  # fill before the matmul
    xp = cell.project(params, jnp.swapaxes(x_filled, 0, 1))

    def step(carry: State, xp_t: jax.Array) -> tuple[jax.Array, State]:
        return cell.step(params, xp_t, carry)

    outputs, state = masked_scan(
        step,
        cell.output,
        state,
        xp,
        jnp.swapaxes(mask, 0, 1),
        reverse=reverse,
        zero_output_for_mask=zero_output_for_mask,
        unroll=unroll,
    )
    return jnp.swapaxes(outputs, 0, 1).astype(x.dtype), state
