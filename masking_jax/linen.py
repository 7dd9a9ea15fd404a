"""Flax Linen layers over masked sequences: a drop-in for `flax.linen.RNN` that takes any
mask layout, Keras-layout recurrent layers, `Bidirectional` and masked pooling.

Shape legend: B batch, T time steps, D input features, H hidden units. A mask is
boolean `(B, T)`, True = real step, False = padding, passed as `mask=` or carried by a
`masking_jax.Masked` input (sequence outputs then come back `Masked`).

- `RNN(cell)` runs any Linen cell (`nn.LSTMCell`, `nn.OptimizedLSTMCell`, `nn.GRUCell`,
  `nn.SimpleCell`, `nn.MGUCell` or yours) through `masking_jax.rnn`. Its variables are
  `nn.RNN(cell)`'s, so checkpoints carry over both ways; at real steps it gives what
  `nn.RNN(cell)(x, seq_lengths=...)` gives on right-padded data, and it takes pre-padded
  and gappy masks as well, skips padded steps and keeps NaN in the padding out of every
  result and gradient.
- `SimpleRNN`, `LSTM`, `GRU` hold `kernel`, `recurrent_kernel`, `bias` in the Keras 3
  layout, so `variables["params"]` goes straight into `masking_jax.simple_rnn` / `lstm`
  / `gru` (and Keras weights go straight in).
- `Bidirectional(forward, backward=None, merge_mode="concat")` runs any of those both
  ways; `GlobalAveragePooling1D` and `GlobalMaxPooling1D` pool over the real steps.

This module imports flax (`pip install "masking_jax[linen]"`); the core of `masking_jax`
does not.
"""

from ._linen._any_cell import RNN as RNN
from ._linen._pooling import GlobalAveragePooling1D as GlobalAveragePooling1D
from ._linen._pooling import GlobalMaxPooling1D as GlobalMaxPooling1D
from ._linen._recurrent import GRU as GRU
from ._linen._recurrent import LSTM as LSTM
from ._linen._recurrent import Bidirectional as Bidirectional
from ._linen._recurrent import SimpleRNN as SimpleRNN

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Bidirectional",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "SimpleRNN",
]
