"""The benchmark suite's correctness harness on a tiny size, and its report writer.

Every available peer, built from our params by `benchmarks/peers.py`, must agree
with masking_jax (outputs at real steps, final states, loss and dL/dx). Optional
peers that are not installed are skipped; torch is not a test dependency. No
timing is asserted.
"""

import dataclasses
import functools
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` is not installed

from benchmarks import check, report, rnn_speed, targets
from benchmarks.cases import MODES, Case, make_problem
from benchmarks.peers import CudnnLSTM, Flax, Keras, MaskingJax, Torch

PEERS = {
    "flax": Flax(),
    "keras": Keras(),
    "torch": Torch(),
    "cudnn_layout": CudnnLSTM(reference=True),  # cuDNN's weight layout via lstm_ref, on CPU
}
# (cell, layout, modes): every cell post-padded (the weight conversions), and a gappy
# mask (Keras' own masking, the compact-first path of the post-padding-only peers);
# the backward pass on LSTM only, to keep the test fast (each mode is one compile)
PROBLEMS = [
    ("lstm", "post", MODES),
    ("gru", "post", ("fwd",)),
    ("simple_rnn", "post", ("fwd",)),
    ("lstm", "gappy", MODES),
]


def _tiny(layout: str) -> Case:
    return Case(f"tiny_{layout}", 3, 6, 4, 5, layout=layout, min_len=1, holes=0.3)


def _results(peer, problem, modes):
    runner = peer.build(problem)
    return {m: runner.result(m, runner.run(m)()) for m in modes}


@functools.cache
def _reference(cell: str, layout: str, modes: tuple[str, ...]):
    problem = make_problem(_tiny(layout), cell, seed=3)
    return problem, _results(MaskingJax(), problem, modes)


@pytest.fixture(autouse=True)
def _peers_broadcast_ranks():
    """Peers' own code broadcasts ranks implicitly; the suite's strict setting is for ours."""
    with jax.numpy_rank_promotion("allow"):
        yield


# cuDNN runs post-padded LSTMs only; its compact-first path is the one flax and torch use
PEER_PROBLEMS = [
    (name, *problem)
    for name in PEERS
    for problem in PROBLEMS
    if name != "cudnn_layout" or problem[:2] == ("lstm", "post")
]


@pytest.mark.parametrize("name, cell, layout, modes", PEER_PROBLEMS)
def test_peer_agrees_with_masking_jax(name, cell, layout, modes):
    peer = PEERS[name]
    if peer.module is not None:
        pytest.importorskip(peer.module)  # optional peers: torch is not a test dependency
    problem, reference = _reference(cell, layout, modes)
    reason = peer.unavailable() or peer.unsupported(problem)
    if reason is not None:
        pytest.skip(reason)
    assert problem.post_padded == (layout == "post")
    results = _results(peer, problem, modes)
    for mode in modes:
        assert check.error(reference[mode], results[mode], problem.mask) <= check.TOLERANCE, mode


def test_check_flags_a_wrong_conversion():
    pytest.importorskip("flax")
    problem, reference = _reference("gru", "post", ("fwd",))
    params = dict(problem.params)
    params["bias"] = params["bias"][::-1].copy()  # swap the input and recurrent bias rows
    wrong = _results(Flax(), dataclasses.replace(problem, params=params), ("fwd",))
    assert check.error(reference["fwd"], wrong["fwd"], problem.mask) > check.TOLERANCE


def test_suite_runs_and_writes_markdown_json_png(tmp_path):
    cases = [
        _tiny("post"),
        Case("gpu_case", 2, 3, 4, 5, cells=("lstm",), gpu_only=True),
        Case("infer", 1, 4, 4, 5, modes=("fwd",)),
    ]
    peers = [MaskingJax(), CudnnLSTM()]  # the peers' agreement is tested above
    rows = rnn_speed.run_suite(
        cases, ["lstm"], peers, repeats=1, tolerance=check.TOLERANCE, progress=False
    )
    assert not [r for r in rows if r["status"] in ("mismatch",) or r["status"].startswith("error")]
    ours = [r for r in rows if r["peer"] == "masking_jax" and r["status"] == "ok"]
    assert {(r["case"], r["mode"]) for r in ours} == {
        ("tiny_post", "fwd"),
        ("tiny_post", "fwd_bwd"),
        ("infer", "fwd"),
    }
    assert all(r["median_s"] > 0 and r["memory_bytes"] for r in ours if r["mode"] == "fwd_bwd")
    if jax.default_backend() != "gpu":
        assert {r["status"] for r in rows if r["case"] == "gpu_case"} == {"skipped: no GPU"}

    names = [p.name for p in peers]
    paths = report.write_all(tmp_path, {"cpu": "test"}, rows, names, [])
    text = paths["md"].read_text()
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == len(rows) and data["peers"] == names  # every row, skipped too
    assert _png_size(paths["png"])[0] > 0
    if jax.default_backend() != "gpu":  # what did not run is one line each, not a row each
        assert "| case | size | cell | mode | masking_jax |\n" in text  # no cudnn column
        assert "Not run here (no GPU): 2 rows, 1 case (`gpu_case`), lstm" in text
        assert "Peers not run (no GPU): `cudnn`." in text
        assert "| gpu_case |" not in text and "skipped: no GPU |" not in text


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _rows(group: tuple[str, str, str], **peers: float | str) -> list[dict]:
    """Rows of one (case, cell, mode): a median per peer, or a status for one that skipped."""
    case, cell, mode = group
    return [
        {"case": case, "cell": cell, "mode": mode, "peer": peer, "size": "B=1",
         "status": value if isinstance(value, str) else "ok",
         "min_s": None if isinstance(value, str) else value,
         "median_s": None if isinstance(value, str) else value}
        for peer, value in peers.items()
    ]  # fmt: skip


def test_report_shows_what_ran_and_sums_up_the_rest(tmp_path):
    rows = [
        *_rows(("quick", "lstm", "fwd"), masking_jax=1.0, flax=2.0, torch="skipped: no torch"),
        *_rows(("quick", "lstm", "fwd_bwd"), masking_jax=1.0, flax=0.5, torch="error: X: boom"),
        *_rows(("big_a", "lstm", "fwd"), masking_jax="skipped: no GPU", flax="skipped: no GPU",
               torch="skipped: no GPU"),
        *_rows(("big_b", "lstm", "fwd"), masking_jax="skipped: no GPU", flax="skipped: no GPU",
               torch="skipped: no GPU"),
    ]  # fmt: skip
    shown, peers, notes = report.what_ran(rows, ["masking_jax", "flax", "torch"])
    assert {r["case"] for r in shown} == {"quick"}
    assert peers == ["masking_jax", "flax", "torch"]  # torch failed once: its error is shown
    assert notes == [
        "Not run here (no GPU): 2 rows, 2 cases (`big_a`, `big_b`), lstm, forward."
    ]
    shown, peers, notes = report.what_ran(rows[:3], ["masking_jax", "flax", "torch"])
    assert peers == ["masking_jax", "flax"] and notes == ["Peers not run (no torch): `torch`."]

    report.plot(tmp_path / "ratios.png", rows, ["masking_jax", "flax", "torch"])
    width, height = _png_size(tmp_path / "ratios.png")
    assert width <= 1200 and height <= 400  # two rows of bars: a small figure


def test_log_axis_labels_read_as_ratios():
    assert report._log_ticks(0.3, 5.0) == [0.5, 1.0, 2.0, 4.0]
    assert report._log_ticks(0.5, 2.0) == [0.5, 0.75, 1.0, 1.5, 2.0]  # narrow: 1.5x steps too
    assert [report._times(t, "g") for t in (0.5, 1.0, 2.0)] == ["0.5x", "1x", "2x"]


def test_targets_table_names_each_target_and_what_was_not_measured():
    rows = [
        *_rows(("standard", "lstm", "fwd"), masking_jax=1.0, flax=2.0, keras=3.0, torch=1.5),
        *_rows(("standard", "lstm", "fwd_bwd"), masking_jax=1.0, flax=2.0, keras=3.0, torch=4),
    ]
    found = targets.evaluate(rows)
    assert {t["target"] for t in found} <= set(targets.TARGETS)
    table = report.targets_table(found)
    assert "| speed vs Flax/Keras | standard | lstm | fwd | 2.00x | >= 1.3x | met |" in table
    assert "| speed vs PyTorch | standard | lstm | fwd_bwd | 4.00x | >= 1x | met |" in table
    assert f"- speed vs Flax/Keras: {targets.TARGETS['speed vs Flax/Keras']}" in table
    assert "Not measured in this run" in table and "speed vs Flax/Keras (standard gru)" in table
    assert "issue" not in report.markdown({}, rows, ["masking_jax", "flax"], found)


def test_ratio_is_peer_time_over_ours():
    rows = [
        {"case": "c", "cell": "lstm", "mode": "fwd", "peer": p, "median_s": t}
        for p, t in (("masking_jax", 2.0), ("flax", 3.0))
    ]
    assert report.ratio(rows, ("c", "lstm", "fwd"), "flax") == pytest.approx(1.5)
    assert np.isclose(report.ratio(rows, ("c", "lstm", "fwd"), "masking_jax"), 1.0)
