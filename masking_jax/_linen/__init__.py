"""Flax Linen layers over the core kernels; the public surface is `masking_jax.linen`.

Modules, one job each:

- `_any_cell`: `RNN(cell)`, any Linen cell through `masking_jax.rnn`, with variables
  interchangeable with `flax.linen.RNN(cell)`'s.
- `_recurrent`: `SimpleRNN`, `LSTM`, `GRU` with Keras-named parameters over the core
  kernels, and `Bidirectional`.
- `_pooling`: `GlobalAveragePooling1D`, `GlobalMaxPooling1D` over the real steps.
"""
