"""Parameter initialisers matching the Keras 3 defaults, as pure functions of a key.

Keras defaults: `kernel` glorot-uniform (`U(-l, l)`, `l = sqrt(6 / (D + G*H))`),
`recurrent_kernel` orthogonal (orthonormal rows, gain 1), `bias` zeros, plus ones
on the LSTM forget gate (`unit_forget_bias=True`). The distributions match Keras;
the random draws do not (Keras uses its own seed stream).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_bool, check_int


def check_key(key: Any) -> jax.Array:
    """Returns `key` if it is one PRNG key (typed, or a legacy uint32 `PRNGKey`), else raises."""
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    legacy = isinstance(key, jax.Array | np.ndarray) and key.dtype == np.uint32 and key.ndim == 1
    if typed and key.shape == ():
        return key
    if legacy:
        return jnp.asarray(key)
    got = f"{type(key).__name__} {key!r}" if not hasattr(key, "shape") else (
        f"an array of shape {key.shape} and dtype {key.dtype}")
    hint = " (several keys: map the initialiser with `jax.vmap`)" if typed else ""
    raise TypeError(
        f"`key` must be one PRNG key, e.g. `jax.random.key(0)`; got {got}{hint}."
    )


def _init(
    key: jax.Array, in_features: int, hidden_features: int, gates: int, dtype: Any
) -> tuple[jax.Array, jax.Array]:
    key = check_key(key)
    in_features = check_int(in_features, "in_features")
    hidden_features = check_int(hidden_features, "hidden_features", minimum=1)
    try:
        floating = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise TypeError(f"`dtype` must be a floating dtype, e.g. jnp.float32; got {dtype!r}.")
    return _draw(key, in_features, hidden_features, gates, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _draw(
    key: jax.Array, in_features: int, hidden_features: int, gates: int, dtype: Any
) -> tuple[jax.Array, jax.Array]:
    k_kernel, k_recurrent = jax.random.split(key)
    g = gates * hidden_features
    draw = jnp.promote_types(dtype, jnp.float32)  # QR has no bfloat16 kernel: draw, then cast
    kernel = (  # glorot's fan-in arithmetic divides by D: an empty kernel needs no draw
        jax.nn.initializers.glorot_uniform()(k_kernel, (in_features, g), draw)
        if in_features
        else jnp.zeros((0, g), draw)
    )
    recurrent = jax.nn.initializers.orthogonal()(k_recurrent, (hidden_features, g), draw)
    return kernel.astype(dtype), recurrent.astype(dtype)


def init_simple_rnn_params(
    key: jax.Array, in_features: int, hidden_features: int, *, dtype: Any = jnp.float32
) -> dict[str, jax.Array]:
    """Keras-default parameters for `simple_rnn`.

    Args:
        key: one PRNG key (`jax.random.key(seed)`, or a legacy `jax.random.PRNGKey`).
        in_features: D >= 0, the features of `x`.
        hidden_features: H >= 1, the hidden units.
        dtype: a floating dtype.

    Returns:
        `{"kernel": (D, H), "recurrent_kernel": (H, H), "bias": (H,)}`.

    Examples:
        >>> import jax
        >>> import masking_jax as mj
        >>> params = mj.init_simple_rnn_params(jax.random.key(0), 3, 8)
        >>> {k: v.shape for k, v in params.items()}
        {'kernel': (3, 8), 'recurrent_kernel': (8, 8), 'bias': (8,)}
    """
    kernel, recurrent = _init(key, in_features, hidden_features, 1, dtype)
    bias = jnp.zeros((hidden_features,), dtype)
    return {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}


def init_lstm_params(
    key: jax.Array,
    in_features: int,
    hidden_features: int,
    *,
    unit_forget_bias: bool = True,
    dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
    """Keras-default parameters for `lstm` (gate order i, f, c, o).

    Args:
        key: one PRNG key (`jax.random.key(seed)`, or a legacy `jax.random.PRNGKey`).
        in_features: D >= 0, the features of `x`.
        hidden_features: H >= 1, the hidden units.
        unit_forget_bias: start the forget-gate bias at 1 (Keras default), else 0.
        dtype: a floating dtype.

    Returns:
        `{"kernel": (D, 4H), "recurrent_kernel": (H, 4H), "bias": (4H,)}`.

    Examples:
        >>> import jax
        >>> import masking_jax as mj
        >>> params = mj.init_lstm_params(jax.random.key(0), 3, 2)
        >>> params["kernel"].shape, params["recurrent_kernel"].shape
        ((3, 8), (2, 8))
        >>> params["bias"].tolist()  # i, f, c, o
        [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    kernel, recurrent = _init(key, in_features, hidden_features, 4, dtype)
    forget = float(check_bool(unit_forget_bias, "unit_forget_bias"))
    h = hidden_features
    bias = jnp.zeros((4 * h,), dtype).at[h : 2 * h].set(forget)
    return {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}


def init_gru_params(
    key: jax.Array,
    in_features: int,
    hidden_features: int,
    *,
    reset_after: bool = True,
    dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
    """Keras-default parameters for `gru` (gate order z, r, h).

    Args:
        key: one PRNG key (`jax.random.key(seed)`, or a legacy `jax.random.PRNGKey`).
        in_features: D >= 0, the features of `x`.
        hidden_features: H >= 1, the hidden units.
        reset_after: the bias layout to make: `(2, 3H)` for `reset_after=True` (Keras
            default; row 0 input bias, row 1 recurrent bias), `(3H,)` otherwise.
        dtype: a floating dtype.

    Returns:
        `{"kernel": (D, 3H), "recurrent_kernel": (H, 3H), "bias": (2, 3H) or (3H,)}`.

    Examples:
        >>> import jax
        >>> import masking_jax as mj
        >>> params = mj.init_gru_params(jax.random.key(0), 3, 8)
        >>> {k: v.shape for k, v in params.items()}
        {'kernel': (3, 24), 'recurrent_kernel': (8, 24), 'bias': (2, 24)}
    """
    kernel, recurrent = _init(key, in_features, hidden_features, 3, dtype)
    shape = (
        (2, 3 * hidden_features)
        if check_bool(reset_after, "reset_after")
        else (3 * hidden_features,)
    )
    return {"kernel": kernel, "recurrent_kernel": recurrent, "bias": jnp.zeros(shape, dtype)}
