"""The three cells' math in the Keras 3 weight layout.

A cell is a small frozen (hashable) dataclass holding its static options, so it can
be a static argument of `jax.jit`. Every cell offers the same methods, which is all
the masked scan driver (`_scan.py`) needs. One step is split at its one recurrent
matmul, so the driver owns every large matmul (and its gradient) and the cell only
the cheap elementwise gate math:

- `project(params, x)`: the input projection `x K + b` of any number of steps,
  `(..., D) -> (..., G*H)` (G gates: 1 SimpleRNN, 4 LSTM, 3 GRU).
- `recurrent_kernel(params)`: the matrix `R'` of the recurrent matmul `hr = h R'`.
- `gate_params(params)`: the small params the gate math reads (a bias row, GRU's
  candidate kernel without `reset_after`), or `None`.
- `preact(xp_t, hr_t)`: what the gate math needs of both matmuls, linear in them
  (the sum `xp + hr` for SimpleRNN, and for LSTM split in its four gate blocks:
  what the backward pass keeps per step, one sum instead of two products; GRU sums
  its z and r parts only). Blocks of at most `(B, 2H)` keep each stored residual
  small (on Linux, CPU buffers over 32 MiB are fresh `mmap`s, paged in every call).
- `gate_math(gp, pre, state) -> (output_t, new_state)`: the elementwise gate math.
- `step(params, xp_t, state)`: all of the above for one step (the plain driver).
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


class _Cell:
    """The parts every cell shares: one step from the split interface, and the outputs."""

    def project(self, params: Params, x: jax.Array) -> jax.Array:
        return _project(x, params["kernel"], params["bias"])

    def recurrent_kernel(self, params: Params) -> jax.Array:
        return params["recurrent_kernel"]

    def gate_params(self, params: Params) -> Any:
        return None

    def preact(self, xp_t: jax.Array, hr_t: jax.Array) -> Any:
        return xp_t + hr_t

    def gate_math(self, gp: Any, pre: Any, state: State) -> tuple[jax.Array, State]:
        raise NotImplementedError

    def step(self, params: Params, xp_t: jax.Array, state: State) -> tuple[jax.Array, State]:
        hr_t = self.output(state) @ self.recurrent_kernel(params)
        return self.gate_math(self.gate_params(params), self.preact(xp_t, hr_t), state)

    def output(self, state: State) -> jax.Array:
        return state

    def zero_state(self, batch: int, hidden: int, dtype: Any) -> State:
        return jnp.zeros((batch, hidden), dtype)


@dataclasses.dataclass(frozen=True)
class SimpleRNNCell(_Cell):
    """`h = activation(x K + h R + b)`."""

    activation: Callable[[jax.Array], jax.Array]

    name = "SimpleRNN"
    gates = 1
    state_names = ("h",)

    def bias_shape(self, hidden: int) -> tuple[int, ...]:
        return (hidden,)

    def gate_math(self, gp: Any, pre: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = self.activation(pre)
        return h, h


@dataclasses.dataclass(frozen=True)
class LSTMCell(_Cell):
    """Keras LSTM: gates i, f, c, o; `c' = f c + i act(z_c)`, `h' = o act(c')`."""

    activation: Callable[[jax.Array], jax.Array]
    recurrent_activation: Callable[[jax.Array], jax.Array]

    name = "LSTM"
    gates = 4
    state_names = ("h", "c")

    def bias_shape(self, hidden: int) -> tuple[int, ...]:
        return (4 * hidden,)

    def preact(self, xp_t: jax.Array, hr_t: jax.Array) -> tuple[jax.Array, ...]:
        # Four (B, H) gate blocks, not one (B, 4H): four smaller stored residuals.
        return tuple(jnp.split(xp_t + hr_t, 4, axis=-1))

    def gate_math(
        self, gp: Any, pre: tuple[jax.Array, ...], state: tuple[jax.Array, jax.Array]
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        _, c = state
        z_i, z_f, z_c, z_o = pre
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
class GRUCell(_Cell):
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

    def recurrent_kernel(self, params: Params) -> jax.Array:
        rec = params["recurrent_kernel"]
        # Without reset_after only the z and r blocks multiply h itself.
        return rec if self.reset_after else rec[:, : 2 * rec.shape[0]]

    def gate_params(self, params: Params) -> Any:
        if not self.reset_after:
            return params["recurrent_kernel"][:, 2 * params["recurrent_kernel"].shape[0] :]
        bias = params["bias"]
        return None if bias is None else bias[1]

    def preact(self, xp_t: jax.Array, hr_t: jax.Array) -> tuple[jax.Array, ...]:
        # z and r add both matmuls (kept as one sum); the candidate needs its parts apart.
        two = 2 * (xp_t.shape[-1] // 3)
        if self.reset_after:
            return xp_t[..., :two] + hr_t[..., :two], xp_t[..., two:], hr_t[..., two:]
        return xp_t[..., :two] + hr_t, xp_t[..., two:]

    def gate_math(
        self, gp: Any, pre: tuple[jax.Array, ...], h: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        zr, x_h = pre[0], pre[1]
        if self.reset_after:
            r_h = pre[2]
            if gp is not None:  # the recurrent bias row
                zr = zr + gp[None, : 2 * h.shape[-1]]
                r_h = r_h + gp[None, 2 * h.shape[-1] :]
        z, r = jnp.split(self.recurrent_activation(zr), 2, axis=-1)
        if self.reset_after:
            candidate = self.activation(x_h + r * r_h)
        else:
            candidate = self.activation(x_h + (r * h) @ gp)
        h = z * h + (1 - z) * candidate
        return h, h


Cell = SimpleRNNCell | LSTMCell | GRUCell


def _project(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """`x K + b` over all steps: `(..., D) -> (..., G*H)`."""
    xp = x @ kernel
    return xp if bias is None else xp + bias.reshape((1,) * (x.ndim - 1) + bias.shape)
