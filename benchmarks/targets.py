"""The targets of issue 5 (CPU, float32; two on GPU), read off the result rows.

Every speed target compares medians measured in the same rounds, except the
layout one (pre-padded or gappy against post-padded: two cases), which compares
minimums. A target whose
rows are missing (case not run, peer skipped or failed) is "not run".
"""

from typing import Any

Row = dict[str, Any]

OURS = "masking_jax"
OURS_CUDNN = "mj_cudnn"  # masking_jax with use_cudnn=True (GPU)
FRAMEWORKS = ("flax", "keras")  # "the fastest of Flax and Keras"


def _index(rows: list[Row]) -> dict[tuple[str, str, str, str], Row]:
    return {
        (r["case"], r["cell"], r["mode"], r["peer"]): r
        for r in rows
        if r["status"] in ("ok", "mismatch")
    }


def _median(
    index: dict, case: str, cell: str, mode: str, peer: str, stat: str = "median_s"
) -> float | None:
    row = index.get((case, cell, mode, peer))
    return None if row is None else row[stat]


def _verdict(value: float | None, goal: float, at_least: bool) -> str:
    if value is None:
        return "not run"
    return "met" if (value >= goal if at_least else value <= goal) else "NOT met"


def evaluate(rows: list[Row]) -> list[Row]:
    """One entry per target instance: what, where, the measured value, the goal, the verdict."""
    index = _index(rows)
    cases = {r["case"] for r in rows}
    out: list[Row] = []

    def add(target: str, case: str, cell: str, mode: str, value: float | None, goal: str):
        at_least, number = goal.startswith(">="), float(goal.split()[-1].rstrip("x"))
        out.append(
            {
                "target": target,
                "case": case,
                "cell": cell,
                "mode": mode,
                "value": value,
                "goal": goal,
                "verdict": _verdict(value, number, at_least),
            }
        )

    def speedup(
        case: str, cell: str, mode: str, peers: tuple[str, ...], ours_name: str = OURS
    ) -> float | None:
        ours = _median(index, case, cell, mode, ours_name)
        theirs = [_median(index, case, cell, mode, p) for p in peers]
        if ours is None or None in theirs:
            return None
        return min(theirs) / ours

    for cell in ("lstm", "gru"):
        for mode, goal in (("fwd", ">= 1.3x"), ("fwd_bwd", ">= 2x")):
            add(
                "faster than min(Flax, Keras)",
                "standard",
                cell,
                mode,
                speedup("standard", cell, mode, FRAMEWORKS),
                goal,
            )
            add(
                "faster than PyTorch packed",
                "standard",
                cell,
                mode,
                speedup("standard", cell, mode, ("torch",)),
                ">= 1x",
            )
    for base in ("standard", "quick"):
        for layout in ("pre", "gappy"):
            case = f"{base}_{layout}"
            if case not in cases:
                continue
            for cell in ("lstm", "gru", "simple_rnn"):
                for mode in ("fwd", "fwd_bwd"):
                    # two cases, timed in different rounds: min is the steadier statistic
                    this = _median(index, case, cell, mode, OURS, "min_s")
                    post = _median(index, base, cell, mode, OURS, "min_s")
                    value = None if this is None or post is None else this / post
                    add(f"{layout} / post-padded (min times)", case, cell, mode, value, "<= 1.1x")
    for case in ("global_maxlen", "quick_global_maxlen"):
        if case not in cases:
            continue
        for cell in ("lstm", "gru", "simple_rnn"):
            for mode in ("fwd", "fwd_bwd"):
                add(
                    "faster than min(Flax, Keras)",
                    case,
                    cell,
                    mode,
                    speedup(case, cell, mode, FRAMEWORKS),
                    ">= 2.5x",
                )
    # GPU: our masking around cuDNN against raw cuDNN (right-padded: within 1.5x; gappy,
    # which raw cuDNN runs only compacted first by the user: ahead of it)
    for case, goal in (("standard", ">= 0.67x"), ("standard_gappy", ">= 1x")):
        if case in cases:
            for mode in ("fwd", "fwd_bwd"):
                value = speedup(case, "lstm", mode, ("cudnn",), ours_name=OURS_CUDNN)
                add("mj_cudnn vs cuDNN (GPU)", case, "lstm", mode, value, goal)
    for cell in ("lstm", "gru", "simple_rnn"):
        ours = index.get(("standard", cell, "fwd_bwd", OURS))
        flax = index.get(("standard", cell, "fwd_bwd", "flax"))
        value = None
        if ours and flax and ours.get("memory_bytes") and flax.get("memory_bytes"):
            value = ours["memory_bytes"] / flax["memory_bytes"]
        add("compiled memory / Flax's", "standard", cell, "fwd_bwd", value, "<= 1x")
    return [t for t in out if not (t["value"] is None and t["case"] not in cases)]
