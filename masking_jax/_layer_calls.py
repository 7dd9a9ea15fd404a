"""What the Flax layers of `masking_jax.nnx` and `masking_jax.linen` share; imports no flax.

- `split_masked`, `unpack`: a `Masked` input opened into `(data, mask)`.
- `step_input_shape`: the `(B, D)` a cell's `initialize_carry` takes, from `x`.
- `run_cell_layer`: a cell's pure step through `masking_jax.rnn`, shaped as a layer's result.
- `pool_over_time`: the body of the global pooling layers.

Shape legend: B batch, T time steps, D input features, H outputs per step. A mask is
bool `(B, T)`, True = real step, False = padding.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._masks import Masked
from ._ops import masked_max, masked_mean
from ._rnn._kernels import rnn
from ._rnn._validate import check_x


def split_masked(x: Any, mask: Any, name: str = "x") -> tuple[Any, Any, bool]:
    """`(data, mask, was_masked)`: opens a `Masked` input, or passes `x` and `mask` on.

    Raises `TypeError` when `x` is a `Masked` and a `mask` is given as well.

    Examples:
      >>> split_masked(Masked(jnp.ones((1, 2, 3)), jnp.ones((1, 2), bool)), None)[2]
      True
    """
    if not isinstance(x, Masked):
        return x, mask, False
    if mask is not None:
        raise TypeError(
            f"`{name}` is a Masked, which carries its own mask; do not pass `mask=` too."
        )
    return x.data, x.mask, True


def unpack(x: Any, mask: Any, name: str = "x") -> tuple[Any, Any, bool]:
    """`split_masked` for layers that take one array `(B, T, ...)`, not a pytree of them.

    Examples:
      >>> unpack(jnp.ones((1, 2, 3)), None)[1:]
      (None, False)
    """
    data, mask, was_masked = split_masked(x, mask, name)
    if was_masked and not isinstance(data, jax.Array | np.ndarray):
        raise TypeError(
            f"`{name}.data` must be one array (B, T, ...) for this layer; got "
            f"{type(data).__name__}. Apply the layer to each leaf with jax.tree.map."
        )
    return data, mask, was_masked


def step_input_shape(x: Any) -> tuple[int, int]:
    """`(B, D)`, the shape of one step of `x` `(B, T, D)`: what `initialize_carry` takes.

    Raises `ValueError` unless `x` is 3-D, `TypeError` unless it is floating.

    Examples:
      >>> step_input_shape(jnp.ones((2, 5, 3)))
      (2, 3)
    """
    x = check_x(x)
    return x.shape[0], x.shape[2]


def run_cell_layer(
    layer: Any,
    step: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]],
    params: Any,
    x: Any,
    mask: Any,
    initial_carry: Any,
    was_masked: bool,
) -> Any:
    """A cell layer's result: `step` run by `masking_jax.rnn`, then the outputs picked.

    Args:
      layer: what holds the layer's options, as attributes: `return_sequences` (all
        outputs `(B, T, H)`, else the output after each row's last real step `(B, H)`,
        zeros for an empty row), `return_state` (also return the final carry: `(y,
        carry)`), and `reverse`, `zero_output_for_mask`, `unroll` as for `rnn`.
      step: the cell as `step(params, carry, x_t) -> (carry, y_t)`.
      params: the cell's variables, any pytree of arrays.
      x: `(B, T, D)`.
      mask: bool `(B, T)` (True = real step) or `None`.
      initial_carry: the carry before the first step, in the cell's structure.
      was_masked: whether the input came as a `Masked` (then sequences go out as one).

    Examples:
      >>> import types
      >>> def step(p, h, x_t):
      ...     h = jnp.tanh(x_t @ p + h)
      ...     return h, h
      >>> options = types.SimpleNamespace(return_sequences=False, return_state=True,
      ...     reverse=False, zero_output_for_mask=True, unroll=1)
      >>> mask = jnp.array([[True, True, False]])
      >>> y, h = run_cell_layer(options, step, jnp.ones((1, 2)), jnp.ones((1, 3, 1)), mask,
      ...                       jnp.zeros((1, 2)), was_masked=False)
      >>> bool(jnp.all(y == h))  # the last output is kept even with zero_output_for_mask
      True
    """
    # The last output of each row: with zeros at padded steps it would be lost.
    zero_output = layer.zero_output_for_mask and layer.return_sequences
    outputs, carry = rnn(
        step, params, x, mask, initial_carry, reverse=layer.reverse,
        zero_output_for_mask=zero_output, unroll=layer.unroll,
    )  # fmt: skip
    if layer.return_sequences:
        y = Masked(outputs, mask) if was_masked else outputs
    else:
        y = outputs[:, 0] if layer.reverse else outputs[:, -1]  # the last real output
    return (y, carry) if layer.return_state else y


_POOLS = {"mean": (jnp.mean, masked_mean), "max": (jnp.max, masked_max)}


def pool_over_time(kind: str, x: Any, mask: Any, keepdims: bool) -> jax.Array:
    """`"mean"` or `"max"` over the real steps of `x` `(B, T, D)` (or a `Masked`) -> `(B, D)`.

    A row with no real step gives zeros; `keepdims` keeps the time axis, of size 1.

    Examples:
      >>> pool_over_time("max", jnp.array([[[1.0], [5.0]]]), jnp.array([[True, False]]), False)
      Array([[1.]], dtype=float32)
    """
    x, mask, _ = unpack(x, mask)
    reduce, masked_reduce = _POOLS[kind]
    if mask is None:
        return reduce(x, axis=1, keepdims=keepdims)
    return masked_reduce(x, mask, axis=1, keepdims=keepdims)
