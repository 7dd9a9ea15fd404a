"""Argument checks for the RNN kernels, on static shapes and dtypes (trace time).

The generic checks live in `masking_jax/_checks.py`; these know the RNN layout.
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import MASK_POLARITY, align_mask, as_bool_mask, check_int, check_rank
from ._cells import Cell, GRUCell

PARAM_KEYS = ("kernel", "recurrent_kernel", "bias")

_X_HINT = (
    "For a single sequence of shape (T, D) add a batch axis (`x[None]`) or map the kernel "
    "with `jax.vmap`; for scalar features of shape (B, T) add a feature axis (`x[..., None]`)."
)


def check_bool(value: Any, name: str) -> bool:
    """Returns `value` if it is a Python bool (a static flag), else raises `TypeError`."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"`{name}` must be a Python bool (a static flag, not an array); "
            f"got {type(value).__name__} {value!r}."
        )
    return bool(value)


def check_unroll(unroll: Any) -> bool | int:
    """`unroll` as `lax.scan` takes it: a bool (`True` = fully unrolled) or an int >= 1."""
    if isinstance(unroll, bool | np.bool_):
        return bool(unroll)
    return check_int(unroll, "unroll", minimum=1)


def check_x(x: Any) -> jax.Array:
    """Returns `x` as a floating `(B, T, D)` array, or raises."""
    x = x if isinstance(x, jax.Array) else jnp.asarray(x)
    check_rank(x, "x", 3, "(B, T, D): batch, time, features", _X_HINT)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"`x` must be a floating array; got dtype {x.dtype}. Token ids must be embedded "
            "first (e.g. `params[ids]` with an embedding table)."
        )
    return x


def check_mask(mask: Any, x: jax.Array) -> jax.Array:
    """Returns the boolean `(B, T)` mask for `x` (all True for `None`), or raises."""
    batch, steps = x.shape[:2]
    if mask is None:
        return jnp.ones((batch, steps), bool)
    mask = as_bool_mask(mask, "mask")
    check_rank(mask, "mask", 2, f"(B, T) ({MASK_POLARITY})")
    mask = align_mask(mask, x)
    return jnp.broadcast_to(mask[..., 0], (batch, steps))


def _a(cell: Cell) -> str:
    """`cell.name` with its article: "a GRU", "an LSTM"."""
    return f"{'an' if cell.name == 'LSTM' else 'a'} {cell.name}"


def _layout(cell: Cell) -> dict[str, str]:
    """The Keras 3 layout in the shape legend, e.g. LSTM kernel `(D, 4H)`."""
    g = "" if cell.gates == 1 else str(cell.gates)
    layout = {"kernel": f"(D, {g}H)", "recurrent_kernel": f"(H, {g}H)", "bias": f"({g}H,)"}
    if isinstance(cell, GRUCell) and cell.reset_after:
        layout["bias"] = "(2, 3H)"
    return layout


def check_params(cell: Cell, params: Any, in_features: int) -> tuple[dict[str, Any], int]:
    """Checks `params` against the Keras layout of `cell`; returns them as arrays and H."""
    layout = _layout(cell)
    expected_keys = ", ".join(f"'{k}' {layout[k]}" for k in PARAM_KEYS)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"`params` for {_a(cell)} must be a mapping with keys {expected_keys} "
            f"(the Keras 3 layout); got {type(params).__name__}. From a Keras layer use "
            "`dict(zip(['kernel', 'recurrent_kernel', 'bias'], layer.get_weights()))`."
        )
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(
            f"`params` for {_a(cell)} is missing key(s) {', '.join(map(repr, missing))}; "
            f"expected keys {expected_keys} (Keras 3 layout; 'bias' may be None for "
            f"use_bias=False). Got keys {sorted(params)}."
        )
    arrays = {
        k: None if params[k] is None and k == "bias" else _as_array(params[k], k)
        for k in PARAM_KEYS
    }
    rec = arrays["recurrent_kernel"]
    if rec.ndim != 2:
        raise ValueError(
            f"`params['recurrent_kernel']` must be 2-D {layout['recurrent_kernel']} for "
            f"{_a(cell)}; got shape {tuple(rec.shape)}."
        )
    hidden = rec.shape[0]
    g = cell.gates
    expected = {
        "kernel": (in_features, g * hidden),
        "recurrent_kernel": (hidden, g * hidden),
        "bias": cell.bias_shape(hidden),
    }
    for key in PARAM_KEYS:
        value = arrays[key]
        if value is None or tuple(value.shape) == expected[key]:
            continue
        hint = ""
        if isinstance(cell, GRUCell) and key == "bias":
            other = GRUCell(cell.activation, cell.recurrent_activation, not cell.reset_after)
            if tuple(value.shape) == other.bias_shape(hidden):
                hint = (
                    f" That is the bias of a GRU with reset_after={other.reset_after}; pass "
                    f"`reset_after={other.reset_after}`."
                )
        raise ValueError(
            f"`params['{key}']` must have shape {layout[key]} = {expected[key]} for "
            f"{_a(cell)} with D={in_features} input features (x.shape[-1]) and H={hidden} "
            f"hidden units (params['recurrent_kernel'].shape[0]); got {tuple(value.shape)}." + hint
        )
    return arrays, hidden


