"""Layers that make a mask from their input: `Embedding(mask_zero=True)` and `Masking`.

Shape legend: B batch, T time steps, D features, V vocabulary. A mask is bool `(B, T)`,
True = real step, False = padding.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .._masks import Masked, mask_and, mask_from_ids, mask_from_value, masking


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
    mask for a `Masked` input). `compute_mask(ids, mask)` is
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
        self.num_embeddings = num_embeddings
        self.features = features
        self.mask_zero = bool(mask_zero)
        self.pad_id = int(pad_id)
        table = jax.random.uniform(
            rngs.params(), (num_embeddings, features), param_dtype, -0.05, 0.05
        )
        self.embedding = nnx.Param(table)

    def __call__(self, ids: Any) -> Any:
        if isinstance(ids, Masked):
            return Masked(self(ids.data), self.compute_mask(ids.data, ids.mask))
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"`ids` must be integer token ids (B, T); got dtype {ids.dtype}.")
        return jnp.take(self.embedding[...], ids, axis=0)

    def compute_mask(self, ids: Any, mask: Any = None) -> jax.Array | None:
        if not self.mask_zero:
            return mask
        return mask_and(mask_from_ids(ids, self.pad_id), mask)


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
        self.mask_value = mask_value

    def __call__(self, x: Any) -> Any:
        out = masking(x.data if isinstance(x, Masked) else x, self.mask_value)
        return out if isinstance(x, Masked) else out.data

    def compute_mask(self, x: Any, mask: Any = None) -> jax.Array:
        del mask
        return mask_from_value(x.data if isinstance(x, Masked) else x, self.mask_value)
