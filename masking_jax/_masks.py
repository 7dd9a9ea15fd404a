"""The `Masked` pytree, mask makers, and mask transforms for layers that move steps.

A mask is boolean, True = real step, False = padding. Shape legend: B batch,
T time, D features, S key length.
"""

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import (
    align_mask,
    as_array,
    as_bool_mask,
    check_bool,
    check_choice,
    check_int,
    check_rank,
    fill_array,
)
from ._layout import inverse_permutation, take_steps, valid_first_order

_IMMUTABLE = (
    "a Masked is immutable: `{name}` cannot be reassigned or deleted, since data and mask "
    "are checked together when it is built. Build a new one, e.g. `Masked(data, m.mask)`."
)


@jax.tree_util.register_pytree_node_class
class Masked:
    """Data paired with its mask; a pytree that passes through `jit`, `vmap`, `scan`.

    Args:
      data: an array of shape `(B, T, ...)`, or a pytree of such arrays (a dict of features).
      mask: a bool array (True = real step, False = padding) covering the leading
        axes of the data, e.g. `(B, T)`; either one mask shared by every leaf of
        `data` or a pytree of masks with the structure of `data`.

    `jax.grad` differentiates only float leaves: take the gradient with respect to
    `masked.data` (or pass `allow_int=True`), since the mask is boolean.

    A `Masked` is immutable (its data and mask are checked together when it is
    built): to change one, build a new one, e.g. `Masked(new_data, m.mask)`.

    Examples:
      >>> x = Masked(jnp.ones((2, 3, 4)), jnp.array([[True, True, False], [True, False, False]]))
      >>> x
      Masked(data=float32[2, 3, 4], mask=bool[2, 3])
      >>> jax.jit(lambda m: m.filled(0.0).data.sum())(x)
      Array(12., dtype=float32)
    """

    __slots__ = ("data", "mask")

    def __init__(self, data: Any, mask: Any):
        if isinstance(data, Masked):
            raise TypeError("`data` of a Masked must be arrays; got a Masked (it has a mask).")
        data_leaves, data_tree = jax.tree.flatten(data)
        mask_leaves, mask_tree = jax.tree.flatten(mask)
        if not data_leaves:
            raise ValueError("`data` of a Masked must hold at least one array; got none.")
        for leaf in data_leaves:
            if not hasattr(leaf, "shape"):
                raise TypeError(
                    f"`data` of a Masked must be an array or a pytree of arrays; it holds "
                    f"{type(leaf).__name__} {leaf!r}. A nested list is a pytree of Python "
                    "scalars to JAX: pass `np.asarray(data)`."
                )
        if mask_leaves and mask_tree != data_tree and all(
            isinstance(m, bool | np.bool_) for m in mask_leaves
        ):
            mask = as_bool_mask(mask, "mask")  # one mask given as a nested list
            mask_leaves, mask_tree = [mask], jax.tree.structure(mask)
        if len(mask_leaves) == 1 and mask_tree.num_nodes == 1:
            mask_leaves = mask_leaves * len(data_leaves)
        elif mask_tree != data_tree:
            raise ValueError(
                "`mask` of a Masked must be one mask shared by all data leaves or a pytree "
                f"with the structure of `data`; got data structure {data_tree} and mask "
                f"structure {mask_tree}."
            )
        for leaf, leaf_mask in zip(data_leaves, mask_leaves, strict=True):
            align_mask(leaf_mask, leaf, "mask", "data")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "mask", mask)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(_IMMUTABLE.format(name=name))

    def __delattr__(self, name: str) -> None:
        raise AttributeError(_IMMUTABLE.format(name=name))

    def tree_flatten(self):
        return (self.data, self.mask), None

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        del aux_data
        obj = object.__new__(cls)  # no checks: transformations pass placeholders through
        object.__setattr__(obj, "data", children[0])
        object.__setattr__(obj, "mask", children[1])
        return obj

    def __repr__(self) -> str:
        def describe(leaf):
            shape = getattr(leaf, "shape", None)
            return leaf if shape is None else f"{leaf.dtype}{list(shape)}"

        return f"Masked(data={jax.tree.map(describe, self.data)}, " \
            f"mask={jax.tree.map(describe, self.mask)})"

    def filled(self, value: Any = 0) -> "Masked":
        """Returns a copy whose padded positions hold `value` (padding is not read).

        `value` is a scalar (or an array that broadcasts to each leaf, e.g. one value per
        feature) that fits the dtype of the data: NaN or 0.5 for integer data, or 1000
        for int8 data, raise `ValueError`.
        """
        mask_tree = jax.tree.structure(self.mask)
        masks = (
            jax.tree.map(lambda _: self.mask, self.data)
            if mask_tree.num_nodes == 1 and mask_tree.num_leaves == 1
            else self.mask
        )
        data = jax.tree.map(
            lambda leaf, m: jnp.where(
                align_mask(m, leaf), leaf, fill_array(value, leaf.dtype, leaf.shape, "value")
            ),
            self.data,
            masks,
        )
        return Masked(data, self.mask)


