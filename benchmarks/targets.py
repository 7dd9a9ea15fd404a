"""The project's speed and memory goals for the kernels, read off the result rows.

`TARGETS` names each goal and says what its number is; benchmarks/README.md says
why each goal is set where it is. Every speed target compares medians measured
in the same rounds, except the two layout ones (pre-padded or gappy against
post-padded: two cases timed in different rounds), which compare minimums. A
target whose rows are missing (case not run, peer skipped or failed) is "not run".
"""

from typing import Any

Row = dict[str, Any]

OURS = "masking_jax"
OURS_CUDNN = "mj_cudnn"  # masking_jax with use_cudnn=True (GPU)
FRAMEWORKS = ("flax", "keras")  # "the faster of Flax and Keras"

# name -> what its number is; the names are what the report prints
TARGETS = {
    "speed vs Flax/Keras": "median time of the faster of Flax and Keras / ours",
    "speed vs PyTorch": "median time of PyTorch on packed sequences / ours",
    "pre-padded / post-padded": "our min time, pre-padded / post-padded (same lengths)",
    "gappy / post-padded": "our min time, 30% holes / post-padded",
    "padding skipped, vs Flax/Keras": "as speed vs Flax/Keras, on data padded far past its lengths",
    "cuDNN wrapper vs cuDNN (GPU)": "median time of raw cuDNN / masking_jax around cuDNN",
    "memory vs Flax": "our compiled forward+backward memory / Flax's",
}


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
        assert target in TARGETS, target
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
            value = speedup("standard", cell, mode, FRAMEWORKS)
            add("speed vs Flax/Keras", "standard", cell, mode, value, goal)
            value = speedup("standard", cell, mode, ("torch",))
            add("speed vs PyTorch", "standard", cell, mode, value, ">= 1x")
    for base in ("standard", "quick"):
        for layout in ("pre", "gappy"):
            case = f"{base}_{layout}"
            if case not in cases:
                continue
            target = "pre-padded / post-padded" if layout == "pre" else "gappy / post-padded"
            for cell in ("lstm", "gru", "simple_rnn"):
                for mode in ("fwd", "fwd_bwd"):
                    # two cases, timed in different rounds: min is the steadier statistic
                    this = _median(index, case, cell, mode, OURS, "min_s")
                    post = _median(index, base, cell, mode, OURS, "min_s")
                    value = None if this is None or post is None else this / post
                    add(target, case, cell, mode, value, "<= 1.1x")
    for case in ("global_maxlen", "quick_global_maxlen"):
        if case not in cases:
            continue
        for cell in ("lstm", "gru", "simple_rnn"):
            for mode in ("fwd", "fwd_bwd"):
                value = speedup(case, cell, mode, FRAMEWORKS)
                add("padding skipped, vs Flax/Keras", case, cell, mode, value, ">= 2.5x")
    # GPU: our masking around cuDNN against raw cuDNN (right-padded: within 1.5x; gappy,
    # which raw cuDNN runs only compacted first by the user: ahead of it)
    for case, goal in (("standard", ">= 0.67x"), ("standard_gappy", ">= 1x")):
        if case in cases:
            for mode in ("fwd", "fwd_bwd"):
                value = speedup(case, "lstm", mode, ("cudnn",), ours_name=OURS_CUDNN)
                add("cuDNN wrapper vs cuDNN (GPU)", case, "lstm", mode, value, goal)
    for cell in ("lstm", "gru", "simple_rnn"):
        ours = index.get(("standard", cell, "fwd_bwd", OURS))
        flax = index.get(("standard", cell, "fwd_bwd", "flax"))
        value = None
        if ours and flax and ours.get("memory_bytes") and flax.get("memory_bytes"):
            value = ours["memory_bytes"] / flax["memory_bytes"]
        add("memory vs Flax", "standard", cell, "fwd_bwd", value, "<= 1x")
    return [t for t in out if not (t["value"] is None and t["case"] not in cases)]
