"""Argument checks for the RNN kernels, on static shapes and dtypes (trace time).

The generic checks live in `masking_jax/_checks.py`; these know the RNN arguments.
What a Keras cell's params and states look like comes from the cell itself
(`KerasCell.param_shapes`, `state_names`), so a new cell needs no edit here.

Shape legend: B batch, T time steps, D input features, H hidden units.
"""

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import ad

from .._checks import (
    MASK_POLARITY,
    align_mask,
    as_array,
    as_bool_mask,
    check_int,
    check_rank,
    check_rate,
)
from ._cells import KerasCell

PARAM_KEYS = ("kernel", "recurrent_kernel", "bias")

_X_HINT = (
    "For a single sequence of shape (T, D) add a batch axis (`x[None]`) or map the kernel "
    "with `jax.vmap`; for scalar features of shape (B, T) add a feature axis (`x[..., None]`)."
)


def check_unroll(unroll: Any) -> bool | int:
    """`unroll` as `lax.scan` takes it: a bool (`True` = fully unrolled) or an int >= 1."""
    if isinstance(unroll, bool | np.bool_):
        return bool(unroll)
    return check_int(unroll, "unroll", minimum=1)


FORWARD_MODE = (
    "the masked RNN kernels support reverse-mode differentiation only (`jax.grad`, "
    "`jax.vjp`, `jax.jacrev`, and higher orders of those): their custom VJP skips padded "
    "steps, and JAX cannot push tangents through a custom VJP. Replace `jax.jvp` / "
    "`jax.jacfwd` / `jax.linearize` by `jax.vjp` / `jax.jacrev`."
)


def check_reverse_mode(*arguments: Any) -> None:
    """Raises `TypeError` when an argument carries forward-mode tangents (`jax.jvp`)."""
    if any(isinstance(leaf, ad.JVPTracer) for leaf in jax.tree.leaves(arguments)):
        raise TypeError(
            "`x`, `params` or `initial_state` is being differentiated in forward mode, but "
            + FORWARD_MODE
        )


def check_x(x: Any) -> jax.Array:
    """Returns `x` as a real `(B, T, D)` array (floating, integer or bool), or raises.

    Integer and bool inputs are cast later to the dtype the kernel computes in, as
    Keras and Flax cast them.
    """
    x = as_array(x, "x")
    check_rank(x, "x", 3, "(B, T, D): batch, time, features", _X_HINT)
    if not is_real(x.dtype):
        raise TypeError(
            f"`x` must be a real (floating, integer or bool) array; got dtype {x.dtype}."
        )
    return x


def is_real(dtype: Any) -> bool:
    """True for floating, integer and bool dtypes (what an RNN's `x` may be)."""
    return any(jnp.issubdtype(dtype, kind) for kind in (jnp.floating, jnp.integer, jnp.bool_))


def check_dropout(
    dropout: Any, recurrent_dropout: Any, dropout_key: Any
) -> tuple[float, float, jax.Array | None]:
    """The two dropout rates as floats in [0, 1), and the key that draws their masks.

    A nonzero rate needs `dropout_key` (a `jax.random.key`, or a legacy uint32 `(2,)` key).
    """
    rates = check_rate(dropout, "dropout"), check_rate(recurrent_dropout, "recurrent_dropout")
    if not any(rates):
        return (*rates, None)
    if dropout_key is None:
        raise ValueError(
            f"`dropout_key` is required with dropout={rates[0]} and recurrent_dropout="
            f"{rates[1]}: pass a fresh `jax.random.key` for each training step (a rate of 0 "
            "turns dropout off, e.g. for evaluation)."
        )
    return (*rates, check_key(dropout_key, "dropout_key"))


def check_key(key: Any, name: str) -> jax.Array:
    """Returns `key` if it is one PRNG key (typed, or a legacy uint32 `(2,)`), else raises."""
    key = key if isinstance(key, jax.Array) else jnp.asarray(key)
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
    if not typed and not (key.dtype == jnp.uint32 and key.shape == (2,)):
        raise TypeError(
            f"`{name}` must be one PRNG key, `jax.random.key(seed)` (or a legacy uint32 "
            f"(2,) `jax.random.PRNGKey`); got dtype {key.dtype} and shape {tuple(key.shape)}."
        )
    return key


def check_mask(mask: Any, x: jax.Array) -> jax.Array:
    """Returns the boolean `(B, T)` mask for `x` (all True for `None`), or raises."""
    batch, steps = x.shape[:2]
    if mask is None:
        return jnp.ones((batch, steps), bool)
    mask = as_bool_mask(mask, "mask")
    check_rank(mask, "mask", 2, f"(B, T) ({MASK_POLARITY})")
    mask = align_mask(mask, x)
    return jnp.broadcast_to(mask[..., 0], (batch, steps))


