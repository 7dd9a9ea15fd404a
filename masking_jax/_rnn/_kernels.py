"""The public masked RNN kernels: `simple_rnn`, `lstm`, `gru`, and `rnn` for any cell.

Each checks its arguments on static shapes, then calls the one jit-compiled driver
`_driver.run`. Shape legend: B batch, T time steps, D input features, H hidden
units.

dtype policy of the Keras cells: the state is carried, and all arithmetic done, in
float32 for float32, bfloat16 and float16 `x` (float64 for float64 `x`); params and
the initial state are cast to it. Outputs come back in `x`'s dtype; final states
stay in the state dtype (float32 for bfloat16 `x`), so a continued sequence loses
nothing. Integer or bool `x` (as Keras and Flax take it) is cast to the params'
dtype, at least float32, and the outputs come back in that dtype. `rnn` runs a
user's cell in the dtypes it is given, integer `x` cast to the state's dtype.
"""

import string
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._checks import check_bool
from ._activations import Activation, get_activation
from ._cells import GRUCell, KerasCell, LSTMCell, SimpleRNNCell
from ._contract import StepCell
from ._cudnn import check_cudnn, run_lstm_cudnn
from ._driver import run
from ._dropout import drop_inputs, dropout_scales
from ._validate import (
    check_dropout,
    check_initial_state,
    check_mask,
    check_params,
    check_pytree_params,
    check_pytree_state,
    check_reverse_mode,
    check_step_output,
    check_unroll,
    check_x,
    state_dtype,
)

Params = Any  # a mapping with keys "kernel", "recurrent_kernel", "bias" (Keras 3 layout)


# The Args that `simple_rnn`, `lstm` and `gru` share, one copy each, filled into their
# docstrings by `_shared_args` (`$inputs`, `$direction`, `$training`).
_SHARED_ARGS = {
    "inputs": """\
x: inputs `(B, T, D)`: floating, or integer / bool (cast to the computation
            dtype, the params' dtype and at least float32).
        mask: boolean `(B, T)`, True = real step, False = padding; `None` = all real.
            Integer masks are rejected (pass `mask.astype(bool)`).""",
    "direction": """\
reverse: consume the steps from last to first. Outputs stay aligned with the
            input positions (Keras `go_backwards` returns them flipped in time).
        zero_output_for_mask: output zeros at masked steps instead of the previous
            output (the initial h before any valid step).""",
    "training": """\
unroll: `lax.scan` unrolling: `True` (a whole chunk of steps), `False`, or a
            number of steps. It changes speed only, never results (unlike Keras
            `unroll=True`, which ignores `zero_output_for_mask`).
        dropout: the fraction of input units dropped, in [0, 1): one mask `(B, D)`
            per sequence, the same at every step, kept units scaled by
            `1 / (1 - dropout)` (Keras `dropout` in training).
        recurrent_dropout: the fraction of the units of h dropped where h enters the
            recurrent matmul (the carried state itself is not dropped), in [0, 1):
            one mask `(B, H)` per sequence, the same at every step.
        dropout_key: the `jax.random.key` the masks are drawn from (split in two:
            inputs, recurrent); required with a nonzero rate, a fresh one per
            training step. A row's masks do not depend on the padding layout, so
            pre-, post-padded and gappy rows give the same results.""",
}


