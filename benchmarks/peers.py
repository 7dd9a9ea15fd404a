"""One adapter per implementation, each built from OUR params so all run the same weights.

A `Peer` says whether it can run at all (`unavailable`: not installed, wrong
backend) and on a given problem (`unsupported`), and `build`s a `Runner` that runs
the forward pass and forward+backward. Forward+backward is the training case:
`value_and_grad` of the sum of the outputs at real steps, with respect to the
params and x (PyTorch: `.backward()` on the same sum).

Every runner returns outputs at the input positions (only real steps are
meaningful) and the final states `(h,)` or `(h, c)`, so `check.py` compares any
two of them.

Semantic choices, per peer:

- masking_jax, Keras: take the boolean mask as is, any layout.
- Flax `nn.RNN(..., seq_lengths)`, PyTorch packed sequences and cuDNN only express
  post-padding. On a pre-padded or gappy mask they run as a user would: compact
  the real steps to the front (a stable argsort of the mask and a gather), run,
  and put the outputs back at their input positions; both moves are timed.
- Flax `nn.RNN` leaves outputs at padded steps unzeroed, cuDNN and PyTorch zero
  them, masking_jax and Keras repeat the last output: only real steps compare.
- cuDNN (`jax.experimental.rnn.lstm`) runs LSTM only, on GPU only; zero-length rows
  are run with length 1 and given back the initial state. `CudnnLSTM(reference=True)`
  runs its weight layout through `jax.experimental.rnn.lstm_ref` instead, so the
  weight packing is checked on CPU too.
- PyTorch rejects zero-length rows in `pack_padded_sequence`: such problems are
  unsupported. Its CPU time includes pack and unpack.
"""

import abc
import dataclasses
import functools
import importlib.util
import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import masking_jax as mj

from .cases import Problem

States = tuple[Any, ...]  # (h,) or (h, c)
# apply(peer_params, x, mask, lengths) -> (outputs (B, T, H) at input positions, states)
Apply = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, States]]


@dataclasses.dataclass(frozen=True)
class Forward:
    """A forward result in numpy: outputs `(B, T, H)` and final states `(h,)` / `(h, c)`."""

    outputs: np.ndarray
    states: tuple[np.ndarray, ...]


@dataclasses.dataclass(frozen=True)
class Gradient:
    """A forward+backward result: the loss and its gradient with respect to x."""

    loss: float
    grad_x: np.ndarray


class Runner(abc.ABC):
    """Runs one implementation on one problem; `forward()`/`fwd_bwd()` are what is timed."""

    @abc.abstractmethod
    def forward(self) -> Any: ...

    @abc.abstractmethod
    def fwd_bwd(self) -> Any: ...

    @abc.abstractmethod
    def block(self, raw: Any) -> None:
        """Waits until `raw` (what `forward`/`fwd_bwd` returned) is computed."""

    @abc.abstractmethod
    def forward_result(self, raw: Any) -> Forward: ...

    @abc.abstractmethod
    def gradient_result(self, raw: Any) -> Gradient: ...

    def memory_bytes(self, mode: str) -> int | None:
        """Compiled temp + output bytes of `mode`, where the implementation can tell."""
        return None

    def run(self, mode: str) -> Callable[[], Any]:
        return self.forward if mode == "fwd" else self.fwd_bwd

    def result(self, mode: str, raw: Any) -> Forward | Gradient:
        return self.forward_result(raw) if mode == "fwd" else self.gradient_result(raw)


