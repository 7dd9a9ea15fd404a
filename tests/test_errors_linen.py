"""Error catalogue of `masking_jax.linen`: the cases its fuzz harness found, each naming
the user's argument."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from masking_jax import linen as ml

X = jnp.ones((2, 3, 2))
KEY = jax.random.key(0)
CASES = [  # (call, error, message): each was accepted, or named an internal, before
    (lambda: ml.GRU(3, reset_after=0), TypeError, "`reset_after` must be a Python bool"),
    (lambda: ml.LSTM(3, unit_forget_bias="yes"), TypeError, "`unit_forget_bias` must be"),
    (lambda: ml.LSTM(3, use_cudnn=None), TypeError, "`use_cudnn` must be a Python bool"),
    (lambda: ml.LSTM(3, param_dtype=jnp.int32), TypeError, "`param_dtype` must be a floating"),
    (lambda: ml.SimpleRNN(3, param_dtype=None), TypeError, "`param_dtype` must be a floating"),
    (lambda: ml.GlobalMaxPooling1D(keepdims="yes"), TypeError, "`keepdims` must be a Python"),
    (lambda: ml.GlobalAveragePooling1D(keepdims=None), TypeError, "`keepdims` must be a"),
    (lambda: ml.RNN(nn.GRUCell(3)).init(KEY, X, seq_lengths=jnp.array([1.0, 2.0])),
     TypeError, "`seq_lengths` must hold integers"),
    (lambda: ml.RNN(nn.GRUCell(3)).init(KEY, X, seq_lengths=[4, 1]),
     ValueError, r"`seq_lengths` must lie in \[0, maxlen=3\]"),
    (lambda: ml.RNN(nn.GRUCell(3)).init(KEY, X, seq_lengths=[[1], [1, 2]]),
     TypeError, "`seq_lengths` must be an integer array"),
    (lambda: ml.RNN(nn.GRUCell(3)).init(KEY, X, seq_lengths=[[1, 2]]),
     ValueError, r"`seq_lengths` must have shape \(B,\) = \(2,\)"),
    (lambda: ml.LSTM(3).apply(ml.LSTM(3).init(KEY, X), jnp.ones((2, 3, 4))),
     ValueError, "`x` must have 2 features"),
]  # fmt: skip


@pytest.mark.parametrize("call, error, match", CASES)
def test_linen_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
