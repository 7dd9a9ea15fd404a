"""`PassMask` and `DropMask`: say what a module that knows nothing of masks does with one.

A mask reaching a module that neither takes `mask=`, nor defines `compute_mask`, nor
sets `supports_masking` raises `TypeError` in `Sequential` (and `call_with_mask`), so
a mask never disappears unnoticed. These wrappers are the explicit answers: the
module acts on each step alone and the mask passes on (`PassMask`), or the mask ends
at the module (`DropMask`, what Keras 3 does with such a layer, with a warning).

Shape legend: B batch, T time steps, D features. A mask is bool `(B, T)`, True = real
step, False = padding.
"""

from collections.abc import Callable
from typing import Any

from flax import nnx

from .._layer_calls import split_masked
from .._masks import Masked
from ._protocol import takes_mask


class _MaskDeclaration(nnx.Module):
    """A module wrapped with a declared mask behaviour; `layer` keeps its parameters."""

    def __init__(self, layer: Callable[..., Any]):
        if not callable(layer):
            raise TypeError(f"`layer` must be a module or callable; got {type(layer).__name__}.")
        self.layer = layer

    def _apply(self, x: Any, mask: Any) -> tuple[Any, Any, bool]:
        """`(output, mask, was_masked)`; the layer gets `mask=` when its call takes one."""
        x, mask, was_masked = split_masked(x, mask)
        y = self.layer(x, mask=mask) if takes_mask(self.layer) else self.layer(x)
        return y, mask, was_masked


class PassMask(_MaskDeclaration):
    """Declares that `layer` acts on each step alone: the mask passes on unchanged.

    For a module that does not declare its mask behaviour (a custom module, a Flax
    module outside `POSITIONWISE_MODULES` such as `nnx.Embed` or an elementwise
    `nnx.Module`). Do not use it for modules that mix steps (`nnx.Conv`, attention,
    batch statistics): they read the padding. Keras' `supports_masking = True`.

    Args:
      layer: the module or callable; its parameters stay under `.layer`.

    Call: `wrapped(x, mask=None)` with `x` `(B, T, ...)` (or a `Masked`, then the output
    is a `Masked` with the same mask) and `mask` bool `(B, T)`, True = real step. The
    output must keep the mask's leading axes (else `Sequential` raises `ValueError`).

    Examples:
      >>> import jax.numpy as jnp
      >>> from masking_jax.nnx import GlobalAveragePooling1D, Sequential
      >>> class Double(nnx.Module):  # declares nothing about masks
      ...     def __call__(self, x):
      ...         return 2 * x
      >>> model = Sequential(PassMask(Double()), GlobalAveragePooling1D())
      >>> model(jnp.array([[[1.0], [3.0], [jnp.nan]]]), mask=jnp.array([[True, True, False]]))
      Array([[4.]], dtype=float32)
    """

    supports_masking = True

    def __call__(self, x: Any, mask: Any = None) -> Any:
        y, mask, was_masked = self._apply(x, mask)
        return Masked(y, mask) if was_masked else y


class DropMask(_MaskDeclaration):
    """Declares that the mask ends at `layer`: every step of its output counts as real.

    The explicit form of what Keras 3 does (with a warning) when a mask reaches a layer
    without mask support: the layer runs on the padded data as it is, and layers after
    it see no mask. Use it when the output has no padding left to track (e.g. a module
    that summarises the sequence), or to opt out on purpose.

    Args:
      layer: the module or callable; its parameters stay under `.layer`.

    Call: `wrapped(x, mask=None)` with `x` `(B, T, ...)` (or a `Masked`) and `mask` bool
    `(B, T)`, True = real step; returns the layer's output as a plain array.

    Examples:
      >>> import jax.numpy as jnp
      >>> from masking_jax.nnx import Sequential
      >>> conv = nnx.Conv(1, 1, 2, padding="VALID", rngs=nnx.Rngs(0))
      >>> model = Sequential(DropMask(conv))
      >>> model(jnp.ones((1, 3, 1)), mask=jnp.array([[True, True, False]])).shape
      (1, 2, 1)
      >>> model.compute_mask(jnp.ones((1, 3, 1)), jnp.array([[True, True, False]])) is None
      True
    """

    def __call__(self, x: Any, mask: Any = None) -> Any:
        return self._apply(x, mask)[0]

    def compute_mask(self, x: Any, mask: Any = None) -> None:
        del x, mask
        return None