class JaxRunner(Runner):
    """Any JAX implementation given as `apply`: jit-compiled ahead of time, once per mode."""

    def __init__(self, apply: Apply, peer_params: Any, problem: Problem):
        self._args = (
            peer_params,
            jnp.asarray(problem.x),
            jnp.asarray(problem.mask),
            jnp.asarray(problem.lengths),
        )

        def loss(pp: Any, x: jax.Array, mask: jax.Array, lengths: jax.Array) -> jax.Array:
            outputs, _ = apply(pp, x, mask, lengths)
            return jnp.sum(jnp.where(mask[:, :, None], outputs, 0.0))

        self._fns = {
            "fwd": jax.jit(apply),
            "fwd_bwd": jax.jit(jax.value_and_grad(loss, argnums=(0, 1))),
        }
        self._compiled: dict[str, Any] = {}

    def _executable(self, mode: str) -> Any:
        if mode not in self._compiled:
            self._compiled[mode] = self._fns[mode].lower(*self._args).compile()
        return self._compiled[mode]

    def compile_seconds(self, mode: str) -> float:
        """Wall seconds to trace, lower and compile `mode` (what a user waits for)."""
        start = time.perf_counter()
        self._compiled[mode] = self._fns[mode].lower(*self._args).compile()
        return time.perf_counter() - start

    def fusion_count(self, mode: str) -> int:
        """Fusion kernels in the optimized program of `mode`: XLA on CPU compiles each
        one separately, so this is a noise-free proxy for the compile time."""
        return self._executable(mode).as_text().count(" fusion(")

    def forward(self) -> Any:
        return self._executable("fwd")(*self._args)

    def fwd_bwd(self) -> Any:
        return self._executable("fwd_bwd")(*self._args)

    def block(self, raw: Any) -> None:
        jax.block_until_ready(raw)

    def forward_result(self, raw: Any) -> Forward:
        outputs, states = raw
        return Forward(np.asarray(outputs), tuple(np.asarray(s) for s in states))

    def gradient_result(self, raw: Any) -> Gradient:
        loss, (_, grad_x) = raw
        return Gradient(float(loss), np.asarray(grad_x))

    def memory_bytes(self, mode: str) -> int | None:
        analysis = self._executable(mode).memory_analysis()
        if analysis is None:
            return None
        return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)


class Peer(abc.ABC):
    """An implementation to benchmark; `name` is its label in the tables."""

    name: str
    module: str | None = None  # the optional package it needs

    def unavailable(self) -> str | None:
        """Why this peer cannot run at all here (None: it can)."""
        if self.module is not None and importlib.util.find_spec(self.module) is None:
            return f"{self.module} not installed"
        return None

    def unsupported(self, problem: Problem) -> str | None:
        """Why this peer cannot run `problem` (None: it can)."""
        return None

    @abc.abstractmethod
    def build(self, problem: Problem) -> Runner: ...


def _split(w: np.ndarray, n: int) -> list[np.ndarray]:
    """The `n` gate blocks of the last axis (Keras order)."""
    return np.split(np.asarray(w), n, axis=-1)


def _compacted(apply_post: Callable[[Any, jax.Array, jax.Array], Any]) -> Apply:
    """Runs a post-padding-only `apply_post(pp, x, lengths)` on any mask, as a user would.

    Moves each row's real steps to the front (stable argsort of the mask, a gather),
    runs, and gathers the outputs back to their input positions.
    """

    def apply(pp: Any, x: jax.Array, mask: jax.Array, lengths: jax.Array) -> Any:
        order = jnp.argsort((~mask).astype(jnp.int8), axis=1)  # stable: real steps first
        outputs, states = apply_post(pp, jnp.take_along_axis(x, order[:, :, None], axis=1), lengths)
        inverse = jnp.argsort(order, axis=1)
        return jnp.take_along_axis(outputs, inverse[:, :, None], axis=1), states

    return apply


def _any_layout(problem: Problem, apply_post: Callable[[Any, jax.Array, jax.Array], Any]) -> Apply:
    if problem.post_padded:
        return lambda pp, x, mask, lengths: apply_post(pp, x, lengths)
    return _compacted(apply_post)


# --- masking_jax -------------------------------------------------------------------------

_KERNELS = {"lstm": mj.lstm, "gru": mj.gru, "simple_rnn": mj.simple_rnn}


class MaskingJax(Peer):
    """`masking_jax.lstm` / `gru` / `simple_rnn` with the boolean mask."""

    name = "masking_jax"
    kernel_options: ClassVar[dict[str, Any]] = {}

    def build(self, problem: Problem) -> Runner:
        kernel = functools.partial(_KERNELS[problem.cell], **self.kernel_options)

        def apply(pp: Any, x: jax.Array, mask: jax.Array, lengths: jax.Array) -> Any:
            outputs, state = kernel(pp, x, mask)
            return outputs, tuple(state) if problem.cell == "lstm" else (state,)

        return JaxRunner(apply, {k: jnp.asarray(v) for k, v in problem.params.items()}, problem)


