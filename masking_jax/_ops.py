"""Mask consumers: softmax and reductions over real steps only.

Each op fills padded positions with a neutral value before any arithmetic and
selects after ("double where"), so NaN or inf in the padding never reaches a
result or a gradient. Masks are boolean, True = real step, and cover the
leading axes of `x` (a `(B, T)` mask for `(B, T, D)` data).
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ._checks import align_mask, check_axis

Axis = int | Sequence[int]


def _prepare(x: Any, mask: Any, axis: Axis) -> tuple[jax.Array, jax.Array, tuple[int, ...]]:
    """Returns x as an array, the mask broadcast to x's shape, and the normalised axes."""
    x = jnp.asarray(x)
    mask = jnp.broadcast_to(align_mask(mask, x), x.shape)
    return x, mask, check_axis(axis, x.ndim)


def masked_softmax(x: Any, mask: Any, axis: Axis = -1) -> jax.Array:
    """Softmax over the real entries along `axis`; padded entries get weight 0.

    With `axis=1` over scores of shape `(B, T)` or `(B, T, 1)` this is the
    guide's `TemporalSoftmax`. A row with no real entry gets all-zero weights.

    Args:
      x: logits, e.g. `(B, T)` or attention scores `(B, N, T, S)`.
      mask: bool covering the leading axes of `x` (axes of size 1 broadcast).
      axis: the axis (or axes) to normalise over.

    Examples:
      >>> masked_softmax(jnp.array([[1.0, 1.0, jnp.nan]]), jnp.array([[True, True, False]]))
      Array([[0.5, 0.5, 0. ]], dtype=float32)
    """
    x, mask, axes = _prepare(x, mask, axis)
    return jax.nn.softmax(x, axis=axes, where=mask)


def masked_count(x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False) -> jax.Array:
    """How many real entries of `x` each reduction along `axis` sees (int32).

    Examples:
      >>> masked_count(jnp.zeros((1, 3, 2)), jnp.array([[True, True, False]]))
      Array([[2, 2]], dtype=int32)
    """
    _, mask, axes = _prepare(x, mask, axis)
    return jnp.sum(mask, axis=axes, keepdims=keepdims, dtype=jnp.int32)


def masked_sum(x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False) -> jax.Array:
    """Sum of the real entries along `axis` (time by default); 0 where none is real.

    Args:
      x: data, e.g. `(B, T, D)`.
      mask: bool `(B, T)` (True = real step) or any mask covering x's leading axes.
      axis: the axis or axes to reduce.
      keepdims: keep the reduced axes with size 1.

    Returns:
      `(B, D)` for `(B, T, D)` data and `axis=1`.

    Examples:
      >>> masked_sum(jnp.array([[1.0, 2.0, jnp.nan]]), jnp.array([[True, True, False]]))
      Array([3.], dtype=float32)
    """
    x, mask, axes = _prepare(x, mask, axis)
    return jnp.sum(jnp.where(mask, x, 0), axis=axes, keepdims=keepdims)


def masked_mean(x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False) -> jax.Array:
    """Mean of the real entries along `axis`; 0 where none is real.

    With the default `axis=1` over `(B, T, D)` data this is masked global average
    pooling over time (Keras `GlobalAveragePooling1D` with a mask), returning `(B, D)`.

    Examples:
      >>> masked_mean(jnp.array([[1.0, 2.0, jnp.nan]]), jnp.array([[True, True, False]]))
      Array([1.5], dtype=float32)
    """
    x = jnp.asarray(x)
    dtype = jnp.result_type(x.dtype, float)  # ints give the default float; bfloat16 stays
    accumulate = jnp.promote_types(dtype, jnp.float32)
    total = masked_sum(x.astype(accumulate), mask, axis, keepdims)
    count = masked_count(x, mask, axis, keepdims)
    return (total / jnp.maximum(count, 1).astype(accumulate)).astype(dtype)


def _masked_extreme(reduce, identity, x, mask, axis, keepdims, fill_value):
    """Shared body of masked max and min: `identity` is -inf for max, +inf for min."""
    x, mask, axes = _prepare(x, mask, axis)
    neutral = jnp.asarray(identity(x.dtype), x.dtype)
    extreme = reduce(jnp.where(mask, x, neutral), axis=axes, keepdims=keepdims, initial=neutral)
    has_real = jnp.any(mask, axis=axes, keepdims=keepdims)
    return jnp.where(has_real, extreme, jnp.asarray(fill_value, x.dtype))


def _lowest(dtype):
    return -jnp.inf if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo(dtype).min


def _highest(dtype):
    return jnp.inf if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo(dtype).max


def masked_max(
    x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False, fill_value: Any = 0
) -> jax.Array:
    """Max of the real entries along `axis`; `fill_value` (0) where none is real.

    With the default `axis=1` over `(B, T, D)` data this is masked global max
    pooling over time, returning `(B, D)`.

    Examples:
      >>> masked_max(jnp.array([[1.0, 2.0, jnp.inf]]), jnp.array([[True, True, False]]))
      Array([2.], dtype=float32)
    """
    return _masked_extreme(jnp.max, _lowest, x, mask, axis, keepdims, fill_value)


def masked_min(
    x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False, fill_value: Any = 0
) -> jax.Array:
    """Min of the real entries along `axis`; `fill_value` (0) where none is real.

    Examples:
      >>> masked_min(jnp.array([[1.0, 2.0, -jnp.inf]]), jnp.array([[True, True, False]]))
      Array([1.], dtype=float32)
    """
    return _masked_extreme(jnp.min, _highest, x, mask, axis, keepdims, fill_value)


def masked_var(
    x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False, ddof: int = 0
) -> jax.Array:
    """Variance of the real entries along `axis`: sum of squared deviations / (count - ddof).

    0 where count <= ddof (no real entry, or one with `ddof=1`). Use it with
    `masked_mean(..., keepdims=True)` for normalisation statistics.

    Examples:
      >>> masked_var(jnp.array([[1.0, 3.0, jnp.nan]]), jnp.array([[True, True, False]]))
      Array([1.], dtype=float32)
    """
    x, mask, axes = _prepare(x, mask, axis)
    mean = masked_mean(x, mask, axes, keepdims=True)
    deviation = jnp.where(mask, jnp.where(mask, x, 0) - mean, 0)
    squares = jnp.sum(deviation * deviation, axis=axes, keepdims=keepdims)
    dof = masked_count(x, mask, axes, keepdims) - ddof
    return jnp.where(dof > 0, squares / jnp.maximum(dof, 1).astype(squares.dtype), 0)


def masked_std(
    x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False, ddof: int = 0
) -> jax.Array:
    """Standard deviation of the real entries; 0 (with a finite gradient) where var is 0.

    Examples:
      >>> masked_std(jnp.array([[1.0, 3.0, jnp.nan]]), jnp.array([[True, True, False]]))
      Array([1.], dtype=float32)
    """
    var = masked_var(x, mask, axis, keepdims, ddof)
    positive = var > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1)), 0)
