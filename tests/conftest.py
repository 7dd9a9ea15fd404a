"""Strict settings for the whole suite (see equinox's tests/conftest.py)."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")
