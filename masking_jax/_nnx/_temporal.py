"""Layers that consume or reshape masks along time: pooling, softmax, split, concat.

Shape legend: B batch, T time steps, D features. A mask is bool `(B, T)`, True = real
step, False = padding.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._layer_calls import pool_over_time
from .._masks import Masked, concat_time, split_time
from .._ops import masked_softmax
from ._protocol import unpack


class _GlobalPooling1D(nnx.Module):
    """Shared body of the global pooling layers: a reduction over time that ends the mask."""

    _kind: str  # "mean" or "max"

    def __init__(self, keepdims: bool = False):
        self.keepdims = bool(keepdims)

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
        self.axis = axis

    def __call__(self, x: Any, mask: Any = None) -> Any:
        x, mask, was_masked = unpack(x, mask)
        if mask is None:
            return jax.nn.softmax(x, axis=self.axis)
        y = masked_softmax(x, mask, axis=self.axis)
        return Masked(y, mask) if was_masked else y


class TemporalSplit(nnx.Module):
    """Splits data and mask along time (the guide's `TemporalSplit`), like `jnp.split`.

    Args:
      indices_or_sections: a number of equal parts, or the split positions along T.

    `__call__(x, mask)` returns a tuple of `(B, T_i, ...)` parts (of `Masked` for a
    `Masked` input); `compute_mask(x, mask)` the tuple of `(B, T_i)` masks (True = real
    step), or `None` without a mask.

    Examples:
      >>> split = TemporalSplit(2)
      >>> mask = jnp.array([[True, True, True, False]])
      >>> [p.shape for p in split(jnp.ones((1, 4, 3)), mask=mask)]
      [(1, 2, 3), (1, 2, 3)]
      >>> split.compute_mask(jnp.ones((1, 4, 3)), mask)
      (Array([[ True,  True]], dtype=bool), Array([[ True, False]], dtype=bool))
    """

    def __init__(self, indices_or_sections: int | Sequence[int] = 2):
        self.indices_or_sections = (
            indices_or_sections
            if isinstance(indices_or_sections, int)
            else tuple(indices_or_sections)
        )

    def __call__(self, x: Any, mask: Any = None) -> tuple[Any, ...]:
        x, mask, was_masked = unpack(x, mask)
        if mask is None:
            return tuple(jnp.split(x, self.indices_or_sections, axis=1))
        parts = split_time(Masked(x, mask), self._sections())
        return tuple(parts) if was_masked else tuple(p.data for p in parts)

    def _sections(self) -> Any:
        s = self.indices_or_sections
        return s if isinstance(s, int) else list(s)

    def compute_mask(self, x: Any, mask: Any = None) -> tuple[jax.Array, ...] | None:
        x, mask, _ = unpack(x, mask)
        if mask is None:
            return None
        return tuple(p.mask for p in split_time(Masked(x, mask), self._sections()))


class TemporalConcat(nnx.Module):
    """Concatenates a sequence of inputs along time, with their masks.

    `__call__(xs, mask)` takes `xs`, a sequence of `(B, T_i, ...)` arrays (or `Masked`),
    and `mask`, `None` or a sequence of bool `(B, T_i)` masks (True = real step) or
    `None`s; an input without a mask counts as all real. It returns `(B, sum T_i, ...)`
    (a `Masked` when an input was). `compute_mask` gives the concatenated mask, or
    `None` when no input has one.

    Examples:
      >>> xs = (jnp.ones((1, 2, 3)), jnp.zeros((1, 1, 3)))
      >>> masks = (jnp.array([[True, False]]), None)
      >>> TemporalConcat()(xs, mask=masks).shape, TemporalConcat().compute_mask(xs, masks)
      ((1, 3, 3), Array([[ True, False,  True]], dtype=bool))
    """

    def _items(self, xs: Any, mask: Any) -> tuple[list[Any], bool]:
        if isinstance(xs, Masked | jax.Array | np.ndarray) or not isinstance(xs, Sequence):
            raise TypeError(
                f"`xs` must be a sequence (tuple or list) of inputs; got {type(xs).__name__}."
            )
        masks = [None] * len(xs) if mask is None else list(mask)
        if len(masks) != len(xs):
            raise ValueError(
                f"`mask` must hold one mask (or None) per input: got {len(masks)} for "
                f"{len(xs)} inputs."
            )
        items, any_masked = [], False
        for i, (x, m) in enumerate(zip(xs, masks, strict=True)):
            x, m, was_masked = unpack(x, m, f"xs[{i}]")
            any_masked |= was_masked
            items.append(x if m is None else Masked(x, m))
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
