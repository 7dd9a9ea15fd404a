"""The mask protocol: who gets a mask, who passes it on, and `Sequential`, which applies it.

Shape legend: B batch, T time steps, D features. A mask is bool `(B, T)`, True = real
step, False = padding. The rules are stated in `masking_jax.nnx`'s docstring.
"""

import inspect
from collections.abc import Callable
from typing import Any

from flax import nnx

from .._layer_calls import split_masked
from .._masks import Masked

#: Flax modules that act on each step alone, so they pass the mask on unchanged.
POSITIONWISE_MODULES: tuple[type, ...] = (nnx.Linear, nnx.Dropout, nnx.LayerNorm, nnx.RMSNorm)


def takes_mask(layer: Any) -> bool:
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


def _kind(layer: Any) -> str:
    """What a layer is, for errors: its class, or a plain function's own name."""
    if isinstance(layer, nnx.Module) or not hasattr(layer, "__name__"):
        return type(layer).__name__
    return layer.__name__


def _undeclared_mask_error(layer: Any, name: str) -> TypeError:
    what = _kind(layer)
    return TypeError(
        f"`{name}` ({what}) got a mask but does not say what to do with it: its call takes "
        "no `mask=`, it has no `compute_mask(x, mask)`, and it does not set `supports_masking "
        "= True`, so the padded steps of its output would count as real downstream. Say "
        "which: wrap it in `masking_jax.nnx.PassMask` if it acts on each step alone (the "
        "mask passes on unchanged), in `masking_jax.nnx.DropMask` to end the mask there "
        "(every output step counts as real), or give it one of the three. A module that "
        "mixes steps (a convolution, attention) reads the padding: zero it first "
        "(`Masked.filled(0)`) or use a mask-aware layer."
    )


def _check_passed_mask(layer: Any, name: str, y: Any, mask: Any) -> None:
    """Raises when a layer that passes the mask on changed the leading axes it covers."""
    if not (hasattr(y, "shape") and hasattr(mask, "shape")):
        return  # several outputs or a pytree of masks: the layer's own business
    y_shape, mask_shape = tuple(y.shape), tuple(mask.shape)
    if len(mask_shape) > len(y_shape) or any(
        m not in (d, 1) for m, d in zip(mask_shape, y_shape, strict=False)
    ):
        raise ValueError(
            f"`{name}` ({_kind(layer)}) passes the mask on unchanged, but its output "
            f"of shape {y_shape} no longer has the leading axes of the mask {mask_shape}: "
            "give it a `compute_mask(x, mask)` that returns the output's mask, or wrap it in "
            "`DropMask` to end the mask."
        )


def apply_layer(layer: Callable[..., Any], x: Any, mask: Any, name: str) -> tuple[Any, Any]:
    """`call_with_mask` with the layer named `name` in errors (`layers[2]` in a Sequential)."""
    given_mask = takes_mask(layer)
    compute_mask = getattr(layer, "compute_mask", None)
    if mask is not None and not given_mask and compute_mask is None and not _passes_mask(layer):
        raise _undeclared_mask_error(layer, name)
    y = layer(x, mask=mask) if given_mask else layer(x)
    if compute_mask is not None:
        return y, compute_mask(x, mask)
    if mask is None or not _passes_mask(layer):
        return y, None  # a layer that consumes the mask and declares nothing else ends it
    _check_passed_mask(layer, name, y, mask)
    return y, mask


