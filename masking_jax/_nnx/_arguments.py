"""Argument checks of the NNX layers: options when a layer is built, inputs when it is called.

Every NNX layer checks its arguments here, on top of the package-wide checkers of
`masking_jax._checks`, so each error names the user's argument (`hidden_features`,
`mask`, `x.mask`), states the rule and shows what came in. All checks read static
information (Python values, shapes, dtypes) and work under `jax.jit`.

Shape legend: B batch, T time steps, D input features. A mask is bool `(B, T)`,
True = real step, False = padding.
"""

import sys
from typing import Any

import jax
import numpy as np
from flax import nnx

from .._checks import (
    as_array,
    check_bool,
    check_float,
    check_int,
    check_param_dtype,
    check_rank,
    check_rate,
)
from .._layer_calls import check_floating, check_layer_mask, check_time_axis, time_mask, unpack
from .._rnn._validate import check_unroll

__all__ = [
    "check_bool",
    "check_features",
    "check_float",
    "check_floating",
    "check_layer_mask",
    "check_mask_value",
    "check_optional_size",
    "check_param_dtype",
    "check_rate",
    "check_rngs",
    "check_sequence_input",
    "check_sequences",
    "check_signed_int",
    "check_size",
    "check_time_axis",
    "check_unroll",
]


def check_size(value: Any, name: str) -> int:
    """A size (features, units, vocabulary, sections): a Python int >= 1."""
    return check_int(value, name, minimum=1)


def check_optional_size(value: Any, name: str) -> int | None:
    """`None` (the layer picks the size) or a size, a Python int >= 1."""
    return None if value is None else check_size(value, name)


def check_signed_int(value: Any, name: str) -> int:
    """An int that may be negative (an axis, a padding id); bools and floats are refused."""
    return check_int(value, name, minimum=-sys.maxsize - 1)


def check_rngs(rngs: Any, name: str = "rngs") -> nnx.Rngs:
    """An `nnx.Rngs`, the source of the initial parameters."""
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(
            f"`{name}` must be an `nnx.Rngs` (e.g. `rngs=nnx.Rngs(0)`); got {type(rngs).__name__}."
        )
    return rngs


def check_mask_value(value: Any) -> float | int:
    """`Masking`'s `mask_value`: a real number other than NaN (NaN never equals itself)."""
    try:
        scalar = np.asarray(value)
    except Exception:  # a tracer or another object numpy cannot read
        scalar = None
    if scalar is None or scalar.ndim != 0 or scalar.dtype.kind not in "iuf":
        raise TypeError(
            "`mask_value` must be a real number (the value of a padded step's features), "
            f"fixed when the layer is built; got {type(value).__name__} {value!r}."
        )
    if np.isnan(scalar):
        raise ValueError(
            "`mask_value` must not be NaN: NaN never equals itself, so no step would be "
            "masked. Replace NaN padding with a number first, e.g. `jnp.nan_to_num(x, nan=0.0)`."
        )
    return scalar.item()


def check_features(
    x: Any, in_features: int, layer: Any, name: str = "x", option: str = "in_features"
) -> None:
    """Raises `ValueError` unless the last axis of a 3-D `x` holds the layer's `in_features`.

    `name` is the input's argument name and `option` the constructor option it must fit.
    """
    shape = np.shape(x)
    if len(shape) == 3 and shape[-1] != in_features:
        raise ValueError(
            f"`{name}` must have {in_features} features (last axis); `{name}` has "
            f"D={shape[-1]} features ({name}.shape[-1], shape {tuple(shape)}) but this "
            f"{type(layer).__name__} was built with {option}={in_features}; build it with "
            f"{option}={shape[-1]} or feed (B, T, {in_features}) inputs."
        )


def check_sequences(
    x: Any, in_features: int, layer: Any, name: str = "x", option: str = "in_features"
) -> jax.Array:
    """`x` as a real `(B, T, D)` array with the layer's `in_features`, or raises naming `name`.

    Integer and bool inputs pass (the layer casts them to its float dtype, as Keras
    does); complex ones, strings and other objects raise `TypeError`.
    """
    x = as_array(x, name, complex_ok=False)
    check_rank(x, name, 3, "(B, T, D): batch, time, features")
    check_features(x, in_features, layer, name, option)
    return x


def check_sequence_input(
    x: Any,
    mask: Any,
    in_features: int,
    layer: Any,
    name: str = "x",
    mask_name: str = "mask",
    option: str = "in_features",
) -> tuple[jax.Array, jax.Array | None, bool]:
    """`(x, mask, was_masked)`: one `(B, T, D)` input (or a `Masked`) and its mask, checked.

    `x` as `check_sequences` returns it; the mask bool `(B, T)` (a `(B, 1)` one broadcast),
    or `None`; errors name `name` and `mask_name` (`name.mask` for a `Masked` input).
    """
    x, mask, was_masked = unpack(x, mask, name, mask_name)
    x = check_sequences(x, in_features, layer, name, option)
    if mask is not None:
        mask = time_mask(mask, x, f"{name}.mask" if was_masked else mask_name)
    return x, mask, was_masked
