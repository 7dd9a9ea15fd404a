"""The mask protocol: who gets a mask, who passes it on, and `Sequential`, which applies it.

Shape legend: B batch, T time steps, D features. A mask is bool `(B, T)`, True = real
step, False = padding. The rules are stated in `masking_jax.nnx`'s docstring.
"""

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .._layer_calls import split_masked as split_masked
from .._layer_calls import unpack as unpack
from .._masks import Masked

#: Flax modules that act on each step alone, so they pass the mask on unchanged.
POSITIONWISE_MODULES: tuple[type, ...] = (nnx.Linear, nnx.Dropout, nnx.LayerNorm, nnx.RMSNorm)


def _takes_mask(layer: Any) -> bool:
    """True when `layer(x, mask=...)` is accepted: its call has a parameter named `mask`.

    Flax's own modules are never given one: their `mask` (`nnx.LayerNorm`,
    `nnx.MultiHeadAttention`) is an elementwise or attention mask, not a `(B, T)` one.
    """
    if type(layer).__module__.split(".")[0] == "flax":
        return False
    try:
        return "mask" in inspect.signature(layer).parameters
    except (TypeError, ValueError):  # builtins and C callables without a signature
        return False


def _passes_mask(layer: Any) -> bool:
    """True when `layer` leaves the mask unchanged (see `masking_jax.nnx`)."""
    explicit = getattr(layer, "supports_masking", None)
    if explicit is not None:
        return bool(explicit)
    if isinstance(layer, POSITIONWISE_MODULES):
        return True
    return not isinstance(layer, nnx.Module)


def call_with_mask(layer: Callable[..., Any], x: Any, mask: Any = None) -> tuple[Any, Any]:
    """Calls `layer` on `x` under the mask protocol; returns `(output, output_mask)`.

    `layer` gets `mask=` when its call takes a `mask` parameter. The output mask is
    `layer.compute_mask(x, mask)` if the layer defines it, else `mask` when the layer
    passes masks on (`supports_masking = True`, a position-wise Flax module, or a plain
    function), else `None` (the mask is dropped: every output step counts as real).

    Args:
      layer: a module or callable.
      x: the layer's input, e.g. `(B, T, D)`.
      mask: bool `(B, T)` (True = real step) or `None`.

    Returns:
      `(output, output_mask)`; `output_mask` is bool `(B, T)`, a tuple of masks for a
      layer with several outputs, or `None`.

    Examples:
      >>> from masking_jax.nnx import GlobalAveragePooling1D
      >>> mask = jnp.array([[True, False]])
      >>> y, m = call_with_mask(jax.nn.relu, -jnp.ones((1, 2, 3)), mask)
      >>> y.shape, m
      ((1, 2, 3), Array([[ True, False]], dtype=bool))
      >>> call_with_mask(GlobalAveragePooling1D(), jnp.ones((1, 2, 3)), mask)[1] is None
      True
    """
    y = layer(x, mask=mask) if _takes_mask(layer) else layer(x)
    compute_mask = getattr(layer, "compute_mask", None)
    if compute_mask is not None:
        return y, compute_mask(x, mask)
    return y, mask if mask is not None and _passes_mask(layer) else None


class Sequential(nnx.Module):
    """Layers applied in order, with the mask threaded through them (`keras.Sequential`).

    Each layer is applied with `call_with_mask`: the mask made by `Embedding(mask_zero=
    True)` or `Masking` reaches every RNN and pooling layer downstream without being
    passed by hand; an RNN returning its last output or a pooling layer ends it.

    Args:
      *layers: modules or callables, applied first to last.

    Call: `model(x, mask=None)` with `x` e.g. `(B, T, D)` or token ids `(B, T)`, and
    `mask` bool `(B, T)` (True = real step) or `None`. On a `Masked` input the result
    is a `Masked`, whose mask is the output mask, or all True of shape `(B,)` when the
    mask ended; on an array the result is an array. `compute_mask(x, mask)` returns
    the output mask (it traces the layers; under `jit` the unused computation is
    dropped).

    Examples:
      >>> from masking_jax.nnx import LSTM, Embedding
      >>> rngs = nnx.Rngs(0)
      >>> model = Sequential(
      ...     Embedding(10, 4, mask_zero=True, rngs=rngs),
      ...     LSTM(4, 8, return_sequences=True, rngs=rngs),
      ...     nnx.Linear(8, 2, rngs=rngs),
      ... )
      >>> out = model(Masked(jnp.array([[3, 5, 0]]), jnp.ones((1, 3), bool)))
      >>> out.data.shape, out.mask
      ((1, 3, 2), Array([[ True,  True, False]], dtype=bool))
    """

    def __init__(self, *layers: Callable[..., Any]):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"`layers[{i}]` must be callable; got {type(layer).__name__}.")
        self.layers = nnx.List(layers)

    def _forward(self, x: Any, mask: Any) -> tuple[Any, Any]:
        for layer in self.layers:
            x, mask = call_with_mask(layer, x, mask)
        return x, mask

    def __call__(self, x: Any, mask: Any = None) -> Any:
        x, mask, was_masked = split_masked(x, mask)
        y, out_mask = self._forward(x, mask)
        if not was_masked:
            return y
        if out_mask is None:
            out_mask = jnp.ones((jax.tree.leaves(y)[0].shape[0],), bool)
        return Masked(y, out_mask)

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        if isinstance(x, Masked):
            x, mask = x.data, x.mask
        return self._forward(x, mask)[1]
