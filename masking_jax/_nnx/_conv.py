"""`Conv1D` that zeroes padding before convolving and carries the window's output mask.

Shape legend: B batch, T time steps, D input features, H output features (filters),
T_out output steps. A mask is bool `(B, T)`, True = real step, False = padding.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_choice
from .._layer_calls import zero_padding
from .._masks import Masked, window_mask
from ._arguments import (
    check_bool,
    check_param_dtype,
    check_rngs,
    check_sequence_input,
    check_size,
)

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

    Integer and bool inputs are cast to the parameters' float dtype, as Keras casts them.

    Raises:
      TypeError: for options of the wrong type (a float size, a string flag, ...),
        non-numeric or complex `x`, a non-boolean mask.
      ValueError: for a `padding` not in "valid", "same", "causal", sizes below 1,
        input of the wrong rank or features, a mask that does not fit `x`.

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
        self.in_features = check_size(in_features, "in_features")
        self.out_features = check_size(out_features, "out_features")
        self.kernel_size = check_size(kernel_size, "kernel_size")
        self.strides = check_size(strides, "strides")
        self.dilation = check_size(dilation, "dilation")
        check_choice(padding, "padding", PADDINGS)
        self.padding = padding
        use_bias = check_bool(use_bias, "use_bias")
        param_dtype = check_param_dtype(param_dtype)
        init = nnx.initializers.glorot_uniform(in_axis=-2, out_axis=-1)
        shape = (self.kernel_size, self.in_features, self.out_features)
        self.kernel = nnx.Param(init(check_rngs(rngs).params(), shape, param_dtype))
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
        x, mask, was_masked = self._inputs(x, mask)
        y = self._convolve(zero_padding(x, mask))
        return Masked(y, self._output_mask(mask)) if was_masked else y

    def _inputs(self, x: Any, mask: Any) -> tuple[jax.Array, jax.Array | None, bool]:
        """`(x, mask, was_masked)`: `x` checked `(B, T, D)`, the mask broadcast to `(B, T)`."""
        return check_sequence_input(x, mask, self.in_features, self)

    def _output_mask(self, mask: jax.Array | None) -> jax.Array | None:
        if mask is None:
            return None
        return window_mask(mask, self.kernel_size, self.strides, self.padding, self.dilation)

    def compute_mask(self, x: Any, mask: Any = None) -> jax.Array | None:
        """The output mask bool `(B, T_out)` from `window_mask`, or `None` without a mask."""
        return self._output_mask(self._inputs(x, mask)[1])
