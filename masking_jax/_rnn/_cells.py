"""SimpleRNN, LSTM and GRU: the Keras 3 cells as instances of the `GatedCell` contract.

Each cell also knows its Keras 3 weight layout (`param_shapes`), the names of its
states and its default initial state, which is all the argument checks need: a
new cell is one new class here.

Layout (Keras 3): `kernel` `(D, G*H)`, `recurrent_kernel` `(H, G*H)`, gates in
the Keras order (LSTM i, f, c, o; GRU z, r, h). `bias` `(H,)` / `(4H,)`; GRU
`(2, 3H)` (row 0 input, row 1 recurrent) with `reset_after=True`, `(3H,)` without.
`bias` may be `None` (Keras `use_bias=False`).

Shape legend: B batch, D input features, H hidden units, G gates.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ._contract import GatedCell

Params = dict[str, Any]  # "kernel", "recurrent_kernel", "bias" (Keras 3 layout)
Activation = Callable[[jax.Array], jax.Array]


class KerasCell(GatedCell):
    """A cell in the Keras 3 layout: `kernel`, `recurrent_kernel`, `bias`; state h or (h, c)."""

    name: str  # the Keras layer's name
    label: str  # the name with its article, for messages: "an LSTM"
    gates: int
    state_names: tuple[str, ...] = ("h",)

    def bias_shape(self, hidden: int) -> tuple[int, ...]:
        return (self.gates * hidden,)

    def legend(self) -> dict[str, str]:
        """Each parameter's shape in the shape legend, e.g. LSTM `kernel` "(D, 4H)"."""
        g = "" if self.gates == 1 else str(self.gates)
        return {"kernel": f"(D, {g}H)", "recurrent_kernel": f"(H, {g}H)", "bias": f"({g}H,)"}

    def param_shapes(self, in_features: int, hidden: int) -> dict[str, tuple[int, ...]]:
        """The Keras 3 shape of each parameter for D = `in_features`, H = `hidden`."""
        g = self.gates * hidden
        return {
            "kernel": (in_features, g),
            "recurrent_kernel": (hidden, g),
            "bias": self.bias_shape(hidden),
        }

    def output_of_state(self, state: Any) -> jax.Array:
        return self.output(state)  # h: y is the h of the new state

    def layout_hint(self, key: str, shape: tuple[int, ...], hidden: int) -> str:
        """A hint for a parameter of the wrong shape (say, another cell option's layout)."""
        del key, shape, hidden
        return ""

    def project(self, params: Params, x: jax.Array) -> jax.Array:
        return _project(x, params["kernel"], params["bias"])

    def recurrent_kernel(self, params: Params) -> jax.Array:
        return params["recurrent_kernel"]

    def output(self, state: Any) -> jax.Array:
        return state

    def gate_math_dropped(
        self, gate_params: Any, preact: Any, state: Any, recurrent_scale: jax.Array
    ) -> tuple[Any, jax.Array]:
        """`gate_math` when recurrent dropout scales h by `recurrent_scale` `(B, H)`.

        The recurrent matmul has already seen the dropped h, so this is `gate_math`;
        a cell that multiplies h by a weight elsewhere (GRU with `reset_after=False`)
        drops it there too.
        """
        del recurrent_scale
        return self.gate_math(gate_params, preact, state)

    def zero_state(self, batch: int, hidden: int, dtype: Any) -> Any:
        """The default initial state: zeros, `(B, H)` per state."""
        zeros = tuple(jnp.zeros((batch, hidden), dtype) for _ in self.state_names)
        return zeros if len(zeros) > 1 else zeros[0]


@dataclasses.dataclass(frozen=True)
class SimpleRNNCell(KerasCell):
    """`h = activation(x K + h R + b)`."""

    activation: Activation

    name = "SimpleRNN"
    label = "a SimpleRNN"
    gates = 1

    def gate_math(self, gate_params: Any, preact: jax.Array, h: jax.Array) -> tuple:
        h = self.activation(preact)
        return h, h


