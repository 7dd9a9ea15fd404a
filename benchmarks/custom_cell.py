"""A user's own cell through `masking_jax.rnn`: padding to T=512 costs little more than T=200.

A peephole LSTM (not shipped by Keras or Flax) written as a plain step function,
run by `mj.rnn` (the generic path: its custom VJP re-runs each real step's
`jax.vjp`) on the standard size, B=64 D=128 H=256 with lengths U[50, 200], padded
to T=200 and to T=512. Flax `nn.RNN` runs the same cell (a linen module) with
`seq_lengths` on the same data as the peer: it steps through every padded step.
Times forward+backward (`jax.value_and_grad` of the sum of outputs at real steps
with respect to the params and x), round-robin, median of the repeats.

    python benchmarks/custom_cell.py                  # about a minute on 2 CPU cores
"""

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

import masking_jax as mj
from benchmarks.timing import measure

B, D, H, MIN_LEN, MAX_LEN = 64, 128, 256, 50, 200


def peephole_lstm_step(p, state, x_t):
    """One step: `state` `(h, c)`, each `(B, H)`; `x_t` `(B, D)` -> `((h, c), h)`."""
    h, c = state
    z = x_t @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"][None]
    i, f, g, o = jnp.split(z, 4, axis=-1)
    i = jax.nn.sigmoid(i + c * p["peep_i"][None])
    f = jax.nn.sigmoid(f + c * p["peep_f"][None])
    c = f * c + i * jnp.tanh(g)
    h = jax.nn.sigmoid(o + c * p["peep_o"][None]) * jnp.tanh(c)
    return (h, c), h


def _flax_rnn():
    import flax.linen as nn

    class PeepholeCell(nn.Module):
        """The same step as a linen cell, carrying `(h, c)`; params are passed in."""

        @nn.compact
        def __call__(self, carry, x_t):
            p = {name: self.param(name, nn.initializers.zeros, shape)
                 for name, shape in _shapes().items()}
            return peephole_lstm_step(p, carry, x_t)

        @nn.nowrap
        def initialize_carry(self, rng, input_shape):
            zeros = jnp.zeros((*input_shape[:-1], H))
            return zeros, zeros

        @property
        def num_feature_axes(self) -> int:
            return 1

    return nn.RNN(PeepholeCell())


def _shapes() -> dict[str, tuple[int, ...]]:
    return {"kernel": (D, 4 * H), "recurrent_kernel": (H, 4 * H), "bias": (4 * H,),
            **{f"peep_{gate}": (H,) for gate in "ifo"}}


def problem(steps: int, seed: int = 0):
    """Params, x `(B, steps, D)` (zeros in the padding) and the post-padded mask."""
    rng = np.random.default_rng(seed)
    params = {**mj.init_lstm_params(jax.random.key(seed), D, H),
              **{f"peep_{gate}": jnp.full((H,), 0.1) for gate in "ifo"}}
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, size=B)
    lengths[0] = MAX_LEN
    mask = np.arange(steps)[None, :] < lengths[:, None]
    x = np.where(mask[..., None], rng.standard_normal((B, steps, D)), 0.0).astype(np.float32)
    return params, jnp.asarray(x), jnp.asarray(mask)


def training_steps() -> dict[str, tuple]:
    """`name -> (compiled forward+backward, args)` for ours and Flax at T=200 and T=512."""
    flax_rnn = _flax_rnn()

    def ours(params, x, mask):
        zeros = jnp.zeros((x.shape[0], H))
        outputs, _ = mj.rnn(peephole_lstm_step, params, x, mask, (zeros, zeros))
        return jnp.sum(jnp.where(mask[..., None], outputs, 0.0))

    def flax(params, x, mask):
        outputs = flax_rnn.apply({"params": {"cell": params}}, x, seq_lengths=mask.sum(1))
        return jnp.sum(jnp.where(mask[..., None], outputs, 0.0))

    steps = {}
    for name, loss in (("masking_jax", ours), ("flax", flax)):
        for t in (200, 512):
            args = problem(t)
            fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(*args).compile()
            steps[f"{name} T={t}"] = (fn, args)
    return steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    steps = training_steps()
    ours_loss = float(steps["masking_jax T=512"][0](*steps["masking_jax T=512"][1])[0])
    flax_loss = float(steps["flax T=512"][0](*steps["flax T=512"][1])[0])
    if not np.isclose(ours_loss, flax_loss, rtol=1e-4):
        raise AssertionError(f"the two disagree: loss {ours_loss} vs {flax_loss}")
    runs = {name: (lambda fn=fn, a=a: fn(*a), jax.block_until_ready)
            for name, (fn, a) in steps.items()}
    timings = measure(runs, repeats=args.repeats)
    ms = {name: 1e3 * t.median for name, t in timings.items()}
    print(f"peephole LSTM forward+backward, B={B} D={D} H={H}, lengths U[{MIN_LEN}, {MAX_LEN}], "
          f"median of {args.repeats} ({jax.devices()[0].device_kind}):\n")
    print("| library | T=200 ms | T=512 ms | T=512 / T=200 |\n|---|---|---|---|")
    for name in ("masking_jax", "flax"):
        t200, t512 = ms[f"{name} T=200"], ms[f"{name} T=512"]
        print(f"| {name} | {t200:.1f} | {t512:.1f} | {t512 / t200:.2f}x |")


if __name__ == "__main__":
    main()
