"""The outputs of a run: a markdown table with ratios, a JSON file and a PNG plot.

Rows are plain dicts (one per case, cell, mode and peer) with the keys `case`,
`cell`, `mode`, `peer`, `status` ("ok", "mismatch", "skipped: ...", "error: ..."),
`min_s`, `median_s`, `times_s`, `first_call_s` (compile + one run), `memory_bytes`,
`error` (the check's scaled error) and `size`. A ratio is peer time / our time,
on medians: above 1 means masking_jax is faster.
"""

import json
import math
from pathlib import Path
from typing import Any

Row = dict[str, Any]
OURS = "masking_jax"


def _groups(rows: list[Row]) -> list[tuple[str, str, str]]:
    """(case, cell, mode) in the order they ran."""
    return list(dict.fromkeys((r["case"], r["cell"], r["mode"]) for r in rows))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds < 1 else f"{seconds * 1e3:.0f}"


def ratio(rows: list[Row], group: tuple[str, str, str], peer: str) -> float | None:
    """Peer median / our median in `group`, or None when either did not run."""
    found = {r["peer"]: r for r in rows if (r["case"], r["cell"], r["mode"]) == group}
    ours, theirs = found.get(OURS), found.get(peer)
    if not ours or not theirs or ours.get("median_s") is None or theirs.get("median_s") is None:
        return None
    return theirs["median_s"] / ours["median_s"]


def _cell(row: Row | None, ours: Row | None) -> str:
    if row is None:
        return "-"
    if row.get("median_s") is None:
        return row["status"]
    text = f"{_ms(row['min_s'])} / {_ms(row['median_s'])}"
    if row["peer"] != OURS and ours is not None and ours.get("median_s"):
        text += f" ({row['median_s'] / ours['median_s']:.2f}x)"
    if row["status"] == "mismatch":
        text += f" **mismatch** (err {row['error']:.1e})"
    return text


def markdown_table(rows: list[Row], peers: list[str]) -> str:
    """Times min / median in ms per (case, cell, mode); peers with their ratio to ours."""
    header = ["case", "size", "cell", "mode", *peers]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in _groups(rows):
        found = {r["peer"]: r for r in rows if (r["case"], r["cell"], r["mode"]) == group}
        size = next(iter(found.values()))["size"]
        cells = [_cell(found.get(p), found.get(OURS)) for p in peers]
        lines.append("| " + " | ".join([group[0], size, group[1], group[2], *cells]) + " |")
    return "\n".join(lines)


def memory_table(rows: list[Row], peers: list[str]) -> str:
    """Compiled temp + output MiB of forward+backward (JAX implementations only)."""
    mem = [r for r in rows if r["mode"] == "fwd_bwd" and r.get("memory_bytes")]
    peers = [p for p in peers if any(r["peer"] == p for r in mem)]
    if not mem:
        return "(no compiled memory figures)"
    header = ["case", "cell", *(f"{p} MiB" for p in peers)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case, cell, _ in _groups(mem):
        found = {
            r["peer"]: r["memory_bytes"] for r in mem if (r["case"], r["cell"]) == (case, cell)
        }
        ours = found.get(OURS)
        cells = []
        for p in peers:
            if p not in found:
                cells.append("-")
                continue
            text = f"{found[p] / 2**20:.1f}"
            if p != OURS and ours:
                text += f" ({found[p] / ours:.2f}x)"
            cells.append(text)
        lines.append("| " + " | ".join([case, cell, *cells]) + " |")
    return "\n".join(lines)


def targets_table(targets: list[Row]) -> str:
    if not targets:
        return "(no targets apply to the cases run)"
    lines = [
        "| target | case | cell | mode | measured | goal | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.2f}x"
        cols = [t["target"], t["case"], t["cell"], t["mode"], value, t["goal"], t["verdict"]]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def markdown(meta: dict[str, Any], rows: list[Row], peers: list[str], targets: list[Row]) -> str:
    machine = ", ".join(f"{k} {v}" for k, v in meta.items() if k != "command")
    return (
        "\n\n".join(
            [
                "# RNN speed: masking_jax and its peers",
                f"Run: `{meta.get('command', '')}`. {machine}.",
                "Times in ms, min / median over the repeats; `(r x)` = peer median / masking_jax "
                "median (above 1: masking_jax is faster). fwd = forward; fwd_bwd = "
                "`value_and_grad` of the sum of outputs at real steps w.r.t. params and x.",
                markdown_table(rows, peers),
                "## Compiled memory of forward+backward (temp + output)",
                memory_table(rows, peers),
                "## Targets (issue 5)",
                targets_table(targets),
            ]
        )
        + "\n"
    )


def plot(path: Path, rows: list[Row], peers: list[str]) -> None:
    """Grouped bars of peer time / our time per (case, cell, mode), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(rows)
    others = [p for p in peers if p != OURS and any(ratio(rows, g, p) for g in groups)]
    width = 0.8 / max(1, len(others))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(groups) + 2), 4.5))
    for k, peer in enumerate(others):
        values = [ratio(rows, g, peer) for g in groups]
        xs = [i + (k - (len(others) - 1) / 2) * width for i, v in enumerate(values) if v]
        ax.bar(xs, [v for v in values if v], width, label=peer)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("peer time / masking_jax time")
    ax.set_xticks(range(len(groups)), ["/".join(g) for g in groups], rotation=70, fontsize=7)
    ax.set_title("Above 1: masking_jax is faster")
    if others:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _clean(value: Any) -> Any:
    """JSON-safe: inf/NaN errors become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_all(
    out: Path, meta: dict[str, Any], rows: list[Row], peers: list[str], targets: list[Row]
) -> dict[str, Path]:
    """Writes `results.md`, `results.json` and `ratios.png` under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "results.md", "json": out / "results.json", "png": out / "ratios.png"}
    paths["md"].write_text(markdown(meta, rows, peers, targets))
    payload = {
        "meta": meta,
        "peers": peers,
        "rows": [{k: _clean(v) for k, v in r.items()} for r in rows],
        "targets": targets,
    }
    paths["json"].write_text(json.dumps(payload, indent=1))
    plot(paths["png"], rows, peers)
    return paths
