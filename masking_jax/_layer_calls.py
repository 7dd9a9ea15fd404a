"""What the Flax layers of `masking_jax.nnx` and `masking_jax.linen` share; imports no flax.

- `split_masked`, `unpack`: a `Masked` input opened into `(data, mask)`, the mask
  checked (`check_layer_mask`) under the user's argument names.
- `time_mask`: a checked mask broadcast to the `(B, T)` of its data.
- `zero_padding`: data with zeros at padded steps, before a layer mixes steps.
- `check_time_axis`, `check_floating`: what the time and pooling layers take.
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

from ._checks import align_mask, as_bool_mask
from ._masks import Masked
from ._ops import masked_max, masked_mean
from ._rnn._kernels import rnn
from ._rnn._validate import check_x


def check_layer_mask(
    mask: Any, x: Any, mask_name: str = "mask", x_name: str = "x"
) -> jax.Array | None:
    """The mask a layer was given, as a bool array covering the leading axes of `x`, or None.

    Raises `TypeError` for a `Masked` passed as a mask and for a non-boolean mask, and
    `ValueError` for a mask that does not match the leading (batch, time) axes of `x`.
    A pytree of masks (one per leaf of `x`, as a `Masked` of a dict carries) must have
    the structure of `x`, each mask fitting its leaf.

    Examples:
      >>> check_layer_mask(jnp.ones((1, 2), bool), jnp.ones((1, 2, 3))).shape
      (1, 2)
    """
    if mask is None:
        return None
    if isinstance(mask, Masked):
        raise TypeError(
            f"`{mask_name}` is a Masked; a mask must be a bool array (True = real step). "
            f"Pass the Masked itself as `{x_name}` (`layer(masked)`), or `{mask_name}="
            "masked.mask`."
        )
    leaves = jax.tree_util.tree_leaves_with_path(mask)
    if len(leaves) > 1 and all(hasattr(leaf, "shape") for _, leaf in leaves):
        # One mask per leaf of the data (a Masked of a dict): the same structure.
        mask_tree, x_leaves = jax.tree.structure(mask), jax.tree.leaves(x)
        if mask_tree != jax.tree.structure(x):
            raise ValueError(
                f"`{mask_name}` is a pytree of {len(leaves)} masks, so it needs one mask "
                f"per leaf of `{x_name}`, with its structure; got `{mask_name}` structure "
                f"{mask_tree} and `{x_name}` structure {jax.tree.structure(x)}. For one mask "
                "pass one bool array."
            )
        for (path, leaf), x_leaf in zip(leaves, x_leaves, strict=True):
            name = f"{mask_name}{jax.tree_util.keystr(path)}"
            align_mask(leaf, x_leaf, name, f"{x_name}{jax.tree_util.keystr(path)}")
        return mask
    mask = as_bool_mask(mask, mask_name)
    for leaf in jax.tree.leaves(x):
        if hasattr(leaf, "shape"):
            align_mask(mask, leaf, mask_name, x_name)
    return mask


def split_masked(
    x: Any, mask: Any, name: str = "x", mask_name: str = "mask"
) -> tuple[Any, Any, bool]:
    """`(data, mask, was_masked)`: opens a `Masked` input, or passes `x` and `mask` on.

    The mask is checked (`check_layer_mask`), named `mask_name` (or `x.mask` when it
    came inside a `Masked`). Raises `TypeError` when `x` is a `Masked` and a `mask` is
    given as well.

    Examples:
      >>> split_masked(Masked(jnp.ones((1, 2, 3)), jnp.ones((1, 2), bool)), None)[2]
      True
    """
    if not isinstance(x, Masked):
        return x, check_layer_mask(mask, x, mask_name, name), False
    if mask is not None:
        raise TypeError(
            f"`{name}` is a Masked, which carries its own mask; do not pass `{mask_name}` "
            f"too (pass the Masked alone, or `{name}.data` with `{mask_name}` for another "
            "mask)."
        )
    return x.data, check_layer_mask(x.mask, x.data, f"{name}.mask", f"{name}.data"), True


def unpack(x: Any, mask: Any, name: str = "x", mask_name: str = "mask") -> tuple[Any, Any, bool]:
    """`split_masked` for layers that take one array `(B, T, ...)`, not a pytree of them.

    Examples:
      >>> unpack(jnp.ones((1, 2, 3)), None)[1:]
      (None, False)
    """
    data, mask, was_masked = split_masked(x, mask, name, mask_name)
    if was_masked and not isinstance(data, jax.Array | np.ndarray):
        raise TypeError(
            f"`{name}.data` must be one array (B, T, ...) for this layer; got "
            f"{type(data).__name__}. Apply the layer to each leaf with jax.tree.map."
        )
    return data, mask, was_masked


def time_mask(mask: jax.Array, x: Any, mask_name: str = "mask") -> jax.Array:
    """A checked mask of `x` broadcast to the full `(B, T)` of `x` (a `(B, 1)` mask too).

    Raises `ValueError` for a mask with more axes than `(B, T)`, e.g. one per feature.

    Examples:
      >>> time_mask(jnp.array([[True], [False]]), jnp.ones((2, 3, 1))).shape
      (2, 3)
    """
    if mask.ndim > 2:
        raise ValueError(
            f"`{mask_name}` must be a (B, T) mask (or broadcast to it, e.g. (B, 1)) for this "
            f"layer; got shape {tuple(mask.shape)}."
        )
    return jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (2 - mask.ndim)), x.shape[:2])


def zero_padding(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """`x` with zeros at padded steps (`x` itself without a mask), so that a layer that
    mixes steps or takes statistics never reads the padding's content (even NaN).

    Examples:
      >>> zero_padding(jnp.array([[1.0, jnp.nan]]), jnp.array([[True, False]]))
      Array([[1., 0.]], dtype=float32)
    """
    return x if mask is None else Masked(x, mask).filled(0).data


def check_time_axis(x: Any, name: str = "x") -> None:
    """Raises unless `x` is an array or nested list (`TypeError`) with a batch and a time
    axis `(B, T, ...)` (`ValueError`)."""
    if not hasattr(x, "shape") and not isinstance(x, list | tuple):
        raise TypeError(f"`{name}` must be an array (B, T, ...); got {type(x).__name__}.")
    if np.ndim(x) < 2:
        raise ValueError(
            f"`{name}` must have a batch and a time axis, shape (B, T, ...); got shape "
            f"{tuple(np.shape(x))}."
        )


def check_floating(x: Any, name: str = "x") -> jax.Array:
    """`x` as a floating array (features or scores), or `TypeError` with the cast to use."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must be a floating array; got dtype {x.dtype}. Cast it "
            f"(`{name}.astype(jnp.float32)`), or embed token ids first."
        )
    return x


