"""The chunked skipping skeleton: one copy, run by the forward and by the backward pass.

Time is cut into N chunks of K = `CHUNK` steps (a short sequence is one chunk,
`chunking`). A chunk in which no row has a real step runs under a `lax.cond` that
skips it: padding to a global maxlen (post- or pre-padded), and any stretch of time
that is padding in every row, costs (almost) nothing. Inside a chunk every row
steps, and a row at a padded step holds its state (`rows_where`): a loop over fewer
rows costs more to compile than it saves at a run (and a loop of traced length
breaks reverse mode of the backward pass).

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
    skip_fn: ChunkFn | None = None,
    note_fn: Callable[[Any], Any] | None = None,
) -> tuple[Any, Any]:
    """Runs `chunk_fn` over the chunks that hold a real step; skips the others.

    Args:
        chunk_fn: `chunk_fn(start, carry) -> carry` runs the chunk that starts at
            step `start`.
        carry: everything the chunks read and write.
        real: bool `(N * K, B)`, time-major: True where a row has a real step.
        chunk: K (`chunking`); chunk i starts at step `i * K`.
        reverse: run the chunks last to first.
        skip_fn: `skip_fn(start, carry) -> carry` for a skipped chunk, or `None`
            (the carry passes unchanged). It must leave the large buffers alone:
            an array that both branches may write is copied at every chunk.
        note_fn: `note_fn(carry) -> note`, read after every chunk (run or
            skipped) and stacked; or `None`.

    Returns:
        `(carry, notes)`: the carry after the last chunk, and the notes stacked
        `(N, ...)` in chunk order (`None` without `note_fn`, or with one chunk).
    """
    n_chunks = real.shape[0] // chunk
    if n_chunks == 1:  # nothing to skip: run it
        return chunk_fn(jnp.int32(0), carry), None
    starts = jnp.arange(n_chunks, dtype=jnp.int32) * chunk
    runs = chunk_runs(real, chunk).astype(jnp.int32)
    # Each chunk reads `(start, runs)` as one slice: the loop body stays small.
    plan = jnp.stack([starts, runs], axis=1)  # (N, 2)
    skip = skip_fn or (lambda start, carry: carry)

    def body(carry: Any, start_runs: jax.Array) -> tuple[Any, Any]:
        start, runs = start_runs[0], start_runs[1]
        run, skipped = functools.partial(chunk_fn, start), functools.partial(skip, start)
        carry = jax.lax.cond(runs > 0, run, skipped, carry)
        return carry, None if note_fn is None else note_fn(carry)

    return jax.lax.scan(body, carry, plan, reverse=reverse)


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