def _as_array(value: Any, key: str) -> jax.Array:
    if value is None:
        raise TypeError(f"`params['{key}']` is None; only 'bias' may be None (use_bias=False).")
    value = value if isinstance(value, jax.Array) else jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"`params['{key}']` must be a floating array; got dtype {value.dtype}.")
    return value


def state_dtype(x: jax.Array, params: Mapping[str, Any]) -> np.dtype:
    """The dtype the kernel computes and carries its state in.

    float32 for float32, bfloat16 and float16 inputs (low-precision inputs accumulate
    their state in float32); float64 for float64 inputs. Parameters are cast to it,
    and must not be wider than it: float64 params with float32 `x` raise rather than
    silently lose precision.
    """
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    for key in PARAM_KEYS:
        value = params[key]
        if value is None:
            continue
        if jnp.promote_types(value.dtype, dtype) != dtype:
            raise TypeError(
                f"`params['{key}']` has dtype {value.dtype}, wider than the {dtype} the "
                f"kernel computes in for `x` of dtype {x.dtype}; cast the params to {dtype} "
                f"(`jax.tree.map(lambda p: p.astype(jnp.{dtype}), params)`) or `x` to "
                f"{value.dtype}."
            )
    return np.dtype(dtype)


def check_initial_state(cell: Cell, initial_state: Any, batch: int, hidden: int, dtype: Any) -> Any:
    """Returns the initial state in `dtype` (zeros for `None`), or raises for a bad one."""
    if initial_state is None:
        return cell.zero_state(batch, hidden, dtype)
    names = cell.state_names
    if len(names) == 2:
        if not isinstance(initial_state, tuple | list) or len(initial_state) != 2:
            raise TypeError(
                f"`initial_state` for {_a(cell)} must be a pair (h, c) of (B, H) = "
                f"({batch}, {hidden}) arrays; got {type(initial_state).__name__}."
            )
        parts = list(initial_state)
    elif isinstance(initial_state, tuple | list):  # Keras passes [h]
        if len(initial_state) != 1:
            raise TypeError(
                f"`initial_state` for {_a(cell)} must be one (B, H) = ({batch}, {hidden}) "
                f"array h; got a sequence of {len(initial_state)}."
            )
        parts = list(initial_state)
    else:
        parts = [initial_state]
    states = []
    for name, part in zip(names, parts, strict=True):
        label = "initial_state" if len(names) == 1 else f"initial_state {name}"
        shape = tuple(np.shape(part))
        if shape != (batch, hidden):
            raise ValueError(
                f"`{label}` must have shape (B, H) = ({batch}, {hidden}) (batch of x, "
                f"hidden units of params); got {shape}."
            )
        part = part if isinstance(part, jax.Array) else jnp.asarray(part)
        if not jnp.issubdtype(part.dtype, jnp.floating):
            raise TypeError(f"`{label}` must be a floating array; got dtype {part.dtype}.")
        states.append(part.astype(dtype))
    return tuple(states) if len(states) == 2 else states[0]
