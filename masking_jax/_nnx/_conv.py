"""`Conv1D` that zeroes padding before convolving and carries the window's output mask.

Shape legend: B batch, T time steps, D input features, H output features (filters).
A mask is bool `(B, T)`, True = real step, False = padding.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_choice, check_int, check_rank
from .._masks import Masked, window_mask
from ._protocol import unpack

PADDINGS = ("valid", "same", "causal")


class Conv1D(nnx.Module):
    """A 1-D convolution over time with a mask (`keras.layers.Conv1D`, which drops the mask).

    Padded steps are zeroed before the convolution, so their content (even NaN)
    never reaches a result or a gradient, and the output equals Keras `Conv1D` on the
    zero-padded input. The output mask follows the window (`masking_jax.window_mask`):
    with "valid" an output step is real when every step it reads is real; with "same"
    and "causal" when the input step at its position (`t * strides`) is real. On a
    post-padded row the real outputs then equal those on the unpadded sequence for
    "valid", for "causal", and for "same" with `strides=1`.

    Args:
      in_features: D.
      out_features: H (Keras `filters`).
      kernel_size: the window length.
      strides: the step between windows.
      padding: "valid", "same" or "causal" (zeros on the left only, so output t reads
        steps up to t).
      dilation: the spacing of the steps a window reads (Keras `dilation_rate`).
      use_bias: whether the layer has `bias`.
      param_dtype: dtype of the parameters.
      rngs: `nnx.Rngs`; glorot-uniform `kernel` and zero `bias`, as in Keras.

    Parameters, named and shaped as in Keras: `kernel` `(kernel_size, D, H)`, `bias`
    `(H,)`.

    Call: `layer(x, mask=None)` with `x` `(B, T, D)` and `mask` bool `(B, T)`, True =
    real step; returns `(B, T_out, H)`, and `compute_mask(x, mask)` the output mask
    bool `(B, T_out)`. For a `Masked` input it returns a `Masked` holding both;
    `call_with_mask(layer, x, mask)` returns the pair `(y, output_mask)`.

    Raises:
      ValueError: for a `padding` not in "valid", "same", "causal", sizes below 1, or
        input of the wrong rank or features.

    Examples:
      >>> conv = Conv1D(1, 2, 2, rngs=nnx.Rngs(0))
      >>> x = jnp.ones((1, 4, 1)).at[0, 3].set(jnp.nan)  # the last step is padding
      >>> out = conv(Masked(x, jnp.array([[True, True, True, False]])))
      >>> out.data.shape, bool(jnp.isfinite(out.data).all()), out.mask
      ((1, 3, 2), True, Array([[ True,  True, False]], dtype=bool))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        strides: int = 1,
        padding: str = "valid",
        dilation: int = 1,
        use_bias: bool = True,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_features = check_int(in_features, "in_features", minimum=1)
        self.out_features = check_int(out_features, "out_features", minimum=1)
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.strides = check_int(strides, "strides", minimum=1)
        self.dilation = check_int(dilation, "dilation", minimum=1)
        check_choice(padding, "padding", PADDINGS)
        self.padding = padding
        init = nnx.initializers.glorot_uniform(in_axis=-2, out_axis=-1)
        shape = (self.kernel_size, self.in_features, self.out_features)
        self.kernel = nnx.Param(init(rngs.params(), shape, param_dtype))
        self.bias = nnx.Param(jnp.zeros((self.out_features,), param_dtype)) if use_bias else None

    def _convolve(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        dtype = jnp.promote_types(jnp.result_type(x.dtype, float), kernel.dtype)
        span = self.dilation * (self.kernel_size - 1)
        padding = [(span, 0)] if self.padding == "causal" else self.padding.upper()
        y = jax.lax.conv_general_dilated(
            x.astype(dtype),
            kernel.astype(dtype),
            window_strides=(self.strides,),
            padding=padding,
            rhs_dilation=(self.dilation,),
            dimension_numbers=("NWC", "WIO", "NWC"),
        )
        return y if self.bias is None else y + self.bias[...].astype(dtype)[None, None]

    def __call__(self, x: Any, mask: Any = None) -> Any:
        x, mask, was_masked = unpack(x, mask)
        check_rank(x, "x", 3, "(B, T, D)")
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"`x` must have {self.in_features} features (last axis); got shape "
                f"{tuple(x.shape)}."
            )
        y = self._convolve(x if mask is None else Masked(x, mask).filled(0).data)
        return Masked(y, self.compute_mask(x, mask)) if was_masked else y

    def compute_mask(self, x: Any, mask: Any = None) -> jax.Array | None:
        """The output mask bool `(B, T_out)` from `window_mask`, or `None` without a mask."""
        mask = unpack(x, mask)[1]
        if mask is None:
            return None
        return window_mask(mask, self.kernel_size, self.strides, self.padding, self.dilation)
