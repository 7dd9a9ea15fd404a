"""Benchmarks of the masked RNN kernels against the peers a user would pick instead.

Plain scripts; the entry point is `python benchmarks/rnn_speed.py` (see README.md).
Modules, one job each:

- `cases`: the benchmark cases (sizes, mask layouts) and the data of one problem.
- `peers`: one adapter per implementation (masking_jax, Flax, Keras, PyTorch, cuDNN),
  built from OUR parameters so every peer runs the same weights.
- `check`: the correctness comparison run before any timing.
- `timing`: warm-up, `block_until_ready`, repeats, min/median.
- `targets`: the project's speed and memory goals for the kernels, read off the results.
- `report`: the markdown table with ratios, the JSON file and the PNG plot.
- `rnn_speed`: the command line that ties them together.
- `compile_time`, `end_to_end`, `custom_cell`: stand-alone scripts for compile time,
  the real training job with cold caches, and a user's own cell padded to T=512.
"""
