"""Error catalogue of `masking_jax.linen`: each bad argument raises an error naming the user's
argument. `BAD_CALLS` are the layers' own cases; `FUZZ_CASES` the ones its fuzz harness found."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import masking_jax as mj
from masking_jax import linen as ml

B, T, D, H = 3, 5, 2, 4  # the shapes of test_linen.py
X, MASK = jnp.ones((B, T, D)), jnp.ones((B, T), bool)
X_FUZZ = jnp.ones((2, 3, 2))  # the fuzz harness's shape
KEY = jax.random.key(0)


class NoCarryCell(nn.Module):
    @nn.compact
    def __call__(self, carry, x_t):
        return carry, x_t


BAD_CALLS = [
    (lambda: ml.RNN("lstm"), TypeError, "`cell` must be a Flax Linen cell module"),
    (lambda: ml.RNN(nn.GRUCell(H), reverse=1), TypeError, "`reverse` must be a Python bool"),
    (lambda: ml.RNN(nn.GRUCell(H), unroll=0), ValueError, "`unroll` must be >= 1"),
    (lambda: ml.RNN(nn.GRUCell(H)).init(KEY, X, mask=MASK, seq_lengths=[1] * B),
     TypeError, "either `mask=`"),
    (lambda: ml.RNN(nn.GRUCell(H)).init(KEY, X, seq_lengths=[1, 2]),
     ValueError, r"`seq_lengths` must have shape \(B,\) = \(3,\)"),
    (lambda: ml.RNN(nn.GRUCell(H)).init(KEY, X, mask=MASK.astype(int)),
     TypeError, r"`mask` must be a boolean array .*astype\(bool\)"),
    (lambda: ml.RNN(nn.GRUCell(H)).init(KEY, X[0]), ValueError, "`x` must be 3-D"),
    (lambda: ml.RNN(NoCarryCell()).init(KEY, X), TypeError,
     "has no `initialize_carry`; pass `initial_carry="),
    (lambda: ml.RNN(nn.GRUCell(H)).init(KEY, mj.Masked(X, MASK), mask=MASK),
     TypeError, "carries its own mask"),
    (lambda: ml.LSTM(0), ValueError, "`features` must be >= 1"),
    (lambda: ml.LSTM(H, activation="gelu"), ValueError, "`activation` must be one of"),
    (lambda: ml.GRU(H, return_state="yes"), TypeError, "`return_state` must be a Python bool"),
    (lambda: ml.Bidirectional(nn.Dense(H)), TypeError, "`forward` must be a masking_jax.linen"),
    (lambda: ml.Bidirectional(ml.GRU(H), ml.GRU(H)), ValueError,
     "`backward.reverse` must be the opposite"),
    (lambda: ml.Bidirectional(ml.GRU(H), ml.GRU(H, reverse=True, return_sequences=True)),
     ValueError, "`backward.return_sequences` must equal"),
    (lambda: ml.Bidirectional(ml.GRU(H), merge_mode="max"), ValueError, "`merge_mode` must be"),
    (lambda: ml.Bidirectional(ml.GRU(H)).init(KEY, X, initial_state=X),
     TypeError, "`initial_state` must be a pair"),
]  # fmt: skip
FUZZ_CASES = [  # each was accepted, or named an internal, before
    (lambda: ml.GRU(3, reset_after=0), TypeError, "`reset_after` must be a Python bool"),
    (lambda: ml.LSTM(3, unit_forget_bias="yes"), TypeError, "`unit_forget_bias` must be"),
    (lambda: ml.LSTM(3, use_cudnn=None), TypeError, "`use_cudnn` must be a Python bool"),
    (lambda: ml.LSTM(3, param_dtype=jnp.int32), TypeError, "`param_dtype` must be a floating"),
    (lambda: ml.SimpleRNN(3, param_dtype=None), TypeError, "`param_dtype` must be a floating"),
    (lambda: ml.GlobalMaxPooling1D(keepdims="yes"), TypeError, "`keepdims` must be a Python"),
    (lambda: ml.GlobalAveragePooling1D(keepdims=None), TypeError, "`keepdims` must be a"),
    (lambda: ml.RNN(nn.GRUCell(3)).init(KEY, X_FUZZ, seq_lengths=jnp.array([1.0, 2.0])),
     TypeError, "`seq_lengths` must hold integers"),
    (lambda: ml.RNN(nn.GRUCell(3)).init(KEY, X_FUZZ, seq_lengths=[4, 1]),
     ValueError, r"`seq_lengths` must lie in \[0, maxlen=3\]"),
    (lambda: ml.RNN(nn.GRUCell(3)).init(KEY, X_FUZZ, seq_lengths=[[1], [1, 2]]),
     TypeError, "`seq_lengths` must be an integer array"),
    (lambda: ml.RNN(nn.GRUCell(3)).init(KEY, X_FUZZ, seq_lengths=[[1, 2]]),
     ValueError, r"`seq_lengths` must have shape \(B,\) = \(2,\)"),
    (lambda: ml.LSTM(3).apply(ml.LSTM(3).init(KEY, X_FUZZ), jnp.ones((2, 3, 4))),
     ValueError, "`x` must have 2 features"),
]  # fmt: skip


@pytest.mark.parametrize("call, error, match", BAD_CALLS + FUZZ_CASES)
def test_linen_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
