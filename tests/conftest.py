"""Strict settings for the whole suite (see equinox's tests/conftest.py), and one compile cache.

The suite is mostly XLA compiling. Each worker (`pytest -n`) and the subprocesses
it starts (the notebook's kernel) share a persistent compile cache, made fresh for
each run and removed after it, so a program that several of its tests compile is
compiled once per run. Workers do not share one: JAX writes an entry unlocked, and
a worker could read an entry that another is still writing (a locked shared cache
made the suite four times slower). Nothing is cached across runs.

XLA compiles the suite's programs with its LLVM backend at optimisation level 0
(`--xla_backend_optimization_level=0`: a third less compile time) and emits its CPU
fusions with its classic elemental emitters instead of the newer MLIR fusion emitters
(`--xla_cpu_use_fusion_emitters=false`: half the remaining compile time). Both flags
are inherited by workers and subprocesses (the notebook's kernel, the sharding
script). XLA's own graph passes (fusion, simplification) still run, so the programs
compute what users' programs compute; only the machine code is made differently and
less tuned, which the tests do not time. `MASKING_JAX_TEST_FULL_XLA=1` runs the suite
with XLA's defaults instead.
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

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and not os.environ["JAX_COMPILATION_CACHE_DIR"].endswith(_WORKER):
    # One cache per worker (and its subprocesses): JAX writes an entry unlocked, so a
    # worker could read one that another is still writing.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
        os.environ["JAX_COMPILATION_CACHE_DIR"], _WORKER
    )

if os.environ.get("MASKING_JAX_TEST_FULL_XLA") != "1":
    for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
        if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()

import jax  # noqa: E402  (reads the variables above)

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


def pytest_collection_modifyitems(items):
    """The notebook's run, the longest test (a kernel of its own), goes first: under
    `-n` (work stealing) it then overlaps the rest instead of ending last on a worker."""
    items.sort(key=lambda item: item.path.name != "test_notebook.py")
