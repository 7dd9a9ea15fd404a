"""Keras-layout recurrent layers over the core kernels, `SimpleRNN`, `LSTM`, `GRU`, and
`Bidirectional`, as Linen modules.

Shape legend: B batch, T time steps, D input features, H hidden units. A mask is bool
`(B, T)`, True = real step, False = padding. The layers hold Keras-named parameters
and call the pure kernels of `masking_jax._rnn`; all the masking happens there.
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from .._checks import check_choice, check_int, check_param_dtype
from .._layer_calls import step_input_shape, unpack
from .._layer_docs import CELL_DOCS, RNN_OPTIONS, describe
from .._masks import Masked
from .._rnn._activations import get_activation
from .._rnn._init import init_gru_params, init_lstm_params, init_simple_rnn_params
from .._rnn._kernels import gru, lstm, simple_rnn
from .._rnn._layers import MERGE_MODES, _check_pair, merge_outputs
from ._any_cell import RNN, check_options

_FLAGS = ("return_sequences", "return_state", "reverse", "zero_output_for_mask", "use_bias")
_ACTIVATION_OPTIONS = ("activation", "recurrent_activation")
_PARAM_NAMES = ("kernel", "recurrent_kernel", "bias")


def _keras_param(
    key: jax.Array, init: Any, name: str, in_features: int, hidden: int, dtype: Any,
    options: dict[str, Any],
) -> jax.Array:  # fmt: skip
    """One parameter of the Keras-default initialiser `init`: `kernel`, ... or `bias`."""
    return init(key, in_features, hidden, dtype=dtype, **options)[name]


class _KerasRNN(nn.Module):
    """Shared body of `SimpleRNN`, `LSTM` and `GRU`: parameters plus a call of the kernel.

    Subclasses set `_kernel`, `_init`, `_num_states`, and list their kernel options
    (activations, `reset_after`, ...) in `_cell_options` and their initialiser options
    (`unit_forget_bias`, ...) in `_init_options`, and their own bool options in `_extra_flags`.
    """

    features: int
    _: dataclasses.KW_ONLY
    return_sequences: bool = False
    return_state: bool = False
    reverse: bool = False
    zero_output_for_mask: bool = False
    use_bias: bool = True
    unroll: bool | int = False
    param_dtype: Any = jnp.float32
    activation: Any = "tanh"

    _kernel: ClassVar[Any]
    _init: ClassVar[Any]
    _num_states: ClassVar[int] = 1
    _cell_options: ClassVar[tuple[str, ...]] = ("activation",)
    _init_options: ClassVar[tuple[str, ...]] = ()
    _extra_flags: ClassVar[tuple[str, ...]] = ()  # the subclass's own bool options

    def __post_init__(self) -> None:
        check_int(self.features, "features", minimum=1)
        check_options(self, _FLAGS + self._extra_flags)
        check_param_dtype(self.param_dtype)
        for name in _ACTIVATION_OPTIONS:  # fail when the layer is built, not at its first call
            if name in self._cell_options:
                get_activation(getattr(self, name), name)
        super().__post_init__()

    def _options(self, names: tuple[str, ...]) -> dict[str, Any]:
        return {name: getattr(self, name) for name in names}

    @nn.compact
    def __call__(self, x: Any, mask: Any = None, *, initial_state: Any = None) -> Any:
        x, mask, was_masked = unpack(x, mask)
        in_features = step_input_shape(x)[1]
        if self.has_variable("params", "kernel"):  # applied: D is the kernel's
            expected = self.get_variable("params", "kernel").shape[0]
            if in_features != expected:
                raise ValueError(
                    f"`x` must have {expected} features (last axis), as the layer's `kernel` "
                    f"({expected}, ...) was initialised; got shape {jnp.shape(x)}."
                )
        init_options = self._options(self._init_options)
        params = {"bias": None}  # the kernels' layout without a bias
        for name in _PARAM_NAMES if self.use_bias else _PARAM_NAMES[:2]:
            params[name] = self.param(
                name, _keras_param, type(self)._init, name, in_features, self.features,
                self.param_dtype, init_options,
            )  # fmt: skip
        outputs, state = type(self)._kernel(
            params, x, mask, initial_state=initial_state, reverse=self.reverse,
            zero_output_for_mask=self.zero_output_for_mask, unroll=self.unroll,
            **self._options(self._cell_options),
        )  # fmt: skip
        states = tuple(state) if self._num_states == 2 else (state,)
        if self.return_sequences:
            y = Masked(outputs, mask) if was_masked else outputs
        else:
            y = states[0].astype(outputs.dtype)  # h after the last real step
        return (y, *states) if self.return_state else y


def _rnn_doc(name: str, examples: str) -> str:
    """The docstring of the RNN layer `name`: its own lines, then the attributes every RNN has."""
    cell = CELL_DOCS[name]
    return f"""{cell.head()}

    `variables["params"]` holds `kernel`, `recurrent_kernel` and `bias` in the Keras 3
    layout (Keras-default initialisers: glorot-uniform `kernel`, orthogonal
    `recurrent_kernel`, zero `bias`), so it goes straight into the matching
    `masking_jax` kernel (with `bias=None` added when `use_bias=False`), and Keras
    weights go straight in.

    Attributes:
      features: H, the hidden units (D is read from the input).
{describe(cell.options)}
{describe(RNN_OPTIONS)}

    Every attribute but `features` is keyword-only. Call: `layer(x, mask=None, *,
    initial_state=None)` with `x` `(B, T, D)` (or a `Masked`, then sequence outputs come
    back `Masked`), `mask` bool `(B, T)`, True = real step, any layout; padded steps are
    skipped and their content (even NaN) never matters.

    Raises:
      TypeError: for options of the wrong type (a float `features`, a flag that is not a
        Python bool, an integer `param_dtype`) and a non-boolean mask.
      ValueError: at construction, for `features` or `unroll` below 1 or an unknown
        activation name; at the call, for `x` that is not `(B, T, D)` with the D of the
        initialised `kernel`, or a mask that does not fit it.

    Examples:
{examples}
    """


class SimpleRNN(_KerasRNN):
    __doc__ = _rnn_doc(
        "SimpleRNN",
        """\
      >>> import jax, jax.numpy as jnp
      >>> layer = SimpleRNN(4, return_sequences=True)
      >>> x, mask = jnp.ones((2, 5, 3)), jnp.ones((2, 5), bool)
      >>> variables = layer.init(jax.random.key(0), x, mask=mask)
      >>> layer.apply(variables, x, mask=mask).shape
      (2, 5, 4)""",
    )
    _kernel = staticmethod(simple_rnn)
    _init = staticmethod(init_simple_rnn_params)


class LSTM(_KerasRNN):
    __doc__ = _rnn_doc(
        "LSTM",
        """\
      >>> import jax, jax.numpy as jnp
      >>> import masking_jax as mj
      >>> layer = LSTM(4, return_state=True)
      >>> x, mask = jnp.ones((2, 3, 3)), jnp.array([[True, True, False], [True, False, False]])
      >>> variables = layer.init(jax.random.key(0), x, mask=mask)
      >>> y, h, c = layer.apply(variables, x, mask=mask)
      >>> _, (h_core, c_core) = mj.lstm(variables["params"], x, mask)  # the same params
      >>> y.shape, bool(jnp.allclose(h, h_core))
      ((2, 4), True)""",
    )
    _kernel = staticmethod(lstm)
    _init = staticmethod(init_lstm_params)
    _num_states = 2
    _cell_options = ("activation", "recurrent_activation", "use_cudnn")
    _init_options = ("unit_forget_bias",)
    _extra_flags = ("unit_forget_bias", "use_cudnn")

    _: dataclasses.KW_ONLY
    recurrent_activation: Any = "sigmoid"
    unit_forget_bias: bool = True
    use_cudnn: bool = False


class GRU(_KerasRNN):
    __doc__ = _rnn_doc(
        "GRU",
        """\
      >>> import jax, jax.numpy as jnp
      >>> layer = GRU(4, return_sequences=True)
      >>> x = jnp.ones((2, 5, 3))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> variables["params"]["bias"].shape
      (2, 12)
      >>> GRU(4, activation="gelu")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ValueError: `activation` must be one of ...; got 'gelu'...""",
    )
    _kernel = staticmethod(gru)
    _init = staticmethod(init_gru_params)
    _cell_options = ("activation", "recurrent_activation", "reset_after")
    _init_options = ("reset_after",)
    _extra_flags = ("reset_after",)

    _: dataclasses.KW_ONLY
    recurrent_activation: Any = "sigmoid"
    reset_after: bool = True


_RECURRENT = (RNN, SimpleRNN, LSTM, GRU)


def _check_recurrent(layer: Any, name: str) -> None:
    if not isinstance(layer, _RECURRENT):
        raise TypeError(
            f"`{name}` must be a masking_jax.linen RNN, SimpleRNN, LSTM or GRU; got "
            f"{type(layer).__name__}."
        )


class Bidirectional(nn.Module):
    """A forward and a backward RNN over the real steps, merged (`keras.layers.Bidirectional`).

    Attributes:
      forward: a `RNN(cell)`, `SimpleRNN`, `LSTM` or `GRU`; its `return_sequences` and
        `return_state` hold for both directions.
      backward: the backward layer, with `reverse` opposite to `forward`'s and the same
        `return_sequences` and `return_state`; by default a copy of `forward` (its own
        variables) with `reverse` flipped.
      merge_mode: `"concat"` (`2H` features), `"sum"`, `"mul"`, `"ave"` (`H`), or `None`
        for the pair `(forward, backward)`.

    Variables: `{"forward": ..., "backward": ...}`, each the layer's own. Call:
    `layer(x, mask=None, *, initial_state=None)` with `x` `(B, T, D)` (or a `Masked`),
    mask bool `(B, T)` (True = real step, any layout), `initial_state` the pair
    `(forward_state, backward_state)`. Backward outputs are aligned with the input
    positions, so pre- and post-padded copies of a sequence give the same outputs at
    real steps. As in Keras, padded steps output zeros when returning sequences. With
    `return_state` it returns `(y, *forward_states, *backward_states)` (a layer's states
    are `h`, LSTM's `h, c`, or `RNN`'s carry).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from masking_jax.linen import RNN
      >>> bi = Bidirectional(RNN(nn.GRUCell(4)))
      >>> x, mask = jnp.ones((1, 3, 2)), jnp.array([[True, True, False]])
      >>> variables = bi.init(jax.random.key(0), x, mask=mask)
      >>> sorted(variables["params"]), bi.apply(variables, x, mask=mask).shape
      (['backward', 'forward'], (1, 3, 8))
    """

    forward: nn.Module
    backward: nn.Module | None = None
    merge_mode: str | None = "concat"

    def __post_init__(self) -> None:
        _check_recurrent(self.forward, "forward")
        if self.backward is not None:
            _check_recurrent(self.backward, "backward")
            if self.backward.reverse == self.forward.reverse:
                raise ValueError(
                    "`backward.reverse` must be the opposite of `forward.reverse`; both are "
                    f"{self.forward.reverse}."
                )
            for name in ("return_sequences", "return_state"):
                if getattr(self.backward, name) != getattr(self.forward, name):
                    raise ValueError(
                        f"`backward.{name}` must equal `forward.{name}` "
                        f"({getattr(self.forward, name)}); got {getattr(self.backward, name)}."
                    )
        check_choice(self.merge_mode, "merge_mode", MERGE_MODES)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Any, mask: Any = None, *, initial_state: Any = None) -> Any:
        x, mask, was_masked = unpack(x, mask)
        initial = (None, None) if initial_state is None else _check_pair(
            initial_state, "initial_state", "initial states")  # fmt: skip
        backward = self.backward
        if backward is None:
            backward = self.forward.copy(name="backward", reverse=not self.forward.reverse)
        (y_f, *states_f), (y_b, *states_b) = (
            _as_tuple(_call(layer, x, mask, state), layer.return_state)
            for layer, state in zip((self.forward, backward), initial, strict=True)
        )
        sequences = self.forward.return_sequences
        if sequences and mask is not None:  # Keras' Bidirectional: zeros at padded steps
            real = jnp.asarray(mask)[:, :, None]
            y_f, y_b = (jnp.where(real, y, 0) for y in (y_f, y_b))  # 0 is weak: y's dtype
        y = merge_outputs(self.merge_mode, y_f, y_b)
        if sequences and was_masked:
            y = Masked(y, mask if self.merge_mode else (mask, mask))
        return (y, *states_f, *states_b) if self.forward.return_state else y


def _call(layer: nn.Module, x: Any, mask: Any, initial: Any) -> Any:
    """`layer(x, mask)` with its initial state under the name its call takes."""
    name = "initial_carry" if isinstance(layer, RNN) else "initial_state"
    return layer(x, mask, **{name: initial})


def _as_tuple(result: Any, return_state: bool) -> tuple[Any, ...]:
    """A layer's result as `(y, *states)`."""
    return tuple(result) if return_state else (result,)
