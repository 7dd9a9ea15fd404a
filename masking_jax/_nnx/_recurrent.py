"""Recurrent layers over the core kernels: `SimpleRNN`, `LSTM`, `GRU`, and `Bidirectional`.

Shape legend: B batch, T time steps, D input features, H hidden units. A mask is bool
`(B, T)`, True = real step, False = padding. The layers hold Keras-named parameters
and call the pure kernels of `masking_jax._rnn`; all the masking happens there.
Dropout and `stateful` are shared with `RNN` (`_rnn_options`).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .._checks import check_choice
from .._layer_calls import unpack
from .._layer_docs import CELL_DOCS, RNN_OPTIONS, describe
from .._masks import Masked
from .._rnn._activations import get_activation
from .._rnn._init import init_gru_params, init_lstm_params, init_simple_rnn_params
from .._rnn._kernels import gru, lstm, simple_rnn
from .._rnn._layers import MERGE_MODES, _check_pair, merge_outputs
from ._arguments import (
    check_bool,
    check_features,
    check_param_dtype,
    check_rngs,
    check_size,
    check_unroll,
)
from ._rnn_options import (
    carried_state,
    dropout_kwargs,
    dropout_options,
    forget_state,
    keep_state,
    stateful_option,
)

_ACTIVATION_OPTIONS = ("activation", "recurrent_activation")
_FLAG_OPTIONS = ("unit_forget_bias", "use_cudnn", "reset_after")


class _RNN(nnx.Module):
    """Shared body of `SimpleRNN`, `LSTM` and `GRU`: parameters plus a call of the kernel.

    Subclasses set `_kernel`, `_init`, `_num_states` and pass their cell options
    (activations, `reset_after`) and initialiser options (`unit_forget_bias`, ...).
    """

    _kernel: Callable[..., Any]
    _init: Callable[..., Any]
    _num_states = 1

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        reverse: bool = False,
        zero_output_for_mask: bool = False,
        use_bias: bool = True,
        unroll: bool | int = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        stateful: bool = False,
        deterministic: bool = False,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        cell_options: dict[str, Any],
        init_options: dict[str, Any],
    ):
        for name in _ACTIVATION_OPTIONS:
            if name in cell_options:  # fail when the layer is built, not at its first call
                get_activation(cell_options[name], name)
        for options in (cell_options, init_options):
            for name in _FLAG_OPTIONS:
                if name in options:
                    check_bool(options[name], name)
        self.in_features = check_size(in_features, "in_features")
        self.hidden_features = check_size(hidden_features, "hidden_features")
        self.return_sequences = check_bool(return_sequences, "return_sequences")
        self.return_state = check_bool(return_state, "return_state")
        self.reverse = check_bool(reverse, "reverse")
        self.zero_output_for_mask = check_bool(zero_output_for_mask, "zero_output_for_mask")
        self.use_bias = check_bool(use_bias, "use_bias")
        self.unroll = check_unroll(unroll)
        self.param_dtype = check_param_dtype(param_dtype)
        check_rngs(rngs)
        self.cell_options = cell_options
        self.init_options = init_options
        stateful_option(self, stateful)
        params = type(self)._init(
            rngs.params(), in_features, hidden_features, dtype=param_dtype, **init_options
        )
        self.kernel = nnx.Param(params["kernel"])
        self.recurrent_kernel = nnx.Param(params["recurrent_kernel"])
        self.bias = nnx.Param(params["bias"]) if use_bias else None
        dropout_options(self, dropout, recurrent_dropout, deterministic, rngs)

    def _clone(self, rngs: nnx.Rngs, **changes: Any) -> "_RNN":
        """A freshly initialised layer of the same configuration, with `changes`."""
        kwargs = {
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "reverse": self.reverse,
            "zero_output_for_mask": self.zero_output_for_mask,
            "use_bias": self.use_bias,
            "unroll": self.unroll,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "stateful": self.stateful,
            "deterministic": self.deterministic,
            "param_dtype": self.param_dtype,
            **self.cell_options,
            **self.init_options,
            **changes,
        }
        return type(self)(self.in_features, self.hidden_features, rngs=rngs, **kwargs)

    def _params(self) -> dict[str, Any]:
        """The parameters in the kernels' Keras layout."""
        return {
            "kernel": self.kernel[...],
            "recurrent_kernel": self.recurrent_kernel[...],
            "bias": None if self.bias is None else self.bias[...],
        }

    def _run(
        self, x: Any, mask: Any, initial_state: Any, zero_output_for_mask: bool
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """`(outputs (B, T, H), states)` with `states` a tuple: `(h,)` or LSTM's `(h, c)`.

        Draws this call's dropout masks unless `deterministic`; a stateful layer starts
        from the state it keeps (unless `initial_state` is given) and keeps the new one.
        """
        if initial_state is None:
            initial_state = carried_state(self, x)
        outputs, state = type(self)._kernel(
            self._params(),
            x,
            mask,
            initial_state=initial_state,
            reverse=self.reverse,
            zero_output_for_mask=zero_output_for_mask,
            unroll=self.unroll,
            **self.cell_options,
            **dropout_kwargs(self),
        )
        keep_state(self, state)
        return outputs, self._as_tuple(state)

    def reset_state(self) -> None:
        """Forgets the kept state: the next call starts from zeros, with any batch size."""
        forget_state(self)

    def _as_tuple(self, state: Any) -> tuple[jax.Array, ...]:
        return tuple(state) if self._num_states == 2 else (state,)

    def __call__(self, x: Any, mask: Any = None, *, initial_state: Any = None) -> Any:
        x, mask, was_masked = unpack(x, mask)
        check_features(x, self.in_features, self)
        outputs, states = self._run(x, mask, initial_state, self.zero_output_for_mask)
        if self.return_sequences:
            y = Masked(outputs, mask) if was_masked else outputs
        else:
            y = states[0].astype(outputs.dtype)  # h after the last real step
        return (y, *states) if self.return_state else y

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        """The mask of the main output: `mask` with `return_sequences`, else `None`."""
        return mask if self.return_sequences else None


def _rnn_doc(name: str, examples: str) -> str:
    """The docstring of the RNN layer `name`: its own lines, then the arguments every RNN takes."""
    cell = CELL_DOCS[name]
    return f"""{cell.head()}

    Args:
      in_features: D, the input features.
      hidden_features: H, the hidden units.
{describe(cell.options)}
      rngs: `nnx.Rngs`; Keras-default initialisers (glorot-uniform `kernel`,
        orthogonal `recurrent_kernel`, zero `bias`).
      **options: the options every RNN layer takes, all keyword-only:
{describe(RNN_OPTIONS, indent=8, defaults=True)}
        `dropout=0.0`, `recurrent_dropout=0.0`: the fractions, in [0, 1), of the
        input units and of the units of h entering the recurrent matmul that are
        dropped (Keras' options): one mask per sequence, drawn from the layer's
        own fork of `rngs`' "dropout" stream, the same at every step, so results do
        not depend on the padding layout. Active unless `deterministic` (set by
        `model.eval()`, cleared by `model.train()`, as for `nnx.Dropout`); in
        evaluation the layer equals the same layer without dropout.
        `deterministic=False`: start in evaluation mode instead.
        `stateful=False`: keep the final state (a `RecurrentState` variable, not
        a `Param`) and start the next call from it, so two calls on the halves of
        sequences equal one call on the whole (with `reverse=False`; row b
        continues row b; the batch size must stay, else `ValueError`).
        `reset_state()` forgets it. No gradient flows from one call into the last.

    Call: `layer(x, mask=None, *, initial_state=None)` with `x` `(B, T, D)` (or a
    `Masked`, then sequence outputs come back `Masked`), `mask` bool `(B, T)`, True =
    real step; padded steps are skipped and their content (even NaN) never matters.
    Integer or bool `x` is cast to the computation dtype (float32 for float32
    params), as in Keras and Flax. An `initial_state` overrides a stateful layer's
    kept state for that call.

    Raises:
      TypeError: for options of the wrong type (a float size, a flag that is not a
        Python bool, an integer `param_dtype`, `rngs` that is not an `nnx.Rngs`) and a
        non-boolean mask.
      ValueError: at construction, for a size or `unroll` below 1, an unknown
        activation name or a dropout rate outside [0, 1); at the call, for `x` that is
        not `(B, T, in_features)`, a mask that does not fit it, or another batch size
        than the state a stateful layer keeps.

    Examples:
{examples}
    """


class SimpleRNN(_RNN):
    __doc__ = _rnn_doc(
        "SimpleRNN",
        """\
      >>> rnn = SimpleRNN(3, 4, return_sequences=True, rngs=nnx.Rngs(0))
      >>> rnn(jnp.ones((2, 5, 3)), mask=jnp.ones((2, 5), bool)).shape
      (2, 5, 4)""",
    )
    _kernel = staticmethod(simple_rnn)
    _init = staticmethod(init_simple_rnn_params)

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        activation: Any = "tanh",
        rngs: nnx.Rngs,
        **options: Any,
    ):
        super().__init__(
            in_features, hidden_features, rngs=rngs,
            cell_options={"activation": activation}, init_options={}, **options,
        )  # fmt: skip


