"""Flax NNX layers with Keras-style mask propagation; the public surface is `masking_jax.nnx`.

Modules, one job each:

- `_protocol`: the mask protocol (`call_with_mask`, `POSITIONWISE_MODULES`) and
  `Sequential`, which threads masks. The `Masked`-input helpers every layer uses
  (`split_masked`, `unpack`) live in `masking_jax._layer_calls`, shared with Linen.
- `_mask_wrappers`: `PassMask` and `DropMask`, which declare what a module that knows
  nothing of masks does with one.
- `_arguments`: the argument checks of these layers, on top of `masking_jax._checks`.
- `_mask_makers`: layers that make a mask: `Embedding(mask_zero=True)`, `Masking`.
- `_temporal`: layers that consume or reshape masks along time: global pooling,
  `TemporalSoftmax`, `TemporalSplit`, `TemporalConcat`.
- `_recurrent`: `SimpleRNN`, `LSTM`, `GRU` over the core kernels, and `Bidirectional`.
- `_any_cell`: `RNN(cell)`, any Flax NNX cell through `masking_jax.rnn`.
- `_rnn_options`: what the recurrent layers share: dropout from `rngs` in training,
  and `RecurrentState`, the state a `stateful` layer keeps between calls.
- `_attention`: `MultiHeadAttention`, its attention mask from the padding masks.
- `_batch_norm`: `BatchNorm`, statistics over real steps only.
- `_conv`: `Conv1D`, with the window's output mask.
- `_keras_weights`: `load_keras_weights`, copying Keras 3 weights into these modules.
"""