class MaskingJaxCudnn(MaskingJax):
    """`masking_jax.lstm(..., use_cudnn=True)`: our masking rules around cuDNN (GPU only)."""

    name = "mj_cudnn"
    kernel_options: ClassVar[dict[str, Any]] = {"use_cudnn": True}

    def unavailable(self) -> str | None:
        return None if jax.default_backend() == "gpu" else "no GPU"

    def unsupported(self, problem: Problem) -> str | None:
        return None if problem.cell == "lstm" else "LSTM only"


# --- Flax linen nn.RNN -----------------------------------------------------------------


def _dense(kernel: np.ndarray, bias: np.ndarray | None = None) -> dict[str, jax.Array]:
    out = {"kernel": jnp.asarray(kernel)}
    if bias is not None:
        out["bias"] = jnp.asarray(bias)
    return out


def flax_params(cell: str, params: dict[str, np.ndarray]) -> dict[str, Any]:
    """Our Keras-layout params as Flax `OptimizedLSTMCell` / `GRUCell` / `SimpleCell` params.

    LSTM: Keras gates i, f, c, o are Flax i, f, g, o; the input Dense layers have no
    bias, the recurrent ones carry Keras' single bias. GRU (Keras reset_after=True,
    Flax's only form): Flax puts the input+recurrent biases of r and z in `ir`/`iz`,
    the candidate's input bias in `in` and its recurrent bias in `hn`.
    """
    k, r, b = params["kernel"], params["recurrent_kernel"], params["bias"]
    if cell == "lstm":
        ks, rs, bs = _split(k, 4), _split(r, 4), _split(b, 4)
        out = {f"i{g}": _dense(ks[n]) for n, g in enumerate("ifgo")}
        out.update({f"h{g}": _dense(rs[n], bs[n]) for n, g in enumerate("ifgo")})
        return out
    if cell == "gru":
        (kz, kr, kh), (rz, rr, rh) = _split(k, 3), _split(r, 3)
        (bz, br, bh), (cz, cr, ch) = _split(b[0], 3), _split(b[1], 3)
        return {
            "ir": _dense(kr, br + cr),
            "iz": _dense(kz, bz + cz),
            "in": _dense(kh, bh),
            "hr": _dense(rr),
            "hz": _dense(rz),
            "hn": _dense(rh, ch),
        }
    return {"i": _dense(k, b), "h": _dense(r)}


class Flax(Peer):
    """Flax linen `nn.RNN(cell, return_carry=True)` with `seq_lengths` (post-padding only)."""

    name = "flax"
    module = "flax"

    def build(self, problem: Problem) -> Runner:
        import flax.linen as nn

        h = problem.hidden
        cell = {
            "lstm": lambda: nn.OptimizedLSTMCell(h),
            "gru": lambda: nn.GRUCell(h),
            "simple_rnn": lambda: nn.SimpleCell(h),
        }[problem.cell]()
        rnn = nn.RNN(cell, return_carry=True)
        variables = {"params": {"cell": flax_params(problem.cell, problem.params)}}
        expected = jax.eval_shape(rnn.init, jax.random.key(0), jnp.asarray(problem.x[:1]))
        if jax.tree.structure(expected) != jax.tree.structure(variables):
            raise ValueError(f"Flax params layout changed: expected {expected}.")

        def apply_post(pp: Any, x: jax.Array, lengths: jax.Array) -> Any:
            carry, outputs = rnn.apply(pp, x, seq_lengths=lengths)
            # LSTM carry is (c, h)
            return outputs, (carry[1], carry[0]) if problem.cell == "lstm" else (carry,)

        return JaxRunner(_any_layout(problem, apply_post), variables, problem)


# --- Keras 3 on JAX -----------------------------------------------------------------------