class LSTM(_RNN):
    __doc__ = _rnn_doc(
        "LSTM",
        """\
      >>> rnn = LSTM(3, 4, return_state=True, rngs=nnx.Rngs(0))
      >>> mask = jnp.array([[True, True, False], [True, False, False]])
      >>> y, h, c = rnn(jnp.ones((2, 3, 3)), mask=mask)
      >>> y.shape, h.shape, c.shape, rnn.compute_mask(None, mask) is None
      ((2, 4), (2, 4), (2, 4), True)""",
    )
    _kernel = staticmethod(lstm)
    _init = staticmethod(init_lstm_params)
    _num_states = 2

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        unit_forget_bias: bool = True,
        use_cudnn: bool = False,
        rngs: nnx.Rngs,
        **options: Any,
    ):
        cell_options = {
            "activation": activation,
            "recurrent_activation": recurrent_activation,
            "use_cudnn": use_cudnn,
        }
        super().__init__(
            in_features, hidden_features, rngs=rngs, cell_options=cell_options,
            init_options={"unit_forget_bias": unit_forget_bias}, **options,
        )  # fmt: skip


class GRU(_RNN):
    __doc__ = _rnn_doc(
        "GRU",
        """\
      >>> rnn = GRU(3, 4, return_sequences=True, rngs=nnx.Rngs(0))
      >>> rnn.bias.shape
      (2, 12)
      >>> out = rnn(Masked(jnp.ones((2, 5, 3)), jnp.ones((2, 5), bool)))
      >>> type(out).__name__, out.data.shape
      ('Masked', (2, 5, 4))
      >>> GRU(3, 4, activation="gelu", rngs=nnx.Rngs(0))  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ValueError: `activation` must be one of ...; got 'gelu'...""",
    )
    _kernel = staticmethod(gru)
    _init = staticmethod(init_gru_params)

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        reset_after: bool = True,
        rngs: nnx.Rngs,
        **options: Any,
    ):
        super().__init__(
            in_features, hidden_features, rngs=rngs,
            cell_options={
                "activation": activation,
                "recurrent_activation": recurrent_activation,
                "reset_after": reset_after,
            },
            init_options={"reset_after": reset_after}, **options,
        )  # fmt: skip


