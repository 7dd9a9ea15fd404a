"""RNN dropout (Keras `dropout`, `recurrent_dropout`): one mask per sequence, kept for every step.

A row draws one mask for its inputs `(D,)` and one for its recurrent state `(H,)`
and uses them at every one of its steps, so a row's result depends on its real
steps alone, never on where the padding sits. A mask is a scale: 0 where a unit is
dropped, `1 / (1 - rate)` where it is kept (inverted dropout, as Keras does).

- Input dropout scales `x` once, before the scan: the same mask at every step.
- Recurrent dropout scales the h that enters the recurrent matmul (the carried
  state itself is not dropped). The mask rides in the state, `(state, scale)`, so
  the scan carries it along with each row, and the cell's step reads it there
  (`RecurrentDropout`). Without recurrent dropout nothing of this runs.

As Keras' fused kernels do for input dropout, every gate sees the same dropped
inputs and the same dropped h (Keras draws one mask per gate once
`recurrent_dropout > 0`); that keeps one recurrent matmul per step.

Shape legend: B batch, T time steps, D input features, H hidden units.
"""

from typing import Any

import jax
import jax.numpy as jnp

from ._contract import WrappedCell


def dropout_scales(
    key: jax.Array | None,
    batch: int,
    in_features: int,
    hidden: int,
    dropout: float,
    recurrent_dropout: float,
    dtype: Any,
) -> tuple[jax.Array | None, jax.Array | None]:
    """The input `(B, D)` and recurrent `(B, H)` dropout scales, `None` for a rate of 0.

    `key` is split in two, `(input_key, recurrent_key) = jax.random.split(key)`, and
    each scale is `jax.random.bernoulli(k, 1 - rate, shape) / (1 - rate)` in `dtype`,
    so the input mask does not change when `recurrent_dropout` is switched on.

    Examples:
        >>> import jax
        >>> x_scale, h_scale = dropout_scales(jax.random.key(0), 2, 3, 4, 0.5, 0.0, "float32")
        >>> x_scale.shape, sorted(set(x_scale.ravel().tolist())) <= [0.0, 2.0], h_scale
        ((2, 3), True, None)
    """
    if not dropout and not recurrent_dropout:
        return None, None
    keys = jax.random.split(key)

    def scale(k: jax.Array, rate: float, size: int) -> jax.Array | None:
        if not rate:
            return None
        keep = jax.random.bernoulli(k, 1.0 - rate, (batch, size))
        return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)

    return scale(keys[0], dropout, in_features), scale(keys[1], recurrent_dropout, hidden)


def drop_inputs(x: jax.Array, scale: jax.Array | None) -> jax.Array:
    """`x` `(B, T, D)` times its row's input scale `(B, D)` at every step."""
    return x if scale is None else x * scale[:, None, :].astype(x.dtype)


class RecurrentDropout(WrappedCell):
    """A Keras cell whose recurrent input is `output(state) * scale`; state `(state, scale)`.

    The scale `(B, H)` passes through every step unchanged; the cell's own state is
    stepped as usual, from the dropped h. `cell` is a `KerasCell`.
    """

    def gate_math(self, gate_params: Any, preact: Any, state: Any) -> tuple[Any, jax.Array]:
        inner, scale = state
        new, y = self.cell.gate_math_dropped(gate_params, preact, inner, scale)
        return (new, scale), y

    def output(self, state: Any) -> jax.Array:
        inner, scale = state
        return self.cell.output(inner) * scale

    def output_of_state(self, state: Any) -> jax.Array:
        return self.cell.output_of_state(state[0])  # h itself, not dropped

    def initial_output(
        self, params: Any, state: Any, output: jax.ShapeDtypeStruct
    ) -> jax.Array:
        """The initial h itself, not dropped."""
        return self.cell.initial_output(params, state[0], output)
