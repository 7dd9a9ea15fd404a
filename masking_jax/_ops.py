"""Mask consumers: softmax and reductions over real steps only.

Each op fills padded positions with a neutral value before any arithmetic and
selects after ("double where"), so NaN or inf in the padding never reaches a
result or a gradient. Masks are boolean, True = real step, and cover the
leading axes of `x` (a `(B, T)` mask for `(B, T, D)` data).

Arguments are checked at trace time: `x` is a numeric array (lists work; a
`Masked` does not: pass `m.data, m.mask`), `axis` a static int, a sequence of
ints or `None` (every axis), `keepdims` a Python bool. Sums, means, variances and
standard deviations take boolean and complex `x` as numpy does (a complex
variance is the mean of `|x - mean|**2`, real); max, min and softmax need an
ordered (real) dtype.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ._checks import align_mask, as_array, check_axis, check_bool, check_int, fill_array

Axis = int | Sequence[int] | None


def _prepare(
    x: Any, mask: Any, axis: Axis, *, complex_ok: bool = True
) -> tuple[jax.Array, jax.Array, tuple[int, ...]]:
    """Returns x as an array, the mask broadcast to x's shape, and the normalised axes."""
    x = as_array(x, "x", complex_ok=complex_ok)
    mask = jnp.broadcast_to(align_mask(mask, x), x.shape)
    return x, mask, check_axis(axis, x.ndim)


def abs_squared(x: jax.Array) -> jax.Array:
    """`|x|**2`, real: `x * x`, or `re(x conj(x))` for complex `x`."""
    return (x * jnp.conj(x)).real if jnp.iscomplexobj(x) else x * x


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
    x, mask, axes = _prepare(x, mask, axis, complex_ok=False)
    return jax.nn.softmax(x, axis=axes, where=mask)


def masked_count(x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False) -> jax.Array:
    """How many real entries of `x` each reduction along `axis` sees (int32).

    Examples:
      >>> masked_count(jnp.zeros((1, 3, 2)), jnp.array([[True, True, False]]))
      Array([[2, 2]], dtype=int32)
    """
    _, mask, axes = _prepare(x, mask, axis)
    return jnp.sum(mask, axis=axes, keepdims=check_bool(keepdims, "keepdims"), dtype=jnp.int32)


def masked_sum(x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False) -> jax.Array:
    """Sum of the real entries along `axis` (time by default); 0 where none is real.

    Args:
      x: data, e.g. `(B, T, D)`.
      mask: bool `(B, T)` (True = real step) or any mask covering x's leading axes.
      axis: the axis or axes to reduce.
      keepdims: keep the reduced axes with size 1.

    Returns:
      `(B, D)` for `(B, T, D)` data and `axis=1`, in the dtype `jnp.sum` gives (x's;
      int32 / uint32 for narrower integers and bools): integer sums wrap on overflow
      (numpy would widen to int64); cast first if they may.

    Examples:
      >>> masked_sum(jnp.array([[1.0, 2.0, jnp.nan]]), jnp.array([[True, True, False]]))
      Array([3.], dtype=float32)
    """
    x, mask, axes = _prepare(x, mask, axis)
    return jnp.sum(jnp.where(mask, x, 0), axis=axes, keepdims=check_bool(keepdims, "keepdims"))


def masked_mean(x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False) -> jax.Array:
    """Mean of the real entries along `axis`; 0 where none is real.

    With the default `axis=1` over `(B, T, D)` data this is masked global average
    pooling over time (Keras `GlobalAveragePooling1D` with a mask), returning `(B, D)`.

    Examples:
      >>> masked_mean(jnp.array([[1.0, 2.0, jnp.nan]]), jnp.array([[True, True, False]]))
      Array([1.5], dtype=float32)
    """
    x = as_array(x, "x")
    dtype = jnp.result_type(x.dtype, float)  # ints give the default float; bfloat16 stays
    accumulate = jnp.promote_types(dtype, jnp.float32)
    total = masked_sum(x.astype(accumulate), mask, axis, keepdims)
    count = masked_count(x, mask, axis, keepdims)
    return (total / jnp.maximum(count, 1).astype(accumulate)).astype(dtype)


def _masked_extreme(reduce, identity, x, mask, axis, keepdims, fill_value):
    """Shared body of masked max and min: `identity` is -inf for max, +inf for min."""
    x, mask, axes = _prepare(x, mask, axis, complex_ok=False)
    keepdims = check_bool(keepdims, "keepdims")
    neutral = jnp.asarray(identity(x.dtype), x.dtype)
    extreme = reduce(jnp.where(mask, x, neutral), axis=axes, keepdims=keepdims, initial=neutral)
    has_real = jnp.any(mask, axis=axes, keepdims=keepdims)
    fill = fill_array(fill_value, x.dtype, extreme.shape, "fill_value")
    return jnp.where(has_real, extreme, fill)


def _lowest(dtype):
    if dtype == jnp.bool_:
        return False
    return -jnp.inf if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo(dtype).min


def _highest(dtype):
    if dtype == jnp.bool_:
        return True
    return jnp.inf if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo(dtype).max


def masked_max(
    x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False, fill_value: Any = 0
) -> jax.Array:
    """Max of the real entries along `axis`; `fill_value` (0) where none is real.

    With the default `axis=1` over `(B, T, D)` data this is masked global max
    pooling over time, returning `(B, D)`. `fill_value` is a scalar or an array that
    broadcasts to the result (e.g. one value per feature), and must fit `x`'s dtype
    (NaN or 0.5 for integer `x` raise `ValueError`).

    Examples:
      >>> masked_max(jnp.array([[1.0, 2.0, jnp.inf]]), jnp.array([[True, True, False]]))
      Array([2.], dtype=float32)
    """
    return _masked_extreme(jnp.max, _lowest, x, mask, axis, keepdims, fill_value)


def masked_min(
    x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False, fill_value: Any = 0
) -> jax.Array:
    """Min of the real entries along `axis`; `fill_value` (0) where none is real (see
    `masked_max`).

    Examples:
      >>> masked_min(jnp.array([[1.0, 2.0, -jnp.inf]]), jnp.array([[True, True, False]]))
      Array([1.], dtype=float32)
    """
    return _masked_extreme(jnp.min, _highest, x, mask, axis, keepdims, fill_value)


def masked_var(
    x: Any, mask: Any, axis: Axis = 1, keepdims: bool = False, ddof: int = 0
) -> jax.Array:
    """Variance of the real entries along `axis`: sum of squared deviations / (count - ddof).

    0 where count <= ddof (no real entry, or one with `ddof=1`); `ddof` is an int
    >= 0. Use it with `masked_mean(..., keepdims=True)` for normalisation statistics.
    Complex `x` gives the real variance of `|x - mean|`.

    Examples:
      >>> masked_var(jnp.array([[1.0, 3.0, jnp.nan]]), jnp.array([[True, True, False]]))
      Array([1.], dtype=float32)
    """
    x, mask, axes = _prepare(x, mask, axis)
    keepdims, ddof = check_bool(keepdims, "keepdims"), check_int(ddof, "ddof")
    mean = masked_mean(x, mask, axes, keepdims=True)
    deviation = jnp.where(mask, jnp.where(mask, x, 0) - mean, 0)
    squares = jnp.sum(abs_squared(deviation), axis=axes, keepdims=keepdims)
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