@dataclasses.dataclass(frozen=True)
class LSTMCell(KerasCell):
    """Keras LSTM: gates i, f, c, o; `c' = f c + i act(z_c)`, `h' = o act(c')`."""

    activation: Activation
    recurrent_activation: Activation

    name = "LSTM"
    label = "an LSTM"
    gates = 4
    state_names = ("h", "c")

    def gate_math(
        self, gate_params: Any, preact: jax.Array, state: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        _, c = state
        z_i, z_f, z_c, z_o = jnp.split(preact, 4, axis=-1)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        o = self.recurrent_activation(z_o)
        c = f * c + i * self.activation(z_c)
        h = o * self.activation(c)
        return (h, c), h

    def output(self, state: tuple[jax.Array, jax.Array]) -> jax.Array:
        return state[0]


@dataclasses.dataclass(frozen=True)
class GRUCell(KerasCell):
    """Keras GRU: gates z, r, h; `h' = z h + (1 - z) act(x_h + r (h R_h + b_h))`.

    With `reset_after=False` the reset gate applies before the matmul,
    `act(x_h + (r h) R_h)`, and there is no recurrent bias.
    """

    activation: Activation
    recurrent_activation: Activation
    reset_after: bool = True

    name = "GRU"
    label = "a GRU"
    gates = 3

    def bias_shape(self, hidden: int) -> tuple[int, ...]:
        return (2, 3 * hidden) if self.reset_after else (3 * hidden,)

    def legend(self) -> dict[str, str]:
        return super().legend() | ({"bias": "(2, 3H)"} if self.reset_after else {})

    def layout_hint(self, key: str, shape: tuple[int, ...], hidden: int) -> str:
        other = dataclasses.replace(self, reset_after=not self.reset_after)
        if key == "bias" and shape == other.bias_shape(hidden):
            return (
                f" That is the bias of a GRU with reset_after={other.reset_after}; pass "
                f"`reset_after={other.reset_after}`."
            )
        return ""

    def project(self, params: Params, x: jax.Array) -> jax.Array:
        bias = params["bias"]
        if bias is not None and self.reset_after:
            bias = bias[0]
        return _project(x, params["kernel"], bias)

    def recurrent_kernel(self, params: Params) -> jax.Array:
        rec = params["recurrent_kernel"]
        # Without reset_after only the z and r blocks multiply h itself.
        return rec if self.reset_after else rec[:, : 2 * rec.shape[0]]

    def recurrent_bias(self, params: Params) -> jax.Array | None:
        bias = params["bias"]
        return None if bias is None or not self.reset_after else bias[1]

    def gate_params(self, params: Params) -> Any:
        if self.reset_after:
            return None
        # Without reset_after the candidate's recurrent kernel multiplies r * h.
        return params["recurrent_kernel"][:, 2 * params["recurrent_kernel"].shape[0] :]

    def preact(self, xp_t: jax.Array, hr_t: jax.Array) -> tuple[jax.Array, ...]:
        # z and r add both matmuls (kept as one sum); the candidate needs its parts apart.
        two = 2 * (xp_t.shape[-1] // 3)
        if self.reset_after:
            return xp_t[..., :two] + hr_t[..., :two], xp_t[..., two:], hr_t[..., two:]
        return xp_t[..., :two] + hr_t, xp_t[..., two:]

    def gate_math(
        self, gate_params: Any, preact: tuple[jax.Array, ...], h: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        return self._gate_math(gate_params, preact, h, h)

    def gate_math_dropped(
        self, gate_params: Any, preact: Any, h: jax.Array, recurrent_scale: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        return self._gate_math(gate_params, preact, h, h * recurrent_scale)

    def _gate_math(
        self, gate_params: Any, preact: tuple[jax.Array, ...], h: jax.Array, h_in: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """The gates from `preact`; `h_in` (h, or h dropped) enters the candidate's matmul."""
        zr, x_h = preact[0], preact[1]
        z, r = jnp.split(self.recurrent_activation(zr), 2, axis=-1)
        if self.reset_after:  # `preact[2]` = `h R_h + b_h`, the recurrent bias included
            candidate = self.activation(x_h + r * preact[2])
        else:
            candidate = self.activation(x_h + (r * h_in) @ gate_params)
        h = z * h + (1 - z) * candidate
        return h, h


def _project(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """`x K + b` over all steps: `(..., D) -> (..., G*H)`."""
    xp = x @ kernel
    return xp if bias is None else xp + bias.reshape((1,) * (x.ndim - 1) + bias.shape)
