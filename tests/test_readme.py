"""README's promises: its example runs, and CI runs the test command README shows."""

import pathlib
import re

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_quickstart_has_two_commands_and_ci_runs_the_test_one():
    commands = [block.strip() for block in _blocks("bash")[:2]]
    assert commands[0].endswith("python -m masking_jax.demo")
    assert commands[1].endswith("python -m pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci_lines


def test_example_runs_and_gives_what_it_says():
    namespace = {}
    exec(compile(_blocks("python")[0], "README example", "exec"), namespace)
    assert namespace["logits"].shape == (2, 2)
    assert namespace["outputs"].shape == (2, 8, 16)
    assert namespace["lengths"].tolist() == [3, 1]


def test_bring_your_own_cell_example_runs_and_skips_the_padding():
    namespace = {}
    with jax.numpy_rank_promotion("allow"):  # user code broadcasts (B, 4H) + (4H,) implicitly
        exec(compile(_blocks("python")[1], "README own-cell example", "exec"), namespace)
    step, params, x = namespace["peephole_step"], namespace["params"], namespace["x"]
    assert namespace["outputs"].shape == (2, 5, 8)
    state = (namespace["zeros"][1:], namespace["zeros"][1:])
    with jax.numpy_rank_promotion("allow"):
        for t in (1, 2):  # row 1's real steps, one by one
            state, _ = step(params, state, x[1:, t])
    np.testing.assert_allclose(namespace["h"][1], state[0][0], rtol=1e-6, atol=1e-6)


def test_coming_from_nn_rnn_example_runs_and_gives_what_it_says():
    (block,) = [b for b in _blocks("python") if "from masking_jax import linen" in b]
    namespace = {}
    exec(compile(block, "README nn.RNN example", "exec"), namespace)
    ours, theirs, y_pre, h = (namespace[k] for k in ("ours", "theirs", "y_pre", "h"))
    assert ours.shape == (2, 5, 8)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours[1, :2], theirs[1, :2], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ours[1, 2:], np.broadcast_to(ours[1, 1], (3, 8)))
    np.testing.assert_allclose(y_pre[1, 3:], ours[1, :2], rtol=1e-6, atol=1e-6)  # pre-padded
    np.testing.assert_array_equal(y_pre[1, :3], 0.0)  # zeros before the first real step
    np.testing.assert_allclose(h, np.stack([ours[0, 4], ours[1, 1]]), rtol=1e-6, atol=1e-6)
