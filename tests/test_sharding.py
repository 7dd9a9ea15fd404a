"""Data parallelism with jax.sharding gives the single-device loss and gradients."""

import json
import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).with_name("sharded_step.py")


def test_sharded_training_step_equals_single_device_step():
    # Keep the suite's XLA flags (conftest.py: its optimisation level) and add the 8 devices.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8 and result["mask_shards"] == 8
    assert result["finite"]
    assert abs(result["loss_single"] - result["loss_sharded"]) < 1e-5
    assert result["max_grad_diff"] < 1e-5
