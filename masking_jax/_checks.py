"""Argument checks shared by the whole package.

Every check runs on static information (shapes, dtypes, Python values), so it
works at trace time under `jax.jit` and raises before anything is computed.

The one shape legend of the package (every module uses these letters, and only
these): B batch (sequences), T time steps, D input features, H hidden units
(outputs per step), G gates, C classes, S key/value length, V vocabulary, N
attention heads; inside the RNN kernels N chunks of K steps. Derived lengths are
named in words, e.g. T_out, the output steps of a strided window.
"""

import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MASK_POLARITY = "True = real step, False = padding"


class OutOfRangeError(ValueError, OverflowError):
    """A value does not fit the dtype it must be stored in.

    A `ValueError` (the package's rule for bad input) that is also the
    `OverflowError` Keras raises in `keras.utils.pad_sequences`, so either `except`
    catches it.
    """


def _is_masked(value: Any) -> bool:
    from ._masks import Masked  # imported here: _masks imports this module

    return isinstance(value, Masked)


def _describe(value: Any) -> str:
    """A short description of a bad argument: its type, and its value when short."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {value.dtype}"
    text = repr(value)
    return type(value).__name__ + (f" {text}" if len(text) <= 40 else "")


def as_array(value: Any, name: str, *, complex_ok: bool = True, bool_ok: bool = True) -> jax.Array:
    """Returns `value` as a numeric JAX array, or raises `TypeError` naming `name`.

    Lists and numpy arrays are converted; `None`, strings, ragged lists, and a
    `Masked` (whose data and mask go to separate arguments) are rejected, as are
    complex or boolean values where `complex_ok` / `bool_ok` is False.
    """
    if _is_masked(value):
        raise TypeError(
            f"`{name}` must be an array; got a Masked. Pass its parts separately: "
            f"`{name}.data` here and `{name}.mask` as the mask."
        )
    if value is None or isinstance(value, str | bytes):
        raise TypeError(f"`{name}` must be a numeric array; got {_describe(value)}.")
    if not isinstance(value, jax.Array):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as err:  # ragged lists, odd objects
            raise TypeError(
                f"`{name}` must be a numeric array; got {type(value).__name__} that numpy "
                f"cannot turn into one ({err})."
            ) from None
    kind = np.dtype(value.dtype).kind
    allowed = "iuf" + ("c" if complex_ok else "") + ("b" if bool_ok else "")
    if kind not in allowed and value.dtype != jnp.bfloat16:
        what = {"c": "complex", "b": "boolean"}.get(kind, "non-numeric")
        raise TypeError(
            f"`{name}` must be a {'numeric' if complex_ok else 'real'} array; got {what} "
            f"dtype {value.dtype}." + (" Cast it first, e.g. `x.astype(jnp.float32)`."
                                      if kind == "b" else "")
        )
    return value if isinstance(value, jax.Array) else jnp.asarray(value)


def check_lossless_cast(values: Any, dtype: Any, name: str, target: str) -> None:
    """Raises unless the concrete `values` survive a cast to `dtype` (beyond float rounding).

    Integer targets need finite, integral values inside the dtype's range (numpy and
    JAX would truncate or wrap them silently), boolean targets 0 and 1, real targets
    no imaginary part, and float targets keep finite values finite. `target` names
    where the dtype comes from in the message, e.g. "`dtype` is int8".
    """
    values, dtype = np.asarray(values), np.dtype(dtype)
    if values.size == 0 or values.dtype.kind not in "biufc" or dtype.kind not in "biufc":
        return
    if values.dtype.kind == "c" and dtype.kind != "c":
        if np.any(values.imag != 0):
            raise ValueError(
                f"`{name}` holds complex values but {target}: the imaginary part would be "
                "dropped. Pass a complex dtype or the real part."
            )
        values = values.real
    integral = values.dtype.kind not in "fc" or np.all(
        np.isfinite(values) & (np.mod(values, 1) == 0)
    )
    if dtype.kind in "iub" and not integral:
        raise ValueError(
            f"`{name}` holds non-integral floats but {target}: they would be truncated "
            "(NaN and inf have no integer value). Pass a float dtype, e.g. dtype='float32'."
        )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = values.min(), values.max()
        if low < info.min or high > info.max:
            raise OutOfRangeError(
                f"`{name}` holds values from {low} to {high}, outside the range "
                f"[{info.min}, {info.max}] of {dtype}, but {target}: they would wrap around. "
                "Pass a wider dtype."
            )
    elif dtype.kind == "b" and not np.all((values == 0) | (values == 1)):
        raise ValueError(f"`{name}` holds values other than 0 and 1 but {target}.")
    elif dtype.kind in "fc" and values.dtype.kind in "iufc":
        with np.errstate(over="ignore", invalid="ignore"):
            overflow = np.isfinite(values) & ~np.isfinite(values.astype(dtype))
        if np.any(overflow):
            raise OutOfRangeError(
                f"`{name}` holds values too large for {dtype} but {target}: they would "
                "become inf. Pass a wider dtype."
            )


def fill_array(value: Any, dtype: Any, shape: tuple[int, ...], name: str) -> jax.Array:
    """`value` as an array of `dtype` broadcast to `shape`, or raises naming `name`.

    A scalar, or an array that broadcasts (numpy-style, trailing axes) to `shape`
    without growing it, e.g. one value per feature. Concrete values must fit
    `dtype` (`check_lossless_cast`); traced ones are cast.
    """
    if not isinstance(value, jax.core.Tracer):
        array = np.asarray(value) if not isinstance(value, jax.Array) else value
        if np.dtype(array.dtype).kind not in "biufc":
            raise TypeError(f"`{name}` must be a number; got {_describe(value)}.")
        check_lossless_cast(array, dtype, name, f"the result has dtype {np.dtype(dtype)}")
    value_shape = tuple(np.shape(value))
    try:
        fits = np.broadcast_shapes(value_shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"`{name}` must be a scalar or broadcast to the result's shape {tuple(shape)}; "
            f"got shape {value_shape}."
        )
    return jnp.broadcast_to(jnp.asarray(value).astype(dtype), shape)


def as_bool_mask(mask: Any, name: str = "mask") -> jax.Array:
    """Returns `mask` as a boolean array, or raises `TypeError`.

    Integer 0/1 masks are rejected rather than cast: an integer array might hold
    lengths, indices or the opposite polarity, and a silent cast would hide that.
    """
    if _is_masked(mask):
        raise TypeError(
            f"`{name}` must be a boolean array ({MASK_POLARITY}); got a Masked. Pass its "
            f"mask, `{name}.mask`, and its data to the data argument."
        )
    dtype = getattr(mask, "dtype", None)
    if dtype is None:
        if isinstance(mask, (bool, np.bool_)):
            return jnp.asarray(mask)
        if mask is None or isinstance(mask, str | bytes):
            raise TypeError(
                f"`{name}` must be a boolean array ({MASK_POLARITY}); got {_describe(mask)}."
            )
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


def check_param_dtype(dtype: Any, name: str = "param_dtype") -> np.dtype:
    """`dtype` resolved as a floating dtype for parameters (`jnp.float32`, `"bfloat16"`,
    ...), or `TypeError` naming `name`."""
    try:  # None would read as numpy's default float64
        resolved = None if dtype is None else jnp.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or not jnp.issubdtype(resolved, jnp.floating):
        raise TypeError(
            f"`{name}` must be a floating dtype such as jnp.float32 or jnp.bfloat16; "
            f"got {dtype!r}."
        )
    return resolved


def check_int(value: Any, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Returns `value` as a Python int, or raises for floats, bools, tracers and values
    outside `[minimum, maximum]`."""
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
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}; got {value}.")
    return int(value)


