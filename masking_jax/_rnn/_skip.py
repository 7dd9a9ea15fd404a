"""The chunked skipping skeleton: one copy, run by the forward and by the backward pass.

The rows are compacted (each row's real steps first) and sorted longest first, so
row b runs `lengths[b]` steps and the rows still running at any step are a prefix
of the batch. Time is cut into N chunks of K = `CHUNK` steps. Each chunk runs on the fewest rows of
`widths(B)` that hold every row still running, or is skipped once no row is:
padding to a global maxlen costs (almost) nothing, and finished rows stop costing
where a narrower width pays.

Every width is one more copy of the chunk body to compile, so `widths` is a policy
of the static batch size: one width (skip whole chunks only) for small batches,
where a step costs little more at full width than at half; two for larger ones.

Whatever a chunk computes lives in its carry (the state, and buffers of every step
that it writes in place), so a skipped chunk costs one predicate and no copy.

Shape legend: B batch (rows), N chunks of K steps. A tree's rows axis is
`lead`: 0, or 1 behind a direction axis.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

CHUNK = 8  # steps per skippable chunk
HALF_WIDTH_FROM = 48  # batches at least this large may also run chunks on half the rows
ROW_ALIGN = 8  # the half width is rounded up to a multiple of this


def widths(batch: int) -> tuple[int, ...]:
    """The static row counts a chunk can run on, ascending; the last is B."""
    if batch < HALF_WIDTH_FROM:
        return (batch,)
    half = -(-batch // 2 // ROW_ALIGN) * ROW_ALIGN
    return (half, batch)


def chunking(steps: int) -> tuple[int, int]:
    """`(N, K)`: the chunks that cover `steps` compacted steps (`N * K >= steps`)."""
    chunk = max(1, min(CHUNK, steps))
    return -(-steps // chunk), chunk


ChunkFn = Callable[[int, jax.Array, Any], Any]


def skipping_loop(
    chunk_fn: ChunkFn,
    carry: Any,
    lengths: jax.Array,
    n_chunks: int,
    chunk: int,
    *,
    reverse: bool = False,
) -> Any:
    """Runs `chunk_fn` over the chunks, each on the fewest rows that are still running.

    Rows are sorted longest first, so the rows still running only ever get fewer:
    every chunk that needs all B rows comes before every chunk that needs fewer.
    Hence one loop per width (widest first; narrowest first with `reverse`), each
    running its own chunks and skipping the others: one branch per `lax.cond`,
    which XLA updates in place where a many-way `lax.switch` would copy the carry.

    Args:
        chunk_fn: `chunk_fn(width, start, carry) -> carry` runs the chunk that starts
            at compacted step `start` on the first `width` rows (static).
        carry: everything the chunks read and write.
        lengths: int `(B,)`, the steps each row runs, sorted longest first.
        n_chunks, chunk: N and K (`chunking`); chunk i starts at step `i * K`.
        reverse: run the chunks last to first.

    Returns:
        The carry after the last chunk run.
    """
    sizes = widths(lengths.shape[0])
    if n_chunks == 1 and len(sizes) == 1:  # nothing to choose: run it
        return chunk_fn(sizes[0], jnp.int32(0), carry)
    starts = jnp.arange(n_chunks, dtype=jnp.int32) * chunk
    # (rows it takes more than, width), widest first: the order of time
    phases = list(zip((0, *sizes[:-1]), sizes, strict=True))[::-1]
    for fewest, width in phases[::-1] if reverse else phases:

        def body(carry: Any, start: jax.Array, fewest: int = fewest, width: int = width):
            active = jnp.sum(lengths > start, dtype=jnp.int32)  # the rows still running
            mine = (active > fewest) & (active <= width)
            run = functools.partial(chunk_fn, width, start)
            return jax.lax.cond(mine, run, lambda carry: carry, carry), None

        carry = jax.lax.scan(body, carry, starts, reverse=reverse)[0]
    return carry


def take_rows(tree: Any, width: int, axis: int) -> Any:
    """The first `width` rows (along `axis`) of every leaf."""
    return jax.tree.map(lambda a: jax.lax.slice_in_dim(a, 0, width, axis=axis), tree)


def put_rows(full: Any, part: Any, axis: int) -> Any:
    """`full` with its first rows (along `axis`) replaced by `part`."""

    def put(f: jax.Array, p: jax.Array) -> jax.Array:
        if p.shape == f.shape:
            return p
        return jax.lax.dynamic_update_slice_in_dim(f, p.astype(f.dtype), 0, axis=axis)

    return jax.tree.map(put, full, part)


def rows_where(keep: jax.Array, new: Any, old: Any, lead: int) -> Any:
    """`new` where `keep` (bool, one per row) else `old`, leaf by leaf; rows at axis `lead`."""

    def select(n: jax.Array, o: jax.Array) -> jax.Array:
        shape = (1,) * lead + keep.shape + (1,) * (n.ndim - lead - 1)
        return jnp.where(keep.reshape(shape), n, o)

    return jax.tree.map(select, new, old)


def read_steps(buffers: Any, start: jax.Array, size: int, width: int, lead: int) -> Any:
    """Steps `[start, start + size)` of `(T, ..., B, ...)` buffers, first `width` rows."""
    return jax.tree.map(
        lambda b: take_rows(jax.lax.dynamic_slice_in_dim(b, start, size), width, lead + 1),
        buffers,
    )


def write_steps(buffers: Any, start: jax.Array, values: Any) -> Any:
    """`(T, ..., B, ...)` buffers with `values` `(size, ..., w, ...)` written at step `start`."""

    return jax.tree.map(
        lambda b, v: jax.lax.dynamic_update_slice_in_dim(b, v.astype(b.dtype), start, axis=0),
        buffers,
        values,
    )
