"""Layers that consume or reshape masks along time: pooling, softmax, split, concat.

Shape legend: B batch, T time steps, D features. A mask is bool `(B, T)`, True = real
step, False = padding.
"""

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import check_axis, check_int
from .._layer_calls import check_floating, check_time_axis, pool_over_time, time_mask, unpack
from .._masks import Masked, concat_time, split_time
from .._ops import masked_softmax
from ._arguments import (
    check_bool,
    check_signed_int,
    check_size,
)


class _GlobalPooling1D(nnx.Module):
    """Shared body of the global pooling layers: a reduction over time that ends the mask."""

    _kind: str  # "mean" or "max"

    def __init__(self, keepdims: bool = False):
        self.keepdims = check_bool(keepdims, "keepdims")

    def __call__(self, x: Any, mask: Any = None) -> jax.Array:
        return pool_over_time(type(self)._kind, x, mask, self.keepdims)

    def compute_mask(self, x: Any, mask: Any = None) -> None:
        return None


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the real steps (`keras.layers.GlobalAveragePooling1D` with a mask).

    Args:
      keepdims: keep the time axis, of size 1.

    `(B, T, D)` and a bool `(B, T)` mask (True = real step) give `(B, D)` (`(B, 1, D)`
    with `keepdims`); a row with no real step gives zeros. The mask ends here.

    Examples:
      >>> x = jnp.array([[[1.0], [3.0], [jnp.nan]]])
      >>> GlobalAveragePooling1D()(x, mask=jnp.array([[True, True, False]]))
      Array([[2.]], dtype=float32)
    """

    _kind = "mean"


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Max over the real steps: `(B, T, D)` and a bool `(B, T)` mask give `(B, D)`.

    Args:
      keepdims: keep the time axis, of size 1.

    True = real step; a row with no real step gives zeros. Keras 3's
    `GlobalMaxPooling1D` ignores the mask; this layer gives what Keras gives on the
    unpadded sequences. The mask ends here.

    Examples:
      >>> x = jnp.array([[[1.0], [3.0], [9.0]]])
      >>> GlobalMaxPooling1D()(x, mask=jnp.array([[True, True, False]]))
      Array([[3.]], dtype=float32)
    """

    _kind = "max"


class TemporalSoftmax(nnx.Module):
    """Softmax over time that gives padded steps weight 0 (the guide's `TemporalSoftmax`).

    Args:
      axis: the axis to normalise over (time by default).

    `(B, T, ...)` scores and a bool `(B, T)` mask (True = real step) give weights of
    the same shape, normalised over `axis`. The mask passes on.

    Examples:
      >>> scores = jnp.array([[[0.0], [0.0], [jnp.nan]]])
      >>> TemporalSoftmax()(scores, mask=jnp.array([[True, True, False]]))[0, :, 0]
      Array([0.5, 0.5, 0. ], dtype=float32)
    """

    supports_masking = True

    def __init__(self, axis: int = 1):
        self.axis = check_signed_int(axis, "axis")

    def __call__(self, x: Any, mask: Any = None) -> Any:
        x, mask, was_masked = unpack(x, mask)
        x = check_floating(x)
        check_axis(self.axis, x.ndim)
        if mask is None:
            return jax.nn.softmax(x, axis=self.axis)
        y = masked_softmax(x, mask, axis=self.axis)
        return Masked(y, mask) if was_masked else y


class TemporalSplit(nnx.Module):
    """Splits data and mask along time (the guide's `TemporalSplit`), like `jnp.split`.

    Args:
      indices_or_sections: a number of equal parts (an int >= 1 that divides T), or the
        split positions along T (non-decreasing ints in `[0, T]`).

    `__call__(x, mask)` returns a tuple of `(B, T_i, ...)` parts (of `Masked` for a
    `Masked` input); `compute_mask(x, mask)` the tuple of `(B, T_i)` masks (True = real
    step), or `None` without a mask. A mask that broadcasts, e.g. `(B, 1)`, is split as
    its broadcast `(B, T)`.

    Examples:
      >>> split = TemporalSplit(2)
      >>> mask = jnp.array([[True, True, True, False]])
      >>> [p.shape for p in split(jnp.ones((1, 4, 3)), mask=mask)]
      [(1, 2, 3), (1, 2, 3)]
      >>> split.compute_mask(jnp.ones((1, 4, 3)), mask)
      (Array([[ True,  True]], dtype=bool), Array([[ True, False]], dtype=bool))
    """

    def __init__(self, indices_or_sections: int | Sequence[int] = 2):
        self.indices_or_sections = _check_sections(indices_or_sections)

    def __call__(self, x: Any, mask: Any = None) -> tuple[Any, ...]:
        x, mask, was_masked = unpack(x, mask)
        x = self._check_x(x)
        if mask is None:
            return tuple(jnp.split(x, self.indices_or_sections, axis=1))
        parts = self._split(x, mask)
        return tuple(parts) if was_masked else tuple(p.data for p in parts)

    def _split(self, x: jax.Array, mask: jax.Array) -> list[Masked]:
        """The `Masked` parts of `x` and its mask, broadcast to `(B, T)`."""
        return split_time(Masked(x, time_mask(mask, x)), self.indices_or_sections)

    def _check_x(self, x: Any) -> jax.Array:
        """`x` as an array whose time axis the sections fit."""
        check_time_axis(x)
        x = jnp.asarray(x)
        steps, s = x.shape[1], self.indices_or_sections
        if isinstance(s, int) and steps % s:
            raise ValueError(
                f"`indices_or_sections`={s} equal parts must divide the time axis of `x`: "
                f"T={steps} (shape {x.shape}); pass split positions instead, e.g. "
                f"[{steps // 2}]."
            )
        if not isinstance(s, int) and s and s[-1] > steps:
            raise ValueError(
                f"`indices_or_sections` positions must lie in [0, T={steps}] (the time axis "
                f"of `x`, shape {x.shape}); got {list(s)}."
            )
        return x

    def compute_mask(self, x: Any, mask: Any = None) -> tuple[jax.Array, ...] | None:
        x, mask, _ = unpack(x, mask)
        if mask is None:
            return None
        return tuple(p.mask for p in self._split(self._check_x(x), mask))


