"""Compositions of the kernels: `bidirectional` and `stacked_rnn`.

Both take a kernel (`simple_rnn`, `lstm`, `gru`, or anything with their signature
`kernel(params, x, mask, *, initial_state, ...) -> (outputs, state)`) and stay pure
functions of `(params, x, mask)`. `functools.partial(bidirectional, lstm)` has that
signature too, so bidirectional layers stack.

Shape legend: B batch, T time steps, D input features, H hidden units.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ._validate import check_key

Kernel = Callable[..., tuple[Any, Any]]

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _check_kernel(kernel: Any, name: str) -> None:
    if not callable(kernel):
        raise TypeError(
            f"`{name}` must be a kernel function such as `masking_jax.lstm`; "
            f"got {type(kernel).__name__}."
        )


def _check_pair(value: Any, name: str, what: str) -> tuple[Any, Any]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(
            f"`{name}` must be a pair (forward, backward) of {what}; got "
            f"{type(value).__name__}"
            + (f" of length {len(value)}." if isinstance(value, tuple | list) else ".")
        )
    return value[0], value[1]


def bidirectional(
    kernel: Kernel,
    params: Sequence[Any],
    x: Any,
    mask: Any = None,
    *,
    merge_mode: str | None = "concat",
    initial_state: Sequence[Any] | None = None,
    zero_output_for_mask: bool = True,
    **kernel_kwargs: Any,
) -> tuple[Any, tuple[Any, Any]]:
    """A forward and a backward pass of `kernel` over the valid steps, merged.

    The backward pass consumes the valid steps of each row from last to first and
    its outputs stay aligned with the input positions, so pre- and post-padded
    versions of the same sequences give the same outputs at their valid steps and
    the same final states. Like Keras `Bidirectional` with `return_sequences=True`,
    masked steps output zeros by default.

    Args:
        kernel: `simple_rnn`, `lstm`, `gru`, or a function with their signature.
        params: the pair `(forward_params, backward_params)`.
        x: inputs `(B, T, D)`.
        mask: boolean `(B, T)`, True = real step, False = padding; `None` = all real.
        merge_mode: `"concat"` (outputs `(B, T, 2H)`), `"sum"`, `"mul"`, `"ave"`
            (`(B, T, H)`), or `None` for the pair `(forward_outputs, backward_outputs)`.
        initial_state: `None`, or the pair `(forward_state, backward_state)`.
        zero_output_for_mask: zeros at masked steps (Keras `Bidirectional` forces this
            when returning sequences); `False` gives each direction's previous output.
        **kernel_kwargs: passed to both passes (`activation`, `unroll`, ...). `reverse`
            is set by this function; a `dropout_key` is split in two, so the
            directions draw independent dropout masks.

    Returns:
        `(outputs, (forward_state, backward_state))`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import masking_jax as mj
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> params = (mj.init_gru_params(k1, 3, 4), mj.init_gru_params(k2, 3, 4))
        >>> x = jnp.ones((2, 5, 3))
        >>> mask = jnp.array([[True] * 5, [True, True, True, False, False]])
        >>> outputs, (h_fwd, h_bwd) = mj.bidirectional(mj.gru, params, x, mask)
        >>> outputs.shape, h_fwd.shape, h_bwd.shape
        ((2, 5, 8), (2, 4), (2, 4))
    """
    _check_kernel(kernel, "kernel")
    check_choice(merge_mode, "merge_mode", MERGE_MODES)
    if "reverse" in kernel_kwargs:
        raise TypeError("`bidirectional` sets `reverse` for each pass; do not pass it.")
    params_f, params_b = _check_pair(params, "params", "parameter mappings")
    state_f, state_b = (
        (None, None)
        if initial_state is None
        else _check_pair(initial_state, "initial_state", "initial states")
    )
    kwargs = dict(kernel_kwargs, zero_output_for_mask=zero_output_for_mask)
    key_f, key_b = split_dropout_key(kwargs, 2)
    out_f, state_f = kernel(
        params_f, x, mask, initial_state=state_f, reverse=False, **kwargs, **key_f
    )
    out_b, state_b = kernel(
        params_b, x, mask, initial_state=state_b, reverse=True, **kwargs, **key_b
    )
    return merge_outputs(merge_mode, out_f, out_b), (state_f, state_b)


def split_dropout_key(kwargs: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Takes `dropout_key` out of `kwargs`: `n` keyword dicts, each with its own key.

    Each kernel call then draws its own masks; without a key, `n` empty dicts.
    """
    key = kwargs.pop("dropout_key", None)
    if key is None:
        return [{} for _ in range(n)]
    keys = jax.random.split(check_key(key, "dropout_key"), n)
    return [{"dropout_key": k} for k in keys]


