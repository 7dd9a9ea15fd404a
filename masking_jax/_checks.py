"""Argument checks shared by the whole package.

Every check runs on static information (shapes, dtypes, Python values), so it
works at trace time under `jax.jit` and raises before anything is computed.

The one shape legend of the package (every module uses these letters, and only
these): B batch (sequences), T time steps, D input features, H hidden units
(outputs per step), G gates, C classes, S key/value length, V vocabulary; inside
the RNN kernels N chunks of K steps.
"""

import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MASK_POLARITY = "True = real step, False = padding"


def as_bool_mask(mask: Any, name: str = "mask") -> jax.Array:
    """Returns `mask` as a boolean array, or raises `TypeError`.

    Integer 0/1 masks are rejected rather than cast: an integer array might hold
    lengths, indices or the opposite polarity, and a silent cast would hide that.
    """
    dtype = getattr(mask, "dtype", None)
    if dtype is None:
        if isinstance(mask, (bool, np.bool_)):
            return jnp.asarray(mask)
        try:
            dtype = np.asarray(mask).dtype
        except Exception as err:  # ragged lists and other non-arrays
            raise TypeError(
                f"`{name}` must be a boolean array ({MASK_POLARITY}); got {type(mask).__name__}."
            ) from err
    if dtype != np.bool_:
        raise TypeError(
            f"`{name}` must be a boolean array ({MASK_POLARITY}); got dtype {dtype}. "
            f"If it holds 1 for real steps and 0 for padding, pass `{name}.astype(bool)`; "
            "if it holds lengths, use `lengths_to_mask(lengths, maxlen)`."
        )
    return jnp.asarray(mask)


def align_mask(mask: Any, x: jax.Array, mask_name: str = "mask", x_name: str = "x") -> jax.Array:
    """Checks that `mask` covers the leading axes of `x` and reshapes it to broadcast.

    A mask of shape `(B, T)` applies to data of shape `(B, T, ...)`. Each mask axis
    must equal the data axis or be 1 (then it broadcasts). Returns the boolean mask
    with trailing singleton axes added, so it has `x.ndim` dimensions.
    """
    mask = as_bool_mask(mask, mask_name)
    x_shape = tuple(np.shape(x))
    if mask.ndim > len(x_shape) or any(
        m not in (d, 1) for m, d in zip(mask.shape, x_shape, strict=False)
    ):
        raise ValueError(
            f"`{mask_name}` of shape {tuple(mask.shape)} does not match the leading axes of "
            f"`{x_name}` of shape {x_shape}: a mask covers the leading (batch, time, ...) axes "
            f"of the data, e.g. a (B, T) mask for (B, T, D) data; each of its axes must equal "
            "the data's axis or be 1."
        )
    return mask.reshape(mask.shape + (1,) * (len(x_shape) - mask.ndim))


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> None:
    """Raises `ValueError` unless `value` is one of `choices`."""
    if not isinstance(value, str | int | float | type(None)) or value not in choices:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(c) for c in choices)}; got {value!r}."
        )


def check_bool(value: Any, name: str) -> bool:
    """Returns `value` if it is a Python bool (a static flag), else raises `TypeError`."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"`{name}` must be a Python bool (a static flag, not an array); "
            f"got {type(value).__name__} {value!r}."
        )
    return bool(value)


def check_int(value: Any, name: str, *, minimum: int = 0) -> int:
    """Returns `value` as a Python int, or raises for floats, bools and values below `minimum`."""
    try:
        if isinstance(value, bool | np.bool_):
            raise TypeError
        value = operator.index(value)  # ints, numpy ints and concrete integer JAX scalars
    except TypeError:
        raise TypeError(
            f"`{name}` must be an int (a static size, not traced); got "
            f"{type(value).__name__} {value!r}."
        ) from None
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def check_rate(value: Any, name: str) -> float:
    """Returns a dropout rate as a Python float in [0, 1), or raises.

    Rates are static (a different rate compiles a different program), so arrays and
    tracers are refused, as are bools.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise TypeError(
            f"`{name}` must be a Python float in [0, 1) (a static rate, not an array); got "
            f"{type(value).__name__} {value!r}."
        )
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"`{name}` must be in [0, 1) (the fraction of units dropped); got {value!r}."
        )
    return float(value)


def check_axis(axis: int | Sequence[int], ndim: int, name: str = "axis") -> tuple[int, ...]:
    """Normalises `axis` (an int or a sequence of ints) to a tuple of non-negative axes."""
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, int | np.integer) or not -ndim <= a < ndim:
            raise ValueError(
                f"`{name}` must be in [{-ndim}, {ndim}) for {ndim}-D input; got {a!r}."
            )
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"`{name}` repeats an axis: {axis!r}.")
    return tuple(out)


def check_rank(x: Any, name: str, ndim: int, layout: str, hint: str = "") -> None:
    """Raises `ValueError` unless `x` has exactly `ndim` dimensions (`layout` names them)."""
    got = np.ndim(x)
    if got != ndim:
        raise ValueError(
            f"`{name}` must be {ndim}-D {layout}; got shape {tuple(np.shape(x))}." + (
                f" {hint}" if hint else ""
            )
        )
