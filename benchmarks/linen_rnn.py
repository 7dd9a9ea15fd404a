"""The Linen switch: `masking_jax.linen.RNN(cell)` against `nn.RNN(cell)`, same variables.

Both run `nn.OptimizedLSTMCell(H)` with one set of variables (made by `nn.RNN.init`;
`masking_jax.linen.RNN` takes them unchanged), Flax with `seq_lengths`, ours with the
mask, at the standard size B=64 D=128 H=256 with lengths U[50, 200], post-padded to
T=200 (`standard`) and to T=512 (`global_maxlen`). Ours runs the cell through the
generic `masking_jax.rnn` path (its custom VJP re-runs each real step's `jax.vjp`), not
the specialised built-in LSTM. Checks that outputs at real steps, the loss and its
gradients agree, then times forward and forward+backward (`jax.value_and_grad` of the
sum of outputs at real steps with respect to the variables and x), round-robin, median
of the repeats; ratio = Flax time / ours (above 1: masking_jax is faster).

    python benchmarks/linen_rnn.py                    # a few minutes on 2 CPU cores
"""

import argparse
import functools
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.cases import Case, make_problem
from benchmarks.timing import measure
from masking_jax import linen as ml

B, D, H = 64, 128, 256
CASES = (
    Case("standard", B, 200, D, H),
    Case("global_maxlen", B, 512, D, H, min_len=50, max_len=200),
)
LIBRARIES = ("masking_jax", "flax")


def functions() -> dict[str, dict[str, object]]:
    """`library -> mode -> f(variables, x, mask)`; fwd returns the outputs, fwd_bwd the
    loss and its gradients."""
    cell = nn.OptimizedLSTMCell(H)
    forward = {
        "masking_jax": lambda v, x, mask: ml.RNN(cell).apply(v, x, mask=mask),
        "flax": lambda v, x, mask: nn.RNN(cell).apply(v, x, seq_lengths=mask.sum(axis=1)),
    }

    def training(run):
        def loss(v, x, mask):
            return jnp.sum(jnp.where(mask[..., None], run(v, x, mask), 0.0))

        return jax.value_and_grad(loss, argnums=(0, 1))

    return {lib: {"fwd": run, "fwd_bwd": training(run)} for lib, run in forward.items()}


def check(results: dict[str, object], mask: np.ndarray) -> None:
    """Raises `AssertionError` unless both libraries agree at real steps."""
    ours, flax = results["masking_jax"], results["flax"]
    if isinstance(ours, tuple):  # (loss, (d variables, d x)): dx at real steps only
        (loss, (dv, dx)), (loss_f, (dv_f, dx_f)) = ours, flax
        grads = zip(jax.tree.leaves(dv), jax.tree.leaves(dv_f), strict=True)
        pairs = [(loss, loss_f), (dx[mask], dx_f[mask]), *grads]
    else:
        pairs = [(ours[mask], flax[mask])]
    for a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        scale = max(1.0, float(np.abs(b).max()))
        if float(np.abs(a - b).max()) > 1e-4 * scale:
            raise AssertionError(f"masking_jax and Flax disagree: max error {np.abs(a - b).max()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    fns = functions()
    rows = []
    for case in CASES:
        problem = make_problem(case, "lstm")
        x, mask = jnp.asarray(problem.x), jnp.asarray(problem.mask)
        variables = nn.RNN(nn.OptimizedLSTMCell(H)).init(jax.random.key(0), x)
        for mode in ("fwd", "fwd_bwd"):
            compiled = {lib: jax.jit(fns[lib][mode]).lower(variables, x, mask).compile()
                        for lib in LIBRARIES}  # fmt: skip
            check({lib: fn(variables, x, mask) for lib, fn in compiled.items()}, problem.mask)
            runs = {lib: (functools.partial(fn, variables, x, mask), jax.block_until_ready)
                    for lib, fn in compiled.items()}  # fmt: skip
            ms = {lib: 1e3 * t.median for lib, t in measure(runs, repeats=args.repeats).items()}
            rows.append((case, mode, ms))
    print(f"nn.OptimizedLSTMCell(H={H}), B={B} D={D}, lengths U[50, 200], median of "
          f"{args.repeats} ({jax.devices()[0].device_kind}):\n")
    print("| case | mode | masking_jax.linen.RNN ms | nn.RNN ms | ratio |\n|---|---|---|---|---|")
    for case, mode, ms in rows:
        print(f"| {case.name} (T={case.steps}) | {mode} | {ms['masking_jax']:.1f} | "
              f"{ms['flax']:.1f} | {ms['flax'] / ms['masking_jax']:.2f}x |")


if __name__ == "__main__":
    main()
