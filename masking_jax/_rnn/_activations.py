"""Activation names in Keras spelling, resolved to functions."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .._checks import check_choice

Activation = str | Callable[[jax.Array], jax.Array] | None


def _linear(x: jax.Array) -> jax.Array:
    return x


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    # Keras 3: relu6(x + 3) / 6, i.e. clip(x / 6 + 1/2, 0, 1) (not Keras 2's 0.2 x + 0.5).
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "relu": jax.nn.relu,
    "linear": _linear,
}


def get_activation(activation: Activation, name: str) -> Callable[[jax.Array], jax.Array]:
    """Returns the function for a Keras activation name, a callable, or `None` (linear).

    Raises `ValueError` naming the argument `name` for an unknown name.
    """
    if activation is None:
        return _linear
    if callable(activation):
        return activation
    try:
        check_choice(activation, name, tuple(ACTIVATIONS))
    except ValueError as err:
        raise ValueError(f"{err} Or pass a callable, e.g. `jax.nn.gelu`.") from None
    return ACTIVATIONS[activation]
