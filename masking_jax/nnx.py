"""Flax NNX layers that carry masks explicitly, the way Keras models carry them implicitly.

Shape legend: B batch, T time steps, D input features, H hidden units, V vocabulary.
A mask is boolean `(B, T)`, True = real step, False = padding.

The mask protocol, applied by `call_with_mask` and so by `Sequential`:

- a layer that consumes a mask takes `mask=` in `__call__` (it gets the current mask;
  Flax's own modules never do, as their `mask` arguments mean something else);
- a layer that changes the mask defines `compute_mask(x, mask)`, called on the layer's
  input and input mask, returning the output mask (or `None`);
- a layer that passes the mask on unchanged sets `supports_masking = True`; the
  position-wise Flax modules `nnx.Linear`, `nnx.Dropout`, `nnx.LayerNorm` and
  `nnx.RMSNorm` (`POSITIONWISE_MODULES`) count as such, and so does a plain callable
  that is not an `nnx.Module` (`jax.nn.relu`, `jnp.tanh`, a lambda), which counts as
  elementwise;
- a layer that takes `mask=` and declares nothing else ends the mask (it has read it);
- a mask never disappears unnoticed: one reaching any other module (`nnx.Conv`, a
  custom module, a callable with `supports_masking = False`) raises `TypeError` naming
  it (Keras 2 raised there too). Say what the module does: `PassMask(module)` (it acts
  on each step alone, the mask passes on) or `DropMask(module)` (the mask ends there,
  as Keras 3 does with a warning).

Every layer also takes a `masking_jax.Masked` in place of `(x, mask)` and then returns
`Masked` sequences; once the mask ends (an RNN returning its last output, pooling) the
output is a plain array, in single layers and in `Sequential` alike. Parameters are
`nnx.Param`s named and shaped as in Keras 3 (`embedding`, `kernel`, `recurrent_kernel`,
`bias`, `gamma`, `beta`; `MultiHeadAttention` holds a `flax.nnx.MultiHeadAttention`
whose kernels have Keras' shapes), so `load_keras_weights` copies a trained Keras layer
over. This module imports flax; the core of `masking_jax` does not.
"""

from ._nnx._any_cell import RNN as RNN
from ._nnx._attention import MultiHeadAttention as MultiHeadAttention
from ._nnx._batch_norm import BatchNorm as BatchNorm
from ._nnx._conv import Conv1D as Conv1D
from ._nnx._keras_weights import load_keras_weights as load_keras_weights
from ._nnx._mask_makers import Embedding as Embedding
from ._nnx._mask_makers import Masking as Masking
from ._nnx._mask_wrappers import DropMask as DropMask
from ._nnx._mask_wrappers import PassMask as PassMask
from ._nnx._protocol import POSITIONWISE_MODULES as POSITIONWISE_MODULES
from ._nnx._protocol import Sequential as Sequential
from ._nnx._protocol import call_with_mask as call_with_mask
from ._nnx._recurrent import GRU as GRU
from ._nnx._recurrent import LSTM as LSTM
from ._nnx._recurrent import Bidirectional as Bidirectional
from ._nnx._recurrent import SimpleRNN as SimpleRNN
from ._nnx._rnn_options import RecurrentState as RecurrentState
from ._nnx._temporal import GlobalAveragePooling1D as GlobalAveragePooling1D
from ._nnx._temporal import GlobalMaxPooling1D as GlobalMaxPooling1D
from ._nnx._temporal import TemporalConcat as TemporalConcat
from ._nnx._temporal import TemporalSoftmax as TemporalSoftmax
from ._nnx._temporal import TemporalSplit as TemporalSplit

__all__ = [
    "GRU",
    "LSTM",
    "POSITIONWISE_MODULES",
    "RNN",
    "BatchNorm",
    "Bidirectional",
    "Conv1D",
    "DropMask",
    "Embedding",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "Masking",
    "MultiHeadAttention",
    "PassMask",
    "RecurrentState",
    "Sequential",
    "SimpleRNN",
    "TemporalConcat",
    "TemporalSoftmax",
    "TemporalSplit",
    "call_with_mask",
    "load_keras_weights",
]
