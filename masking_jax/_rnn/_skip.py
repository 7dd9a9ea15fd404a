"""The chunked skipping skeleton: one copy, run by the forward and by the backward pass.

Time is cut into N chunks of K = `CHUNK` steps (a short sequence is one chunk,
`chunking`). A chunk in which no row has a real step runs under a `lax.cond` that
skips it: padding to a global maxlen (post- or pre-padded), and any stretch of time
that is padding in every row, costs (almost) nothing. Inside a chunk every row
steps, and a row at a padded step holds its state (`rows_where`): a loop over fewer
rows costs more to compile than it saves at a run (and a loop of traced length
breaks reverse mode of the backward pass).

Whatever a chunk computes lives in its carry (the state, and buffers of every step
that it writes in place), so a skipped chunk costs one predicate and no copy. Its
outputs are filled in after the loop (`fill_skipped`).

Shape legend: B batch (rows), T time steps, N chunks of K steps.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

CHUNK = 8  # steps per skippable chunk
ONE_CHUNK_UP_TO = 4 * CHUNK  # up to this many steps run as one chunk: nothing to skip


def chunking(steps: int) -> tuple[int, int]:
    """`(N, K)`: the chunks that cover `steps` steps (`N * K >= steps`).

    A policy of the static length: up to `ONE_CHUNK_UP_TO` steps run as one chunk
    (as the peers run them: skipping could save a few short steps, and its loop
    costs compile time), more in chunks of `CHUNK`.
    """
    chunk = max(1, steps if steps <= ONE_CHUNK_UP_TO else CHUNK)
    return -(-steps // chunk), chunk


ChunkFn = Callable[[jax.Array, Any], Any]


def chunk_runs(real: jax.Array, chunk: int) -> jax.Array:
    """bool `(N,)`: which chunks hold a real step of some row; `real` bool `(N * K, B)`."""
    return jnp.any(real.reshape(real.shape[0] // chunk, -1), axis=1)


def skipping_loop(
    chunk_fn: ChunkFn,
    carry: Any,
    real: jax.Array,
    chunk: int,
    *,
    reverse: bool = False,
) -> Any:
    """Runs `chunk_fn` over the chunks that hold a real step; skips the others.

    Args:
        chunk_fn: `chunk_fn(start, carry) -> carry` runs the chunk that starts at
            step `start`.
        carry: everything the chunks read and write.
        real: bool `(N * K, B)`, time-major: True where a row has a real step.
        chunk: K (`chunking`); chunk i starts at step `i * K`.
        reverse: run the chunks last to first.

    Returns:
        The carry after the last chunk run.
    """
    n_chunks = real.shape[0] // chunk
    if n_chunks == 1:  # nothing to skip: run it
        return chunk_fn(jnp.int32(0), carry)
    starts = jnp.arange(n_chunks, dtype=jnp.int32) * chunk
    runs = chunk_runs(real, chunk).astype(jnp.int32)
    # Each chunk reads `(start, runs)` as one slice: the loop body stays small.
    plan = jnp.stack([starts, runs], axis=1)  # (N, 2)

    def body(carry: Any, start_runs: jax.Array) -> tuple[Any, None]:
        start, runs = start_runs[0], start_runs[1]
        run = functools.partial(chunk_fn, start)
        return jax.lax.cond(runs > 0, run, lambda carry: carry, carry), None

    return jax.lax.scan(body, carry, plan, reverse=reverse)[0]


def fill_skipped(
    outputs: jax.Array, real: jax.Array, chunk: int, fill: jax.Array, *, reverse: bool = False
) -> jax.Array:
    """`outputs` `(N * K, B, H)` with every step of a skipped chunk set to the output before it.

    A skipped chunk is padding in every row, so each row outputs there what it output
    last: at the last step of the latest chunk run before it (in processing order),
    or `fill` `(B, H)` where none ran before it. Plain JAX: autodiff sends those
    steps' cotangents back to the step whose output they repeat.
    """
    n_chunks = real.shape[0] // chunk
    if n_chunks == 1:  # nothing was skipped
        return outputs
    runs = chunk_runs(real, chunk)
    chunks = jnp.arange(n_chunks, dtype=jnp.int32)
    if reverse:  # the latest run chunk is the nearest one after; its last step its first
        source = jax.lax.cummin(jnp.where(runs, chunks, n_chunks), reverse=True)
        has_source, step = source < n_chunks, source * chunk
    else:
        source = jax.lax.cummax(jnp.where(runs, chunks, -1))
        has_source, step = source >= 0, source * chunk + chunk - 1
    before = outputs[jnp.clip(step, 0, outputs.shape[0] - 1)]  # (N, B, H)
    before = jnp.where(has_source[:, None, None], before, fill[None])
    by_chunk = outputs.reshape(n_chunks, chunk, *outputs.shape[1:])
    filled = jnp.where(runs[:, None, None, None], by_chunk, before[:, None])
    return filled.reshape(outputs.shape)


def rows_where(keep: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `keep` (bool `(B,)`, one per row) else `old`, leaf by leaf `(B, ...)`."""
    return jax.tree.map(
        lambda n, o: jnp.where(keep.reshape(keep.shape + (1,) * (n.ndim - 1)), n, o), new, old
    )


def read_steps(buffers: Any, start: jax.Array, size: int) -> Any:
    """Steps `[start, start + size)` of time-major `(T, B, ...)` buffers."""
    return jax.tree.map(lambda b: jax.lax.dynamic_slice_in_dim(b, start, size), buffers)


def write_steps(buffers: Any, start: jax.Array, values: Any) -> Any:
    """Time-major `(T, B, ...)` buffers with `values` `(size, B, ...)` written from `start`."""
    return jax.tree.map(
        lambda b, v: jax.lax.dynamic_update_slice_in_dim(b, v.astype(b.dtype), start, axis=0),
        buffers, values,
    )  # fmt: skip
