"""Any mask layout becomes post-padding, and back: the one home of compaction.

cuDNN (which takes right-padded rows only) and the `compact` / `uncompact` /
`reverse_valid` transforms run on compacted rows: each row's real steps moved to
the front, in processing order (last to first with `reverse=True`), padding
after. Post-, pre-padded and gappy masks then run the same post-padded loop. (The
scan needs none of this: it runs every layout in place, `_rnn/_driver.py`.)

Shape legend: B batch, T time steps, D features, H hidden units. A mask is bool
`(B, T)`, True = real step, False = padding.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Compaction(NamedTuple):
    """Where each row's real steps go when moved to the front.

    Attributes:
        dest: int32 `(B, T)`, a permutation of each row: the compacted position of
            the step at each input position. The real steps go first, in processing
            order; the padded ones after them.
        lengths: int32 `(B,)`, real steps per row.
        count: int32 `(B, T)`, how many real steps are consumed once the step at each
            input position is done: a padded position follows compacted step
            `count - 1` (none yet where `count` is 0).
    """

    dest: jax.Array
    lengths: jax.Array
    count: jax.Array


def compaction(mask: jax.Array, *, reverse: bool = False) -> Compaction:
    """The `Compaction` of a bool `(B, T)` mask; `reverse`: real steps last to first.

    Counting only (no sort): real step t goes to `count[t] - 1`, and a padded step
    after all real ones, in processing order.
    """
    steps = mask.shape[1]
    position = jnp.arange(steps, dtype=jnp.int32)[None, :]
    if reverse:
        count = jnp.cumsum(mask[:, ::-1], axis=1, dtype=jnp.int32)[:, ::-1]
        before = steps - 1 - position  # steps processed before this one
    else:
        count = jnp.cumsum(mask, axis=1, dtype=jnp.int32)
        before = position
    lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)
    dest = jnp.where(mask, count - 1, lengths[:, None] + before - count)
    return Compaction(dest, lengths, count)


def compacted_inputs(x: jax.Array, compacted: Compaction) -> jax.Array:
    """`x` `(B, T, ...)` with each row's real steps first and zeros after.

    Zero-filling the padding means whatever it held (NaN, inf) never enters a step.
    """
    batch, steps = x.shape[:2]
    real = compacted.dest < compacted.lengths[:, None]  # (B, T)
    values = jnp.where(real.reshape(real.shape + (1,) * (x.ndim - 2)), x, 0)
    # One flat index per step (not an index pair): no index building around the scatter.
    flat = _flat_index(compacted.dest, steps).reshape(-1)
    out = jnp.zeros((batch * steps, *x.shape[2:]), x.dtype)
    out = out.at[flat].add(values.reshape(flat.shape + x.shape[2:]), unique_indices=True)
    return out.reshape(batch, steps, *x.shape[2:])


def _flat_index(step: jax.Array, steps: int) -> jax.Array:
    """int32 `(B, T')`: where `(b, step[b, t])` is in a flattened `(B, steps)`."""
    rows = jnp.arange(step.shape[0], dtype=jnp.int32)[:, None]
    return rows * steps + step


def valid_first_order(mask: jax.Array) -> jax.Array:
    """int32 `(B, T)`: each row's real positions in input order, then its padded ones."""
    return inverse_permutation(compaction(mask).dest)


def inverse_permutation(index: jax.Array) -> jax.Array:
    """int32 `(B, T)` `inverse` with `inverse[b, index[b, t]] = t`, for a permutation per row."""
    rows = jnp.arange(index.shape[0], dtype=jnp.int32)[:, None]
    positions = jnp.broadcast_to(jnp.arange(index.shape[1], dtype=jnp.int32), index.shape)
    return jnp.zeros_like(index).at[rows, index].set(positions, unique_indices=True)


def take_steps(x: jax.Array, index: jax.Array) -> jax.Array:
    """`out[b, t] = x[b, index[b, t]]` for `x` `(B, T, ...)` and int `index` `(B, T')`."""
    index = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1)


def outputs_at_inputs(
    compacted_outputs: jax.Array,
    mask: jax.Array,
    compacted: Compaction,
    initial_output: jax.Array,
    *,
    zero_output_for_mask: bool,
) -> jax.Array:
    """The outputs `(B, T, H)` at input positions from the compacted ones.

    A real step gets its own output. A padded step gets the previous output in
    processing order (`initial_output` `(B, H)` before any real step), or zeros
    with `zero_output_for_mask`.

    Args:
        compacted_outputs: `(B, T, H)`.
        mask: bool `(B, T)`, True = real step.
        compacted: the `Compaction` of `mask`.
        initial_output: `(B, H)`.
        zero_output_for_mask: zeros at padded steps.
    """
    index = jnp.maximum(compacted.count - 1, 0)
    steps = compacted_outputs.shape[1]
    flat = compacted_outputs.reshape(-1, *compacted_outputs.shape[2:])
    picked = flat[_flat_index(index, steps)]
    if zero_output_for_mask:
        return jnp.where(mask[:, :, None], picked, 0)
    return jnp.where((compacted.count > 0)[:, :, None], picked, initial_output[:, None, :])
