"""The main job runs end to end on the shipped data and reports what README promises."""

import json
import re

import numpy as np
import pytest

from masking_jax import demo
from masking_jax.datasets import load_japanese_vowels


def test_data_set_has_the_documented_splits():
    for split, count, longest in (("train", 270, 26), ("test", 370, 29)):
        sequences, labels = load_japanese_vowels(split)
        assert len(sequences) == len(labels) == count
        assert {s.shape[1] for s in sequences} == {12}
        assert min(len(s) for s in sequences) == 7 and max(len(s) for s in sequences) == longest
        assert set(np.unique(labels)) == set(range(9))
    with pytest.raises(ValueError, match="`split` must be one of 'train', 'test'"):
        load_japanese_vowels("valid")


def test_short_run_compiles_then_trains_and_prints_json_with_results(tmp_path, capsys):
    results = demo.main(["--epochs", "2", "--hidden", "16", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1]) == results
    # two phases: compiling (its seconds shown), then the progress bar over training only
    assert re.search(r"compiling the train step and the forward pass\.\.\. \d+\.\d s\n", err)
    assert err.index("compiling") < err.index("training:") and "2/2" in err
    assert results["padding_invariant"] is True
    assert results["epochs"] == 2 and results["compile_seconds"] > 0
    assert results["train_seconds"] > 0
    assert results["test_accuracy"] > 1 / 9  # better than chance after two epochs
    assert (tmp_path / "training_curves.png").stat().st_size > 0


def test_conv_model_is_padding_invariant_with_its_own_defaults(tmp_path):
    """--model conv: masked Conv1D + BatchNorm, trained in train mode, evaluated in eval mode."""
    args = demo.parse_args(["--model", "conv"])
    assert (args.hidden, args.learning_rate) == (128, 1e-3)
    results = demo.main(["--model", "conv", "--epochs", "2", "--hidden", "8", "--quiet",
                         "--out", str(tmp_path)])
    assert results["model"].startswith("masked Conv1D(8, 5) + BatchNorm")
    assert results["padding_invariant"] is True
    assert results["test_accuracy"] > 1 / 9


def test_bad_flags_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(["--epochs", "0"])
    assert "--epochs must be >= 1" in capsys.readouterr().err
