"""`load_keras_weights`: copies trained Keras 3 weights into the matching NNX modules.

Keras is imported only when the function runs; the layers themselves never need it.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._attention import MultiHeadAttention
from ._batch_norm import BatchNorm
from ._conv import Conv1D
from ._mask_makers import Embedding
from ._mask_wrappers import _MaskDeclaration
from ._protocol import Sequential
from ._recurrent import GRU, LSTM, Bidirectional, SimpleRNN


def _describe(keras_layer: Any) -> str:
    """A Keras layer as its class and name, e.g. `Conv1D 'conv1d_3'`."""
    return f"{type(keras_layer).__name__} {getattr(keras_layer, 'name', '?')!r}"


def _holds_params(module: Any) -> bool:
    """True for a module with parameters (a plain function or pooling layer has none)."""
    return isinstance(module, nnx.Module) and bool(jax.tree.leaves(nnx.state(module, nnx.Param)))


#: Keras `MultiHeadAttention`'s `EinsumDense` projections and the Flax ones they fill.
_ATTENTION_PROJECTIONS = (
    ("_query_dense", "query"),
    ("_key_dense", "key"),
    ("_value_dense", "value"),
    ("_output_dense", "out"),
)


def _to_numpy(value: Any) -> np.ndarray:
    """A Keras variable's value as numpy (its backend tensor is `.value`)."""
    return np.asarray(getattr(value, "value", value))


def _assign(
    module: Any, name: str, value: Any, owner: str, presence: str = "match `use_bias`"
) -> None:
    """Copies the Keras weight `value` into `module.<name>`; `presence` says how to make
    a weight present on both sides or on neither."""
    param = getattr(module, name, None)
    if value is None and param is None:
        return
    if (value is None) != (param is None):
        raise ValueError(
            f"`keras_layer` ({owner}) {'has no' if value is None else 'has a'} `{name}` but "
            f"`module.{name}` is {'present' if value is None else 'absent'}; {presence}."
        )
    value = _to_numpy(value)
    if value.shape != param.shape:
        raise ValueError(
            f"`keras_layer` ({owner}) has `{name}` of shape {value.shape} but `module.{name}` "
            f"has {param.shape}; build the module with matching sizes (in_features, "
            "hidden_features, reset_after, ...)."
        )
    param.set_value(jnp.asarray(value, param.dtype))


def _load_sequential(module: Any, keras_model: Any) -> Any:
    """Pairs the Keras layers that hold weights with the modules that do, in order."""
    if not isinstance(module, Sequential):
        raise TypeError(
            f"`module` must be a Sequential for the keras.Sequential {_describe(keras_model)}; "
            f"got {type(module).__name__}."
        )
    ours = [layer for layer in module.layers if _holds_params(layer)]
    theirs = [layer for layer in keras_model.layers if layer.weights]
    if len(ours) != len(theirs):
        raise ValueError(
            f"`keras_layer` ({_describe(keras_model)}) has {len(theirs)} layers with weights "
            f"({', '.join(_describe(t) for t in theirs)}) but `module` has {len(ours)} "
            f"modules with parameters ({', '.join(type(o).__name__ for o in ours)}); they are "
            "paired in order."
        )
    for o, t in zip(ours, theirs, strict=True):
        load_keras_weights(o, t)
    return module


