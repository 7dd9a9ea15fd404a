"""The `Masked` pytree, mask makers, and mask transforms for layers that move steps.

A mask is boolean, True = real step, False = padding. Shape legend: B batch,
T time, D features, S key length.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._checks import align_mask, as_bool_mask, check_choice, check_int, check_rank
from ._layout import inverse_permutation, take_steps, valid_first_order


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

    Examples:
      >>> x = Masked(jnp.ones((2, 3, 4)), jnp.array([[True, True, False], [True, False, False]]))
      >>> x
      Masked(data=float32[2, 3, 4], mask=bool[2, 3])
      >>> jax.jit(lambda m: m.filled(0.0).data.sum())(x)
      Array(12., dtype=float32)
    """

    __slots__ = ("data", "mask")

    def __init__(self, data: Any, mask: Any):
        data_leaves, data_tree = jax.tree.flatten(data)
        mask_leaves, mask_tree = jax.tree.flatten(mask)
        if not data_leaves:
            raise ValueError("`data` of a Masked must hold at least one array; got none.")
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
        self.data = data
        self.mask = mask

    def tree_flatten(self):
        return (self.data, self.mask), None

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        del aux_data
        obj = object.__new__(cls)  # no checks: transformations pass placeholders through
        obj.data, obj.mask = children
        return obj

    def __repr__(self) -> str:
        def describe(leaf):
            shape = getattr(leaf, "shape", None)
            return leaf if shape is None else f"{leaf.dtype}{list(shape)}"

        return f"Masked(data={jax.tree.map(describe, self.data)}, " \
            f"mask={jax.tree.map(describe, self.mask)})"

    def filled(self, value: Any = 0) -> "Masked":
        """Returns a copy whose padded positions hold `value` (padding is not read)."""
        mask_tree = jax.tree.structure(self.mask)
        masks = (
            jax.tree.map(lambda _: self.mask, self.data)
            if mask_tree.num_nodes == 1 and mask_tree.num_leaves == 1
            else self.mask
        )
        data = jax.tree.map(
            lambda leaf, m: jnp.where(align_mask(m, leaf), leaf, jnp.asarray(value, leaf.dtype)),
            self.data,
            masks,
        )
        return Masked(data, self.mask)


def _array_masked(x: Any, name: str = "x") -> tuple[jax.Array, jax.Array]:
    """Unpacks a `Masked` with one array and a `(B, T)` mask, the input of time transforms."""
    if not isinstance(x, Masked):
        raise TypeError(f"`{name}` must be a Masked; got {type(x).__name__}.")
    if not isinstance(x.data, jax.Array | np.ndarray):
        raise TypeError(
            f"`{name}.data` must be one array here; got {type(x.data).__name__}. "
            "Apply the transform to each leaf with jax.tree.map."
        )
    mask = as_bool_mask(x.mask, f"{name}.mask")
    check_rank(mask, f"{name}.mask", 2, "(B, T)")
    return jnp.asarray(x.data), mask


def mask_from_value(x: Any, mask_value: Any = 0.0) -> jax.Array:
    """The Keras `Masking` rule: a step is padding when all its features equal `mask_value`.

    Args:
      x: data of shape `(B, T, D)` (or `(B, T, ..., D)`).
      mask_value: the value that marks padding.

    Returns:
      bool mask of shape `x.shape[:-1]`, `(B, T)` for `(B, T, D)` data: True where any
      feature differs from `mask_value`.

    Examples:
      >>> mask_from_value(jnp.array([[[1.0, 0.0], [0.0, 0.0]]]))
      Array([[ True, False]], dtype=bool)
    """
    if np.ndim(x) < 3:
        raise ValueError(
            f"`x` must have a feature axis, shape (B, T, D); got shape {np.shape(x)}. "
            "For token ids of shape (B, T) use `mask_from_ids(ids, pad_id)`; for scalar "
            "steps add the feature axis with `x[..., None]`."
        )
    return jnp.any(jnp.asarray(x) != mask_value, axis=-1)


def masking(x: Any, mask_value: Any = 0.0) -> Masked:
    """The Keras `Masking` layer as a function: masks steps equal to `mask_value` and zeroes them.

    Examples:
      >>> m = masking(jnp.array([[[1.0], [-1.0]]]), mask_value=-1.0)
      >>> m.data[0, :, 0], m.mask
      (Array([1., 0.], dtype=float32), Array([[ True, False]], dtype=bool))
    """
    mask = mask_from_value(x, mask_value)
    return Masked(x, mask).filled(0)


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
    dtype = getattr(ids, "dtype", None) or np.asarray(ids).dtype
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"`ids` must be integer token ids; got dtype {dtype}.")
    return jnp.asarray(ids) != pad_id


def _present_masks(masks: Sequence[Any]) -> tuple[list[jax.Array], jax.Array | None]:
    """The masks that are not None, checked against the widest of them (returned too)."""
    present = [as_bool_mask(m, f"masks[{i}]") for i, m in enumerate(masks) if m is not None]
    if not present:
        return [], None
    widest = max(present, key=lambda m: (m.ndim, m.size))  # (B, T) over (B, 1), in any order
    return [align_mask(m, widest, f"masks[{i}]", "the widest mask") for i, m in
            enumerate(present)], widest


