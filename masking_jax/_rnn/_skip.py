"""The chunked skipping skeleton: one copy, run by the forward and by the backward pass.

The rows are compacted (each row's real steps first), so row b runs `lengths[b]`
steps and every row is padding from the longest row on. Time is cut into N chunks
of K = `CHUNK` steps (a short sequence is one chunk, `chunking`); a chunk runs under
a `lax.cond` that skips it once no row runs: padding to a global maxlen costs
(almost) nothing. Inside a chunk every row steps, and a finished row holds its
state (`rows_where`): a loop over fewer rows, or over blocks of rows, costs more to
compile than it saves at a run (and a loop of traced length breaks reverse mode
of the backward pass).

Whatever a chunk computes lives in its carry (the state, and buffers of every step
that it writes in place), so a skipped chunk costs one predicate and no copy.

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
    """`(N, K)`: the chunks that cover `steps` compacted steps (`N * K >= steps`).

    A policy of the static length: up to `ONE_CHUNK_UP_TO` steps run as one chunk
    (as the peers run them: skipping could save a few short steps, and its loop
    costs compile time), more in chunks of `CHUNK`.
    """
    chunk = max(1, steps if steps <= ONE_CHUNK_UP_TO else CHUNK)
    return -(-steps // chunk), chunk


ChunkFn = Callable[[jax.Array, Any], Any]


def skipping_loop(
    chunk_fn: ChunkFn,
    carry: Any,
    lengths: jax.Array,
    n_chunks: int,
    chunk: int,
    *,
    reverse: bool = False,
) -> Any:
    """Runs `chunk_fn` over the chunks that hold a running row; skips the others.

    Args:
        chunk_fn: `chunk_fn(start, carry) -> carry` runs the chunk that starts at
            compacted step `start`.
        carry: everything the chunks read and write.
        lengths: int `(B,)`, the steps each row runs.
        n_chunks, chunk: N and K (`chunking`); chunk i starts at step `i * K`.
        reverse: run the chunks last to first.

    Returns:
        The carry after the last chunk run.
    """
    if n_chunks == 1:  # nothing to skip: run it
        return chunk_fn(jnp.int32(0), carry)
    starts = jnp.arange(n_chunks, dtype=jnp.int32) * chunk
    runs = jnp.any(lengths[None, :] > starts[:, None], axis=1).astype(jnp.int32)
    # Each chunk reads `(start, runs)` as one slice: the loop body stays small.
    plan = jnp.stack([starts, runs], axis=1)  # (N, 2)

    def body(carry: Any, start_runs: jax.Array) -> tuple[Any, None]:
        start, runs = start_runs[0], start_runs[1]
        run = functools.partial(chunk_fn, start)
        return jax.lax.cond(runs > 0, run, lambda carry: carry, carry), None

    return jax.lax.scan(body, carry, plan, reverse=reverse)[0]


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