def _check_halves(layer: _RNN, backward_layer: _RNN, merge_mode: str | None) -> None:
    """Raises `ValueError` unless the two directions of a `Bidirectional` fit together."""
    mismatches = [
        f"`{name}`: layer {getattr(layer, name)!r}, backward_layer "
        f"{getattr(backward_layer, name)!r}"
        for name in ("in_features", "return_sequences", "return_state")
        if getattr(layer, name) != getattr(backward_layer, name)
    ]
    merges_steps = merge_mode not in ("concat", None)
    if merges_steps and layer.hidden_features != backward_layer.hidden_features:
        mismatches.append(
            f"`hidden_features` (merge_mode={merge_mode!r} combines the outputs step by step): "
            f"layer {layer.hidden_features}, backward_layer {backward_layer.hidden_features}"
        )
    if mismatches:
        raise ValueError(
            "`backward_layer` must agree with `layer` (as in Keras); they differ in "
            + "; ".join(mismatches) + "."
        )
    if backward_layer.reverse == layer.reverse:
        raise ValueError(
            "`backward_layer.reverse` must be the opposite of `layer.reverse`; both are "
            f"{layer.reverse}."
        )


class Bidirectional(nnx.Module):
    """A forward and a backward RNN over the real steps, merged (`keras.layers.Bidirectional`).

    Args:
      layer: a `SimpleRNN`, `LSTM` or `GRU`; it runs forward and sets
        `return_sequences` and `return_state` for both directions.
      merge_mode: `"concat"` (`2H` features), `"sum"`, `"mul"`, `"ave"` (`H`), or `None`
        for the pair `(forward, backward)`.
      backward_layer: the backward RNN, with `reverse` opposite to `layer`'s and the
        same `in_features`, `return_sequences` and `return_state` (and `hidden_features`
        unless `merge_mode` is `"concat"` or `None`), else `ValueError`; by default a
        freshly initialised copy of `layer` (then `rngs` is required).
      rngs: `nnx.Rngs` for that copy.

    Call: `layer(x, mask=None, *, initial_state=None)` with `x` `(B, T, D)` (or a
    `Masked`), mask bool `(B, T)` (True = real step), `initial_state` the pair
    `(forward_state, backward_state)`. Backward outputs are aligned with the input
    positions, so pre- and post-padded copies of a sequence give the same outputs at
    real steps. As in Keras, padded steps output zeros when returning sequences.
    With `return_state` it returns `(y, *forward_states, *backward_states)`.
    Dropout and `stateful` are the layers' own: the default backward copy takes
    `layer`'s options and draws its own dropout masks; `reset_state()` resets both.

    Examples:
      >>> bi = Bidirectional(LSTM(3, 4, return_sequences=True, rngs=nnx.Rngs(0)),
      ...                    rngs=nnx.Rngs(1))
      >>> mask = jnp.array([[True, True, False]])
      >>> bi(jnp.ones((1, 3, 3)), mask=mask).shape, bi.compute_mask(None, mask)
      ((1, 3, 8), Array([[ True,  True, False]], dtype=bool))
    """

    def __init__(
        self,
        layer: _RNN,
        merge_mode: str | None = "concat",
        *,
        backward_layer: _RNN | None = None,
        rngs: nnx.Rngs | None = None,
    ):
        if not isinstance(layer, _RNN):
            raise TypeError(
                f"`layer` must be a SimpleRNN, LSTM or GRU; got {type(layer).__name__}."
            )
        check_choice(merge_mode, "merge_mode", MERGE_MODES)
        if backward_layer is None:
            if rngs is None:
                raise TypeError(
                    "`rngs` is required to initialise the backward copy of `layer`; pass "
                    "`rngs=nnx.Rngs(...)` or a `backward_layer`."
                )
            backward_layer = layer._clone(check_rngs(rngs), reverse=not layer.reverse)
        elif not isinstance(backward_layer, _RNN):
            raise TypeError(
                "`backward_layer` must be a SimpleRNN, LSTM or GRU; got "
                f"{type(backward_layer).__name__}."
            )
        _check_halves(layer, backward_layer, merge_mode)
        self.forward_layer = layer
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode

    @property
    def return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    @property
    def return_state(self) -> bool:
        return self.forward_layer.return_state

    def __call__(self, x: Any, mask: Any = None, *, initial_state: Any = None) -> Any:
        x, mask, was_masked = unpack(x, mask)
        check_features(x, self.forward_layer.in_features, self)
        init_f, init_b = (None, None) if initial_state is None else _check_pair(
            initial_state, "initial_state", "initial states")  # fmt: skip
        seq = self.return_sequences
        (out_f, out_b), (states_f, states_b) = self._run_both(x, mask, (init_f, init_b), seq)
        if seq:
            y = merge_outputs(self.merge_mode, out_f, out_b)
            if was_masked:
                y = Masked(y, mask if self.merge_mode else (mask, mask))
        else:
            dtype = out_f.dtype
            y = merge_outputs(self.merge_mode, states_f[0].astype(dtype), states_b[0].astype(dtype))
        return (y, *states_f, *states_b) if self.forward_layer.return_state else y

    def _run_both(
        self, x: Any, mask: Any, initial_states: tuple[Any, Any], zero_output_for_mask: bool
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[tuple[jax.Array, ...], ...]]:
        """Both layers' `(outputs, states)`, each layer in its own direction."""
        layers = (self.forward_layer, self.backward_layer)
        runs = [layer._run(x, mask, s, zero_output_for_mask)
                for layer, s in zip(layers, initial_states, strict=True)]  # fmt: skip
        return (runs[0][0], runs[1][0]), (runs[0][1], runs[1][1])

    def reset_state(self) -> None:
        """Forgets the kept state of both layers (see `stateful`)."""
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    def compute_mask(self, x: Any, mask: Any = None) -> Any:
        """The mask of the main output (a pair for `merge_mode=None`), `None` without sequences."""
        if not self.return_sequences:
            return None
        return mask if self.merge_mode else (mask, mask)
