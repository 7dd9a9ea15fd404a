"""masking_jax: padding, explicit masks and masked RNN kernels for JAX.

Masks are boolean arrays, True = real step, False = padding, covering the
leading (batch, time) axes of batch-first data of shape (B, T, ...).
"""

from ._losses import masked_accuracy as masked_accuracy
from ._losses import masked_cross_entropy as masked_cross_entropy
from ._losses import masked_mse as masked_mse
from ._losses import reduce_masked_loss as reduce_masked_loss
from ._masks import Masked as Masked
from ._masks import attention_mask as attention_mask
from ._masks import compact as compact
from ._masks import concat_features as concat_features
from ._masks import concat_time as concat_time
from ._masks import mask_and as mask_and
from ._masks import mask_from_ids as mask_from_ids
from ._masks import mask_from_value as mask_from_value
from ._masks import mask_or as mask_or
from ._masks import masking as masking
from ._masks import reverse_valid as reverse_valid
from ._masks import split_time as split_time
from ._masks import uncompact as uncompact
from ._masks import window_mask as window_mask
from ._ops import masked_count as masked_count
from ._ops import masked_max as masked_max
from ._ops import masked_mean as masked_mean
from ._ops import masked_min as masked_min
from ._ops import masked_softmax as masked_softmax
from ._ops import masked_std as masked_std
from ._ops import masked_sum as masked_sum
from ._ops import masked_var as masked_var
from ._padding import bucket_length as bucket_length
from ._padding import lengths_to_mask as lengths_to_mask
from ._padding import mask_to_lengths as mask_to_lengths
from ._padding import pad_masked as pad_masked
from ._padding import pad_sequences as pad_sequences

__version__ = "0.1.0"

# --- RNN kernels (masking_jax/_rnn) ---
from ._rnn._init import init_gru_params as init_gru_params
from ._rnn._init import init_lstm_params as init_lstm_params
from ._rnn._init import init_simple_rnn_params as init_simple_rnn_params
from ._rnn._kernels import gru as gru
from ._rnn._kernels import lstm as lstm
from ._rnn._kernels import rnn as rnn
from ._rnn._kernels import simple_rnn as simple_rnn
from ._rnn._layers import bidirectional as bidirectional
from ._rnn._layers import stacked_rnn as stacked_rnn
# --- end RNN kernels ---