def mask_and(*masks: Any) -> jax.Array | None:
    """Logical AND of masks; `None` (no mask) counts as all-True and is skipped.

    Masks may differ in rank: each must cover the leading axes of the widest.
    Returns `None` when every mask is `None`.

    Examples:
      >>> mask_and(jnp.array([True, True, False]), None, jnp.array([True, False, False]))
      Array([ True, False, False], dtype=bool)
    """
    present, widest = _present_masks(masks)
    return None if widest is None else functools.reduce(jnp.logical_and, present, widest)


def mask_or(*masks: Any) -> jax.Array | None:
    """Logical OR of masks; `None` (no mask) counts as all-True, so it makes the result all-True.

    Returns `None` when every mask is `None`.

    Examples:
      >>> mask_or(jnp.array([True, False, False]), jnp.array([False, False, True]))
      Array([ True, False,  True], dtype=bool)
    """
    present, widest = _present_masks(masks)
    if widest is None or len(present) < len(masks):
        return None if widest is None else jnp.ones(widest.shape, bool)
    return functools.reduce(jnp.logical_or, present, jnp.zeros(widest.shape, bool))


def split_time(x: Masked, indices_or_sections: int | Sequence[int]) -> list[Masked]:
    """Splits data and mask along time (the guide's `TemporalSplit`), like `jnp.split` on axis 1.

    Examples:
      >>> parts = split_time(Masked(jnp.zeros((1, 4)), jnp.array([[True, True, True, False]])), 2)
      >>> [p.mask for p in parts]
      [Array([[ True,  True]], dtype=bool), Array([[ True, False]], dtype=bool)]
    """
    data, mask = _array_masked(x)
    return [
        Masked(d, m)
        for d, m in zip(
            jnp.split(data, indices_or_sections, axis=1),
            jnp.split(mask, indices_or_sections, axis=1),
            strict=True,
        )
    ]


def _concat_inputs(items: Sequence[Any]) -> tuple[list[jax.Array], list[jax.Array]]:
    """Data and masks of `items`; a plain array has no mask, which counts as all-True."""
    if not items:
        raise ValueError("`items` must hold at least one Masked or array; got none.")
    datas, masks = [], []
    for i, item in enumerate(items):
        if isinstance(item, Masked):
            data, mask = _array_masked(item, f"items[{i}]")
        else:
            data = jnp.asarray(item)
            if data.ndim < 2:
                raise ValueError(f"`items[{i}]` must be (B, T, ...); got shape {data.shape}.")
            mask = jnp.ones(data.shape[:2], bool)
        datas.append(data)
        masks.append(mask)
    return datas, masks


def concat_time(items: Sequence[Any]) -> Masked:
    """Concatenates along time; an item without a mask (a plain array) counts as all real.

    Examples:
      >>> a = Masked(jnp.ones((1, 2, 3)), jnp.array([[True, False]]))
      >>> concat_time([a, jnp.zeros((1, 1, 3))]).mask
      Array([[ True, False,  True]], dtype=bool)
    """
    datas, masks = _concat_inputs(items)
    return Masked(jnp.concatenate(datas, axis=1), jnp.concatenate(masks, axis=1))


def concat_features(items: Sequence[Any]) -> Masked:
    """Concatenates along the last axis with the Keras `Concatenate` mask rule.

    A step is real when it is real in any input; an input without a mask (a plain
    array) counts as all real, so then every step is real.

    Examples:
      >>> a = Masked(jnp.ones((1, 2, 3)), jnp.array([[True, False]]))
      >>> b = Masked(jnp.ones((1, 2, 1)), jnp.array([[False, False]]))
      >>> concat_features([a, b]).data.shape, concat_features([a, b]).mask
      ((1, 2, 4), Array([[ True, False]], dtype=bool))
    """
    datas, masks = _concat_inputs(items)
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

    Examples:
      >>> x = Masked(jnp.array([[0, 1, 0, 2]]), jnp.array([[False, True, False, True]]))
      >>> back = uncompact(*compact(x))
      >>> back.data, back.mask
      (Array([[0, 1, 0, 2]], dtype=int32), Array([[False,  True, False,  True]], dtype=bool))
    """
    data, mask = _array_masked(x)
    order = jnp.asarray(order)
    if order.shape != mask.shape or not jnp.issubdtype(order.dtype, jnp.integer):
        raise ValueError(
            f"`order` must be the integer (B, T) array that `compact` returned, of shape "
            f"{mask.shape}; got {order.dtype} of shape {order.shape}."
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
      mask: bool `(B, T)`, True = real step.
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
      query_mask: bool `(B, T)`, True = real step.
      key_mask: bool `(B, S)`; `None` reuses `query_mask` (self-attention).
      causal: also forbid attending to later steps.

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
    query_mask = as_bool_mask(query_mask, "query_mask")
    check_rank(query_mask, "query_mask", 2, "(B, T)")
    key_mask = query_mask if key_mask is None else as_bool_mask(key_mask, "key_mask")
    check_rank(key_mask, "key_mask", 2, "(B, S)")
    if key_mask.shape[0] != query_mask.shape[0]:
        raise ValueError(
            f"`key_mask` batch size must match `query_mask`'s ({query_mask.shape[0]}); "
            f"got shape {key_mask.shape}."
        )
    allowed = query_mask[:, :, None] & key_mask[:, None, :]
    if causal:
        allowed = allowed & jnp.tri(query_mask.shape[1], key_mask.shape[1], dtype=bool)[None]
    return allowed[:, None]