def check_float(value: Any, name: str, rule: str, accept: Callable[[float], bool]) -> float:
    """Returns a static real option as a Python float, or raises naming `name`.

    `rule` states the allowed range in words ("in [0, 1]", "> 0") and `accept` tests
    it (NaN fails every comparison). Arrays, tracers, bools and complex numbers are
    refused: the option is fixed when the program is built.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer
                                                           | np.floating):
        raise TypeError(
            f"`{name}` must be a Python float {rule} (a static value, not an array); got "
            f"{type(value).__name__} {value!r}."
        )
    if not accept(float(value)):
        raise ValueError(f"`{name}` must be {rule}; got {value!r}.")
    return float(value)


def check_rate(value: Any, name: str) -> float:
    """Returns a dropout rate as a Python float in [0, 1), or raises.

    Rates are static (a different rate compiles a different program), so arrays and
    tracers are refused, as are bools.
    """
    return check_float(
        value, name, "in [0, 1) (the fraction of units dropped)", lambda v: 0.0 <= v < 1.0
    )


def check_axis(axis: Any, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """Normalises `axis` to a tuple of distinct non-negative axes of an `ndim`-D array.

    `axis` is an int, a sequence of ints, or `None` (every axis, as in numpy). Each
    must be a static int in `[-ndim, ndim)`: floats, bools and traced values raise.
    """
    if axis is None:
        return tuple(range(ndim))
    single = not isinstance(axis, Sequence) or isinstance(axis, str)
    out = []
    for a in (axis,) if single else axis:
        try:
            if isinstance(a, bool | np.bool_ | jax.core.Tracer):
                raise TypeError
            a = operator.index(a)  # ints, numpy ints, concrete integer JAX scalars
        except TypeError:
            raise TypeError(
                f"`{name}` must be a static int, a sequence of ints or None; got "
                f"{_describe(a)}" + ("." if single else f" in {axis!r}.")
            ) from None
        if not -ndim <= a < ndim:
            raise ValueError(
                f"`{name}` must be in [{-ndim}, {ndim}) for {ndim}-D input; got {a!r}."
            )
        out.append(a % ndim)
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