def _array_masked(x: Any, name: str = "x") -> tuple[jax.Array, jax.Array]:
    """Unpacks a `Masked` with one array and a `(B, T)` mask, the input of time transforms.

    A mask with axes of size 1 (`(B, 1)`, `(1, T)`) comes back broadcast to the
    data's `(B, T)`, so transforms that move steps see every step's own flag.
    """
    if not isinstance(x, Masked):
        raise TypeError(
            f"`{name}` must be a Masked; got {type(x).__name__}."
            + (" For data and a mask, pass `Masked(data, mask)`." if isinstance(x, tuple) else "")
        )
    if not isinstance(x.data, jax.Array | np.ndarray):
        raise TypeError(
            f"`{name}.data` must be one array here; got {type(x.data).__name__}. "
            "Apply the transform to each leaf with jax.tree.map."
        )
    mask = as_bool_mask(x.mask, f"{name}.mask")
    check_rank(mask, f"{name}.mask", 2, "(B, T)")
    data = jnp.asarray(x.data)
    return data, jnp.broadcast_to(mask, data.shape[:2])


def mask_from_value(x: Any, mask_value: Any = 0.0) -> jax.Array:
    """The Keras `Masking` rule: a step is padding when all its features equal `mask_value`.

    Args:
      x: data of shape `(B, T, D)` (or `(B, T, ..., D)`).
      mask_value: the value that marks padding.

    Returns:
      bool mask of shape `x.shape[:-1]`, `(B, T)` for `(B, T, D)` data: True where any
      feature differs from `mask_value`.

    `mask_value` is a number or one value per feature `(D,)`. With `mask_value=nan`
    a step whose features are all NaN is padding (Keras compares with `!=`, so NaN
    there masks nothing).

    Examples:
      >>> mask_from_value(jnp.array([[[1.0, 0.0], [0.0, 0.0]]]))
      Array([[ True, False]], dtype=bool)
    """
    x = as_array(x, "x")
    if x.ndim < 3:
        raise ValueError(
            f"`x` must have a feature axis, shape (B, T, D); got shape {np.shape(x)}. "
            "For token ids of shape (B, T) use `mask_from_ids(ids, pad_id)`; for scalar "
            "steps add the feature axis with `x[..., None]`."
        )
    value = fill_array(mask_value, x.dtype, x.shape, "mask_value")
    same = (x == value) | (jnp.isnan(x) & jnp.isnan(value)) if jnp.issubdtype(
        x.dtype, jnp.inexact) else x == value
    return ~jnp.all(same, axis=-1)


def masking(x: Any, mask_value: Any = 0.0) -> Masked:
    """The Keras `Masking` layer as a function: masks steps equal to `mask_value` and zeroes them.

    Examples:
      >>> m = masking(jnp.array([[[1.0], [-1.0]]]), mask_value=-1.0)
      >>> m.data[0, :, 0], m.mask
      (Array([1., 0.], dtype=float32), Array([[ True, False]], dtype=bool))
    """
    x = as_array(x, "x")
    return Masked(x, mask_from_value(x, mask_value)).filled(0)