class Keras(Peer):
    """Keras 3 `LSTM` / `GRU` / `SimpleRNN` with a mask, via `stateless_call` under `jax.jit`."""

    name = "keras"
    module = "keras"

    def unavailable(self) -> str | None:
        reason = super().unavailable()
        if reason is not None:
            return reason
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras

        if keras.backend.backend() != "jax":
            return f"Keras backend is {keras.backend.backend()!r}, not 'jax'"
        return None

    def build(self, problem: Problem) -> Runner:
        import keras

        layer_class = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}[problem.cell]
        layer = getattr(keras.layers, layer_class)(
            problem.hidden,
            return_sequences=True,
            return_state=True,
            kernel_initializer="zeros",  # replaced by ours; skips Keras' orthogonal init
            recurrent_initializer="zeros",
        )
        layer.build(problem.x.shape)
        # stateless_call takes the variables in `trainable_variables` order
        trainable = [jnp.asarray(problem.params[v.name]) for v in layer.trainable_variables]
        for v, value in zip(layer.trainable_variables, trainable, strict=True):
            if tuple(v.shape) != value.shape:
                raise ValueError(f"Keras {v.path} has shape {v.shape}, ours {value.shape}.")

        # the non-trainable one is a dropout seed, unused without dropout: held constant
        fixed = [jnp.asarray(v.value) for v in layer.non_trainable_variables]

        def apply(pp: Any, x: jax.Array, mask: jax.Array, lengths: jax.Array) -> Any:
            (outputs, *states), _ = layer.stateless_call(pp, fixed, x, mask=mask)
            return outputs, tuple(states)

        return JaxRunner(apply, trainable, problem)


# --- cuDNN: jax.experimental.rnn -----------------------------------------------------------


@dataclasses.dataclass
class CudnnLSTM(Peer):
    """`jax.experimental.rnn.lstm` (cuDNN; GPU only, LSTM only, post-padding natively)."""

    reference: bool = False  # run `lstm_ref` on the same weights (the CPU check of the layout)
    name = "cudnn"

    def unavailable(self) -> str | None:
        if not self.reference and jax.default_backend() != "gpu":
            return "no GPU"
        return None

    def unsupported(self, problem: Problem) -> str | None:
        return None if problem.cell == "lstm" else "LSTM only"

    def build(self, problem: Problem) -> Runner:
        from jax.experimental import rnn

        d, h = problem.x.shape[-1], problem.hidden

        def apply_post(w: jax.Array, x: jax.Array, lengths: jax.Array) -> Any:
            zeros = jnp.zeros((1, x.shape[0], h), x.dtype)
            safe = jnp.maximum(lengths, 1).astype(jnp.int32)  # cuDNN rejects zero-length rows
            if self.reference:
                unpacked = rnn.unpack_lstm_weights(w, d, h, 1, False)
                y, h_n, c_n = rnn.lstm_ref(x, zeros, zeros, *unpacked, safe, d, h, 1, 0.0, False)
            else:
                y, h_n, c_n = rnn.lstm(x, zeros, zeros, w, safe, d, h, 1, 0.0, False)
            alive = (lengths > 0)[:, None]
            return y, (jnp.where(alive, h_n[0], 0.0), jnp.where(alive, c_n[0], 0.0))

        weights = jnp.asarray(cudnn_weights(problem.params), jnp.float32)
        return JaxRunner(_any_layout(problem, apply_post), weights, problem)


# --- PyTorch packed sequences ---------------------------------------------------------------


