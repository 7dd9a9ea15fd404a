"""Masked recurrent kernels (SimpleRNN, LSTM, GRU) in the Keras 3 weight layout.

Modules, one job each:

- `_activations`: activation names (Keras spelling) to functions.
- `_cells`: the cells' math in the Keras layout (input projection, one step).
- `_validate`: argument checks specific to the kernels (x, params, states, dtypes).
- `_scan`: the masked scan driver shared by every cell (compaction of any mask layout,
  chunk and row skipping, custom VJP) and the plain `lax.scan` driver it is tested against.
- `_kernels`: the public kernels `simple_rnn`, `lstm`, `gru`.
- `_init`: parameter initialisers matching the Keras defaults.
- `_layers`: `bidirectional` and `stacked_rnn`, built from the kernels.
"""