def mask_from_ids(ids: Any, pad_id: int = 0) -> jax.Array:
    """The `Embedding(mask_zero=True)` rule: a token equal to `pad_id` is padding.

    Args:
      ids: integer token ids of shape `(B, T)`.
      pad_id: the id that marks padding (0 by default, as in Keras).

    Returns:
      bool mask of shape `(B, T)`.

    Examples:
      >>> mask_from_ids(jnp.array([[5, 3, 0, 0]]))
      Array([[ True,  True, False, False]], dtype=bool)
    """
    ids = as_array(ids, "ids")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"`ids` must be integer token ids; got dtype {ids.dtype}.")
    if isinstance(pad_id, jax.core.Tracer):
        if not jnp.issubdtype(pad_id.dtype, jnp.integer) or pad_id.ndim:
            raise TypeError(
                f"`pad_id` must be an integer scalar; got {pad_id.dtype}{pad_id.shape}."
            )
    else:
        pad_id = check_int(pad_id, "pad_id", minimum=int(jnp.iinfo(ids.dtype).min),
                           maximum=int(jnp.iinfo(ids.dtype).max))
    return ids != pad_id


def combine_masks(
    op: Any, masks: Sequence[Any], names: Sequence[str]
) -> tuple[jax.Array | None, int]:
    """Combines the masks that are not None with `op` (`jnp.logical_and` / `_or`).

    Masks align on their leading axes; axes of size 1 broadcast, so a `(B, 1)` and a
    `(1, T)` mask give `(B, T)`. Errors name each mask by its entry in `names`
    (the caller's argument names). Returns the combination (None when every mask
    is None) and how many masks were present.
    """
    present = [(as_bool_mask(m, n), n) for m, n in zip(masks, names, strict=True) if m is not None]
    if not present:
        return None, 0
    ndim = max(m.ndim for m, _ in present)
    shapes = [tuple(m.shape) + (1,) * (ndim - m.ndim) for m, _ in present]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        listed = " and ".join(f"`{n}` of shape {tuple(m.shape)}" for m, n in present)
        raise ValueError(
            f"{listed} do not align: masks to combine match on their leading axes "
            "(batch, time, ...), each axis equal or 1."
        ) from None
    aligned = [jnp.broadcast_to(m.reshape(s), shape) for (m, _), s in zip(present, shapes,
                                                                          strict=True)]
    return functools.reduce(op, aligned), len(present)


def _mask_names(masks: Sequence[Any]) -> list[str]:
    return [f"masks[{i}]" for i in range(len(masks))]


def mask_and(*masks: Any) -> jax.Array | None:
    """Logical AND of masks; `None` (no mask) counts as all-True and is skipped.

    Masks may differ in rank: they align on their leading axes, and axes of size 1
    broadcast (a `(B, 1)` and a `(1, T)` mask give `(B, T)`). Returns `None` when
    every mask is `None`.

    Examples:
      >>> mask_and(jnp.array([True, True, False]), None, jnp.array([True, False, False]))
      Array([ True, False, False], dtype=bool)
    """
    combined, _ = combine_masks(jnp.logical_and, masks, _mask_names(masks))
    return combined


def mask_or(*masks: Any) -> jax.Array | None:
    """Logical OR of masks; `None` (no mask) counts as all-True, so it makes the result all-True.

    Returns `None` when every mask is `None`.

    Examples:
      >>> mask_or(jnp.array([True, False, False]), jnp.array([False, False, True]))
      Array([ True, False,  True], dtype=bool)
    """
    combined, present = combine_masks(jnp.logical_or, masks, _mask_names(masks))
    if combined is not None and present < len(masks):
        return jnp.ones(combined.shape, bool)
    return combined


