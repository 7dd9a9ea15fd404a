"""Masked SimpleRNN / LSTM / GRU: masking_jax against Flax, Keras 3, PyTorch and cuDNN.

For each case and cell: build every peer from the same params, run once (compile
and warm-up) and check its outputs against masking_jax's BEFORE timing, then time
with `block_until_ready` and report min/median. Writes results.md, results.json
and ratios.png under `--out`.

    python benchmarks/rnn_speed.py --quick            # a few minutes on 2 CPU cores
    python benchmarks/rnn_speed.py --cases standard --cells lstm,gru
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
from tqdm import tqdm

from benchmarks import check, report, targets
from benchmarks.cases import CELLS, Case, Problem, make_problem, suite
from benchmarks.peers import Peer, Runner, all_peers
from benchmarks.timing import measure, timed_call

Row = dict[str, Any]


def machine() -> dict[str, Any]:
    """Names the machine, device and library versions for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "jax": jax.__version__}
    for name in ("flax", "keras", "torch"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        **versions,
    }


def _row(case: Case, cell: str, mode: str, peer: str, status: str, **fields: Any) -> Row:
    base = {"case": case.name, "cell": cell, "mode": mode, "peer": peer, "status": status}
    base.update(size=case.size, layout=case.layout, min_s=None, median_s=None)
    return base | fields


def _error(e: Exception) -> str:
    first = str(e).splitlines()[0][:80] if str(e) else ""
    return f"error: {type(e).__name__}: {first}"


def build_runners(
    case: Case, problem: Problem, peers: list[Peer]
) -> tuple[dict[str, Runner], list[Row]]:
    """A runner per peer that can run `problem`; rows for those that cannot (skip or error).

    masking_jax (the first peer) must build: its failure is raised, not reported.
    """
    runners, rows = {}, []
    for k, peer in enumerate(peers):
        reason = peer.unavailable() or peer.unsupported(problem)
        if reason is not None:
            status = f"skipped: {reason}"
        else:
            try:
                runners[peer.name] = peer.build(problem)
                continue
            except Exception as e:  # a peer that cannot be built is reported, not fatal
                if k == 0:
                    raise
                status = _error(e)
        rows += [_row(case, problem.cell, m, peer.name, status) for m in case.modes]
    return runners, rows


def bench_mode(
    case: Case,
    problem: Problem,
    mode: str,
    runners: dict[str, Runner],
    *,
    repeats: int,
    warmup: int,
    tolerance: float,
) -> list[Row]:
    """Checks every runner against the first (masking_jax), then times them round-robin.

    The first call of each compiles and warms up; its result is the one checked.
    A peer that disagrees is still timed and marked "mismatch".
    """
    rows, checked, reference = [], {}, None
    for name, runner in runners.items():
        try:
            raw, first = timed_call(runner.run(mode), runner.block)
        except Exception as e:
            if reference is None:
                raise
            rows.append(_row(case, problem.cell, mode, name, _error(e)))
            continue
        result = runner.result(mode, raw)
        reference = result if reference is None else reference
        checked[name] = (first, check.error(reference, result, problem.mask))
    runs = {name: (runners[name].run(mode), runners[name].block) for name in checked}
    timings = measure(runs, repeats=repeats, warmup=warmup)
    for name, (first, err) in checked.items():
        timing = timings[name]
        memory = runners[name].memory_bytes(mode) if mode == "fwd_bwd" else None
        status = "ok" if err <= tolerance else "mismatch"
        rows.append(
            _row(
                case, problem.cell, mode, name, status,
                min_s=timing.min, median_s=timing.median, times_s=list(timing.times),
                first_call_s=first, error=err, memory_bytes=memory,
            )
        )  # fmt: skip
    return rows