def torch_weights(cell: str, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our params as PyTorch `nn.LSTM` / `nn.GRU` / `nn.RNN` weights (layer 0).

    PyTorch stores `weight_ih_l0` `(G*H, D)` (the transpose of Keras' kernel) and two
    biases. LSTM gates i, f, g, o match Keras'; GRU gates are r, z, n (Keras z, r, h),
    with `bias_hh` inside the reset product, as Keras reset_after=True.
    """
    k, r, b = params["kernel"], params["recurrent_kernel"], params["bias"]
    if cell == "gru":
        rzn = [1, 0, 2]
        k = np.concatenate([_split(k, 3)[i] for i in rzn], axis=-1)
        r = np.concatenate([_split(r, 3)[i] for i in rzn], axis=-1)
        b_ih = np.concatenate([_split(b[0], 3)[i] for i in rzn])
        b_hh = np.concatenate([_split(b[1], 3)[i] for i in rzn])
    else:
        b_ih, b_hh = b, np.zeros_like(b)
    return {"weight_ih_l0": k.T, "weight_hh_l0": r.T, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}


def cudnn_weights(params: dict[str, np.ndarray]) -> np.ndarray:
    """Our LSTM params as cuDNN's flat vector, which stores PyTorch's four arrays in order."""
    return np.concatenate([w.ravel() for w in torch_weights("lstm", params).values()])


class TorchRunner(Runner):
    """A PyTorch RNN on packed sequences; pack and unpack are part of every call."""

    def __init__(self, module: Any, problem: Problem):
        import torch

        self._torch = torch
        self._module = module
        self._x = torch.from_numpy(problem.x)
        self._mask = torch.from_numpy(problem.mask)
        self._lengths = torch.from_numpy(problem.lengths.astype(np.int64))
        self._lstm = problem.cell == "lstm"
        self._order = None
        if not problem.post_padded:  # compact real steps first, as a user would
            self._order = lambda m: torch.argsort((~m).to(torch.int8), dim=1, stable=True)

    def _run(self, x: Any) -> Any:
        torch = self._torch
        pack = torch.nn.utils.rnn
        if self._order is not None:
            order = self._order(self._mask)
            x = torch.gather(x, 1, order[:, :, None].expand(-1, -1, x.shape[-1]))
        packed = pack.pack_padded_sequence(x, self._lengths, batch_first=True, enforce_sorted=False)
        out, state = self._module(packed)
        out, _ = pack.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        if self._order is not None:
            inverse = torch.argsort(order, dim=1)
            out = torch.gather(out, 1, inverse[:, :, None].expand(-1, -1, out.shape[-1]))
        return out, state

    def forward(self) -> Any:
        with self._torch.inference_mode():
            return self._run(self._x)

    def fwd_bwd(self) -> Any:
        self._module.zero_grad(set_to_none=True)
        x = self._x.detach().requires_grad_(True)
        out, _ = self._run(x)
        loss = self._torch.where(self._mask[:, :, None], out, 0.0).sum()
        loss.backward()
        return loss.detach(), x.grad

    def block(self, raw: Any) -> None:
        if self._torch.cuda.is_available():
            self._torch.cuda.synchronize()

    def forward_result(self, raw: Any) -> Forward:
        out, state = raw
        states = state if self._lstm else (state,)
        return Forward(out.numpy(), tuple(s[0].numpy() for s in states))

    def gradient_result(self, raw: Any) -> Gradient:
        loss, grad_x = raw
        return Gradient(float(loss), grad_x.numpy())


@dataclasses.dataclass
class Torch(Peer):
    """PyTorch `nn.LSTM` / `nn.GRU` / `nn.RNN` on `pack_padded_sequence` (CPU).

    `threads`: intra-op threads (None: PyTorch's default, one per core). Its OpenMP
    pool collapses when the cores are oversubscribed (a shared machine: 10x slower
    with 2 threads on 2 busy cores than with 1), so the script defaults to 1.
    """

    threads: int | None = None
    name = "torch"
    module = "torch"

    def unsupported(self, problem: Problem) -> str | None:
        if (problem.lengths == 0).any():
            return "zero-length rows (pack_padded_sequence rejects them)"
        return None

    def build(self, problem: Problem) -> Runner:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        d, h = problem.x.shape[-1], problem.hidden
        module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}
        module = module_class[problem.cell](d, h, batch_first=True)
        with torch.no_grad():
            for name, value in torch_weights(problem.cell, problem.params).items():
                getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        return TorchRunner(module, problem)


def all_peers(torch_threads: int | None = None) -> list[Peer]:
    """Every implementation, masking_jax first (the one the ratios divide by)."""
    return [MaskingJax(), Flax(), Keras(), Torch(torch_threads), CudnnLSTM(), MaskingJaxCudnn()]
