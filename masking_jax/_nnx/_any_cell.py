"""`RNN(cell)`: any Flax NNX cell over masked sequences, through `masking_jax.rnn`.

Shape legend: B batch, T time steps, D input features, H outputs per step. A mask
is bool `(B, T)`, True = real step, False = padding.
"""

import dataclasses
from typing import Any

import jax
from flax import nnx

from .._layer_calls import run_cell_layer, step_input_shape, unpack
from ._arguments import check_bool, check_features, check_rngs, check_unroll
from ._rnn_options import (
    carried_state,
    dropout_kwargs,
    dropout_options,
    forget_state,
    keep_state,
    stateful_option,
)


@dataclasses.dataclass(frozen=True)
class _CellStep:
    """A cell's call as the pure `step(params, carry, x_t) -> (carry, y_t)` of `rnn`.

    Hashable by the cell's graph definition, so every call of the same layer reuses
    one compiled kernel.
    """

    graphdef: Any

    def __call__(self, state: Any, carry: Any, x_t: jax.Array) -> tuple[Any, jax.Array]:
        return nnx.merge(self.graphdef, state)(carry, x_t)


class RNN(nnx.Module):
    """Any Flax NNX cell over masked sequences, with the rules of the built-in layers.

    Where `nnx.RNN(cell)` takes right padding only (`seq_lengths`) and leaves the
    outputs at padded steps as they come, this layer takes a mask of any layout
    (post-, pre-padded, holes): padded steps are skipped (the carry is kept; steps
    that are padding in every row cost almost nothing), their output is the
    previous output (zeros before the first real step) or zeros, and whatever the
    padding holds (NaN included) reaches neither the outputs nor the gradients.
    At real steps the outputs, and the final carry, equal `nnx.RNN(cell)(x,
    seq_lengths=...)` on the same sequences right-padded.

    Args:
      cell: an NNX cell: `nnx.LSTMCell`, `nnx.OptimizedLSTMCell`, `nnx.GRUCell`,
        `nnx.SimpleCell`, or a module with `__call__(carry, x_t) -> (carry, y_t)` (x_t
        `(B, D)`, y_t `(B, H)`, rows independent) and `initialize_carry(input_shape,
        rngs)`. Its call must be a pure function of its parameters (no RNG or batch
        statistics updates inside a step).
      return_sequences: return all outputs `(B, T, H)` (the mask passes on), else the
        output after each row's last real step `(B, H)` (the mask ends).
      return_state: also return the final carry, in the cell's own structure:
        `(y, carry)`.
      reverse: consume the steps from last to first; outputs stay aligned with the
        input positions.
      zero_output_for_mask: output zeros at padded steps instead of the previous output.
      unroll: `lax.scan` unrolling (`True`, `False` or a number of steps); speed only.
      dropout: the fraction of input units dropped, in [0, 1): one mask `(B, D)` per
        sequence, the same at every step, drawn from this layer's fork of `rngs`'
        "dropout" stream; active unless `deterministic` (`model.eval()`), as for
        `nnx.Dropout`. Recurrent dropout belongs to the cell, the one that knows
        which part of its carry feeds the recurrence (the built-in `LSTM`, `GRU`,
        `SimpleRNN` layers take `recurrent_dropout`).
      stateful: keep the final carry (a `RecurrentState` variable, not a `Param`) and
        start the next call from it: two calls on the halves of sequences equal one
        call on the whole at real steps (with `reverse=False`). The batch size must
        stay (else `ValueError`); `reset_state()` forgets it. No gradient flows from
        one call into the last.
      deterministic: start in evaluation mode (no dropout).
      rngs: `nnx.Rngs` for `cell.initialize_carry` (its "carry" stream) and for
        dropout (its "dropout" stream; either falls back to the default stream).

    Call: `layer(x, mask=None, *, initial_carry=None)` with `x` `(B, T, D)` (or a
    `Masked`, then sequence outputs come back `Masked`), `mask` bool `(B, T)`, True =
    real step; integer or bool `x` is cast to the carry's dtype. Without
    `initial_carry` it is the kept carry of a stateful layer, else
    `cell.initialize_carry((B, D), rngs)`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from masking_jax.nnx import RNN
      >>> layer = RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)), return_sequences=True)
      >>> mask = jnp.array([[True, True, False], [False, True, True]])
      >>> layer(jnp.ones((2, 3, 3)), mask=mask).shape
      (2, 3, 4)
      >>> y, carry = RNN(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)), return_state=True)(
      ...     jnp.ones((2, 3, 3)), mask=mask)
      >>> y.shape, [c.shape for c in carry]  # the LSTM cell's carry is (c, h)
      ((2, 4), [(2, 4), (2, 4)])
    """

    def __init__(
        self,
        cell: nnx.Module,
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        reverse: bool = False,
        zero_output_for_mask: bool = False,
        unroll: bool | int = False,
        dropout: float = 0.0,
        stateful: bool = False,
        deterministic: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        if not isinstance(cell, nnx.Module) or not callable(cell):
            raise TypeError(
                "`cell` must be a Flax NNX cell module (e.g. `nnx.LSTMCell(D, H, rngs=...)`) "
                f"with `__call__(carry, x_t)` and `initialize_carry`; got {type(cell).__name__}."
            )
        self.cell = cell
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.return_state = check_bool(return_state, "return_state")
        self.reverse = check_bool(reverse, "reverse")
        self.zero_output_for_mask = check_bool(zero_output_for_mask, "zero_output_for_mask")
        self.unroll = check_unroll(unroll)
        self.rngs = (check_rngs(rngs) if rngs is not None else nnx.Rngs(carry=0)).carry.fork()
        dropout_options(self, dropout, 0.0, deterministic, rngs)
        stateful_option(self, stateful)

    def initialize_carry(self, batch: int, in_features: int) -> Any:
        """The cell's initial carry for `(B, D)` inputs."""
        initialize = getattr(self.cell, "initialize_carry", None)
        if initialize is None:
            raise TypeError(
                f"`cell` ({type(self.cell).__name__}) has no `initialize_carry`; pass "
                "`initial_carry=` to the call."
            )
        return initialize((batch, in_features), self.rngs)

    def __call__(self, x: Any, mask: Any = None, *, initial_carry: Any = None) -> Any:
        x, mask, was_masked = unpack(x, mask)
        if initial_carry is None:
            initial_carry = carried_state(self, x)
        if initial_carry is None:
            initial_carry = self.initialize_carry(*step_input_shape(x))
        in_features = getattr(self.cell, "in_features", None)
        if isinstance(in_features, int):  # Flax's cells know it; a custom cell may not
            check_features(x, in_features, self.cell)
        graphdef, state = nnx.split(self.cell)
        y, carry = run_cell_layer(
            self, _CellStep(graphdef), state, x, mask, initial_carry, was_masked,
            **dropout_kwargs(self),
        )  # fmt: skip
        keep_state(self, carry)
        return (y, carry) if self.return_state else y

    def reset_state(self) -> None:
        """Forgets the kept carry: the next call starts from the initial one, any batch size."""
        forget_state(self)

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        """The mask of the main output: `mask` with `return_sequences`, else `None`."""
        return mask if self.return_sequences else None