def check_params(cell: KerasCell, params: Any, in_features: int) -> tuple[dict[str, Any], int]:
    """Checks `params` against the Keras layout of `cell`; returns them as arrays and H."""
    layout = cell.legend()
    expected_keys = ", ".join(f"'{k}' {layout[k]}" for k in PARAM_KEYS)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"`params` for {cell.label} must be a mapping with keys {expected_keys} "
            f"(the Keras 3 layout); got {type(params).__name__}. From a Keras layer use "
            "`dict(zip(['kernel', 'recurrent_kernel', 'bias'], layer.get_weights()))`."
        )
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(
            f"`params` for {cell.label} is missing key(s) {', '.join(map(repr, missing))}; "
            f"expected keys {expected_keys} (Keras 3 layout; 'bias' may be None for "
            f"use_bias=False). Got keys {sorted(params)}."
        )
    arrays = {
        k: None if params[k] is None and k == "bias" else _as_array(params[k], f"params['{k}']")
        for k in PARAM_KEYS
    }
    rec = arrays["recurrent_kernel"]
    if rec.ndim != 2:
        raise ValueError(
            f"`params['recurrent_kernel']` must be 2-D {layout['recurrent_kernel']} for "
            f"{cell.label}; got shape {tuple(rec.shape)}."
        )
    hidden = rec.shape[0]
    expected = cell.param_shapes(in_features, hidden)
    for key in PARAM_KEYS:
        value = arrays[key]
        if value is None or tuple(value.shape) == expected[key]:
            continue
        raise ValueError(
            f"`params['{key}']` must have shape {layout[key]} = {expected[key]} for "
            f"{cell.label} with D={in_features} input features (x.shape[-1]) and H={hidden} "
            f"hidden units (params['recurrent_kernel'].shape[0]); got {tuple(value.shape)}."
            + cell.layout_hint(key, tuple(value.shape), hidden)
        )
    return arrays, hidden


def _as_array(value: Any, label: str) -> jax.Array:
    if value is None:
        raise TypeError(f"`{label}` is None; only 'bias' may be None (use_bias=False).")
    value = value if isinstance(value, jax.Array) else jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"`{label}` must be a floating array; got dtype {value.dtype}.")
    return value


def state_dtype(x: jax.Array, params: Mapping[str, Any]) -> np.dtype:
    """The dtype the kernel computes and carries its state in.

    float32 for float32, bfloat16 and float16 inputs (low-precision inputs accumulate
    their state in float32); float64 for float64 inputs. Parameters are cast to it,
    and must not be wider than it: float64 params with float32 `x` raise rather than
    silently lose precision. Integer or bool `x` takes the params' dtype (at least
    float32), and is cast to it.
    """
    if not jnp.issubdtype(x.dtype, jnp.floating):
        widths = [v.dtype for v in params.values() if v is not None]
        return np.dtype(functools.reduce(jnp.promote_types, widths, jnp.float32))
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


def check_initial_state(
    cell: KerasCell, initial_state: Any, batch: int, hidden: int, dtype: Any
) -> Any:
    """Returns the initial state in `dtype` (zeros for `None`), or raises for a bad one."""
    if initial_state is None:
        return cell.zero_state(batch, hidden, dtype)
    names = cell.state_names
    if len(names) == 2:
        if not isinstance(initial_state, tuple | list) or len(initial_state) != 2:
            raise TypeError(
                f"`initial_state` for {cell.label} must be a pair (h, c) of (B, H) = "
                f"({batch}, {hidden}) arrays; got {type(initial_state).__name__}."
            )
        parts = list(initial_state)
    elif isinstance(initial_state, tuple | list):  # Keras passes [h]
        if len(initial_state) != 1:
            raise TypeError(
                f"`initial_state` for {cell.label} must be one (B, H) = ({batch}, {hidden}) "
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


def check_pytree_state(initial_state: Any, batch: int) -> Any:
    """A user cell's initial state: a pytree of floating `(B, ...)` arrays, as arrays."""
    leaves, treedef = jax.tree.flatten(initial_state)
    if not leaves:
        raise TypeError(
            f"`initial_state` must be a pytree of (B, ...) arrays (e.g. h, or a tuple (h, c)); got "
            f"{type(initial_state).__name__} with no arrays."
        )
    arrays = []
    for i, leaf in enumerate(leaves):
        label = "initial_state" if len(leaves) == 1 else f"initial_state leaf {i}"
        leaf = leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf)
        if leaf.ndim < 1 or leaf.shape[0] != batch:
            raise ValueError(
                f"`{label}` must have the batch of x, B={batch}, as its first axis (B, ...); "
                f"got shape {tuple(leaf.shape)}."
            )
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"`{label}` must be a floating array; got dtype {leaf.dtype}.")
        arrays.append(leaf)
    return jax.tree.unflatten(treedef, arrays)


def check_pytree_params(params: Any) -> Any:
    """A user cell's params: any pytree of arrays (static options go in `step`)."""

    def check(path: Any, leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array):
            return leaf
        try:
            return jnp.asarray(leaf)
        except TypeError:
            raise TypeError(
                f"`params{jax.tree_util.keystr(path)}` must be an array; got "
                f"{type(leaf).__name__}. Pass static options to `step` instead, e.g. with "
                "functools.partial."
            ) from None

    return jax.tree_util.tree_map_with_path(check, params)


def check_step_output(step: Any, params: Any, state: Any, x: jax.Array) -> None:
    """Checks what `step(params, state, x_t)` returns, from shapes alone (trace time)."""
    batch = x.shape[0]
    x_t = jax.ShapeDtypeStruct((batch, *x.shape[2:]), x.dtype)
    result = jax.eval_shape(step, params, state, x_t)
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise TypeError(
            "`step(params, state, x_t)` must return a pair (new_state, y_t); got "
            f"{type(result).__name__}" + (f" of length {len(result)}." if isinstance(
                result, tuple | list) else ".")
        )
    new_state, y = result
    expected = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    got = jax.tree.map(lambda a: (a.shape, a.dtype), new_state)
    if jax.tree.structure(new_state) != jax.tree.structure(state) or got != expected:
        raise ValueError(
            "`step` must return a new state with the structure, shapes and dtypes of "
            f"`initial_state` ({expected}); got {got}."
        )
    if not isinstance(y, jax.ShapeDtypeStruct) or y.ndim != 2 or y.shape[0] != batch:
        raise ValueError(
            f"`step` must return an output y_t of shape (B, H) with B={batch}; got "
            f"{getattr(y, 'shape', type(y).__name__)}."
        )
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise TypeError(f"`step` must return a floating output y_t; got dtype {y.dtype}.")
