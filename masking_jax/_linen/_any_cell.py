"""`RNN(cell)`: any Flax Linen cell over masked sequences, through `masking_jax.rnn`.

Shape legend: B batch, T time steps, D input features, H outputs per step. A mask
is bool `(B, T)`, True = real step, False = padding.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from .._checks import check_bool
from .._layer_calls import run_cell_layer, step_input_shape, unpack
from .._padding import lengths_mask
from .._rnn._validate import check_unroll

_FLAGS = ("return_sequences", "return_state", "reverse", "zero_output_for_mask")


@dataclasses.dataclass(frozen=True)
class _CellStep:
    """An unbound Linen cell as the pure `step(variables, carry, x_t) -> (carry, y_t)` of
    `rnn`. Hashable by the cell's attributes, so every call reuses one compiled kernel."""

    cell: nn.Module

    def __call__(self, variables: Any, carry: Any, x_t: jax.Array) -> tuple[Any, jax.Array]:
        return self.cell.apply(variables, carry, x_t)


class RNN(nn.Module):
    """Any Flax Linen cell over masked sequences: a drop-in for `flax.linen.RNN(cell)`.

    Its variables are those of `nn.RNN(cell)` (the cell's under `"cell"`), so either
    module applies the other's. Where `nn.RNN` takes right padding only (`seq_lengths`),
    steps through every padded step and leaves its outputs there as they come, this
    layer takes a mask of any layout (post-, pre-padded, holes): padded steps are
    skipped (the carry is kept; steps that are padding in every row cost almost
    nothing), their output is the previous output (zeros before the first real
    step) or zeros, and whatever the padding holds (NaN included) reaches neither the
    outputs nor the gradients. At real steps the outputs, and the final carry, equal
    `nn.RNN(cell)(x, seq_lengths=...)` on the same sequences right-padded; a row with no
    real step keeps its initial carry.

    Attributes:
      cell: a Linen cell: `nn.LSTMCell`, `nn.OptimizedLSTMCell`, `nn.GRUCell`,
        `nn.SimpleCell`, `nn.MGUCell`, or a module with `__call__(carry, x_t) -> (carry,
        y_t)` (x_t `(B, D)`, y_t `(B, H)`, rows independent) and `initialize_carry(rng,
        input_shape)`. Its call must be a pure function of its variables (no RNG or
        mutable collections inside a step).
      return_sequences: return all outputs `(B, T, H)` (default), else the output after
        each row's last real step `(B, H)`.
      return_state: also return the final carry, in the cell's own structure (the
        Linen LSTM cells carry `(c, h)`): `(y, carry)`, where `nn.RNN(...,
        return_carry=True)` returns `(carry, y)`.
      reverse: consume the steps from last to first; outputs stay aligned with the
        input positions (`nn.RNN`'s `reverse=True, keep_order=True`).
      zero_output_for_mask: output zeros at padded steps instead of the previous output.
      unroll: `lax.scan` unrolling (`True`, `False` or a number of steps); speed only.

    Call: `layer(x, mask=None, *, seq_lengths=None, initial_carry=None, init_key=None)`
    with `x` `(B, T, D)` (or a `Masked`, then sequence outputs come back `Masked`),
    `mask` bool `(B, T)`, True = real step, or, as for `nn.RNN`, integer `seq_lengths`
    `(B,)` for right-padded rows. Without `initial_carry` it is
    `cell.initialize_carry(init_key, (B, D))`, `init_key` defaulting to
    `jax.random.key(0)` as in `nn.RNN`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from masking_jax.linen import RNN
      >>> x = jnp.ones((2, 3, 3))
      >>> mask = jnp.array([[True, True, False], [False, True, True]])  # any layout
      >>> variables = nn.RNN(nn.LSTMCell(4)).init(jax.random.key(0), x)  # Flax's own
      >>> layer = RNN(nn.LSTMCell(4), return_state=True)
      >>> y, (c, h) = layer.apply(variables, x, mask=mask)  # the LSTM cell carries (c, h)
      >>> y.shape, h.shape, bool(jnp.allclose(h[0], y[0, 1]))
      ((2, 3, 4), (2, 4), True)
    """

    cell: nn.Module
    _: dataclasses.KW_ONLY
    return_sequences: bool = True
    return_state: bool = False
    reverse: bool = False
    zero_output_for_mask: bool = False
    unroll: bool | int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.cell, nn.Module) or not callable(self.cell):
            raise TypeError(
                "`cell` must be a Flax Linen cell module (e.g. `nn.LSTMCell(H)`) with "
                f"`__call__(carry, x_t)` and `initialize_carry`; got {type(self.cell).__name__}."
            )
        check_options(self, _FLAGS)
        super().__post_init__()

    @nn.compact
    def __call__(
        self,
        x: Any,
        mask: Any = None,
        *,
        seq_lengths: Any = None,
        initial_carry: Any = None,
        init_key: jax.Array | None = None,
    ) -> Any:
        x, mask, was_masked = unpack(x, mask)
        batch, features = step_input_shape(x)
        if seq_lengths is not None:
            mask = _mask_from_lengths(seq_lengths, mask, batch, np.shape(x)[1])
        if initial_carry is None:
            initial_carry = self._initialize_carry(init_key, (batch, features))
        if self.is_initializing():  # the cell makes its variables at its first call
            self.cell(initial_carry, jnp.zeros((batch, features), jnp.asarray(x).dtype))
        cell, variables = self.cell.unbind()
        y, carry = run_cell_layer(
            self, _CellStep(cell), variables, x, mask, initial_carry, was_masked
        )
        return (y, carry) if self.return_state else y

    def _initialize_carry(self, key: jax.Array | None, input_shape: tuple[int, int]) -> Any:
        initialize = getattr(self.cell, "initialize_carry", None)
        if initialize is None:
            raise TypeError(
                f"`cell` ({type(self.cell).__name__}) has no `initialize_carry`; pass "
                "`initial_carry=` to the call."
            )
        return initialize(jax.random.key(0) if key is None else key, input_shape)


def check_options(layer: nn.Module, flags: tuple[str, ...]) -> None:
    """Raises unless each of `layer`'s `flags` is a bool and its `unroll` is valid."""
    for name in flags:
        check_bool(getattr(layer, name), name)
    check_unroll(layer.unroll)


def _mask_from_lengths(seq_lengths: Any, mask: Any, batch: int, steps: int) -> jax.Array:
    """The `(B, T)` mask of right-padded rows of `seq_lengths` `(B,)` real steps."""
    if mask is not None:
        raise TypeError(
            "Pass either `mask=` (bool (B, T), any layout) or `seq_lengths=` (right-padded "
            "rows), not both."
        )
    mask = lengths_mask(seq_lengths, steps, name="seq_lengths")
    if mask.shape != (batch, steps):
        raise ValueError(
            f"`seq_lengths` must have shape (B,) = ({batch},), one length per row of x; got "
            f"shape {mask.shape[:-1]}."
        )
    return mask
