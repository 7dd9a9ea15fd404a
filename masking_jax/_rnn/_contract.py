"""The cell contract: what a recurrent cell gives the masked scan.

A cell is a frozen (hashable) dataclass holding its static options, so it can be
a static argument of `jax.jit`. The masked scan (`_driver.run`) needs only the
methods below; it owns the masking (skipped steps, carried states, outputs at
padded steps), the compaction of any mask layout and the custom VJP.

- `Cell`: any cell. One step is `step(params, state, x_t) -> (new_state, y_t)`;
  the backward pass re-runs `jax.vjp` of `step`, step by step.
- `GatedCell`: a cell whose step splits at its one recurrent matmul (SimpleRNN,
  LSTM, GRU). The backward pass then keeps only the gate pre-activations per step
  and does the weight gradients as one GEMM per chunk of steps (the fast path).
- `StepCell`: a user's `step` function as a `Cell` (the public `masking_jax.rnn`).
- `WrappedCell`: a `GatedCell` around another one; `ProjectedInputs`, such a cell
  over inputs projected up front.

Shape legend: B batch (rows), D input features, H outputs per step, G gates.
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = Any  # any pytree of arrays
State = Any  # any pytree of (B, ...) arrays


class Cell(abc.ABC):
    """A recurrent cell: one step for every row at once."""

    @abc.abstractmethod
    def step(self, params: Params, state: State, x_t: jax.Array) -> tuple[State, jax.Array]:
        """One step: `x_t` `(B, D)`, `state` a pytree of `(B, ...)` arrays.

        Returns `(new_state, y_t)`: the state after the step (the structure, shapes
        and dtypes of `state`) and the step's output `y_t` `(B, H)`. Rows are
        independent: row b of the results depends on row b of `state` and `x_t` only.
        """

    def initial_output(
        self, params: Params, state: State, output: jax.ShapeDtypeStruct
    ) -> jax.Array:
        """The output at padded steps before the first real one, shaped like `output`.

        Zeros here; the Keras cells give the initial h instead.
        """
        del params, state
        return jnp.zeros(output.shape, output.dtype)

    def output_of_state(self, state: State) -> jax.Array | None:
        """The step's output `(B, H)` read off the state it leaves, or `None`.

        `None` here: the scan carries the last output for the padded steps. A cell
        whose output is part of its state (the Keras cells: h), and whose
        `initial_output` is that of the initial state, returns it: a padded step
        then outputs the held state's.
        """
        del state
        return None


class GatedCell(Cell):
    """A cell whose step splits at its one recurrent matmul, `hr = output(state) R' + b'`.

    `step(params, state, x_t)` is
    `gate_math(gate_params(params), preact(project(params, x_t), hr), state)`: the
    driver does the matmuls (and their gradients, as GEMMs over whole chunks) and the
    cell only the elementwise gate math.
    """

    @abc.abstractmethod
    def project(self, params: Params, x: jax.Array) -> jax.Array:
        """The input projection `x K + b` of any number of steps: `(..., D) -> (..., G*H)`."""

    @abc.abstractmethod
    def recurrent_kernel(self, params: Params) -> jax.Array:
        """`R'` `(H, G'*H)`, the matrix of the recurrent matmul `hr = output(state) R'`."""

    def recurrent_bias(self, params: Params) -> jax.Array | None:
        """`b'` `(G'*H,)`, added to the recurrent matmul, or `None`."""
        del params
        return None

    def gate_params(self, params: Params) -> Any:
        """Any other params the gate math reads, or `None`."""
        del params
        return None

    def preact(self, xp_t: jax.Array, hr_t: jax.Array) -> Any:
        """What the gate math needs of both matmuls; linear in `(xp_t, hr_t)`.

        The sum `xp_t + hr_t` here (`(B, G*H)`). It is what the backward pass keeps
        per step, so a cell returns only what its gate math reads.
        """
        return xp_t + hr_t

    @abc.abstractmethod
    def gate_math(self, gate_params: Any, preact: Any, state: State) -> tuple[State, jax.Array]:
        """The elementwise rest of the step: `(new_state, y_t)`."""

    @abc.abstractmethod
    def output(self, state: State) -> jax.Array:
        """The h `(B, H)` a state stands for: the input of the recurrent matmul."""

    def step(self, params: Params, state: State, x_t: jax.Array) -> tuple[State, jax.Array]:
        hr_t = recurrent_matmul(
            self.output(state), self.recurrent_kernel(params), self.recurrent_bias(params)
        )
        preact = self.preact(self.project(params, x_t), hr_t)
        return self.gate_math(self.gate_params(params), preact, state)

    def initial_output(
        self, params: Params, state: State, output: jax.ShapeDtypeStruct
    ) -> jax.Array:
        """The initial h (Keras' rule for padded steps before the first real one)."""
        del params
        return self.output(state).astype(output.dtype)


@dataclasses.dataclass(frozen=True)
class WrappedCell(GatedCell):
    """A `GatedCell` that is `cell` in every method a subclass does not override."""

    cell: GatedCell

    def project(self, params: Params, x: jax.Array) -> jax.Array:
        return self.cell.project(params, x)

    def recurrent_kernel(self, params: Params) -> jax.Array:
        return self.cell.recurrent_kernel(params)

    def recurrent_bias(self, params: Params) -> jax.Array | None:
        return self.cell.recurrent_bias(params)

    def gate_params(self, params: Params) -> Any:
        return self.cell.gate_params(params)

    def preact(self, xp_t: jax.Array, hr_t: jax.Array) -> Any:
        return self.cell.preact(xp_t, hr_t)

    def gate_math(self, gate_params: Any, preact: Any, state: State) -> tuple[State, jax.Array]:
        return self.cell.gate_math(gate_params, preact, state)

    def output(self, state: State) -> jax.Array:
        return self.cell.output(state)

    def output_of_state(self, state: State) -> jax.Array | None:
        return self.cell.output_of_state(state)

    def initial_output(
        self, params: Params, state: State, output: jax.ShapeDtypeStruct
    ) -> jax.Array:
        return self.cell.initial_output(params, state, output)


class ProjectedInputs(WrappedCell):
    """`cell` over inputs already projected (`cell.project` of all steps, one GEMM).

    For a batch of one row, one GEMM over every step beats a small matmul per step;
    the driver chooses it (`_driver.PROJECT_UP_FRONT_UP_TO`).
    """

    def project(self, params: Params, x: jax.Array) -> jax.Array:
        del params
        return x


def recurrent_matmul(h: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """`hr = h R' + b'`: `(B, H) -> (B, G'*H)`."""
    hr = h @ kernel
    return hr if bias is None else hr + bias[None, :]


@dataclasses.dataclass(frozen=True)
class StepCell(Cell):
    """A user's `step(params, state, x_t) -> (new_state, y_t)` function as a `Cell`."""

    fn: Callable[[Params, State, jax.Array], tuple[State, jax.Array]]

    def step(self, params: Params, state: State, x_t: jax.Array) -> tuple[State, jax.Array]:
        return self.fn(params, state, x_t)