def _check_sections(value: Any) -> int | tuple[int, ...]:
    """`TemporalSplit`'s `indices_or_sections`: an int >= 1 or non-decreasing positions >= 0."""
    if isinstance(value, int | np.integer | bool | np.bool_):
        return check_size(value, "indices_or_sections")
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(
            "`indices_or_sections` must be an int (equal parts) or a sequence of ints "
            f"(split positions); got {type(value).__name__} {value!r}."
        )
    positions = tuple(
        check_int(v, f"indices_or_sections[{i}]") for i, v in enumerate(value)
    )
    if any(b < a for a, b in itertools.pairwise(positions)):
        raise ValueError(
            f"`indices_or_sections` positions must be non-decreasing; got {list(positions)}."
        )
    return positions


class TemporalConcat(nnx.Module):
    """Concatenates a sequence of inputs along time, with their masks.

    `__call__(xs, mask)` takes `xs`, a sequence of `(B, T_i, ...)` arrays (or `Masked`)
    with the same batch B and the same feature axes, and `mask`, `None` or a sequence
    (tuple or list) of bool `(B, T_i)` masks (True = real step) or `None`s; an input
    without a mask counts as all real, and a mask that broadcasts (e.g. `(B, 1)`) counts
    as its broadcast `(B, T_i)`. It returns `(B, sum T_i, ...)` (a `Masked` when an
    input was). `compute_mask` gives the concatenated mask, or `None` when no input has
    one.

    Examples:
      >>> xs = (jnp.ones((1, 2, 3)), jnp.zeros((1, 1, 3)))
      >>> masks = (jnp.array([[True, False]]), None)
      >>> TemporalConcat()(xs, mask=masks).shape, TemporalConcat().compute_mask(xs, masks)
      ((1, 3, 3), Array([[ True, False,  True]], dtype=bool))
    """

    def _items(self, xs: Any, mask: Any) -> tuple[list[Any], bool]:
        if isinstance(xs, Masked | jax.Array | np.ndarray | str) or not isinstance(
            xs, Sequence
        ):
            raise TypeError(
                f"`xs` must be a sequence (tuple or list) of inputs; got {type(xs).__name__}."
            )
        if not xs:
            raise ValueError("`xs` must hold at least one input; got none.")
        if mask is not None and (
            isinstance(mask, Masked | jax.Array | np.ndarray) or not isinstance(mask, Sequence)
        ):
            raise TypeError(
                "`mask` must be None or a sequence (tuple or list) of one mask (or None) per "
                f"input; got {type(mask).__name__}. For one input, pass `mask=(m,)`."
            )
        masks = [None] * len(xs) if mask is None else list(mask)
        if len(masks) != len(xs):
            raise ValueError(
                f"`mask` must hold one mask (or None) per input: got {len(masks)} for "
                f"{len(xs)} inputs."
            )
        items, any_masked = [], False
        for i, (x, m) in enumerate(zip(xs, masks, strict=True)):
            x, m, was_masked = unpack(x, m, f"xs[{i}]", f"mask[{i}]")
            check_time_axis(x, f"xs[{i}]")
            x = jnp.asarray(x)
            _check_same_axes(x, items, i)
            any_masked |= was_masked
            items.append(x if m is None else Masked(x, time_mask(m, x, f"mask[{i}]")))
        return items, any_masked

    def __call__(self, xs: Sequence[Any], mask: Any = None) -> Any:
        items, any_masked = self._items(xs, mask)
        if not any(isinstance(item, Masked) for item in items):
            return jnp.concatenate(items, axis=1)
        out = concat_time(items)
        return out if any_masked else out.data

    def compute_mask(self, xs: Sequence[Any], mask: Any = None) -> jax.Array | None:
        items, _ = self._items(xs, mask)
        if not any(isinstance(item, Masked) for item in items):
            return None
        return concat_time(items).mask


def _check_same_axes(x: jax.Array, earlier: list[Any], i: int) -> None:
    """Raises unless `xs[i]` has the batch and feature axes of `xs[0]`."""
    if not earlier:
        return
    first = earlier[0].data if isinstance(earlier[0], Masked) else earlier[0]
    if x.shape[:1] + x.shape[2:] != first.shape[:1] + first.shape[2:]:
        raise ValueError(
            f"`xs[{i}]` of shape {x.shape} does not fit `xs[0]` of shape {first.shape}: inputs "
            "are concatenated along time (axis 1), so all other axes (batch, features) must "
            "be equal."
        )