def _shared_args(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """`kernel` with the shared Args (`_SHARED_ARGS`) filled into its docstring."""
    kernel.__doc__ = string.Template(kernel.__doc__ or "").substitute(_SHARED_ARGS)
    return kernel


def _checked(
    cell: KerasCell, params: Params, x: jax.Array, initial_state: Any
) -> tuple[dict[str, Any], Any]:
    """`params` as arrays in the state dtype and the initial state, checked for `x`."""
    arrays, hidden = check_params(cell, params, x.shape[-1])
    dtype = state_dtype(x, arrays)
    state = check_initial_state(cell, initial_state, x.shape[0], hidden, dtype)
    arrays = {k: None if v is None else v.astype(dtype) for k, v in arrays.items()}
    return arrays, state


def _run_one(
    cell: KerasCell, params: Params, x: Any, mask: Any, initial_state: Any, *,
    reverse: Any, zero_output_for_mask: Any, unroll: Any, dropout: Any,
    recurrent_dropout: Any, dropout_key: Any, use_cudnn: Any = False,
) -> tuple[jax.Array, Any]:  # fmt: skip
    """Checks the arguments and runs a Keras cell: the scan, or cuDNN with `use_cudnn`."""
    check_reverse_mode(params, x, initial_state)
    x = check_x(x)
    mask = check_mask(mask, x)
    reverse = check_bool(reverse, "reverse")
    zero_output_for_mask = check_bool(zero_output_for_mask, "zero_output_for_mask")
    unroll = check_unroll(unroll)
    dropout, recurrent_dropout, key = check_dropout(dropout, recurrent_dropout, dropout_key)
    arrays, state = _checked(cell, params, x, initial_state)
    dtype = jax.tree.leaves(state)[0].dtype
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(dtype)
    batch, _, in_features = x.shape
    input_scale, recurrent_scale = dropout_scales(
        key, batch, in_features, arrays["recurrent_kernel"].shape[0], dropout,
        recurrent_dropout, dtype,
    )  # fmt: skip
    if check_bool(use_cudnn, "use_cudnn"):
        check_cudnn(cell, dtype, recurrent_dropout=recurrent_dropout)
        return run_lstm_cudnn(
            arrays, drop_inputs(x, input_scale), mask, state, reverse=reverse,
            zero_output_for_mask=zero_output_for_mask,
        )  # fmt: skip
    outputs, final = run(
        cell, arrays, x.astype(dtype), mask, state, reverse=reverse,
        zero_output_for_mask=zero_output_for_mask, unroll=unroll, input_scale=input_scale,
        recurrent_scale=recurrent_scale,
    )  # fmt: skip
    return outputs.astype(x.dtype), final


def _simple_rnn_cell(activation: Activation = "tanh") -> SimpleRNNCell:
    return SimpleRNNCell(get_activation(activation, "activation"))


def _lstm_cell(
    activation: Activation = "tanh", recurrent_activation: Activation = "sigmoid"
) -> LSTMCell:
    return LSTMCell(
        get_activation(activation, "activation"),
        get_activation(recurrent_activation, "recurrent_activation"),
    )


def _gru_cell(
    activation: Activation = "tanh",
    recurrent_activation: Activation = "sigmoid",
    reset_after: bool = True,
) -> GRUCell:
    return GRUCell(
        get_activation(activation, "activation"),
        get_activation(recurrent_activation, "recurrent_activation"),
        check_bool(reset_after, "reset_after"),
    )


@_shared_args
def simple_rnn(
    params: Params,
    x: Any,
    mask: Any = None,
    *,
    initial_state: Any = None,
    reverse: bool = False,
    zero_output_for_mask: bool = False,
    activation: Activation = "tanh",
    unroll: bool | int = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A masked SimpleRNN, `h_t = activation(x_t K + h_{t-1} R + b)`, like Keras `SimpleRNN`.

    Masked steps are skipped: the state is carried unchanged, and whatever the
    padding holds (NaN included) reaches neither outputs nor gradients of real
    steps. Any mask layout works (post-padded, pre-padded, holes in the middle).

    Args:
        params: mapping in the Keras 3 layout: `kernel` `(D, H)`, `recurrent_kernel`
            `(H, H)`, `bias` `(H,)` (or `None`). Keras weights drop in unchanged.
        $inputs
        initial_state: h `(B, H)`; zeros by default.
        $direction
        activation: `"tanh"`, `"sigmoid"`, `"hard_sigmoid"`, `"relu"`, `"linear"` or
            a callable.
        $training

    Returns:
        `(outputs, h)`: outputs `(B, T, H)` in `x`'s dtype (the computation dtype for
        integer `x`), and the state after the last valid step `(B, H)` (float32 for
        low-precision `x`). A fully masked row returns its initial state.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import masking_jax as mj
        >>> params = mj.init_simple_rnn_params(jax.random.key(0), 3, 8)
        >>> x = jnp.ones((2, 5, 3))
        >>> mask = jnp.array([[True] * 5, [True, True, False, False, False]])
        >>> outputs, h = mj.simple_rnn(params, x, mask)
        >>> outputs.shape, h.shape
        ((2, 5, 8), (2, 8))
        >>> bool(jnp.allclose(h[1], outputs[1, 1]))  # the state after the last valid step
        True
        >>> training, _ = mj.simple_rnn(params, x, mask, dropout=0.2, recurrent_dropout=0.2,
        ...                             dropout_key=jax.random.key(1))  # a fresh key per step
        >>> bool(jnp.allclose(training, outputs))
        False
    """
    return _run_one(
        _simple_rnn_cell(activation), params, x, mask, initial_state, reverse=reverse,
        zero_output_for_mask=zero_output_for_mask, unroll=unroll, dropout=dropout,
        recurrent_dropout=recurrent_dropout, dropout_key=dropout_key,
    )  # fmt: skip


@_shared_args
def lstm(
    params: Params,
    x: Any,
    mask: Any = None,
    *,
    initial_state: Any = None,
    reverse: bool = False,
    zero_output_for_mask: bool = False,
    activation: Activation = "tanh",
    recurrent_activation: Activation = "sigmoid",
    unroll: bool | int = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    dropout_key: jax.Array | None = None,
    use_cudnn: bool = False,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """A masked LSTM with Keras 3 `LSTM` semantics and weight layout.

    Gates i, f, c, o: `c_t = f c_{t-1} + i activation(z_c)`, `h_t = o activation(c_t)`,
    with i, f, o from `recurrent_activation`. Masked steps are skipped: h and c are
    carried unchanged, and whatever the padding holds (NaN included) reaches neither
    outputs nor gradients of real steps. Any mask layout works.

    Args:
        params: mapping in the Keras 3 layout: `kernel` `(D, 4H)`, `recurrent_kernel`
            `(H, 4H)`, `bias` `(4H,)` (or `None`), gates in the order i, f, c, o.
        $inputs
        initial_state: the pair `(h, c)`, each `(B, H)`; zeros by default.
        $direction
        activation: cell and output activation (Keras name or callable), `"tanh"`.
        recurrent_activation: gate activation (Keras name or callable), `"sigmoid"`.
        $training
        use_cudnn: run on cuDNN (`jax.experimental.rnn`) instead of the masked scan,
            with the same results and masking rules for any mask layout (rows of
            length 0 included). Needs a CUDA GPU, the default activations and float32
            state, else raises `ValueError`. Opt-in: not yet timed on a GPU here.

    Returns:
        `(outputs, (h, c))`: outputs `(B, T, H)` in `x`'s dtype (the computation dtype
        for integer `x`), and the state after the last valid step, h and c `(B, H)`
        each (float32 for low-precision `x`). A fully masked row returns its initial
        state.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import masking_jax as mj
        >>> params = mj.init_lstm_params(jax.random.key(0), 3, 8)
        >>> x = jnp.ones((2, 5, 3))
        >>> mask = jnp.array([[True] * 5, [False, False, True, True, True]])  # pre-padded
        >>> outputs, (h, c) = mj.lstm(params, x, mask)
        >>> outputs.shape, h.shape, c.shape
        ((2, 5, 8), (2, 8), (2, 8))
        >>> outputs[1, :2].tolist() == [[0.0] * 8] * 2  # the initial h before any valid step
        True
    """
    return _run_one(
        _lstm_cell(activation, recurrent_activation), params, x, mask, initial_state,
        reverse=reverse, zero_output_for_mask=zero_output_for_mask, unroll=unroll,
        dropout=dropout, recurrent_dropout=recurrent_dropout, dropout_key=dropout_key,
        use_cudnn=use_cudnn,
    )  # fmt: skip


@_shared_args
def gru(
    params: Params,
    x: Any,
    mask: Any = None,
    *,
    initial_state: Any = None,
    reverse: bool = False,
    zero_output_for_mask: bool = False,
    activation: Activation = "tanh",
    recurrent_activation: Activation = "sigmoid",
    reset_after: bool = True,
    unroll: bool | int = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A masked GRU with Keras 3 `GRU` semantics and weight layout.

    Gates z, r, h: `h_t = z h_{t-1} + (1 - z) activation(x_h + r (h_{t-1} R_h + b_h))`
    with `reset_after=True` (the Keras default), `activation(x_h + (r h_{t-1}) R_h)`
    otherwise. Masked steps are skipped: h is carried unchanged, and whatever the
    padding holds (NaN included) reaches neither outputs nor gradients of real steps.

    Args:
        params: mapping in the Keras 3 layout: `kernel` `(D, 3H)`, `recurrent_kernel`
            `(H, 3H)`, gates in the order z, r, h; `bias` `(2, 3H)` with
            `reset_after=True` (row 0 input bias, row 1 recurrent bias), `(3H,)` with
            `reset_after=False`, or `None`.
        $inputs
        initial_state: h `(B, H)`; zeros by default.
        $direction
        activation: candidate activation (Keras name or callable), `"tanh"`.
        recurrent_activation: gate activation (Keras name or callable), `"sigmoid"`.
        reset_after: apply the reset gate after the recurrent matmul (Keras 3 and
            cuDNN default) or before it.
        $training

    Returns:
        `(outputs, h)`: outputs `(B, T, H)` in `x`'s dtype (the computation dtype for
        integer `x`), and the state after the last valid step `(B, H)` (float32 for
        low-precision `x`). A fully masked row returns its initial state.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import masking_jax as mj
        >>> params = mj.init_gru_params(jax.random.key(0), 3, 8)
        >>> x = jnp.ones((2, 5, 3))
        >>> mask = jnp.array([[True] * 5, [False] * 5])  # the second row is all padding
        >>> outputs, h = mj.gru(params, x, mask, reverse=True)
        >>> outputs.shape, h.shape
        ((2, 5, 8), (2, 8))
        >>> h[1].tolist() == [0.0] * 8  # a fully masked row keeps its initial state
        True
    """
    return _run_one(
        _gru_cell(activation, recurrent_activation, reset_after), params, x, mask,
        initial_state, reverse=reverse, zero_output_for_mask=zero_output_for_mask,
        unroll=unroll, dropout=dropout, recurrent_dropout=recurrent_dropout,
        dropout_key=dropout_key,
    )  # fmt: skip


