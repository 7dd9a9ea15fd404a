"""Compile time of a masked RNN's training step: masking_jax against Flax `nn.RNN` and Keras 3.

What a user waits for before the first step: `jax.jit(jax.value_and_grad(loss))
.lower(...).compile()` with respect to the params and x, `loss = sum of outputs at
real steps` (the forward+backward of `rnn_speed.py`). Every measurement runs in
its own fresh Python process, so no trace or compile cache is warm. Beside the
seconds it counts the fusion kernels of each compiled program: XLA on CPU compiles
every kernel separately, so the count tracks compile time without the noise of a
shared machine. Cases: the
demo's size and the standard size for each cell, bidirectional LSTM against
Keras `Bidirectional(LSTM)` and Flax `nn.Bidirectional`, and growth with T and B.

    python benchmarks/compile_time.py                  # every case, 1 process each
    python benchmarks/compile_time.py --cases demo_lstm,standard_lstm --repeats 3
"""

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LIBRARIES = ("masking_jax", "flax", "keras")


@dataclasses.dataclass(frozen=True)
class CompileCase:
    name: str
    cell: str
    batch: int
    steps: int
    features: int
    hidden: int
    bidirectional: bool = False

    @property
    def label(self) -> str:
        kind = f"bidirectional({self.cell})" if self.bidirectional else self.cell
        return f"{kind} B{self.batch} T{self.steps} D{self.features} H{self.hidden}"


CASES = [
    *(CompileCase(f"demo_{c}", c, 32, 32, 12, 64) for c in ("lstm", "gru", "simple_rnn")),
    CompileCase("demo_bi_lstm", "lstm", 32, 32, 12, 64, bidirectional=True),
    *(CompileCase(f"standard_{c}", c, 64, 200, 128, 256) for c in ("lstm", "gru", "simple_rnn")),
    CompileCase("standard_bi_lstm", "lstm", 64, 200, 128, 256, bidirectional=True),
    *(CompileCase(f"lstm_T{t}", "lstm", 16, t, 64, 128) for t in (200, 1000, 4000)),
    *(CompileCase(f"lstm_B{b}", "lstm", b, 50, 32, 64) for b in (16, 64, 256)),
]


def _bidirectional_apply(library: str, problem: Any) -> tuple[Any, Any]:
    """`(apply, params)` of a bidirectional LSTM with return_sequences, concat merge."""
    import jax
    import jax.numpy as jnp

    params, h = problem.params, problem.hidden
    if library == "masking_jax":
        import masking_jax as mj

        pair = ({k: jnp.asarray(v) for k, v in params.items()},) * 2

        def apply(pp, x, mask, lengths):
            return mj.bidirectional(mj.lstm, pp, x, mask)

        return apply, pair
    if library == "flax":
        import flax.linen as nn

        layer = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(h)), nn.RNN(nn.OptimizedLSTMCell(h)))
        variables = layer.init(jax.random.key(0), jnp.asarray(problem.x))

        def apply(pp, x, mask, lengths):
            return layer.apply(pp, x, seq_lengths=lengths), ()

        return apply, variables
    import keras

    layer = keras.layers.Bidirectional(keras.layers.LSTM(h, return_sequences=True))
    layer.build(problem.x.shape)
    fixed = [jnp.asarray(v.value) for v in layer.non_trainable_variables]

    def apply(pp, x, mask, lengths):
        outputs, _ = layer.stateless_call(pp, fixed, x, mask=mask)
        return outputs, ()

    return apply, [jnp.asarray(v.value) for v in layer.trainable_variables]


def measure(library: str, case: CompileCase) -> tuple[float, int]:
    """Seconds to trace, lower and compile forward+backward of `case` in `library`,
    and the fusion kernels of the compiled program."""
    import jax

    from benchmarks.cases import Case, make_problem
    from benchmarks.peers import Flax, JaxRunner, Keras, MaskingJax

    problem = make_problem(Case(case.name, case.batch, case.steps, case.features, case.hidden),
                           case.cell)
    with jax.numpy_rank_promotion("allow"):
        if case.bidirectional:
            runner = JaxRunner(*_bidirectional_apply(library, problem), problem)
        else:
            peer = {"masking_jax": MaskingJax, "flax": Flax, "keras": Keras}[library]()
            runner = peer.build(problem)
        seconds = runner.compile_seconds("fwd_bwd")
        return seconds, runner.fusion_count("fwd_bwd")


def fresh_process(library: str, case: CompileCase) -> tuple[float, int]:
    """`measure` in a fresh Python process."""
    command = [sys.executable, __file__, "--child", library, "--cases", case.name]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{library} {case.name} failed:\n{done.stderr[-3000:]}")
    seconds, kernels = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(kernels)


def table(seconds: dict[tuple[str, str], list[float]], kernels: dict[tuple[str, str], int],
          cases: list[CompileCase], libraries: list[str]) -> str:
    """Markdown: median seconds per library, ours / the faster peer's, and kernels."""
    header = "| case | " + " | ".join(f"{name} s" for name in libraries)
    header += " | ours / faster peer | kernels (" + " / ".join(libraries) + ") |"
    rows = [header, "|---" * (len(libraries) + 3) + "|"]
    for case in cases:
        medians = {lib: statistics.median(seconds[lib, case.name]) for lib in libraries}
        peers = [medians[lib] for lib in libraries if lib != "masking_jax"]
        ratio = (f"{medians['masking_jax'] / min(peers):.2f}x"
                 if peers and "masking_jax" in medians else "-")
        cells = " | ".join(f"{medians[lib]:.2f}" for lib in libraries)
        counts = " / ".join(str(kernels[lib, case.name]) for lib in libraries)
        rows.append(f"| {case.label} | {cells} | {ratio} | {counts} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(c.name for c in CASES),
                        help="comma-separated case names (default: all)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per cell")
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    by_name = {c.name: c for c in CASES}
    unknown = [n for n in args.cases.split(",") if n not in by_name]
    if unknown:
        parser.error(f"unknown --cases {unknown}; choose from {sorted(by_name)}")
    cases = [by_name[n] for n in args.cases.split(",")]
    if args.child:
        seconds, kernels = measure(args.child, cases[0])
        print(seconds, kernels)
        return
    libraries = [lib for lib in args.libraries.split(",") if lib]
    if set(libraries) - set(LIBRARIES):
        parser.error(f"--libraries takes {', '.join(LIBRARIES)}; got {args.libraries}")
    seconds: dict[tuple[str, str], list[float]] = {}
    kernels: dict[tuple[str, str], int] = {}  # the same in every process
    for case in cases:
        for _ in range(args.repeats):  # alternate libraries, so load bursts hit all alike
            for lib in libraries:
                took, kernels[lib, case.name] = fresh_process(lib, case)
                seconds.setdefault((lib, case.name), []).append(took)
        print(case.label, {lib: seconds[lib, case.name] for lib in libraries}, flush=True)
    print(f"\nforward+backward compile seconds, median of {args.repeats} fresh process(es):\n")
    print(table(seconds, kernels, cases, libraries))


if __name__ == "__main__":
    main()
