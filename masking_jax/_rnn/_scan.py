"""The masked scan drivers shared by every cell (one driver, no copy per cell).

`run_cell` is the whole kernel after argument checks. The masking rules:

- a masked step carries every state unchanged (the step is skipped);
- its output is the previous output (the output of the carried state, hence the
  initial h before any valid step), or zeros with `zero_output_for_mask=True`;
- NaN or inf in the padding reaches neither the outputs nor the gradients of real
  steps; fully masked rows give the initial state and finite gradients.

How `run_cell` runs (the fast path):

1. Compaction. Each row's valid steps are gathered, in processing order (last to
   first with `reverse=True`), to the front of a time-major `(T', B, D)` array
   (a stable argsort of the mask), so every mask layout (post-, pre-padded, gappy)
   runs the same post-padded loop, and row b is done after `lengths[b]` steps.
   Steps past a row's length are zero-filled (NaN in the padding never enters).
2. Skipping. Rows are sorted longest first, and time is cut into chunks of
   `CHUNK` steps. Each chunk runs, through a `lax.switch`, on the fewest of a few
   static row counts (`widths(B)`: multiples of B / `ROW_BLOCKS`) that holds every
   row still running, and is skipped once no row is: like PyTorch's packed
   sequences, finished rows and padding to a global maxlen cost (almost) nothing.
   The input projection `x K` is done inside the step, on the running rows only
   (measured on CPU: faster than one GEMM per chunk; no `(T, B, G*H)` array is kept).
3. A custom VJP (`_compact_scan`): the forward keeps per step only the gate
   pre-activations and the state before the step; the backward runs the same
   chunks in reverse, carries only the state cotangent, and computes the weight
   gradients as one GEMM per chunk. The mask enters as a row length (0/1 per step),
   never as stored `where` selections.
4. The outputs at input positions are one gather from the compacted outputs: a
   step's output is the output after the number of valid steps consumed up to it
   (`cumsum` of the mask), or the initial h when that number is 0.

`tests/plain_scan.py` keeps the straightforward driver (every step computed,
selects after, autodiff through `lax.scan`) as a second oracle for the custom VJP;
the slow reference in `tests/rnn_reference.py` is the oracle for both.

Transformations: jit, vmap, grad, `jax.checkpoint`, and
second-order reverse mode (the backward pass is itself differentiable) work.
Forward mode (`jax.jvp`, `jax.jacfwd`) does not: JAX cannot push tangents through a
custom VJP, and raises a `TypeError` saying so. Under `jax.vmap` with a batched
mask the chunk `switch` becomes a select over all its branches: results stay
exact, but every branch runs (about 4.5x the work of one unbatched call of the
same size; fold the vmapped axis into B instead where speed matters).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ._cells import Cell

State = Any
CHUNK = 8  # steps per skippable chunk: the unit of padded-step skipping
ROW_BLOCK = 8  # rows per block of finished rows skipped, at least
ROW_BLOCKS = 8  # at most this many blocks (chunk widths) per batch


_STATIC = ("reverse", "zero_output_for_mask", "unroll")


@functools.partial(jax.jit, static_argnums=0, static_argnames=_STATIC)
def run_cell(
    cell: Cell,
    params: dict[str, Any],
    x: jax.Array,
    mask: jax.Array,
    state: State,
    *,
    reverse: bool,
    zero_output_for_mask: bool,
    unroll: bool | int,
) -> tuple[jax.Array, State]:
    """Runs `cell` over checked arguments: `x` `(B, T, D)`, `mask` `(B, T)`, `state` `(B, H)`s.

    Computes in the state's dtype (float32 for low-precision `x`); the outputs come
    back in `x`'s dtype, the final state in the state's dtype.
    """
    dtype = jax.tree.leaves(state)[0].dtype
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    batch, steps, _ = x.shape
    h0 = cell.output(state)
    if steps == 0 or batch == 0:  # nothing to run: the initial state, no outputs
        return jnp.zeros((batch, steps, h0.shape[-1]), x.dtype), state

    # 1. Compaction: row b's valid steps, in processing order, to the front (time-major),
    #    rows sorted longest first so the rows still running are always a prefix.
    order, lengths, count = compaction(mask, reverse=reverse)
    rows = jnp.argsort(-lengths, stable=True).astype(jnp.int32)  # sorted row -> input row
    where_row = jnp.argsort(rows).astype(jnp.int32)  # input row -> sorted row
    lengths = lengths[rows]
    chunk = min(CHUNK, steps)
    n_chunks = -(-steps // chunk)
    order = jnp.pad(order[rows], ((0, 0), (0, n_chunks * chunk - steps)))  # (B, T')
    x_c = x.astype(dtype)[rows[None, :], order.T]  # (T', B, D)
    valid = jnp.arange(n_chunks * chunk)[:, None] < lengths[None, :]  # (T', B)
    x_c = jnp.where(valid[:, :, None], x_c, 0)  # padding (NaN, inf) never enters
    x_c = x_c.reshape(n_chunks, chunk, *x_c.shape[1:])

    # 2.-3. The chunked, skipping scan with its custom VJP.
    inner_unroll = chunk if unroll is True else max(1, min(int(unroll), chunk))
    sorted_state = jax.tree.map(lambda s: s[rows], state)
    out_c, final = _compact_scan(cell, inner_unroll, params, x_c, lengths, sorted_state)
    out_c = out_c.reshape(n_chunks * chunk, *out_c.shape[2:])  # (T', B, H)
    state = jax.tree.map(lambda s: s[where_row], final)

    # 4. Back to input positions: the output after `count` valid steps, or the initial h.
    picked = out_c[jnp.maximum(count - 1, 0), where_row[:, None]]  # (B, T, H)
    outputs = outputs_at_inputs(picked, mask, count, h0, zero_output_for_mask)
    return outputs.astype(x.dtype), state


def outputs_at_inputs(
    picked: jax.Array,
    mask: jax.Array,
    count: jax.Array,
    h0: jax.Array,
    zero_output_for_mask: bool,
) -> jax.Array:
    """The outputs `(B, T, H)` at input positions from `picked`, compacted output `count - 1`.

    At a masked step that is the previous output (the initial h `h0` `(B, H)` before
    any valid step, where `count` is 0), or zeros with `zero_output_for_mask`.
    """
    if zero_output_for_mask:
        return jnp.where(mask[:, :, None], picked, 0)
    return jnp.where((count > 0)[:, :, None], picked, h0[:, None, :])


def compaction(mask: jax.Array, *, reverse: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Where each row's valid steps go when compacted to the front, in processing order.

    Args:
        mask: boolean `(B, T)`, True = real step, False = padding.
        reverse: processing order last to first (the compacted row holds the valid
            steps from the last to the first).

    Returns:
        `order` int32 `(B, T)`: the input position of compacted step k (valid steps
        first, then the padded ones); `lengths` int32 `(B,)`: valid steps per row;
        `count` int32 `(B, T)`: how many valid steps have been consumed once the step
        at each input position is done (so the output there is compacted output
        `count - 1`, or the initial h for 0).
    """
    steps = mask.shape[1]
    key = (~mask).astype(jnp.int8)
    if reverse:
        order = steps - 1 - jnp.argsort(key[:, ::-1], axis=1, stable=True)
        count = jnp.cumsum(mask[:, ::-1], axis=1, dtype=jnp.int32)[:, ::-1]
    else:
        order = jnp.argsort(key, axis=1, stable=True)
        count = jnp.cumsum(mask, axis=1, dtype=jnp.int32)
    lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)
    return order.astype(jnp.int32), lengths, count


