"""The outputs of a run: a markdown table with ratios, a JSON file and a PNG plot.

Rows are plain dicts (one per case, cell, mode and peer) with the keys `case`,
`cell`, `mode`, `peer`, `status` ("ok", "mismatch", "skipped: ...", "error: ..."),
`min_s`, `median_s`, `times_s`, `first_call_s` (compile + one run), `memory_bytes`,
`error` (the check's scaled error) and `size`. A ratio is peer time / our time,
on medians: above 1 means masking_jax is faster.

The JSON file keeps every row. The markdown table and the plot show what ran: a
(case, cell, mode) where no peer ran, and a peer that ran nowhere, are summed up
in one line each with the reason (on a machine without a GPU: the GPU-only cases
and the cuDNN peers).
"""

import json
import math
from pathlib import Path
from typing import Any

from .targets import TARGETS

Row = dict[str, Any]
Group = tuple[str, str, str]
OURS = "masking_jax"
MODE_NAMES = {"fwd": "forward", "fwd_bwd": "forward+backward"}


def _group(row: Row) -> Group:
    return row["case"], row["cell"], row["mode"]


def _groups(rows: list[Row]) -> list[Group]:
    """(case, cell, mode) in the order they ran."""
    return list(dict.fromkeys(_group(r) for r in rows))


def _skip_reason(row: Row) -> str | None:
    """Why the row did not run ("no GPU"), or None when it ran or failed."""
    status = row["status"]
    return status.removeprefix("skipped: ") if status.startswith("skipped: ") else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}" if seconds < 1 else f"{seconds * 1e3:.0f}"


