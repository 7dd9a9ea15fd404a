"""The plain masked scan: every step computed, selects after, autodiff through `lax.scan`.

The oracle for the fast path's custom VJP (`masking_jax/_rnn/_vjp.py`): a cell, params
and one direction, the simplest correct implementation of the masking rules.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from masking_jax._rnn._contract import Cell

State = Any


def masked_scan(
    step: Callable[[State, jax.Array], tuple[State, jax.Array]],
    initial_output: jax.Array,
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
        step: `(state, inputs_t) -> (new_state, output_t)`, batched over B.
        initial_output: `(B, H)`, the output at masked steps before any real one.
        state: the initial state, a pytree of `(B, ...)` arrays.
        inputs: time-major `(T, B, D)` step inputs, already zero at masked steps.
        mask: time-major boolean `(T, B)`; True = real step, False = padding.
        reverse: consume steps from last to first; outputs stay aligned with inputs.
        zero_output_for_mask: zeros, not the previous output, at masked steps.
        unroll: passed to `lax.scan`.

    Returns:
        Time-major outputs `(T, B, H)` and the final state (after the last valid step).
    """

    def body(carry: tuple[State, jax.Array], step_in: tuple[jax.Array, jax.Array]):
        state, previous = carry
        x_t, m_t = step_in
        new, out_t = step(state, x_t)
        keep = m_t[:, None]  # (B, 1)
        new = jax.tree.map(
            lambda n, o: jnp.where(keep.reshape(keep.shape + (1,) * (n.ndim - 2)), n, o),
            new,
            state,
        )
        previous = jnp.where(keep, out_t, previous)
        fill = jnp.zeros_like(out_t) if zero_output_for_mask else previous
        return (new, previous), jnp.where(keep, out_t, fill)

    (state, _), outputs = jax.lax.scan(
        body, (state, initial_output), (inputs, mask), reverse=reverse, unroll=unroll
    )
    return outputs, state


@functools.partial(
    jax.jit, static_argnums=0, static_argnames=("reverse", "zero_output_for_mask", "unroll")
)
def run_cell_plain(
    cell: Cell,
    params: Any,
    x: jax.Array,
    mask: jax.Array,
    state: State,
    *,
    reverse: bool,
    zero_output_for_mask: bool,
    unroll: bool | int,
) -> tuple[jax.Array, State]:
    """One direction by the plain driver: all T steps, selects, autodiff through `lax.scan`.

    x `(B, T, D)`, mask `(B, T)`; returns outputs `(B, T, H)` and the final state.
    """
    x_filled = jnp.where(mask[:, :, None], x, 0)  # fill before the step
    output = jax.eval_shape(cell.step, params, state, x[:, 0])[1]
    outputs, state = masked_scan(
        lambda carry, x_t: cell.step(params, carry, x_t),
        cell.initial_output(params, state, output),
        state,
        jnp.swapaxes(x_filled, 0, 1),
        jnp.swapaxes(mask, 0, 1),
        reverse=reverse,
        zero_output_for_mask=zero_output_for_mask,
        unroll=unroll,
    )
    return jnp.swapaxes(outputs, 0, 1), state
