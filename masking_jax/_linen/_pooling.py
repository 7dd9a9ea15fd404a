"""Global pooling over the real steps, as Linen modules.

Shape legend: B batch, T time steps, D features. A mask is bool `(B, T)`, True = real
step, False = padding.
"""

from typing import Any, ClassVar

import jax
from flax import linen as nn

from .._checks import check_bool
from .._layer_calls import pool_over_time


class _GlobalPooling1D(nn.Module):
    """Shared body of the global pooling layers: a reduction over the real steps."""

    keepdims: bool = False
    _kind: ClassVar[str]  # "mean" or "max"

    def __post_init__(self) -> None:
        check_bool(self.keepdims, "keepdims")
        super().__post_init__()

    def __call__(self, x: Any, mask: Any = None) -> jax.Array:
        return pool_over_time(self._kind, x, mask, self.keepdims)


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the real steps (`keras.layers.GlobalAveragePooling1D` with a mask).

    Attributes:
      keepdims: keep the time axis, of size 1.

    Call: `layer(x, mask=None)` with `x` `(B, T, D)` (or a `Masked`) and a bool `(B, T)`
    mask (True = real step) gives `(B, D)` (`(B, 1, D)` with `keepdims`); a row with no
    real step gives zeros, and padding (NaN included) never leaks.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[[1.0], [3.0], [jnp.nan]]])
      >>> GlobalAveragePooling1D().apply({}, x, mask=jnp.array([[True, True, False]]))
      Array([[2.]], dtype=float32)
    """

    _kind = "mean"


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Max over the real steps: `(B, T, D)` and a bool `(B, T)` mask give `(B, D)`.

    Attributes:
      keepdims: keep the time axis, of size 1.

    Call: `layer(x, mask=None)`, mask True = real step; a row with no real step gives
    zeros. Keras 3's `GlobalMaxPooling1D` ignores the mask; this layer gives what Keras
    gives on the unpadded sequences.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[[1.0], [3.0], [9.0]]])
      >>> GlobalMaxPooling1D().apply({}, x, mask=jnp.array([[True, True, False]]))
      Array([[3.]], dtype=float32)
    """

    _kind = "max"
