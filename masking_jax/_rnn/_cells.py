"""The three cells' math in the Keras 3 weight layout.

A cell is a small frozen (hashable) dataclass holding its static options, so it can
be a static argument of `jax.jit`. Every cell offers the same four methods, which is
all the masked scan driver (`_scan.py`) needs:

- `project(params, x)`: the input projection of all steps at once, `(B, T, D) ->
  (B, T, G*H)`, input bias included (G gates: 1 SimpleRNN, 4 LSTM, 3 GRU).
- `step(params, xp_t, state) -> (output_t, new_state)` for one step, `xp_t` `(B, G*H)`.
- `output(state)`: the output a state stands for (h), used at masked steps.
- `zero_state(B, H, dtype)`: the default initial state.

Layout (Keras 3): `kernel` `(D, G*H)`, `recurrent_kernel` `(H, G*H)`, gates in
the Keras order (LSTM i, f, c, o; GRU z, r, h). `bias` `(H,)` / `(4H,)`; GRU
`(2, 3H)` (row 0 input, row 1 recurrent) with `reset_after=True`, `(3H,)` without.
`bias` may be `None` (Keras `use_bias=False`).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = dict[str, Any]
State = Any  # h (B, H), or the pair (h, c) for LSTM


@dataclasses.dataclass(frozen=True)
class SimpleRNNCell:
    """`h = activation(x K + h R + b)`."""

    activation: Callable[[jax.Array], jax.Array]

    name = "SimpleRNN"
    gates = 1
    state_names = ("h",)

    def bias_shape(self, hidden: int) -> tuple[int, ...]:
        return (hidden,)

    def project(self, params: Params, x: jax.Array) -> jax.Array:
        return _project(x, params["kernel"], params["bias"])

    def step(self, params: Params, xp_t: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = self.activation(xp_t + h @ params["recurrent_kernel"])
        return h, h

    def output(self, h: jax.Array) -> jax.Array:
        return h

    def zero_state(self, batch: int, hidden: int, dtype: Any) -> jax.Array:
        return jnp.zeros((batch, hidden), dtype)


@dataclasses.dataclass(frozen=True)
class LSTMCell:
    """Keras LSTM: gates i, f, c, o; `c' = f c + i act(z_c)`, `h' = o act(c')`."""

    activation: Callable[[jax.Array], jax.Array]
    recurrent_activation: Callable[[jax.Array], jax.Array]

    name = "LSTM"
    gates = 4
    state_names = ("h", "c")

    def bias_shape(self, hidden: int) -> tuple[int, ...]:
        return (4 * hidden,)

    def project(self, params: Params, x: jax.Array) -> jax.Array:
        return _project(x, params["kernel"], params["bias"])

    def step(
        self, params: Params, xp_t: jax.Array, state: tuple[jax.Array, jax.Array]
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        h, c = state
        z_i, z_f, z_c, z_o = jnp.split(xp_t + h @ params["recurrent_kernel"], 4, axis=-1)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        o = self.recurrent_activation(z_o)
        c = f * c + i * self.activation(z_c)
        h = o * self.activation(c)
        return h, (h, c)

    def output(self, state: tuple[jax.Array, jax.Array]) -> jax.Array:
        return state[0]

    def zero_state(self, batch: int, hidden: int, dtype: Any) -> tuple[jax.Array, jax.Array]:
        return jnp.zeros((batch, hidden), dtype), jnp.zeros((batch, hidden), dtype)


@dataclasses.dataclass(frozen=True)
class GRUCell:
    """Keras GRU: gates z, r, h; `h' = z h + (1 - z) act(x_h + r (h R_h + b_h))`.

    With `reset_after=False` the reset gate applies before the matmul,
    `act(x_h + (r h) R_h)`, and there is no recurrent bias.
    """

    activation: Callable[[jax.Array], jax.Array]
    recurrent_activation: Callable[[jax.Array], jax.Array]
    reset_after: bool = True

    name = "GRU"
    gates = 3
    state_names = ("h",)

    def bias_shape(self, hidden: int) -> tuple[int, ...]:
        return (2, 3 * hidden) if self.reset_after else (3 * hidden,)

    def project(self, params: Params, x: jax.Array) -> jax.Array:
        bias = params["bias"]
        if bias is not None and self.reset_after:
            bias = bias[0]
        return _project(x, params["kernel"], bias)

    def step(self, params: Params, xp_t: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        rec, bias = params["recurrent_kernel"], params["bias"]
        hidden = h.shape[-1]
        x_z, x_r, x_h = jnp.split(xp_t, 3, axis=-1)
        if self.reset_after:
            inner = h @ rec
            if bias is not None:
                inner = inner + bias[1][None, :]
            r_z, r_r, r_h = jnp.split(inner, 3, axis=-1)
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            candidate = self.activation(x_h + r * r_h)
        else:
            r_z, r_r = jnp.split(h @ rec[:, : 2 * hidden], 2, axis=-1)
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            candidate = self.activation(x_h + (r * h) @ rec[:, 2 * hidden :])
        h = z * h + (1 - z) * candidate
        return h, h

    def output(self, h: jax.Array) -> jax.Array:
        return h

    def zero_state(self, batch: int, hidden: int, dtype: Any) -> jax.Array:
        return jnp.zeros((batch, hidden), dtype)


Cell = SimpleRNNCell | LSTMCell | GRUCell


def _project(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """`x K + b` over all steps: `(B, T, D) -> (B, T, G*H)`."""
    xp = jnp.einsum("btd,dg->btg", x, kernel)
    return xp if bias is None else xp + bias[None, None, :]
