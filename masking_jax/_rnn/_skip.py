"""The chunked skipping skeleton: one copy, run by the forward and by the backward pass.

The rows are compacted (each row's real steps first) and sorted longest first, so
row b runs `lengths[b]` steps and the rows still running at any step are a prefix
of the batch. Time is cut into N chunks of K = `CHUNK` steps (a short sequence
is one chunk, `chunking`), the rows into M
blocks of W rows (`blocking`). Each chunk runs on the blocks that hold a running
row, one block after the other, and is skipped once no row runs: padding to a
global maxlen costs (almost) nothing, and finished blocks of rows stop costing.

There is one chunk body to compile, for one block of W rows, whatever M is: a
chunk runs it in a loop over its running blocks (with one block, under a
`lax.cond` that runs it or skips it). `blocking` is a policy of the
static batch size: one block for small batches, where a step costs little more
on all rows than on half of them; two from `HALF_WIDTH_FROM` rows.

Whatever a chunk computes lives in its carry (the state, and buffers of every step
that it writes in place), so a skipped chunk costs one predicate and no copy.

Shape legend: B batch (rows), N chunks of K steps, M blocks of W rows (M * W >= B).
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

CHUNK = 8  # steps per skippable chunk
ONE_CHUNK_UP_TO = 4 * CHUNK  # up to this many steps run as one chunk: nothing to skip
HALF_WIDTH_FROM = 48  # batches at least this large run in two blocks of rows


def blocking(batch: int) -> tuple[int, int]:
    """`(M, W)`: the blocks of rows a chunk can run on, and the rows in each."""
    blocks = 1 if batch < HALF_WIDTH_FROM else 2
    return blocks, -(-batch // blocks)


def chunking(steps: int) -> tuple[int, int]:
    """`(N, K)`: the chunks that cover `steps` compacted steps (`N * K >= steps`).

    A policy of the static length: up to `ONE_CHUNK_UP_TO` steps run as one chunk
    (as the peers run them: skipping could save a few short steps, and its loop
    costs compile time), more in chunks of `CHUNK`.
    """
    chunk = max(1, steps if steps <= ONE_CHUNK_UP_TO else CHUNK)
    return -(-steps // chunk), chunk


ChunkFn = Callable[[jax.Array, jax.Array, Any], Any]


def skipping_loop(
    chunk_fn: ChunkFn,
    carry: Any,
    lengths: jax.Array,
    n_chunks: int,
    chunk: int,
    width: int,
    *,
    reverse: bool = False,
) -> Any:
    """Runs `chunk_fn` over the chunks, each on the blocks of rows that still run.

    Rows are sorted longest first, so the blocks that hold a running row are a
    prefix of the blocks: chunk i runs blocks `0 .. ceil(running / W) - 1`, none
    once no row runs.

    Args:
        chunk_fn: `chunk_fn(row, start, carry) -> carry` runs the chunk that starts at
            compacted step `start` on rows `row .. row + W - 1`.
        carry: everything the chunks read and write.
        lengths: int `(M * W,)`, the steps each row runs, sorted longest first.
        n_chunks, chunk: N and K (`chunking`); chunk i starts at step `i * K`.
        width: W, the rows of one block (`blocking`).
        reverse: run the chunks last to first.

    Returns:
        The carry after the last chunk run.
    """
    if n_chunks == 1 and lengths.shape[0] == width:  # nothing to choose: run it
        return chunk_fn(jnp.int32(0), jnp.int32(0), carry)
    starts = jnp.arange(n_chunks, dtype=jnp.int32) * chunk
    running = jnp.sum(lengths[None, :] > starts[:, None], axis=1, dtype=jnp.int32)
    blocks = (running + width - 1) // width  # per chunk, the blocks it runs
    # Each chunk reads `(start, blocks)` as one slice: the loop body stays small.
    plan = jnp.stack([starts, blocks], axis=1)  # (N, 2)

    def body(carry: Any, start_blocks: jax.Array) -> tuple[Any, None]:
        start, blocks = start_blocks[0], start_blocks[1]
        if lengths.shape[0] == width:  # one block: run it or skip it
            run = functools.partial(chunk_fn, jnp.int32(0), start)
            return jax.lax.cond(blocks > 0, run, lambda carry: carry, carry), None
        return jax.lax.fori_loop(
            0, blocks, lambda block, carry: chunk_fn(block * width, start, carry), carry
        ), None

    return jax.lax.scan(body, carry, plan, reverse=reverse)[0]


def take_rows(tree: Any, row: jax.Array, width: int, axis: int) -> Any:
    """Rows `row .. row + width - 1` (along `axis`) of every leaf."""
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, row, width, axis=axis), tree)


def put_rows(full: Any, part: Any, row: jax.Array, axis: int) -> Any:
    """`full` with its rows from `row` on (along `axis`) replaced by `part`."""
    return jax.tree.map(
        lambda f, p: jax.lax.dynamic_update_slice_in_dim(f, p.astype(f.dtype), row, axis=axis),
        full, part,
    )  # fmt: skip


def rows_where(keep: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `keep` (bool `(W,)`, one per row) else `old`, leaf by leaf `(W, ...)`."""
    return jax.tree.map(
        lambda n, o: jnp.where(keep.reshape(keep.shape + (1,) * (n.ndim - 1)), n, o), new, old
    )


def read_steps(buffers: Any, start: jax.Array, size: int, row: jax.Array, width: int) -> Any:
    """Steps `[start, start + size)`, rows `[row, row + width)` of `(T, B, ...)` buffers."""
    return jax.tree.map(
        lambda b: take_rows(jax.lax.dynamic_slice_in_dim(b, start, size), row, width, 1), buffers
    )


def write_steps(buffers: Any, start: jax.Array, row: jax.Array, values: Any) -> Any:
    """`(T, B, ...)` buffers with `values` `(size, W, ...)` written at `(start, row)`."""

    def write(b: jax.Array, v: jax.Array) -> jax.Array:
        index = (start, row) + (jnp.int32(0),) * (b.ndim - 2)
        return jax.lax.dynamic_update_slice(b, v.astype(b.dtype), index)

    return jax.tree.map(write, buffers, values)