def load_keras_weights(module: Any, keras_layer: Any) -> Any:
    """Copies the weights of a Keras 3 layer (or model) into the matching module, in place.

    Pairs: `keras.layers.Embedding` -> `Embedding`; `SimpleRNN`/`LSTM`/`GRU` -> the
    same-named layer; `Dense` -> `nnx.Linear` (`kernel`, `bias`); `Bidirectional` ->
    `Bidirectional` (forward and backward layers); `Conv1D` -> `Conv1D` (`kernel`,
    `bias`); `BatchNormalization` -> `BatchNorm` (`gamma`, `beta` and the moving
    statistics); `MultiHeadAttention` -> `MultiHeadAttention` (the query, key, value
    and output kernels and biases); a `keras.Sequential` -> `Sequential`, pairing the
    Keras layers that hold weights with the modules that do, in order. Shapes must
    match; options that change outputs (activations, `reset_after`, `mask_zero`,
    `go_backwards` vs `reverse`, strides and padding, `momentum` and `epsilon`,
    `use_causal_mask` vs `causal`) are the caller's to match.

    Args:
      module: the NNX module to fill (changed in place).
      keras_layer: a built Keras 3 layer or `keras.Sequential`.

    Returns:
      `module`, now holding the Keras weights.

    Raises:
      TypeError: for a Keras layer with no counterpart, or the wrong kind of module.
      ValueError: for an unbuilt Keras layer, or parameters of other shapes or presence.

    Examples:
      >>> import os
      >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")  # any Keras backend works
      >>> import keras
      >>> k = keras.layers.Dense(2)
      >>> k.build((None, 3))
      >>> lin = load_keras_weights(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), k)
      >>> bool(jnp.allclose(lin.kernel[...], k.kernel.value))
      True
    """
    import keras

    kl = keras.layers
    owner = _describe(keras_layer)
    if isinstance(module, _MaskDeclaration):  # PassMask / DropMask hold the module
        load_keras_weights(module.layer, keras_layer)
        return module
    if isinstance(keras_layer, keras.Sequential):
        return _load_sequential(module, keras_layer)
    pairs = [
        (kl.Embedding, Embedding),
        (kl.SimpleRNN, SimpleRNN),
        (kl.LSTM, LSTM),
        (kl.GRU, GRU),
        (kl.Dense, nnx.Linear),
        (kl.Bidirectional, Bidirectional),
        (kl.Conv1D, Conv1D),
        (kl.BatchNormalization, BatchNorm),
        (kl.MultiHeadAttention, MultiHeadAttention),
    ]
    module_type = next((m for k, m in pairs if isinstance(keras_layer, k)), None)
    if module_type is None:
        raise TypeError(
            "`keras_layer` must be a Keras Embedding, SimpleRNN, LSTM, GRU, Dense, "
            "Bidirectional, Conv1D, BatchNormalization, MultiHeadAttention or Sequential; "
            f"got {owner}, which load_keras_weights does not "
            "support: copy its weights by hand (`keras_layer.get_weights()`)."
        )
    if not isinstance(module, module_type):
        raise TypeError(
            f"`module` must be a {module_type.__name__} for the weights of `keras_layer` "
            f"({owner}); got {type(module).__name__}."
        )
    if not keras_layer.built:
        raise ValueError(f"`keras_layer` ({owner}) has no weights yet: build or call it first.")
    if isinstance(keras_layer, kl.Embedding):
        _assign(module, "embedding", keras_layer.embeddings, owner)
    elif isinstance(keras_layer, kl.Dense | kl.Conv1D):
        _assign(module, "kernel", keras_layer.kernel, owner)
        _assign(module, "bias", keras_layer.bias, owner)
    elif isinstance(keras_layer, kl.BatchNormalization):
        for name in ("gamma", "beta", "moving_mean", "moving_variance"):
            _assign(module, name, getattr(keras_layer, name), owner,
                    "BatchNorm always has it: build the Keras layer with center=True, scale=True")
    elif isinstance(keras_layer, kl.MultiHeadAttention):
        for theirs, ours in _ATTENTION_PROJECTIONS:
            projection = getattr(keras_layer, theirs)
            for name in ("kernel", "bias"):
                _assign(getattr(module.attention, ours), name, getattr(projection, name), owner)
    elif isinstance(keras_layer, kl.Bidirectional):
        load_keras_weights(module.forward_layer, keras_layer.forward_layer)
        load_keras_weights(module.backward_layer, keras_layer.backward_layer)
    else:
        cell = keras_layer.cell
        for name in ("kernel", "recurrent_kernel", "bias"):
            _assign(module, name, getattr(cell, name), owner)
    return module