def _names(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def ratio(rows: list[Row], group: Group, peer: str) -> float | None:
    """Peer median / our median in `group`, or None when either did not run."""
    found = {r["peer"]: r for r in rows if _group(r) == group}
    ours, theirs = found.get(OURS), found.get(peer)
    if not ours or not theirs or ours.get("median_s") is None or theirs.get("median_s") is None:
        return None
    return theirs["median_s"] / ours["median_s"]


def what_ran(rows: list[Row], peers: list[str]) -> tuple[list[Row], list[str], list[str]]:
    """The rows and peers to show, and one line per reason for what is left out.

    A (case, cell, mode) is left out when every peer skipped it, a peer when it
    skipped everything shown; failed rows ("error: ...") are always shown.
    """
    skipped: dict[str, list[Group]] = {}
    for group in _groups(rows):
        reasons = {_skip_reason(r) for r in rows if _group(r) == group}
        if None not in reasons:
            skipped.setdefault("; ".join(sorted(reasons)), []).append(group)
    hidden = {g for groups in skipped.values() for g in groups}
    shown = [r for r in rows if _group(r) not in hidden]
    idle: dict[str, list[str]] = {}
    for peer in peers:
        reasons = {_skip_reason(r) for r in shown if r["peer"] == peer}
        if reasons and None not in reasons:
            idle.setdefault("; ".join(sorted(reasons)), []).append(peer)
    notes = []
    for reason, groups in skipped.items():
        cases = list(dict.fromkeys(g[0] for g in groups))
        cells = list(dict.fromkeys(g[1] for g in groups))
        modes = list(dict.fromkeys(MODE_NAMES.get(g[2], g[2]) for g in groups))
        notes.append(
            f"Not run here ({reason}): {_count(len(groups), 'row')}, {_count(len(cases), 'case')} "
            f"({_names(cases)}), {', '.join(cells)}, {' and '.join(modes)}."
        )
    for reason, names in idle.items():
        notes.append(f"Peers not run ({reason}): {_names(names)}.")
    shown_peers = [p for p in peers if p not in {n for names in idle.values() for n in names}]
    return [r for r in shown if r["peer"] in shown_peers], shown_peers, notes


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
        found = {r["peer"]: r for r in rows if _group(r) == group}
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
    """The targets measured in this run, what each number is, and those left unmeasured."""
    measured = [t for t in targets if t["value"] is not None]
    if not targets:
        return "(no targets apply to the cases run)"
    lines = []
    if measured:
        lines += ["| target | case | cell | mode | measured | goal | verdict |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for t in measured:
            cols = [t["target"], t["case"], t["cell"], t["mode"], f"{t['value']:.2f}x"]
            lines.append("| " + " | ".join([*cols, t["goal"], t["verdict"]]) + " |")
        lines.append("")
        names = dict.fromkeys(t["target"] for t in measured)
        lines += [f"- {name}: {TARGETS[name]}" for name in names]
    missing: dict[str, list[str]] = {}
    for t in targets:
        if t["value"] is None:
            where = missing.setdefault(t["target"], [])
            if f"{t['case']} {t['cell']}" not in where:
                where.append(f"{t['case']} {t['cell']}")
    if missing:
        lines.append("")
        lines.append(
            "Not measured in this run (a case, cell or peer they need did not run): "
            + "; ".join(f"{name} ({', '.join(where)})" for name, where in missing.items())
            + "."
        )
    return "\n".join(lines)


def markdown(meta: dict[str, Any], rows: list[Row], peers: list[str], targets: list[Row]) -> str:
    machine = ", ".join(f"{k} {v}" for k, v in meta.items() if k != "command")
    shown, shown_peers, notes = what_ran(rows, peers)
    return (
        "\n\n".join(
            [
                "# RNN speed: masking_jax and its peers",
                f"Run: `{meta.get('command', '')}`. {machine}.",
                "Times in ms, min / median over the repeats; `(r x)` = peer median / masking_jax "
                "median (above 1: masking_jax is faster). fwd = forward; fwd_bwd = "
                "`value_and_grad` of the sum of outputs at real steps w.r.t. params and x.",
                markdown_table(shown, shown_peers),
                *notes,
                "## Compiled memory of forward+backward (temp + output)",
                memory_table(rows, peers),
                "## Targets",
                "The project's speed and memory goals for the kernels, read off the tables "
                "above; benchmarks/README.md says why each is set where it is.",
                targets_table(targets),
            ]
        )
        + "\n"
    )


def _log_ticks(low: float, high: float) -> list[float]:
    """Ratios to label on a log axis from `low` to `high`: powers of 2, and 0.75x / 1.5x
    steps too when the range is narrow."""
    ticks = [2.0**k for k in range(-8, 9) if low <= 2.0**k <= high]
    if len(ticks) < 4:
        steps = (s * 2.0**k for k in range(-8, 9) for s in (0.75, 1.5))
        ticks += [t for t in steps if low <= t <= high]
    return sorted(set(ticks))


def _times(value: float, digits: str = ".2f") -> str:
    return f"{value:{digits}}x"


def _ratio_axis(ax: Any, low: float, high: float) -> None:
    """A log x axis from `low` to `high` labelled 0.5x, 1x, 2x..., with a line at 1x."""
    from matplotlib import ticker

    ticks = _log_ticks(low, high)
    ax.axvline(1.0, color="black", linewidth=1.0, zorder=3)
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter([_times(t, "g") for t in ticks]))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.grid(axis="x", color="0.8", linewidth=0.6, zorder=1)
    ax.set_xlabel("peer time / masking_jax time", fontsize=8)


def _bars(ax: Any, ratios: dict, pairs: list[tuple[str, str]], peers: list[str], mode: str):
    """One row per (case, cell), one bar per peer from the 1x line to its ratio, labelled."""
    for i in range(0, len(pairs), 2):  # light bands: every other (case, cell)
        ax.axhspan(i - 0.5, i + 0.5, color="0.94", zorder=0)
    height = 0.8 / max(1, len(peers))
    for k, peer in enumerate(peers):
        offset = (k - (len(peers) - 1) / 2) * height
        found = [(i + offset, v) for i, (case, cell) in enumerate(pairs)
                 if (v := ratios.get(((case, cell, mode), peer)))]  # fmt: skip
        ys, xs = [y for y, _ in found], [v for _, v in found]
        ax.barh(ys, [v - 1.0 for v in xs], height, left=1.0, color=f"C{k}", label=peer, zorder=2)
        for y, v in found:
            side = "left" if v >= 1 else "right"
            ax.text(v, y, f" {_times(v)} ", va="center", ha=side, fontsize=6, zorder=3)
    ax.set_title(MODE_NAMES.get(mode, mode), fontsize=9)


def plot(path: Path, rows: list[Row], peers: list[str], title: str = "") -> None:
    """Peer time / our time as bars from the 1x line, log scale: one panel per mode.

    Rows of bars are (case, cell) pairs, one bar per peer; a bar to the right of
    1x means masking_jax was faster. (case, cell, mode) groups where no peer has
    a ratio, and peers with none, are left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [p for p in peers if p != OURS]
    ratios = {(g, p): v for g in _groups(rows) for p in others if (v := ratio(rows, g, p))}
    others = [p for p in others if any(q == p for _, q in ratios)]
    modes = list(dict.fromkeys(g[2] for g, _ in ratios)) or ["fwd"]
    pairs = list(dict.fromkeys(g[:2] for g, _ in ratios))
    values = [1.0, *ratios.values()]
    low, high = min(values) / 2.0, max(values) * 2.0  # room for the labels
    row_height = 0.08 + 0.09 * max(1, len(others))
    fig, axes = plt.subplots(
        1, len(modes), sharey=True, squeeze=False,
        figsize=(2.0 + 4.2 * len(modes), 1.4 + row_height * max(1, len(pairs))),
    )  # fmt: skip
    for ax, mode in zip(axes[0], modes, strict=True):
        _bars(ax, ratios, pairs, others, mode)
        _ratio_axis(ax, low, high)
    first = axes[0][0]
    first.set_yticks(range(len(pairs)), [f"{case} {cell}" for case, cell in pairs], fontsize=8)
    first.set_ylim(max(1, len(pairs)) - 0.5, -0.5)  # first case on top
    if not pairs:
        first.text(1.0, 0.0, "no peer ran beside masking_jax", ha="center", va="center")
    if others:
        fig.legend(*first.get_legend_handles_labels(), loc="upper right", ncol=len(others),
                   fontsize=8, frameon=False)  # fmt: skip
    heading = title or "RNN speed: masking_jax against its peers"
    fig.suptitle(f"{heading}\nmedians; right of 1x: masking_jax is faster", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
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
    shown, shown_peers, _ = what_ran(rows, peers)
    device = ", ".join(str(meta[k]) for k in ("device", "cpu") if k in meta)
    device += f", {meta['cores']} cores" if "cores" in meta else ""
    title = "RNN speed: masking_jax against its peers" + (f" ({device})" if device else "")
    plot(paths["png"], shown, shown_peers, title)
    return paths