def _split_points(indices_or_sections: Any, steps: int) -> list[int]:
    """The `jnp.split` argument for `steps` time steps as checked split points."""
    name = "indices_or_sections"
    if isinstance(indices_or_sections, Sequence | np.ndarray | jax.Array) and np.ndim(
        indices_or_sections
    ):
        points = [check_int(i, f"{name}[{k}]") for k, i in enumerate(indices_or_sections)]
        if points != sorted(points) or (points and points[-1] > steps):
            raise ValueError(
                f"`{name}` as split points must be increasing and within the T={steps} time "
                f"steps; got {points}."
            )
        return points
    sections = check_int(indices_or_sections, name, minimum=1)
    if steps % sections:
        raise ValueError(
            f"`{name}`={sections} must divide the T={steps} time steps into equal parts; "
            "pass split points (a list of step indices) for unequal parts."
        )
    return [steps // sections * k for k in range(1, sections)]


def split_time(x: Masked, indices_or_sections: int | Sequence[int]) -> list[Masked]:
    """Splits data and mask along time (the guide's `TemporalSplit`), like `jnp.split` on axis 1.

    Args:
      x: a `Masked` with data `(B, T, ...)` and mask `(B, T)` (axes of size 1 broadcast).
      indices_or_sections: a number of equal parts that divides T, or increasing
        split points (step indices in `[0, T]`).

    Examples:
      >>> parts = split_time(Masked(jnp.zeros((1, 4)), jnp.array([[True, True, True, False]])), 2)
      >>> [p.mask for p in parts]
      [Array([[ True,  True]], dtype=bool), Array([[ True, False]], dtype=bool)]
    """
    data, mask = _array_masked(x)
    points = _split_points(indices_or_sections, data.shape[1])
    return [
        Masked(d, m)
        for d, m in zip(
            jnp.split(data, points, axis=1), jnp.split(mask, points, axis=1), strict=True
        )
    ]


def _concat_inputs(
    items: Sequence[Any], axis: int, min_ndim: int, layout: str
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Data and masks `(B, T)` of `items`, checked to concatenate along `axis`.

    A plain array has no mask, which counts as all-True. Every item needs at least
    `min_ndim` axes (`layout` names them), one rank, and equal sizes on every axis
    but `axis`.
    """
    if isinstance(items, Masked) or not isinstance(items, Sequence | Iterator):
        raise TypeError(
            "`items` must be a list of Masked or arrays; got "
            f"{type(items).__name__}" + (": wrap one in a list, `[x]`." if isinstance(
                items, Masked | jax.Array | np.ndarray) else ".")
        )
    items = list(items)
    if not items:
        raise ValueError("`items` must hold at least one Masked or array; got none.")
    datas, masks = [], []
    for i, item in enumerate(items):
        if isinstance(item, Masked):
            data, mask = _array_masked(item, f"items[{i}]")
        else:
            data = as_array(item, f"items[{i}]")
            mask = jnp.ones(data.shape[:2], bool) if data.ndim >= 2 else None
        if data.ndim < min_ndim:
            raise ValueError(f"`items[{i}]` must be {layout}; got shape {data.shape}.")
        other = tuple(np.delete(datas[0].shape, axis)) if datas else None
        if datas and (data.ndim != datas[0].ndim or tuple(np.delete(data.shape, axis)) != other):
            raise ValueError(
                f"`items[{i}]` of shape {data.shape} does not fit `items[0]` of shape "
                f"{datas[0].shape}: items need one rank and equal sizes on every axis but "
                f"the one they are concatenated along (axis {axis})."
            )
        datas.append(data)
        masks.append(mask)
    return datas, masks


def concat_time(items: Sequence[Any]) -> Masked:
    """Concatenates along time; an item without a mask (a plain array) counts as all real.

    Args:
      items: a list of `Masked` (mask `(B, T_i)`, axes of size 1 broadcast) or arrays
        `(B, T_i, ...)`, equal in every axis but time.

    Examples:
      >>> a = Masked(jnp.ones((1, 2, 3)), jnp.array([[True, False]]))
      >>> concat_time([a, jnp.zeros((1, 1, 3))]).mask
      Array([[ True, False,  True]], dtype=bool)
    """
    datas, masks = _concat_inputs(items, 1, 2, "(B, T, ...)")
    return Masked(jnp.concatenate(datas, axis=1), jnp.concatenate(masks, axis=1))


def concat_features(items: Sequence[Any]) -> Masked:
    """Concatenates along the last axis with the Keras `Concatenate` mask rule.

    A step is real when it is real in any input; an input without a mask (a plain
    array) counts as all real, so then every step is real. Items are `Masked` or
    arrays `(B, T, D_i)`, equal in every axis but the last.

    Examples:
      >>> a = Masked(jnp.ones((1, 2, 3)), jnp.array([[True, False]]))
      >>> b = Masked(jnp.ones((1, 2, 1)), jnp.array([[False, False]]))
      >>> concat_features([a, b]).data.shape, concat_features([a, b]).mask
      ((1, 2, 4), Array([[ True, False]], dtype=bool))
    """
    datas, masks = _concat_inputs(items, -1, 3, "(B, T, D), with a feature axis to join")
    return Masked(jnp.concatenate(datas, axis=-1), mask_or(*masks))


def reverse_valid(x: Masked) -> Masked:
    """Reverses the real steps of each row in place; padding stays where it is.

    Pre- and post-padded copies of a sequence give the same reversed sequence, and a
    gappy row keeps its gaps: only the values at real positions are reversed.

    Examples:
      >>> post = Masked(jnp.array([[1, 2, 3, 0]]), jnp.array([[True, True, True, False]]))
      >>> pre = Masked(jnp.array([[0, 1, 2, 3]]), jnp.array([[False, True, True, True]]))
      >>> reverse_valid(post).data, reverse_valid(pre).data
      (Array([[3, 2, 1, 0]], dtype=int32), Array([[0, 3, 2, 1]], dtype=int32))
    """
    data, mask = _array_masked(x)
    steps = mask.shape[1]
    order = valid_first_order(mask)
    count = jnp.sum(mask, axis=1, keepdims=True, dtype=jnp.int32)
    rank = jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1
    source = jnp.take_along_axis(order, jnp.clip(count - 1 - rank, 0, max(steps - 1, 0)), axis=1)
    source = jnp.where(mask, source, jnp.arange(steps, dtype=jnp.int32))
    return Masked(take_steps(data, source), mask)


def compact(x: Masked) -> tuple[Masked, jax.Array]:
    """Moves the real steps of each row to the front, keeping their order (right padding).

    Returns:
      `(compacted, order)`: `compacted` is post-padded with the same number of real
      steps per row; `order` (B, T) int32 holds, for each new position, the old one.
      `uncompact(compacted, order)` undoes it exactly.

    Examples:
      >>> packed, order = compact(Masked(jnp.array([[0, 1, 0, 2]]),
      ...                                jnp.array([[False, True, False, True]])))
      >>> packed.data, packed.mask
      (Array([[1, 2, 0, 0]], dtype=int32), Array([[ True,  True, False, False]], dtype=bool))
    """
    data, mask = _array_masked(x)
    order = valid_first_order(mask)
    return Masked(take_steps(data, order), take_steps(mask, order)), order


def uncompact(x: Masked, order: jax.Array) -> Masked:
    """Undoes `compact`: puts every step back at its old position.

    `order` is checked to be a permutation of each row when it is concrete; under
    `jax.jit` it cannot be, and a step that a bad `order` misses holds the
    compacted row's first step.

    Examples:
      >>> x = Masked(jnp.array([[0, 1, 0, 2]]), jnp.array([[False, True, False, True]]))
      >>> back = uncompact(*compact(x))
      >>> back.data, back.mask
      (Array([[0, 1, 0, 2]], dtype=int32), Array([[False,  True, False,  True]], dtype=bool))
    """
    data, mask = _array_masked(x)
    order = as_array(order, "order")
    if order.shape != mask.shape or not jnp.issubdtype(order.dtype, jnp.integer):
        raise ValueError(
            f"`order` must be the integer (B, T) array that `compact` returned, of shape "
            f"{mask.shape}; got {order.dtype} of shape {order.shape}."
        )
    if not isinstance(order, jax.core.Tracer):
        steps = np.arange(mask.shape[1])
        if not np.all(np.sort(np.asarray(order), axis=1) == steps):
            raise ValueError(
                "`order` must hold a permutation of the time steps 0..T-1 in each row, as "
                "`compact` returns it; got rows that repeat or miss steps."
            )
    inverse = inverse_permutation(order.astype(jnp.int32))
    return Masked(take_steps(data, inverse), take_steps(mask, inverse))


def window_mask(
    mask: Any,
    kernel_size: int,
    strides: int = 1,
    padding: str = "valid",
    dilation: int = 1,
) -> jax.Array:
    """The output mask of a 1-D convolution or pooling window over time.

    With "valid", an output step is real when every step its window reads is real,
    so a post-padded row of length L keeps the outputs the layer gives on the
    unpadded sequence. With "same" and "causal" (Keras `Conv1D`: the window ends at
    the output's step), output step t is real when input step `t * strides` is real:
    a post-padded row of length L keeps ceil(L / strides) outputs, as many as on the
    unpadded sequence. With zeroed padding (e.g. `Masked.filled(0)`) their values
    equal those on the unpadded sequence for "causal", and for "same" with
    `strides=1` (XLA's "same" padding depends on the padded length).

    Args:
      mask: bool `(B, T)`, True = real step; the full mask, since its time axis is
        the input length (broadcast a `(B, 1)` mask to `(B, T)` first).
      kernel_size, strides, dilation: the window's static sizes.
      padding: "valid", "same" or "causal", as in the layer.

    Returns:
      bool `(B, T_out)` with T_out the layer's output length.

    Examples:
      >>> window_mask(jnp.array([[True, True, True, True, False]]), 2, strides=2)
      Array([[ True,  True]], dtype=bool)
    """
    mask = as_bool_mask(mask)
    check_rank(mask, "mask", 2, "(B, T)")
    kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
    strides = check_int(strides, "strides", minimum=1)
    dilation = check_int(dilation, "dilation", minimum=1)
    check_choice(padding, "padding", ("valid", "same", "causal"))
    if padding != "valid":
        return mask[:, ::strides]
    return lax.reduce_window(
        mask, True, lax.bitwise_and, (1, kernel_size), (1, strides), "VALID",
        window_dilation=(1, dilation),
    )


def attention_mask(
    query_mask: Any, key_mask: Any = None, *, causal: bool = False
) -> jax.Array:
    """An attention mask from padding masks, for `jax.nn.dot_product_attention` and nnx.

    Query step t may attend key step s when both are real (and `s <= t` if `causal`),
    the rule of Keras `MultiHeadAttention`.

    Args:
      query_mask: bool `(B, T)`, True = real step (the full mask: T is read from it).
      key_mask: bool `(B, S)`; `None` reuses `query_mask` (self-attention). A batch
        axis of size 1 broadcasts.
      causal: also forbid attending to later steps (a Python bool: it changes the
        computation, so it cannot be traced).

    Returns:
      bool `(B, 1, T, S)`: pass as `mask=` to `jax.nn.dot_product_attention` (which
      broadcasts the head axis) or to `flax.nnx.MultiHeadAttention`.

    Attention multiplies the weights by the values, and 0 x NaN is NaN: fill padded
    keys and values first (`Masked(v, key_mask).filled(0).data`). A fully masked
    query row gets uniform weights there; its output is padding, never read.

    Examples:
      >>> attention_mask(jnp.array([[True, True, False]]), causal=True)[0, 0]
      Array([[ True, False, False],
             [ True,  True, False],
             [False, False, False]], dtype=bool)
    """
    causal = check_bool(causal, "causal")
    query_mask = as_bool_mask(query_mask, "query_mask")
    check_rank(query_mask, "query_mask", 2, "(B, T)")
    key_mask = query_mask if key_mask is None else as_bool_mask(key_mask, "key_mask")
    check_rank(key_mask, "key_mask", 2, "(B, S)")
    if 1 not in (key_mask.shape[0], query_mask.shape[0]) and (
        key_mask.shape[0] != query_mask.shape[0]
    ):
        raise ValueError(
            f"`key_mask` batch size must match `query_mask`'s ({query_mask.shape[0]}) or be "
            f"1; got shape {key_mask.shape}."
        )
    allowed = query_mask[:, :, None] & key_mask[:, None, :]
    if causal:
        allowed = allowed & jnp.tri(query_mask.shape[1], key_mask.shape[1], dtype=bool)[None]
    return allowed[:, None]
