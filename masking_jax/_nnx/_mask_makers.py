"""Layers that make a mask from their input: `Embedding(mask_zero=True)` and `Masking`.

Shape legend: B batch, T time steps, D features, V vocabulary. A mask is bool `(B, T)`,
True = real step, False = padding.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._masks import Masked, combine_masks, mask_from_ids, mask_from_value, masking
from ._arguments import (
    check_bool,
    check_layer_mask,
    check_mask_value,
    check_param_dtype,
    check_rngs,
    check_signed_int,
    check_size,
)


class Embedding(nnx.Module):
    """Token embedding with a Keras-style padding mask (`keras.layers.Embedding`).

    Args:
      num_embeddings: V, the vocabulary size.
      features: the embedding size D.
      mask_zero: make the mask from the ids: a step is padding when its id equals
        `pad_id`.
      pad_id: the padding id (0 as in Keras).
      param_dtype: dtype of the table.
      rngs: `nnx.Rngs`; the table `embedding` `(V, D)` is drawn from U(-0.05, 0.05) as
        in Keras.

    `__call__(ids)` maps int `(B, T)` ids to `(B, T, D)` (a `Masked` with the output
    mask for a `Masked` input). Ids must lie in `[0, V)` (or equal `pad_id` with
    `mask_zero`): concrete ids outside raise `ValueError`; under `jax.jit`, where their
    values are unknown, they embed to zero vectors (no row is read, no gradient flows),
    as does a `pad_id` outside `[0, V)`. `compute_mask(ids, mask)` is
    `ids != pad_id` (True = real step) AND'ed with an incoming mask when `mask_zero`,
    else the incoming mask (Keras has none there).

    Examples:
      >>> emb = Embedding(10, 4, mask_zero=True, rngs=nnx.Rngs(0))
      >>> ids = jnp.array([[3, 5, 0]])
      >>> emb(ids).shape, emb.compute_mask(ids)
      ((1, 3, 4), Array([[ True,  True, False]], dtype=bool))
    """

    supports_masking = True

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        mask_zero: bool = False,
        pad_id: int = 0,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.num_embeddings = check_size(num_embeddings, "num_embeddings")
        self.features = check_size(features, "features")
        self.mask_zero = check_bool(mask_zero, "mask_zero")
        self.pad_id = check_signed_int(pad_id, "pad_id")
        table = jax.random.uniform(
            check_rngs(rngs).params(),
            (self.num_embeddings, self.features),
            check_param_dtype(param_dtype),
            -0.05,
            0.05,
        )
        self.embedding = nnx.Param(table)

    def __call__(self, ids: Any) -> Any:
        if isinstance(ids, Masked):
            return Masked(self(ids.data), self.compute_mask(ids.data, ids.mask))
        ids = self._check_ids(ids)
        vocabulary = self.num_embeddings
        in_range = (ids >= 0) & (ids < vocabulary)
        rows = jnp.take(self.embedding[...], jnp.clip(ids, 0, vocabulary - 1), axis=0)
        return jnp.where(in_range[..., None], rows, jnp.zeros((), rows.dtype))

    def _check_ids(self, ids: Any) -> jax.Array:
        """`ids` as an integer array; concrete ids out of `[0, V)` (not `pad_id`) raise."""
        # the values, read before any cast to int32 (which would wrap), unless traced
        values = None if isinstance(ids, jax.core.Tracer) else np.asarray(ids)
        dtype = ids.dtype if values is None else values.dtype
        if not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(f"`ids` must be integer token ids (B, T); got dtype {dtype}.")
        if values is not None:
            bad = (values < 0) | (values >= self.num_embeddings)
            if self.mask_zero:
                bad &= values != self.pad_id
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"`ids` must lie in [0, num_embeddings={self.num_embeddings})"
                    + (f" or equal pad_id={self.pad_id}" if self.mask_zero else "")
                    + f"; got {values[where]} at position {where} ({int(bad.sum())} such "
                    "ids). Under jax.jit, where ids are not checked, they embed to zeros."
                )
        return jnp.asarray(ids)

    def compute_mask(self, ids: Any, mask: Any = None) -> jax.Array | None:
        mask = check_layer_mask(mask, ids, "mask", "ids")
        if not self.mask_zero:
            return mask
        ids_mask = mask_from_ids(ids, self.pad_id)
        return combine_masks(jnp.logical_and, (ids_mask, mask), ("ids", "mask"))[0]


class Masking(nnx.Module):
    """Masks the steps whose features all equal `mask_value` (`keras.layers.Masking`).

    Args:
      mask_value: the value that marks a padded step.

    `__call__(x)` returns `x` `(B, T, D)` with those steps zeroed (a `Masked` for a
    `Masked` input); `compute_mask(x, mask)` returns `any(x != mask_value, -1)` `(B, T)`,
    True = real step, ignoring the incoming mask as Keras does.

    Examples:
      >>> x = jnp.array([[[1.0, 2.0], [0.0, 0.0]]])
      >>> Masking()(x).shape, Masking().compute_mask(x)
      ((1, 2, 2), Array([[ True, False]], dtype=bool))
    """

    def __init__(self, mask_value: float = 0.0):
        self.mask_value = check_mask_value(mask_value)

    def __call__(self, x: Any) -> Any:
        out = masking(x.data if isinstance(x, Masked) else x, self.mask_value)
        return out if isinstance(x, Masked) else out.data

    def compute_mask(self, x: Any, mask: Any = None) -> jax.Array:
        del mask
        return mask_from_value(x.data if isinstance(x, Masked) else x, self.mask_value)