def call_with_mask(layer: Callable[..., Any], x: Any, mask: Any = None) -> tuple[Any, Any]:
    """Calls `layer` on `x` under the mask protocol; returns `(output, output_mask)`.

    `layer` gets `mask=` when its call takes a `mask` parameter. The output mask is
    `layer.compute_mask(x, mask)` if the layer defines it, else `mask` when the layer
    passes masks on (`supports_masking = True`, a position-wise Flax module, or a plain
    function), else `None`: a layer that took the mask and declares nothing else ends
    it. A mask never disappears unnoticed: a mask reaching a layer that neither takes
    `mask=`, nor defines `compute_mask`, nor passes masks on raises `TypeError` (wrap
    the layer in `PassMask` or `DropMask` to say what it does).

    Args:
      layer: a module or callable.
      x: the layer's input, e.g. `(B, T, D)`, or a `Masked` (then leave `mask` out).
      mask: bool `(B, T)` (True = real step) or `None`.

    Returns:
      `(output, output_mask)`; `output_mask` is bool `(B, T)`, a tuple of masks for a
      layer with several outputs, or `None`.

    Raises:
      TypeError: for a mask that is not boolean, or that reaches a layer that does not
        declare what it does with masks.
      ValueError: for a mask that does not cover the leading axes of `x`, or a layer
        passing the mask on whose output lost those axes.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from masking_jax.nnx import GlobalAveragePooling1D
      >>> mask = jnp.array([[True, False]])
      >>> y, m = call_with_mask(jax.nn.relu, -jnp.ones((1, 2, 3)), mask)
      >>> y.shape, m
      ((1, 2, 3), Array([[ True, False]], dtype=bool))
      >>> call_with_mask(GlobalAveragePooling1D(), jnp.ones((1, 2, 3)), mask)[1] is None
      True
      >>> conv = nnx.Conv(3, 3, 2, rngs=nnx.Rngs(0))
      >>> call_with_mask(conv, jnp.ones((1, 2, 3)), mask)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      TypeError: `layer` (Conv) got a mask but does not say what to do with it: ...
    """
    data, checked, was_masked = split_masked(x, mask)
    # A mask passed on comes back as the caller gave it (the Masked's, checked, else theirs).
    return apply_layer(layer, data, checked if was_masked else mask, "layer")


def _check_single_output(layer: Any, name: str) -> None:
    """Raises when `layer` returns its states too, which `Sequential` cannot thread."""
    if getattr(layer, "return_state", False) is True:
        raise ValueError(
            f"`{name}` ({_kind(layer)}) has return_state=True: it returns "
            "(output, *states), and a Sequential passes one output from layer to layer (as "
            "in Keras). Build it with return_state=False inside the Sequential, or call it "
            "yourself to get the states: `y, *states = layer(x, mask=mask)`."
        )


class Sequential(nnx.Module):
    """Layers applied in order, with the mask threaded through them (`keras.Sequential`).

    Each layer is applied with `call_with_mask`: the mask made by `Embedding(mask_zero=
    True)` or `Masking` reaches every RNN and pooling layer downstream without being
    passed by hand; an RNN returning its last output or a pooling layer ends it. A mask
    never disappears unnoticed: one reaching a layer that does not declare what it does
    with masks raises `TypeError` (wrap it in `PassMask` or `DropMask`).

    Args:
      *layers: modules or callables, applied first to last; each returns one output
        (an RNN with `return_state=True` raises `ValueError`).

    Call: `model(x, mask=None)` with `x` e.g. `(B, T, D)` or token ids `(B, T)`, and
    `mask` bool `(B, T)` (True = real step) or `None`. On a `Masked` input the result
    is a `Masked` carrying the output mask while the mask lives, and a plain array once
    a layer ended it (an RNN returning its last output, pooling); on an array the result
    is an array. `compute_mask(x, mask)` returns the output mask (it traces the layers;
    under `jit` the unused computation is dropped).

    Examples:
      >>> import jax.numpy as jnp
      >>> from masking_jax.nnx import LSTM, Embedding, GlobalAveragePooling1D
      >>> rngs = nnx.Rngs(0)
      >>> model = Sequential(
      ...     Embedding(10, 4, mask_zero=True, rngs=rngs),
      ...     LSTM(4, 8, return_sequences=True, rngs=rngs),
      ...     nnx.Linear(8, 2, rngs=rngs),
      ... )
      >>> batch = Masked(jnp.array([[3, 5, 0]]), jnp.ones((1, 3), bool))
      >>> out = model(batch)
      >>> out.data.shape, out.mask
      ((1, 3, 2), Array([[ True,  True, False]], dtype=bool))
      >>> Sequential(*model.layers, GlobalAveragePooling1D())(batch).shape  # mask ended
      (1, 2)
    """

    def __init__(self, *layers: Callable[..., Any]):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"`layers[{i}]` must be callable; got {type(layer).__name__}.")
            _check_single_output(layer, f"layers[{i}]")
        self.layers = nnx.List(layers)

    def _forward(self, x: Any, mask: Any) -> tuple[Any, Any]:
        for i, layer in enumerate(self.layers):
            _check_single_output(layer, f"layers[{i}]")  # also after a later change
            x, mask = apply_layer(layer, x, mask, f"layers[{i}]")
        return x, mask

    def __call__(self, x: Any, mask: Any = None) -> Any:
        x, mask, was_masked = split_masked(x, mask)
        y, out_mask = self._forward(x, mask)
        return Masked(y, out_mask) if was_masked and out_mask is not None else y

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        x, mask, _ = split_masked(x, mask)
        return self._forward(x, mask)[1]