def _where(keep: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old)


def _zeros(tree: Any) -> Any:
    return jax.tree.map(jnp.zeros_like, tree)


def _chunk_starts(x_c: jax.Array) -> jax.Array:
    n_chunks, chunk = x_c.shape[:2]
    return jnp.arange(n_chunks, dtype=jnp.int32) * chunk


def widths(batch: int) -> tuple[int, ...]:
    """The static row counts a chunk can run on: multiples of a block of rows, up to B."""
    block = max(ROW_BLOCK, -(-batch // ROW_BLOCKS))
    return tuple(sorted({min(batch, block * j) for j in range(1, -(-batch // block) + 1)}))


def _branch(lengths: jax.Array, start: jax.Array, batch: int) -> jax.Array:
    """Which width runs the chunk at `start`: 0 = skip it, i = `widths(B)[i - 1]` rows.

    Rows are sorted longest first, so the rows still running are the first `active`.
    """
    active = jnp.sum(lengths > start, dtype=jnp.int32)
    first_fit = jnp.searchsorted(jnp.asarray(widths(batch), jnp.int32), active, side="left")
    return jnp.where(active > 0, first_fit + 1, 0).astype(jnp.int32)


def _rows(tree: Any, width: int, axis: int) -> Any:
    """The first `width` rows (batch entries, along `axis`) of every leaf."""
    return jax.tree.map(lambda a: jax.lax.slice_in_dim(a, 0, width, axis=axis), tree)


def _pad_rows(tree: Any, batch: int, axis: int) -> Any:
    def pad(a: jax.Array) -> jax.Array:
        widths_ = [(0, 0)] * a.ndim
        widths_[axis] = (0, batch - a.shape[axis])
        return jnp.pad(a, widths_)

    return jax.tree.map(pad, tree)


def _set_rows(full: Any, part: Any) -> Any:
    return jax.tree.map(
        lambda f, p: p if p.shape == f.shape else f.at[: p.shape[0]].set(p), full, part
    )


def _forward(
    cell: Cell,
    unroll: int,
    params: dict[str, Any],
    x_c: jax.Array,
    lengths: jax.Array,
    state: State,
    *,
    keep_residuals: bool,
) -> tuple[tuple[jax.Array, State], Any]:
    """The compacted forward scan over chunks `x_c` `(N, C, B, D)`, skipping finished work.

    Rows are sorted by `lengths`, longest first. Each chunk runs on the fewest rows
    of `widths(B)` that holds every row still running (none: the chunk is skipped).

    Returns `(outputs (N, C, B, H), final state)` and, with `keep_residuals`, the
    per-step gate pre-activations and the states before each step (else `None`);
    rows a chunk did not run hold zeros there.
    """
    rec = cell.recurrent_kernel(params)
    gp = cell.gate_params(params)
    batch = lengths.shape[0]

    def run(width: int, carry: State, start: jax.Array, x_chunk: jax.Array) -> tuple[State, Any]:
        lengths_w = lengths[:width]

        def step(state: State, inp: tuple[jax.Array, jax.Array]) -> tuple[State, Any]:
            k, x_t = inp
            # The input projection inside the step: on CPU it beats one GEMM per chunk.
            pre = cell.preact(cell.project(params, x_t), cell.output(state) @ rec)
            out, new = cell.gate_math(gp, pre, state)
            new = _where((k < lengths_w)[:, None], new, state)  # finished rows hold
            return new, ((out, pre, state) if keep_residuals else out)

        steps = start + jnp.arange(x_chunk.shape[0], dtype=jnp.int32)
        new, ys = jax.lax.scan(
            step, _rows(carry, width, 0), (steps, x_chunk[:, :width]), unroll=unroll
        )
        return _set_rows(carry, new), _pad_rows(ys, batch, axis=1)

    def chunk_body(carry: State, inp: tuple[jax.Array, jax.Array]) -> tuple[State, Any]:
        start, x_chunk = inp
        runs = [functools.partial(run, w) for w in widths(batch)]
        shapes = jax.eval_shape(runs[-1], carry, start, x_chunk)[1]

        def skip(carry: State, start: jax.Array, x_chunk: jax.Array) -> tuple[State, Any]:
            return carry, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        branch = _branch(lengths, start, batch)
        return jax.lax.switch(branch, [skip, *runs], carry, start, x_chunk)

    state, ys = jax.lax.scan(chunk_body, state, (_chunk_starts(x_c), x_c))
    if keep_residuals:
        outputs, pres, befores = ys
        return (outputs, state), (pres, befores)
    return (ys, state), None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _compact_scan(
    cell: Cell,
    unroll: int,
    params: dict[str, Any],
    x_c: jax.Array,
    lengths: jax.Array,
    state: State,
) -> tuple[jax.Array, State]:
    """Compacted outputs `(N, C, B, H)` and the final state; row b runs `lengths[b]` steps."""
    return _forward(cell, unroll, params, x_c, lengths, state, keep_residuals=False)[0]


def _compact_scan_fwd(
    cell: Cell,
    unroll: int,
    params: dict[str, Any],
    x_c: jax.Array,
    lengths: jax.Array,
    state: State,
) -> tuple[tuple[jax.Array, State], Any]:
    result, (pres, befores) = _forward(
        cell, unroll, params, x_c, lengths, state, keep_residuals=True
    )
    return result, (params, x_c, lengths, pres, befores)


def _compact_scan_bwd(cell: Cell, unroll: int, residuals: Any, cotangents: Any) -> tuple:
    params, x_c, lengths, pres, befores = residuals
    d_outputs, d_final = cotangents
    rec = cell.recurrent_kernel(params)
    rec_t = rec.T
    gp = cell.gate_params(params)
    batch = lengths.shape[0]

    def run(width: int, carry: Any, start: jax.Array, chunk: Any) -> tuple[Any, jax.Array]:
        d_state_full, d_params = carry
        x_chunk, pre_chunk, before_chunk, d_out_chunk = _rows(chunk, width, 1)
        lengths_w = lengths[:width]

        def step(c: Any, inp: Any) -> tuple[Any, Any]:
            d_state, d_gp = c
            k, pre, before, d_out = inp
            keep = (k < lengths_w)[:, None]
            _, pull = jax.vjp(cell.gate_math, gp, pre, before)
            d_out = jnp.where(keep, d_out, 0)
            d_gp_t, d_pre, d_before = pull((d_out, _where(keep, d_state, _zeros(d_state))))
            d_xp, d_hr = _preact_transpose(cell, pre, d_pre, rec)
            _, pull_out = jax.vjp(cell.output, before)
            (d_h,) = pull_out(d_hr @ rec_t)
            d_before = jax.tree.map(jnp.add, d_before, d_h)
            d_prev = _where(keep, d_before, d_state)  # a finished row passed its state through
            # `preact` = xp + hr (LSTM, SimpleRNN): one cotangent for both, kept once.
            d_hr = None if d_hr is d_xp else d_hr
            return (d_prev, jax.tree.map(jnp.add, d_gp, d_gp_t)), (d_xp, d_hr)

        steps = start + jnp.arange(x_chunk.shape[0], dtype=jnp.int32)
        (d_state, d_gp), (d_xp, d_hr) = jax.lax.scan(
            step,
            (_rows(d_state_full, width, 0), _zeros(gp)),
            (steps, pre_chunk, before_chunk, d_out_chunk),
            reverse=True,
            unroll=unroll,
        )
        d_hr = d_xp if d_hr is None else d_hr
        # Weight gradients: one GEMM per chunk over its C * w rows.
        d_rec = jnp.einsum("cbh,cbg->hg", cell.output(before_chunk), d_hr)
        _, pull_split = jax.vjp(lambda p: (cell.recurrent_kernel(p), cell.gate_params(p)), params)
        (d_split,) = pull_split((d_rec, d_gp))
        _, pull_proj = jax.vjp(cell.project, params, x_chunk)
        d_proj, d_x = pull_proj(d_xp)
        d_params = jax.tree.map(lambda a, b, c: a + b + c, d_params, d_split, d_proj)
        return (_set_rows(d_state_full, d_state), d_params), _pad_rows(d_x, batch, axis=1)

    def chunk_body(carry: Any, inp: Any) -> tuple[Any, jax.Array]:
        start, chunk = inp
        runs = [functools.partial(run, w) for w in widths(batch)]

        def skip(carry: Any, start: jax.Array, chunk: Any) -> tuple[Any, jax.Array]:
            return carry, jnp.zeros_like(chunk[0])

        branch = _branch(lengths, start, batch)
        return jax.lax.switch(branch, [skip, *runs], carry, start, chunk)

    (d_state, d_params), d_x = jax.lax.scan(
        chunk_body,
        (d_final, _zeros(params)),
        (_chunk_starts(x_c), (x_c, pres, befores, d_outputs)),
        reverse=True,
    )
    return d_params, d_x, None, d_state


def _xp_width(cell: Cell, rec: jax.Array) -> int:
    return cell.gates * rec.shape[0]


def _preact_transpose(
    cell: Cell, pre: Any, d_pre: Any, rec: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The cotangents of `xp_t` and `hr_t` from that of `cell.preact(xp_t, hr_t)` (linear)."""
    batch = jax.tree.leaves(pre)[0].shape[0]
    xp = jax.ShapeDtypeStruct((batch, _xp_width(cell, rec)), rec.dtype)
    hr = jax.ShapeDtypeStruct((batch, rec.shape[1]), rec.dtype)
    return jax.linear_transpose(cell.preact, xp, hr)(d_pre)


_compact_scan.defvjp(_compact_scan_fwd, _compact_scan_bwd)