def merge_outputs(merge_mode: str | None, forward: Any, backward: Any) -> Any:
    """Merges the two directions: "concat" on the last axis, "sum", "mul", "ave", or
    `None` for the pair `(forward, backward)`. The elementwise modes need outputs of
    one shape (one hidden size H in both directions)."""
    shapes = (np.shape(forward), np.shape(backward))
    if merge_mode in ("sum", "mul", "ave") and shapes[0] != shapes[1]:
        raise ValueError(
            f"`merge_mode`={merge_mode!r} needs the forward and backward outputs to have one "
            f"shape; got {shapes[0]} and {shapes[1]}. Give both directions the same hidden "
            "size H, or use merge_mode='concat'."
        )
    if merge_mode == "concat":
        return jnp.concatenate([forward, backward], axis=-1)
    if merge_mode == "sum":
        return forward + backward
    if merge_mode == "mul":
        return forward * backward
    if merge_mode == "ave":
        return (forward + backward) / 2
    return (forward, backward)


def stacked_rnn(
    kernel: Kernel | Sequence[Kernel],
    params: Sequence[Any],
    x: Any,
    mask: Any = None,
    *,
    initial_state: Sequence[Any] | None = None,
    **kernel_kwargs: Any,
) -> tuple[jax.Array, list[Any]]:
    """Layers of RNNs, each consuming the previous one's output sequence.

    The output mask of a layer (an RNN returning sequences keeps its input mask, as
    in Keras) is passed on as the next layer's mask, so padded steps stay skipped in
    every layer, whatever the layer below put there.

    Args:
        kernel: one kernel for every layer, or a sequence of kernels, one per layer
            (use `functools.partial` for per-layer options, e.g. `reset_after`).
        params: a sequence of per-layer params (pairs for bidirectional layers).
        x: inputs `(B, T, D)`.
        mask: boolean `(B, T)`, True = real step, False = padding; `None` = all real.
        initial_state: `None`, or a sequence with one initial state (or `None`) per
            layer.
        **kernel_kwargs: passed to every layer (`reverse`, `zero_output_for_mask`, ...);
            a `dropout_key` is split, one key per layer.

    Returns:
        `(outputs, states)`: the last layer's outputs `(B, T, H_last)` and the list of
        every layer's final state.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import masking_jax as mj
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> params = [mj.init_lstm_params(k1, 3, 8), mj.init_lstm_params(k2, 8, 4)]
        >>> mask = jnp.array([[True] * 5, [True, True, False, False, False]])
        >>> outputs, states = mj.stacked_rnn(mj.lstm, params, jnp.ones((2, 5, 3)), mask)
        >>> outputs.shape, [h.shape for h, c in states]
        ((2, 5, 4), [(2, 8), (2, 4)])
    """
    if isinstance(params, dict) or not isinstance(params, Sequence) or not params:
        raise TypeError(
            "`params` must be a non-empty sequence (list) of per-layer params; got "
            f"{type(params).__name__}"
            + (" of length 0." if isinstance(params, Sequence) and not params else ".")
        )
    n = len(params)
    if isinstance(kernel, str) or not (callable(kernel) or isinstance(kernel, Sequence)):
        _check_kernel(kernel, "kernel")
    kernels = [kernel] * n if callable(kernel) else list(kernel)
    for i, k in enumerate(kernels):
        _check_kernel(k, f"kernel[{i}]")
    if len(kernels) != n:
        raise ValueError(
            f"`kernel` must be one kernel or one per layer: got {len(kernels)} kernels for "
            f"{n} layers of params."
        )
    states = [None] * n if initial_state is None else list(initial_state)
    if len(states) != n:
        raise ValueError(
            f"`initial_state` must have one entry (a state or None) per layer: got "
            f"{len(states)} for {n} layers."
        )
    outputs, final_states = x, []
    kernel_kwargs = dict(kernel_kwargs)
    keys = split_dropout_key(kernel_kwargs, n)
    for i, (k, p, s) in enumerate(zip(kernels, params, states, strict=True)):
        outputs, state = k(p, outputs, mask, initial_state=s, **kernel_kwargs, **keys[i])
        if not isinstance(outputs, jax.Array):
            raise TypeError(
                f"layer {i} returned {type(outputs).__name__}, not an array of outputs; a "
                "bidirectional layer inside a stack needs a merge_mode other than None."
            )
        final_states.append(state)
        # The layer's output mask is its input mask: pass `mask` on unchanged.
    return outputs, final_states
