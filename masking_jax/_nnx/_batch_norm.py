"""`BatchNorm` whose batch statistics and moving averages see real steps only, as in Keras.

Shape legend: B batch, T time steps, D features. A mask is bool `(B, T)`, True = real
step, False = padding.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import as_array
from .._layer_calls import unpack, zero_padding
from .._masks import Masked
from .._ops import masked_mean, masked_var
from ._arguments import check_bool, check_float, check_param_dtype, check_rngs, check_size


class BatchNorm(nnx.Module):
    """Batch normalisation over the real steps (`keras.layers.BatchNormalization` with a mask).

    In training mode (`model.train()`, the default) the features are normalised with
    the mean and (biased) variance of the real steps of the batch, and the moving
    averages move towards them: `moving = momentum * moving + (1 - momentum) * batch`.
    In evaluation mode (`model.eval()`, which sets `use_running_average=True`, the
    `nnx.BatchNorm` convention) the moving averages are used. Padded steps never enter
    a statistic, so padding does not shift them as it does in an unmasked batch norm;
    they come out as zeros, and their content (even NaN) never reaches a result or a
    gradient. A batch with no real step at all leaves the moving averages unchanged
    (Keras would pull them towards 0) and outputs only zeros. Without a mask every
    step counts.

    Args:
      num_features: D, the size of the last axis.
      momentum: the moving averages' momentum (Keras' default 0.99).
      epsilon: added to the variance (Keras' default 1e-3).
      use_running_average: start in evaluation mode.
      param_dtype: dtype of the parameters and statistics.
      rngs: `nnx.Rngs` (unused: the parameters start at Keras' constants; required so
        the layer builds like every other).

    Parameters, named as in Keras so `load_keras_weights` copies them: `gamma` and
    `beta` `(D,)` (`nnx.Param`), `moving_mean` and `moving_variance` `(D,)`
    (`nnx.BatchStat`, not trained; update them by calling the layer in training mode
    inside `nnx.jit`, as for `nnx.BatchNorm`).

    Call: `layer(x, mask=None, *, use_running_average=None)` with `x` `(B, T, D)` (or
    any `(B, ..., D)`, or a `Masked`) and `mask` bool covering its leading axes, e.g.
    `(B, T)`, True = real step. `use_running_average` overrides the mode for one
    call. Statistics are taken over every axis but the last. The mask passes on.
    Integer and bool inputs are cast to float32 (or the wider float of `x`).

    Raises:
      TypeError: for options of the wrong type (a float `num_features`, a string
        flag, ...), non-numeric or complex `x`, a non-boolean mask.
      ValueError: for a `num_features` below 1, a `momentum` outside [0, 1], an
        `epsilon` not > 0, an `x` without the features last, a mask that does not
        cover the leading axes of `x`.

    Examples:
      >>> bn = BatchNorm(1, rngs=nnx.Rngs(0))
      >>> x = jnp.array([[[1.0], [3.0], [jnp.nan]]])
      >>> bn(x, mask=jnp.array([[True, True, False]]))[0, :, 0]
      Array([-0.9995, 0.9995, 0. ], dtype=float32)
      >>> bn.moving_mean[...]  # 0.99 * 0 + 0.01 * 2
      Array([0.02], dtype=float32)
    """

    supports_masking = True

    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        use_running_average: bool = False,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_rngs(rngs)
        self.num_features = check_size(num_features, "num_features")
        self.momentum = check_float(momentum, "momentum", "in [0, 1]", lambda v: 0.0 <= v <= 1.0)
        self.epsilon = check_float(epsilon, "epsilon", "> 0", lambda v: v > 0.0)
        self.use_running_average = check_bool(use_running_average, "use_running_average")
        param_dtype = check_param_dtype(param_dtype)
        shape = (self.num_features,)
        self.gamma = nnx.Param(jnp.ones(shape, param_dtype))
        self.beta = nnx.Param(jnp.zeros(shape, param_dtype))
        self.moving_mean = nnx.BatchStat(jnp.zeros(shape, param_dtype))
        self.moving_variance = nnx.BatchStat(jnp.ones(shape, param_dtype))

    def _batch_statistics(self, x: jax.Array, mask: Any) -> tuple[jax.Array, jax.Array]:
        """`(mean, variance)` `(D,)` over the real steps; moves the moving averages."""
        axes = tuple(range(x.ndim - 1))
        if mask is None:
            mean, variance, has_real = jnp.mean(x, axes), jnp.var(x, axes), True
        else:
            mean, variance = masked_mean(x, mask, axes), masked_var(x, mask, axes)
            has_real = jnp.any(mask)
        for stat, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moved = self.momentum * stat[...] + (1.0 - self.momentum) * batch
            stat[...] = jnp.where(has_real, moved, stat[...]).astype(stat.dtype)
        return mean, variance

    def __call__(self, x: Any, mask: Any = None, *, use_running_average: bool | None = None):
        x, mask, was_masked = unpack(x, mask)
        x = as_array(x, "x", complex_ok=False)
        if use_running_average is not None:
            use_running_average = check_bool(use_running_average, "use_running_average")
        if x.ndim < 2 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"`x` must be (B, ..., {self.num_features}) with the features last; got "
                f"shape {tuple(x.shape)}."
            )
        x = zero_padding(x, mask)
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # statistics in float32 at least
        if self.use_running_average if use_running_average is None else use_running_average:
            mean, variance = self.moving_mean[...], self.moving_variance[...]
        else:
            mean, variance = self._batch_statistics(x, mask)
        scale = jax.lax.rsqrt(variance + self.epsilon) * self.gamma[...]
        per_feature = (1,) * (x.ndim - 1) + (self.num_features,)  # broadcast over B, T, ...
        y = (x - mean.reshape(per_feature)) * scale.reshape(per_feature)
        y = y + self.beta[...].reshape(per_feature)
        y = zero_padding(y, mask)
        return Masked(y, mask) if was_masked else y
