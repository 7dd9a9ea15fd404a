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

from benchmarks import check, report, rnn_speed
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
    table = paths["md"].read_text()
    assert "| case | size | cell | mode | masking_jax |" in table
    assert "skipped: no GPU" in table or jax.default_backend() == "gpu"
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == len(rows) and data["peers"] == names
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratio_is_peer_time_over_ours():
    rows = [
        {"case": "c", "cell": "lstm", "mode": "fwd", "peer": p, "median_s": t}
        for p, t in (("masking_jax", 2.0), ("flax", 3.0))
    ]
    assert report.ratio(rows, ("c", "lstm", "fwd"), "flax") == pytest.approx(1.5)
    assert np.isclose(report.ratio(rows, ("c", "lstm", "fwd"), "masking_jax"), 1.0)