def run_suite(
    cases: list[Case],
    cells: list[str],
    peers: list[Peer],
    *,
    repeats: int,
    tolerance: float,
    warmup: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> list[Row]:
    """Every (case, cell, mode): masking_jax (the first peer) and each peer; rows in peer order.

    GPU-only cases on a machine without one give "skipped: no GPU" rows, said in
    one printed line up front and left out of the progress bar.
    """
    jobs = [(c, cell) for c in cases for cell in cells if cell in c.cells]
    no_gpu = [(c, cell) for c, cell in jobs if c.gpu_only and jax.default_backend() != "gpu"]
    if no_gpu:
        names = list(dict.fromkeys(c.name for c, _ in no_gpu))
        print(f"Skipping {len(names)} GPU-only cases (no GPU here): {', '.join(names)}")
    total = sum(len(c.modes) for c, cell in jobs if (c, cell) not in no_gpu)
    rows: list[Row] = []
    bar = tqdm(total=total, disable=not progress, unit="mode")
    for case, cell in jobs:
        if (case, cell) in no_gpu:
            rows += [
                _row(case, cell, m, p.name, "skipped: no GPU") for m in case.modes for p in peers
            ]
            continue
        bar.set_description(f"{case.name}/{cell}")
        problem = make_problem(case, cell, seed)
        runners, skipped = build_runners(case, problem, peers)
        for mode in case.modes:
            bar.set_description(f"{case.name}/{cell}/{mode}")
            found = bench_mode(
                case, problem, mode, runners, repeats=repeats, warmup=warmup, tolerance=tolerance
            )
            found += [r for r in skipped if r["mode"] == mode]
            order = [p.name for p in peers]
            rows += sorted(found, key=lambda r: order.index(r["peer"]))
            bar.update()
    bar.close()
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [p.name for p in all_peers()]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, few repeats")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma list of " + ",".join(CELLS))
    parser.add_argument("--cases", default=None, help="comma list of case names (default: all)")
    parser.add_argument(
        "--peers", default=",".join(names[1:]), help="comma list of " + ",".join(names[1:])
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (5; quick: 3)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed rounds after the checked call (1; quick: 0)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="PyTorch intra-op threads (0: its default). 1 by default: its OpenMP pool "
        "collapses on oversubscribed (shared) cores",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _pick(text: str, known: list[str], what: str) -> list[str]:
    picked = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [p for p in picked if p not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {known}")
    return picked


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cases = suite(args.quick)
    if args.list:
        for c in cases:
            print(f"{c.name:28s} {c.size:28s} {c.layout:6s} {','.join(c.cells):20s} {c.about}")
        return {}
    if args.cases:
        wanted = _pick(args.cases, [c.name for c in cases], "cases")
        cases = [c for c in cases if c.name in wanted]
    cells = _pick(args.cells, list(CELLS), "cells")
    available = {p.name: p for p in all_peers(args.torch_threads or None)}
    peer_names = ["masking_jax", *_pick(args.peers, list(available)[1:], "peers")]
    peers = [available[n] for n in peer_names]
    repeats = args.repeats or (3 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    tolerance = check.TOLERANCE if jax.default_backend() == "cpu" else 2e-2  # TF32 on GPU

    meta = machine() | {
        "command": "python benchmarks/rnn_speed.py " + " ".join(argv or sys.argv[1:])
    }
    meta |= {"repeats": repeats, "warmup": warmup, "torch_threads": args.torch_threads or "default"}
    start = time.perf_counter()
    rows = run_suite(
        cases,
        cells,
        peers,
        repeats=repeats,
        warmup=warmup,
        tolerance=tolerance,
        seed=args.seed,
        progress=not args.no_progress,
    )
    meta["wall_s"] = round(time.perf_counter() - start, 1)
    found = targets.evaluate(rows)
    paths = report.write_all(args.out, meta, rows, peer_names, found)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    mismatches = [r for r in rows if r["status"] == "mismatch"]
    if mismatches:
        print(
            f"WARNING: {len(mismatches)} peer result(s) disagree with masking_jax", file=sys.stderr
        )
    return {"meta": meta, "rows": rows, "targets": found, "paths": paths}


if __name__ == "__main__":
    main()