def rnn(
    step: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]],
    params: Any,
    x: Any,
    mask: Any,
    initial_state: Any,
    *,
    reverse: bool = False,
    zero_output_for_mask: bool = False,
    unroll: bool | int = False,
    dropout: float = 0.0,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """Runs any recurrent cell over masked sequences, with the rules of the built-in kernels.

    `step(params, state, x_t) -> (new_state, y_t)` is one step for every row at once:
    `x_t` `(B, D)`, `state` any pytree of `(B, ...)` arrays, `y_t` `(B, H)`. At a
    padded step the state is carried unchanged and the output is the previous output
    (zeros before the first real step), or zeros with `zero_output_for_mask=True`.
    Any mask layout works (post-, pre-padded, holes), padded steps are skipped
    (steps that are padding in every row cost almost nothing), a fully masked
    row returns its initial state, and whatever the padding holds (NaN included)
    reaches neither the outputs nor the gradients: `step` sees zeros there.
    Gradients re-run `jax.vjp` of `step` at each step (reverse mode, any order).

    Args:
        step: the cell, a function of `(params, state, x_t)` (rows independent). A
            module-level function is compiled once; a new lambda per call recompiles.
        params: any pytree of arrays the step reads (its weights). Floating leaves
            are differentiated; any others (integer tables, PRNG keys) are passed
            through with no gradient.
        x: inputs `(B, T, D)`: floating, or integer / bool (cast to the dtype of
            `initial_state`, its leaves' promoted dtype).
        mask: boolean `(B, T)`, True = real step, False = padding; `None` = all real.
        initial_state: the state before the first step, a pytree of floating
            `(B, ...)` arrays (e.g. h, or a tuple (h, c)).
        reverse: consume the steps from last to first; outputs stay aligned with the
            input positions.
        zero_output_for_mask: output zeros at padded steps.
        unroll: `lax.scan` unrolling: `True` (a whole chunk of steps), `False`, or a
            number of steps; it changes speed only.
        dropout: the fraction of input units dropped, in [0, 1): one mask `(B, D)`
            per sequence, the same at every step, kept units scaled by
            `1 / (1 - dropout)`. (Recurrent dropout belongs to the cell: only it
            knows which part of its state enters the recurrence; the built-in
            kernels have `recurrent_dropout`.)
        dropout_key: the `jax.random.key` the mask is drawn from, as in `lstm`;
            required with a nonzero `dropout`.

    Returns:
        `(outputs, final_state)`: outputs `(B, T, H)` in `y_t`'s dtype, and the state
        after each row's last real step (the initial state for an empty row).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import masking_jax as mj
        >>> def step(params, h, x_t):  # a minimal Elman cell
        ...     h = jnp.tanh(x_t @ params["w"] + h @ params["u"])
        ...     return h, h
        >>> params = {"w": jnp.full((3, 4), 0.1), "u": jnp.eye(4)}
        >>> x, h0 = jnp.ones((2, 5, 3)), jnp.zeros((2, 4))
        >>> mask = jnp.array([[True] * 5, [False, False, True, True, False]])
        >>> outputs, h = mj.rnn(step, params, x, mask, h0)
        >>> outputs.shape, h.shape
        ((2, 5, 4), (2, 4))
        >>> bool(jnp.allclose(h[1], outputs[1, 3]))  # the state after the last real step
        True
    """
    if not callable(step):
        raise TypeError(
            "`step` must be a function `step(params, state, x_t) -> (new_state, y_t)`; got "
            f"{type(step).__name__}."
        )
    check_reverse_mode(params, x, initial_state)
    x = check_x(x)
    mask = check_mask(mask, x)
    dropout, _, key = check_dropout(dropout, 0.0, dropout_key)
    params = check_pytree_params(params)
    state = check_pytree_state(initial_state, x.shape[0])
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(*jax.tree.leaves(state)))
    check_step_output(step, params, state, x)
    batch, _, in_features = x.shape
    input_scale, _ = dropout_scales(key, batch, in_features, 0, dropout, 0.0, x.dtype)
    return run(
        StepCell(step), params, x, mask, state, reverse=check_bool(reverse, "reverse"),
        zero_output_for_mask=check_bool(zero_output_for_mask, "zero_output_for_mask"),
        unroll=check_unroll(unroll), input_scale=input_scale,
    )  # fmt: skip
