"""Masked recurrent kernels: any cell, and SimpleRNN, LSTM, GRU in the Keras 3 layout.

Modules, one job each (the compaction of any mask layout, for cuDNN, lives in
`masking_jax/_layout.py`):

- `_contract`: the cell contract (`Cell`, `GatedCell`), `StepCell` (a user's step) and
  `ProjectedInputs` (a gated cell over inputs projected up front).
- `_cells`: SimpleRNN, LSTM, GRU as `GatedCell`s, with their Keras weight layout.
- `_activations`: activation names (Keras spelling) to functions.
- `_dropout`: input and recurrent dropout, one mask per sequence (`RecurrentDropout`).
- `_skip`: the chunked skipping skeleton that the forward and the backward pass share.
- `_packing`: a step's pytree as one array per dtype, for the scan's buffers.
- `_vjp`: the masked scan and its custom VJP, per cell kind (its "tape").
- `_driver`: `run`, the whole kernel after argument checks: inputs time-major, the
  scan, the outputs of skipped chunks filled in.
- `_cudnn`: the LSTM on cuDNN with the same masking rules (`use_cudnn=True`).
- `_validate`: argument checks specific to the kernels.
- `_kernels`: the public kernels `simple_rnn`, `lstm`, `gru` and `rnn` (any cell).
- `_init`: parameter initialisers matching the Keras defaults.
- `_layers`: `bidirectional` and `stacked_rnn`, built from the kernels.

Shape legend everywhere in the RNN code: B batch, T time steps, D input features,
H hidden units (outputs per step), G gates, N chunks of K steps.
"""
