"""`MultiHeadAttention` whose attention mask comes from the padding masks, as in Keras.

Shape legend: B batch, T query steps, S key/value steps, D query features, N heads.
A mask is bool `(B, T)` or `(B, S)`, True = real step, False = padding.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .._layer_calls import zero_padding
from .._masks import Masked, attention_mask
from ._arguments import (
    check_bool,
    check_optional_size,
    check_param_dtype,
    check_rate,
    check_rngs,
    check_sequence_input,
    check_size,
)


class MultiHeadAttention(nnx.Module):
    """Multi-head attention over the real steps (`keras.layers.MultiHeadAttention`).

    Query step t attends key step s when both are real (and `s <= t` with `causal`),
    the attention mask Keras builds from `query_mask`, `value_mask` and
    `use_causal_mask`. A missing mask counts as all real. Padded inputs are zeroed
    before the projections, so their content (even NaN) never reaches a result or a
    gradient. A query step with no key to attend (a padded query, or a real query
    whose keys are all padding) outputs zeros, with finite gradients; Keras outputs
    there a mean over every key, padding included.

    Args:
      num_heads: N.
      in_features: D, the query features.
      qkv_features: the query/key/value size over all heads, a multiple of N
        (Keras `key_dim * num_heads`); `in_features` by default.
      out_features: the output features (Keras `output_shape`); `in_features` by
        default.
      in_kv_features: the key/value input features; `in_features` by default.
      causal: forbid attending to later steps (Keras `use_causal_mask=True`); a
        Python bool.
      dropout_rate: dropout on the attention weights, active in training mode
        (`model.train()`, the default), off after `model.eval()`; drawn from `rngs`.
      use_bias: whether the projections have biases.
      param_dtype: dtype of the parameters.
      rngs: `nnx.Rngs` for the parameters (and the dropout stream, `"dropout"` or
        the default one).

    Parameters, those of `attention`, a `flax.nnx.MultiHeadAttention`:
    `attention.query.kernel` `(D, N, qkv_features / N)` and `.bias` `(N, qkv_features /
    N)`, the same for `key` and `value` with `in_kv_features` in place of D, and
    `attention.out.kernel` `(N, qkv_features / N, out_features)` and `.bias`
    `(out_features,)`: the shapes of Keras' `EinsumDense` kernels, so
    `load_keras_weights` copies them over.

    Call: `layer(x, mask=None)` for self-attention, `layer(x, kv, mask=None,
    kv_mask=None)` for cross-attention, with `x` `(B, T, D)`, `kv` `(B, S,
    in_kv_features)` and masks bool `(B, T)` and `(B, S)` (True = real step). Either
    input may be a `Masked`; for a `Masked` `x` the result is a `Masked`. Returns `(B,
    T, out_features)`; the output mask is the query mask (`compute_mask`).

    Integer and bool inputs are cast to the parameters' float dtype, as Keras casts them.

    Raises:
      TypeError: for options of the wrong type (a `causal` that is not a Python bool,
        a float size, ...), non-numeric or complex inputs, `kv_mask` without `kv`.
      ValueError: for sizes below 1, a `qkv_features` that `num_heads` does not
        divide, inputs of the wrong rank, features or batch size, and masks that do
        not fit their input.

    Examples:
      >>> mha = MultiHeadAttention(2, 4, rngs=nnx.Rngs(0))
      >>> x = jnp.ones((1, 3, 4)).at[0, 2].set(jnp.nan)  # the last step is padding
      >>> y = mha(x, mask=jnp.array([[True, True, False]]))
      >>> y.shape, bool(jnp.isfinite(y).all()), y[0, 2].tolist()
      ((1, 3, 4), True, [0.0, 0.0, 0.0, 0.0])
    """

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None = None,
        out_features: int | None = None,
        *,
        in_kv_features: int | None = None,
        causal: bool = False,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        num_heads = check_size(num_heads, "num_heads")
        in_features = check_size(in_features, "in_features")
        qkv_features = check_optional_size(qkv_features, "qkv_features")
        if (qkv_features or in_features) % num_heads:
            name = "qkv_features" if qkv_features else "in_features (the default qkv_features)"
            raise ValueError(
                f"`{name}` must be a multiple of `num_heads`, the features of each head "
                f"times the heads; got {qkv_features or in_features} for num_heads={num_heads}."
            )
        self.causal = check_bool(causal, "causal")
        self.attention = nnx.MultiHeadAttention(
            num_heads,
            in_features,
            qkv_features,
            check_optional_size(out_features, "out_features"),
            in_kv_features=check_optional_size(in_kv_features, "in_kv_features"),
            dropout_rate=check_rate(dropout_rate, "dropout_rate"),
            broadcast_dropout=False,  # one draw per weight, as Keras' Dropout
            deterministic=False,
            use_bias=check_bool(use_bias, "use_bias"),
            param_dtype=check_param_dtype(param_dtype),
            decode=False,
            rngs=check_rngs(rngs),
        )

    def _inputs(self, x: Any, kv: Any, mask: Any, kv_mask: Any):
        """`(q, q_mask, kv, kv_mask, was_masked)`, checked, masks `(B, T)` / `(B, S)` or None.

        `kv` is `q` in self-attention. Integer and bool inputs come back as floats.
        """
        q, q_mask, was_masked = self._input(x, mask, "x", "mask", "in_features")
        if kv is None:
            if kv_mask is not None:
                raise TypeError("`kv_mask` needs `kv`; in self-attention pass only `mask=`.")
            return q, q_mask, q, q_mask, was_masked
        kv, kv_mask, _ = self._input(kv, kv_mask, "kv", "kv_mask", "in_kv_features")
        if kv.shape[0] != q.shape[0]:
            raise ValueError(
                f"`kv` must have the batch size of `x` ({q.shape[0]}); got shape "
                f"{tuple(kv.shape)}."
            )
        return q, q_mask, kv, kv_mask, was_masked

    def _input(self, x: Any, mask: Any, name: str, mask_name: str, option: str):
        """One input `(B, T, D)` as floats, its mask broadcast to `(B, T)` (or None)."""
        x, mask, was_masked = check_sequence_input(
            x, mask, getattr(self.attention, option), self, name, mask_name, option
        )
        return x.astype(jnp.promote_types(x.dtype, self.attention.param_dtype)), mask, was_masked

    def _attention_mask(self, q, q_mask, kv, kv_mask) -> jax.Array | None:
        """bool `(B, 1, T, S)` from the padding masks and `causal`; `None` if all is allowed."""
        if q_mask is None and kv_mask is None and not self.causal:
            return None
        return attention_mask(
            jnp.ones(q.shape[:2], bool) if q_mask is None else q_mask,
            jnp.ones(kv.shape[:2], bool) if kv_mask is None else kv_mask,
            causal=self.causal,
        )

    def __call__(self, x: Any, kv: Any = None, mask: Any = None, kv_mask: Any = None) -> Any:
        q, q_mask, kv, kv_mask, was_masked = self._inputs(x, kv, mask, kv_mask)
        allowed = self._attention_mask(q, q_mask, kv, kv_mask)
        y = self.attention(zero_padding(q, q_mask), zero_padding(kv, kv_mask), mask=allowed)
        if allowed is not None:
            attends = jnp.any(allowed[:, 0], axis=-1)  # (B, T)
            y = jnp.where(attends[..., None], y, jnp.zeros((), y.dtype))
        return Masked(y, q_mask) if was_masked else y

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        """The output mask: the query mask (`x.mask` for a `Masked` `x`)."""
        return self._input(x, mask, "x", "mask", "in_features")[1]