def step_input_shape(x: Any) -> tuple[int, int]:
    """`(B, D)`, the shape of one step of `x` `(B, T, D)`: what `initialize_carry` takes.

    Raises `ValueError` unless `x` is 3-D, `TypeError` unless it is real (floating,
    integer or bool; the kernels cast integers and bools).

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
    **options: Any,
) -> tuple[Any, Any]:
    """`(y, final_carry)`: `step` run by `masking_jax.rnn`, then the layer's outputs picked.

    Args:
      layer: what holds the layer's options, as attributes: `return_sequences` (all
        outputs `(B, T, H)`, else the output after each row's last real step `(B, H)`,
        zeros for an empty row), and `reverse`, `zero_output_for_mask`, `unroll` as
        for `rnn`.
      step: the cell as `step(params, carry, x_t) -> (carry, y_t)`.
      params: the cell's variables, any pytree of arrays.
      x: `(B, T, D)`.
      mask: bool `(B, T)` (True = real step) or `None`.
      initial_carry: the carry before the first step, in the cell's structure.
      was_masked: whether the input came as a `Masked` (then sequences go out as one).
      **options: more keywords for `rnn` (`dropout`, `dropout_key`).

    Examples:
      >>> import types
      >>> def step(p, h, x_t):
      ...     h = jnp.tanh(x_t @ p + h)
      ...     return h, h
      >>> options = types.SimpleNamespace(return_sequences=False,
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
        zero_output_for_mask=zero_output, unroll=layer.unroll, **options,
    )  # fmt: skip
    if layer.return_sequences:
        y = Masked(outputs, mask) if was_masked else outputs
    else:
        y = outputs[:, 0] if layer.reverse else outputs[:, -1]  # the last real output
    return y, carry


_POOLS = {"mean": (jnp.mean, masked_mean), "max": (jnp.max, masked_max)}


def pool_over_time(kind: str, x: Any, mask: Any, keepdims: bool) -> jax.Array:
    """`"mean"` or `"max"` over the real steps of `x` `(B, T, D)` (or a `Masked`) -> `(B, D)`.

    A row with no real step gives zeros; `keepdims` keeps the time axis, of size 1.

    Examples:
      >>> pool_over_time("max", jnp.array([[[1.0], [5.0]]]), jnp.array([[True, False]]), False)
      Array([[1.]], dtype=float32)
    """
    x, mask, _ = unpack(x, mask)
    check_time_axis(x)
    x = check_floating(x)
    reduce, masked_reduce = _POOLS[kind]
    if mask is None:
        return reduce(x, axis=1, keepdims=keepdims)
    return masked_reduce(x, mask, axis=1, keepdims=keepdims)
