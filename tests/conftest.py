"""Strict settings for the whole suite (see equinox's tests/conftest.py), and one compile cache.

The suite is mostly XLA compiling. Its workers (`pytest -n`) and the subprocesses
they start (the notebook's kernel) share one persistent compile cache, made fresh
for each run and removed after it, so a program that several tests compile is
compiled once per run. Nothing is cached across runs.
"""

import os
import shutil
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:  # the controller makes it; workers and kernels inherit the variables
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="masking_jax_tests_")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402  (reads the variables above)

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
