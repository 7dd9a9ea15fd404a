"""The LSTM on cuDNN (`jax.experimental.rnn`), for any mask layout: `lstm(..., use_cudnn=True)`.

cuDNN runs right-padded rows given their lengths, and fails on rows of length 0.
This path keeps the masking rules of the scan (`_driver.run`) around it:

1. Compaction (`_layout`): each row's real steps, in processing order, to the
   front, so pre-padded and gappy masks and `reverse=True` become right padding.
   Steps past a row's length are zero-filled (NaN in the padding never enters).
2. cuDNN on the compacted rows, with lengths clipped to at least 1; a row of length
   0 then gets its initial state back (and so zero gradients from its dummy step).
3. The outputs at input positions, as in the scan (`_layout.outputs_at_inputs`).

cuDNN computes in float32 here with TF32 off (`precision="highest"`), so it agrees
with the scan to float32 rounding. It needs a CUDA GPU, Keras' default activations
(tanh, sigmoid) and float32 state; `check_cudnn` says what is missing.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._layout import compacted_inputs, compaction, outputs_at_inputs
from ._activations import ACTIVATIONS
from ._cells import KerasCell, LSTMCell


def cudnn_weights(params: dict[str, Any]) -> jax.Array:
    """Keras-layout LSTM params as cuDNN's flat vector: W_ih (4H, D), W_hh (4H, H), b_ih, b_hh.

    The gate order i, f, g, o is Keras' i, f, c, o; Keras' one bias goes in b_ih.
    """
    kernel, recurrent = params["kernel"], params["recurrent_kernel"]
    bias = params["bias"]
    bias = jnp.zeros(kernel.shape[1], kernel.dtype) if bias is None else bias
    parts = [kernel.T.ravel(), recurrent.T.ravel(), bias, jnp.zeros_like(bias)]
    return jnp.concatenate(parts).astype(jnp.float32)


def cudnn_unavailable() -> str | None:
    """Why cuDNN's LSTM cannot run here (no CUDA GPU backend), or `None`."""
    from jax.experimental import rnn

    backend = jax.default_backend()
    if backend != "gpu" or getattr(rnn, "gpu_rnn", None) is None:
        return f"it needs a CUDA GPU backend with cuDNN; the default backend is {backend!r}"
    return None


def check_cudnn(cell: KerasCell, dtype: Any, *, recurrent_dropout: float = 0.0) -> None:
    """Raises `ValueError` unless `use_cudnn=True` can run `cell` in `dtype` here."""
    problems = []
    if recurrent_dropout:
        problems.append(f"cuDNN has no recurrent dropout (recurrent_dropout={recurrent_dropout})")
    if not isinstance(cell, LSTMCell):
        problems.append(f"cuDNN runs only the LSTM, not {cell.name}")
    elif (cell.activation, cell.recurrent_activation) != (
        ACTIVATIONS["tanh"],
        ACTIVATIONS["sigmoid"],
    ):
        problems.append("it runs only activation='tanh' with recurrent_activation='sigmoid'")
    if jnp.dtype(dtype) != jnp.float32:
        problems.append(f"it computes in float32, not {jnp.dtype(dtype)} (float64 `x` or state)")
    reason = cudnn_unavailable()
    if reason:
        problems.append(reason)
    if problems:
        raise ValueError(
            "`use_cudnn=True` cannot run here: " + "; ".join(problems) + ". "
            "Pass `use_cudnn=False` (the default) for the masked scan, which runs everywhere."
        )


def cudnn_lstm(
    x: jax.Array, h0: jax.Array, c0: jax.Array, weights: jax.Array, lengths: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One right-padded LSTM layer on cuDNN: x `(B, T, D)`, lengths `(B,)` >= 1 -> y, h, c."""
    from jax.experimental import rnn

    features, hidden = x.shape[-1], h0.shape[-1]
    y, h_n, c_n = rnn.lstm(
        x, h0[None], c0[None], weights, lengths, features, hidden, 1, 0.0, False,
        precision=jax.lax.Precision.HIGHEST,
    )  # fmt: skip
    return y, h_n[0], c_n[0]


@functools.partial(jax.jit, static_argnames=("reverse", "zero_output_for_mask"))
def run_lstm_cudnn(
    params: dict[str, Any],
    x: jax.Array,
    mask: jax.Array,
    state: tuple[jax.Array, jax.Array],
    *,
    reverse: bool,
    zero_output_for_mask: bool,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """The LSTM on cuDNN: x `(B, T, D)`, mask `(B, T)`, state `(h, c)` `(B, H)`."""
    h0, c0 = state
    batch, steps, _ = x.shape
    if steps == 0 or batch == 0:  # nothing to run: the initial state, no outputs
        return jnp.zeros((batch, steps, h0.shape[-1]), x.dtype), state
    compacted = compaction(mask, reverse=reverse)
    x_c = compacted_inputs(x.astype(jnp.float32), compacted)  # (B, T, D): real steps first
    lengths = compacted.lengths
    y, h_n, c_n = cudnn_lstm(x_c, h0, c0, cudnn_weights(params), jnp.maximum(lengths, 1))
    empty = (lengths == 0)[:, None]  # ran one dummy step: give back the initial state
    final = (jnp.where(empty, h0, h_n), jnp.where(empty, c0, c_n))
    outputs = outputs_at_inputs(
        y, mask, compacted, h0, zero_output_for_mask=zero_output_for_mask
    )
    return outputs.astype(x.dtype), final
