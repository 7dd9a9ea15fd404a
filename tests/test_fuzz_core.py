"""Fuzzing every public function of the core (`masking_jax`) with good and abusive arguments.

Hypothesis draws shapes from a small fixed set (so that the few jitted calls compile
once), dtypes (float, int, bool, complex), ranks, Python types (lists, numpy, JAX
arrays, None, strings, a `Masked` where an array belongs), broadcast masks (`(B, 1)`,
`(1, T)`, `(B,)`), misaligned and integer masks, static options of the wrong type,
and concrete versus traced (`jax.jit`) values. Every call must end in one of two ways:

- a result equal to a numpy reference (loops over the real steps, or `numpy.ma`),
  with no NaN at a real step although the padding holds NaN; arguments that the
  rules below call good must always end this way;
- a `ValueError` or `TypeError` raised by masking_jax itself (not from inside
  numpy or JAX) whose message names one of the function's parameters in backticks.

Each test draws a bounded number of examples: `MASKING_JAX_FUZZ_PROFILE=nightly`
draws 25 times as many (`MASKING_JAX_FUZZ_PROFILE=nightly pytest tests/test_fuzz_core.py`).
Masks are boolean, True = real step, and cover the leading axes of the data.
"""

import inspect
import os
import re
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rnn_reference import random_params, rnn_ref

import masking_jax as mj
from masking_jax import Masked

_EXAMPLES = {"ci": 40, "nightly": 1000}[os.environ.get("MASKING_JAX_FUZZ_PROFILE", "ci")]
FUZZ = settings(  # the same draws every CI run; the nightly profile explores at random
    max_examples=_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=_EXAMPLES == 40,
)
FEWER = settings(FUZZ, max_examples=max(10, _EXAMPLES // 2))

B, T, D = 2, 3, 2
SHAPES = [(B, T), (B, T, D)]

# --------------------------------------------------------------------------- the oracle


def _parameters(fn) -> set[str]:
    return set(inspect.signature(fn).parameters)


def assert_clear_error(err: Exception, fn) -> None:
    """`err` is a ValueError/TypeError raised in masking_jax, naming a parameter of `fn`."""
    assert isinstance(err, ValueError | TypeError), f"{type(err).__name__}: {err}"
    where = traceback.extract_tb(err.__traceback__)[-1].filename
    assert f"{os.sep}masking_jax{os.sep}" in where, f"raised inside {where}: {err}"
    named = {re.match(r"\w*", token).group() for token in re.findall(r"`([^`]+)`", str(err))}
    assert named & _parameters(fn), f"names none of {sorted(_parameters(fn))}: {err}"


_JITTED = {}


def _jitted(fn, args, kwargs):
    """`fn` under `jax.jit`, its callable arguments and `kwargs` static; one compile per
    distinct static part (so repeated draws reuse the compiled function)."""
    statics = tuple(a if callable(a) else None for a in args)
    key = (fn, statics, repr(sorted(kwargs.items())))
    if key not in _JITTED:

        def call(*arrays):
            merged = [s if s is not None else a for s, a in zip(statics, arrays, strict=True)]
            return fn(*merged, **kwargs)

        _JITTED[key] = jax.jit(call)
    return _JITTED[key](*[None if callable(a) else a for a in args])


def outcome(fn, *args, good: bool, traced: bool = False, **kwargs):
    """Calls `fn` (under `jax.jit` with the array arguments traced if `traced`).

    Returns the result, or None after checking the error. Good arguments must not raise.
    """
    try:
        if traced:
            return _jitted(fn, args, kwargs)
        return fn(*args, **kwargs)
    except Exception as err:
        if good:
            raise
        assert_clear_error(err, fn)
        return None


def fits(value, dtype) -> bool:
    """Whether a number (or an array of them) survives a cast to `dtype` (beyond rounding)."""
    if value is None or isinstance(value, str):
        return False
    v, dtype = np.asarray(value, np.float64), np.dtype(dtype)
    if dtype.kind in "fc":
        return bool(np.all(~np.isfinite(v) | (np.abs(v) <= np.finfo(dtype).max)))
    if not np.all(np.isfinite(v) & (v % 1 == 0)):
        return False
    if dtype.kind == "b":
        return bool(np.all((v == 0) | (v == 1)))
    info = np.iinfo(dtype)
    return v.size == 0 or bool(v.min() >= info.min and v.max() <= info.max)


def broadcasts_to(value, shape) -> bool:
    try:
        return np.broadcast_shapes(np.shape(value), shape) == tuple(shape)
    except ValueError:
        return False


def assert_close(result, expected, dtype=np.float32) -> None:
    result = np.asarray(result)
    tol = 1e-5 if np.dtype(dtype).itemsize >= 4 else 1e-2
    if not np.issubdtype(result.dtype, np.inexact):
        np.testing.assert_array_equal(result, expected)
    else:
        np.testing.assert_allclose(result, expected, rtol=tol, atol=tol)


# --------------------------------------------------------------------------- strategies


@st.composite
def rngs(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def random_mask(rng, shape):
    """A (B, T) bool mask whose first row is fully masked or fully real half the time."""
    mask = np.asarray(rng.random(shape) < 0.6)
    if mask.ndim and rng.random() < 0.5:
        mask[0] = rng.random() < 0.5
    return mask


def leading(mask: np.ndarray, shape) -> np.ndarray:
    """`mask` broadcast over the data shape along its leading axes (the package's rule)."""
    mask = np.asarray(mask)
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim)), shape)


MASK_KINDS = {  # kind -> (make(rng, data shape), good)
    "full": (lambda rng, s: random_mask(rng, s[:2]), True),
    "list": (lambda rng, s: random_mask(rng, s[:2]).tolist(), True),
    "jax": (lambda rng, s: jnp.asarray(random_mask(rng, s[:2])), True),
    "rows (B, 1)": (lambda rng, s: random_mask(rng, (s[0], 1)), True),
    "steps (1, T)": (lambda rng, s: random_mask(rng, (1, s[1])), True),
    "batch (B,)": (lambda rng, s: random_mask(rng, s[:1]), True),
    "every axis": (lambda rng, s: random_mask(rng, s), True),
    "int 0/1": (lambda rng, s: random_mask(rng, s[:2]).astype(np.int32), False),
    "too long": (lambda rng, s: random_mask(rng, (s[0], s[1] + 1)), False),
    "trailing axes": (lambda rng, s: random_mask(rng, (s[1],)), False),
    "None": (lambda rng, s: None, False),
    "Masked": (lambda rng, s: Masked(np.zeros(s[:2]), random_mask(rng, s[:2])), False),
}

DTYPES = [np.float32, np.int32, np.bool_, np.complex64]


def random_data(rng, shape, dtype, mask=None):
    """Data of `dtype`; NaN at the padding of float data, so any read of it shows."""
    x = rng.normal(size=shape) * 3
    if np.issubdtype(dtype, np.complexfloating):
        x = x + 1j * rng.normal(size=shape)
    x = (x > 0) if dtype == np.bool_ else x.astype(dtype)
    if mask is not None and np.issubdtype(dtype, np.inexact):
        x[~leading(mask, shape)] = np.nan
    return x


def as_kind(x, kind):
    return {"numpy": x, "list": x.tolist(), "jax": jnp.asarray(x)}[kind]


BAD_ARRAYS = {"None": None, "str": "abc", "Masked": Masked(np.zeros((B, T)), np.ones((B, T), bool))}

# --------------------------------------------------------------------------- masked ops

OPS = ["masked_sum", "masked_mean", "masked_max", "masked_min", "masked_var", "masked_std",
       "masked_count", "masked_softmax"]  # fmt: skip
ORDERED = {"masked_max", "masked_min", "masked_softmax"}  # no complex input
GOOD_AXES = [1, -1, 0, (0, 1), None, np.int64(1), [1, 0]]
BAD_AXES = [1.0, True, 3, "1", (1, 1), (1, -2)]


def reference_op(name, x, mask, axis, keepdims, ddof, fill_value):
    full = leading(mask, x.shape)
    wide = x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)
    axis = tuple(range(x.ndim)) if axis is None else axis
    axis = tuple(np.atleast_1d(axis).tolist())
    count = full.sum(axis, keepdims=keepdims)
    total = np.where(full, wide, 0).sum(axis, keepdims=keepdims)
    if name == "masked_count":
        return count
    if name == "masked_sum":
        return total
    if name == "masked_mean":
        return total / np.maximum(count, 1)
    if name in ("masked_var", "masked_std"):
        mean = np.where(full, wide, 0).sum(axis, keepdims=True) / np.maximum(
            full.sum(axis, keepdims=True), 1
        )
        squares = np.where(full, np.abs(wide - mean) ** 2, 0).sum(axis, keepdims=keepdims)
        var = np.where(count > ddof, squares / np.maximum(count - ddof, 1), 0)
        return var if name == "masked_var" else np.sqrt(var)
    if name in ("masked_max", "masked_min"):
        sign = 1 if name == "masked_max" else -1
        extreme = sign * np.where(full, sign * wide, -np.inf).max(axis, keepdims=keepdims)
        return np.where(count > 0, extreme, fill_value)
    top = np.where(full, wide, -np.inf).max(axis, keepdims=True)
    e = np.where(full, np.exp(np.where(full, wide, 0) - np.where(np.isfinite(top), top, 0)), 0)
    s = e.sum(axis, keepdims=True)
    return np.where(s > 0, e / np.where(s > 0, s, 1), 0)


@FUZZ
@given(
    rng=rngs(),
    name=st.sampled_from(OPS),
    shape=st.sampled_from(SHAPES),
    dtype=st.sampled_from(DTYPES),
    x_kind=st.sampled_from(["numpy", "list", "jax", "numpy", *BAD_ARRAYS]),
    mask_kind=st.sampled_from(list(MASK_KINDS)),
    axis=st.sampled_from(GOOD_AXES + BAD_AXES),
    keepdims=st.sampled_from([False, True, "yes", 1]),
    ddof=st.sampled_from([0, 1, -1, 0.5, "1"]),
    fill_value=st.sampled_from([0, -1, 0.5, np.nan, "x", np.zeros(5), np.zeros(D)]),
    traced=st.booleans(),
)
def test_masked_ops(rng, name, shape, dtype, x_kind, mask_kind, axis, keepdims, ddof,
                    fill_value, traced):  # fmt: skip
    make_mask, mask_good = MASK_KINDS[mask_kind]
    mask = make_mask(rng, shape)
    full_mask = np.asarray(mask) if mask_good else random_mask(rng, shape[:2])
    x = random_data(rng, shape, dtype, full_mask if mask_good else None)
    kwargs = {"axis": axis}
    ndim = len(shape)
    axes = [axis] if not isinstance(axis, tuple | list) else list(axis)
    good = (
        x_kind not in BAD_ARRAYS
        and mask_good
        and (dtype != np.complex64 or name not in ORDERED)
        and (
            axis is None
            or (all(isinstance(a, int | np.integer) and not isinstance(a, bool) for a in axes)
            and all(-ndim <= a < ndim for a in axes)
            and len({a % ndim for a in axes}) == len(axes))
        )
    )
    if name != "masked_softmax":
        kwargs["keepdims"] = keepdims
        good &= isinstance(keepdims, bool)
    if name in ("masked_var", "masked_std"):
        kwargs["ddof"] = ddof
        good &= isinstance(ddof, int) and ddof >= 0
    if name in ("masked_max", "masked_min"):
        kwargs["fill_value"] = fill_value
        if good:
            result_shape = np.sum(np.zeros(shape), axis=tuple(axes) if axis is not None else None,
                                  keepdims=keepdims is True).shape  # fmt: skip
            good = fits(fill_value, dtype) and broadcasts_to(fill_value, result_shape)
    fn = getattr(mj, name)
    data = BAD_ARRAYS[x_kind] if x_kind in BAD_ARRAYS else as_kind(x, x_kind)
    traced = traced and good and x_kind != "list" and mask_kind != "list"
    result = outcome(fn, data, mask, good=good, traced=traced, **kwargs)
    if result is None:
        return
    expected = reference_op(name, x, full_mask, axis, kwargs.get("keepdims", False), ddof,
                            fill_value)  # fmt: skip
    assert_close(result, expected, dtype)


# --------------------------------------------------------------------------- padding


def reference_padding(seqs, maxlen, dtype, padding, truncating, value):
    """(padded, lengths) like `keras.utils.pad_sequences`, or None where a value cannot fit."""
    maxlen = max((len(s) for s in seqs), default=0) if maxlen is None else maxlen
    out = np.full((len(seqs), maxlen), value, dtype)
    lengths = []
    for i, seq in enumerate(seqs):
        kept = seq[max(len(seq) - maxlen, 0):] if truncating == "pre" else seq[:maxlen]
        if not fits(kept, dtype):
            return None
        lengths.append(len(kept))
        if kept:
            if padding == "pre":
                out[i, maxlen - len(kept):] = kept
            else:
                out[i, : len(kept)] = kept
    return out, np.asarray(lengths, np.int32)


ID_VALUES = st.sampled_from([0, 1, 7, 2**40, -1, 300, 0.5])


@FUZZ
@given(
    seqs=st.lists(st.lists(ID_VALUES, max_size=4), max_size=3),
    container=st.sampled_from(["list", "numpy", "jax"]),
    maxlen=st.sampled_from([None, 0, 2, 5, -1, 2.0, "2"]),
    dtype=st.sampled_from(["int32", "int8", "uint8", "float32", "float16", "nope"]),
    padding=st.sampled_from(["pre", "post", "left"]),
    truncating=st.sampled_from(["pre", "post", None]),
    value=st.sampled_from([0, -1, 0.5, 1e6, "x", np.zeros(2)]),
    masked=st.booleans(),
    bucket=st.sampled_from([None, 4, "pow2", 0, "x"]),
)
def test_padding(seqs, container, maxlen, dtype, padding, truncating, value, masked, bucket):
    if container == "numpy":
        seqs_in = [np.asarray(s) for s in seqs]
    elif container == "jax":
        seqs_in = [jnp.asarray(s, jnp.float32 if any(v % 1 for v in s) else jnp.int32)
                   for s in seqs if all(abs(v) < 2**31 for v in s)]  # fmt: skip
        seqs = [s for s in seqs if all(abs(v) < 2**31 for v in s)]
    else:
        seqs_in = seqs
    kwargs = {"maxlen": maxlen, "dtype": dtype, "padding": padding, "truncating": truncating,
              "value": value}  # fmt: skip
    good = (
        (maxlen is None or (isinstance(maxlen, int) and maxlen >= 0))
        and dtype != "nope"
        and padding != "left"
        and truncating is not None
        and not isinstance(value, str | np.ndarray)
        and fits(value, dtype)
    )
    if masked:
        kwargs["bucket"] = bucket
        good &= bucket in (None, 4, "pow2")
    expected = reference_padding(seqs, maxlen, dtype, padding, truncating, value) if good else None
    good &= expected is not None
    fn = mj.pad_masked if masked else mj.pad_sequences
    result = outcome(fn, seqs_in, good=good, **kwargs)
    if result is None:
        return
    if not masked:
        assert result.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(result, expected[0])
        return
    batch, lengths = result
    padded, want_lengths = expected
    np.testing.assert_array_equal(lengths, want_lengths)
    real = np.asarray(mj.lengths_to_mask(lengths, padded.shape[1], padding=padding))
    steps = batch.mask.shape[1]
    assert steps == mj.bucket_length(padded.shape[1], bucket)
    offset = steps - padded.shape[1] if padding == "pre" else 0
    np.testing.assert_array_equal(batch.mask[:, offset: offset + padded.shape[1]], real)
    assert batch.mask.sum() == lengths.sum()
    np.testing.assert_array_equal(batch.data[:, offset: offset + padded.shape[1]], padded)


@FUZZ
@given(
    values=st.lists(st.sampled_from([0, 1, 3, 4, -2, 2**31 + 5]), max_size=3),
    dtype=st.sampled_from([np.int32, np.uint8, np.int8, np.uint32, np.float32]),
    container=st.sampled_from(["list", "numpy", "jax", "None"]),
    maxlen=st.sampled_from([0, 3, 4, -1, 3.0, 2**40]),
    padding=st.sampled_from(["post", "pre", "x"]),
    traced=st.booleans(),
)
def test_lengths_to_mask(values, dtype, container, maxlen, padding, traced):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = [v for v in values if info.min <= v <= info.max]
    lengths = np.asarray(values, dtype)
    data = None if container == "None" else (lengths.tolist() if container == "list" else (
        jnp.asarray(lengths) if container == "jax" else lengths))  # fmt: skip
    traced = traced and container in ("numpy", "jax")
    good = (
        container != "None"
        and (np.issubdtype(dtype, np.integer) or not values)
        and isinstance(maxlen, int) and 0 <= maxlen < 2**31
        and padding != "x"
    )
    in_range = all(0 <= v <= (maxlen if isinstance(maxlen, int) else 0) for v in values)
    good &= traced or in_range
    fn = lambda lengths: mj.lengths_to_mask(lengths, maxlen, padding=padding)  # noqa: E731
    fn.__signature__ = inspect.signature(mj.lengths_to_mask)
    result = outcome(fn, data, good=good, traced=traced)
    if result is None:
        return
    clipped = np.clip(lengths.astype(np.int64), 0, maxlen)[:, None]
    steps = np.arange(maxlen)
    expected = steps < clipped if padding == "post" else steps >= maxlen - clipped
    np.testing.assert_array_equal(result, expected.reshape(len(values), maxlen))


@FEWER
@given(
    rng=rngs(),
    kind=st.sampled_from(["full", "list", "jax", "every axis", "int 0/1", "None", "Masked"]),
    length=st.sampled_from([-1, 0, 5, 2.0]),
    bucket=st.sampled_from([None, 1, 4, "pow2", "pow3", 0, 2.5]),
)
def test_mask_to_lengths_and_bucket_length(rng, kind, length, bucket):
    make, good = MASK_KINDS[kind]
    mask = make(rng, (B, T, D))
    result = outcome(mj.mask_to_lengths, mask, good=good)
    if result is not None:
        np.testing.assert_array_equal(result, np.asarray(mask).sum(-1))
    good = isinstance(length, int) and length >= 0 and bucket in (None, 1, 4, "pow2")
    result = outcome(mj.bucket_length, length, bucket, good=good)
    if result is not None:
        want = length if bucket is None else (
            int(2 ** np.ceil(np.log2(length))) if bucket == "pow2" and length else (
                0 if bucket == "pow2" else -(-length // bucket) * bucket))  # fmt: skip
        assert result == want


# --------------------------------------------------------------------------- Masked, makers


@FUZZ
@given(
    rng=rngs(),
    shape=st.sampled_from(SHAPES),
    dtype=st.sampled_from(DTYPES),
    data_kind=st.sampled_from(["numpy", "jax", "list", "dict", *BAD_ARRAYS]),
    mask_kind=st.sampled_from(list(MASK_KINDS)),
    value=st.sampled_from([0, 1, -1, 0.5, np.nan, 1000, "x", np.zeros(D), np.zeros(5)]),
)
def test_masked_and_filled(rng, shape, dtype, data_kind, mask_kind, value):
    make_mask, mask_good = MASK_KINDS[mask_kind]
    mask = make_mask(rng, shape)
    x = random_data(rng, shape, dtype)
    data = (
        {"a": x, "b": x[..., None]} if data_kind == "dict"
        else BAD_ARRAYS[data_kind] if data_kind in BAD_ARRAYS else as_kind(x, data_kind)
    )  # fmt: skip
    good = data_kind in ("numpy", "jax", "dict") and (mask_good or mask_kind == "list")
    masked = outcome(Masked, data, mask, good=good)
    if masked is None:
        return
    with pytest.raises(AttributeError, match="immutable"):
        masked.mask = np.ones((5, 5), bool)
    leaves = [x, x[..., None]] if data_kind == "dict" else [x]
    good = fits(value, dtype) and all(broadcasts_to(value, leaf.shape) for leaf in leaves)
    filled = outcome(masked.filled, value, good=good)
    if filled is None:
        return
    for leaf, got in zip(leaves, jax.tree.leaves(filled.data), strict=True):
        full = leading(np.asarray(mask), leaf.shape)
        want = np.where(full, leaf, np.broadcast_to(np.asarray(value, leaf.dtype), leaf.shape))
        np.testing.assert_array_equal(got, want)


@FUZZ
@given(
    rng=rngs(),
    dtype=st.sampled_from([np.float32, np.int32, np.bool_]),
    x_kind=st.sampled_from(["numpy", "list", "jax", "2-D", *BAD_ARRAYS]),
    mask_value=st.sampled_from([0, 0.0, np.nan, -1, 0.5, "x", None, np.zeros(D), np.zeros(5)]),
    ids_kind=st.sampled_from(["int", "float", "list", "None"]),
    pad_id=st.sampled_from([0, 3, -1, 0.5, "0", None, 2**40]),
    traced=st.booleans(),
)
def test_mask_makers(rng, dtype, x_kind, mask_value, ids_kind, pad_id, traced):
    x = random_data(rng, (B, T, D), dtype)
    x[0, 0] = 0 if dtype != np.bool_ else False  # a padding step under mask_value 0
    if dtype == np.float32:
        x[1, 2] = np.nan
    data = (x[..., 0] if x_kind == "2-D" else BAD_ARRAYS[x_kind] if x_kind in BAD_ARRAYS
            else as_kind(x, x_kind))  # fmt: skip
    good = x_kind in ("numpy", "list", "jax") and fits(mask_value, dtype)
    good &= broadcasts_to(mask_value, x.shape)
    traced = traced and good and x_kind != "list"
    for fn in (mj.mask_from_value, mj.masking):
        result = outcome(fn, data, mask_value, good=good, traced=traced)
        if result is None:
            continue
        value = np.broadcast_to(np.asarray(mask_value, np.float64), (D,))
        same = (x == value) | (np.isnan(x) & np.isnan(value))
        want = ~same.all(-1)
        if fn is mj.masking:
            np.testing.assert_array_equal(result.mask, want)
            np.testing.assert_array_equal(result.data, np.where(want[..., None], x, 0))
        else:
            np.testing.assert_array_equal(result, want)

    ids = rng.integers(0, 4, size=(B, T))
    data = {"int": ids, "float": ids.astype(np.float32), "list": ids.tolist(), "None": None}[
        ids_kind
    ]
    good = ids_kind in ("int", "list") and pad_id in (0, 3, -1)
    result = outcome(mj.mask_from_ids, data, pad_id, good=good)
    if result is not None:
        np.testing.assert_array_equal(result, ids != pad_id)


MASK_SHAPES = [(B, T), (B, 1), (1, T), (B,), (B, T, D), (B, T + 1), ()]


@FEWER
@given(
    rng=rngs(),
    shapes=st.lists(st.sampled_from([*MASK_SHAPES, None, "int"]), min_size=0, max_size=3),
    op=st.sampled_from(["mask_and", "mask_or"]),
)
def test_mask_and_or(rng, shapes, op):
    masks = [
        None if s is None else (random_mask(rng, (B, T)).astype(int) if s == "int"
                                else random_mask(rng, s))
        for s in shapes
    ]
    present = [m for m in masks if m is not None]
    ndim = max((m.ndim for m in present), default=0)
    padded = [m.reshape(m.shape + (1,) * (ndim - m.ndim)) for m in present]
    try:
        shape = np.broadcast_shapes(*(m.shape for m in padded))
        good = "int" not in shapes
    except ValueError:
        good = False
    result = outcome(getattr(mj, op), *masks, good=good)
    if result is None:
        return
    if not present:
        assert result is None
        return
    arrays = [np.broadcast_to(m, shape) for m in padded]
    want = np.logical_and.reduce(arrays) if op == "mask_and" else (
        np.logical_or.reduce(arrays) if len(present) == len(masks) else np.ones(shape, bool))
    np.testing.assert_array_equal(result, want)


# --------------------------------------------------------------------------- time transforms

TIME_MASKS = ["full", "rows (B, 1)", "steps (1, T)"]


def real_rows(data, mask):
    full = np.broadcast_to(mask, data.shape[:2])
    return [data[b][full[b]] for b in range(data.shape[0])]


@FUZZ
@given(
    rng=rngs(),
    shape=st.sampled_from(SHAPES),
    mask_kind=st.sampled_from([*TIME_MASKS, "batch (B,)", "every axis"]),
    which=st.sampled_from(["reverse_valid", "compact", "split_time", "concat_time",
                           "concat_features", "window_mask", "attention_mask"]),
    split=st.sampled_from([1, 3, [1], [0, 2], 2, 0, [2, 1], [4], 1.0, None]),
    other=st.sampled_from(["same", "array", "short batch", "other features", "2-D", "None",
                           "tuple"]),
    window=st.tuples(st.sampled_from([1, 2, 0, 2.0]), st.sampled_from([1, 2]),
                     st.sampled_from(["valid", "same", "causal"])),
    causal=st.sampled_from([False, True, "yes", 1]),
    traced=st.booleans(),
)
def test_time_transforms(rng, shape, mask_kind, which, split, other, window, causal, traced):
    mask = MASK_KINDS[mask_kind][0](rng, shape)
    good = np.ndim(mask) == 2
    full = np.broadcast_to(mask, shape[:2]) if good else random_mask(rng, shape[:2])
    data = random_data(rng, shape, np.float32, full)
    x = Masked(data, mask)  # legal for every kind here; the transforms need (B, T) masks
    traced = traced and mask_kind == "full"  # one compile per shape
    if which == "reverse_valid":
        result = outcome(mj.reverse_valid, x, good=good, traced=traced)
        if result is not None:
            for got, want in zip(real_rows(np.asarray(result.data), full),
                                 real_rows(data, full), strict=True):  # fmt: skip
                np.testing.assert_array_equal(got, want[::-1])
    elif which == "compact":
        result = outcome(mj.compact, x, good=good, traced=traced)
        if result is not None:
            packed, order = result
            lengths = full.sum(1)
            np.testing.assert_array_equal(packed.mask, np.arange(shape[1]) < lengths[:, None])
            for b, want in enumerate(real_rows(data, full)):
                np.testing.assert_array_equal(packed.data[b, : lengths[b]], want)
            back = mj.uncompact(packed, order)
            np.testing.assert_array_equal(back.data, data)
    elif which == "split_time":
        points = split if isinstance(split, list) else None
        good &= (isinstance(split, int) and split >= 1 and shape[1] % split == 0) or (
            points is not None and points == sorted(points) and all(p <= shape[1] for p in points))
        result = outcome(mj.split_time, x, split, good=good)
        if result is not None:
            np.testing.assert_array_equal(np.concatenate([p.data for p in result], 1), data)
            np.testing.assert_array_equal(np.concatenate([p.mask for p in result], 1), full)
    elif which in ("concat_time", "concat_features"):
        time = which == "concat_time"
        second_shape = {"short batch": (1, *shape[1:]),
                        "other features": (*shape[:2], shape[2] + 1) if len(shape) == 3 else
                        (shape[0] + 1, shape[1])}.get(other, shape)  # fmt: skip
        second = random_data(rng, second_shape, np.float32)
        item = {"array": second, "None": None, "tuple": (second, full)}.get(other, second)
        if other == "same":
            item = Masked(second, full)
        if other == "2-D":
            item = second[..., 0] if len(shape) == 3 else second[0]
        good &= (other in ("same", "array") and (time or len(shape) == 3)) or (
            other == "other features" and not time and len(shape) == 3)
        result = outcome(getattr(mj, which), [x, item], good=good)
        if result is not None:
            item_mask = full if other == "same" else np.ones(second.shape[:2], bool)
            np.testing.assert_array_equal(
                result.data, np.concatenate([data, second], 1 if time else -1))
            np.testing.assert_array_equal(
                result.mask, np.concatenate([full, item_mask], 1) if time else full | item_mask)
    elif which == "window_mask":
        kernel, strides, padding = window
        good = isinstance(kernel, int) and kernel >= 1
        result = outcome(mj.window_mask, full, kernel, strides, padding, good=good)
        if result is not None:
            if padding in ("same", "causal"):  # output t reads input t * strides
                want = full[:, ::strides]
            else:
                starts = range(0, shape[1] - kernel + 1, strides)
                want = np.array([[full[b, s: s + kernel].all() for s in starts]
                                 for b in range(B)]).reshape(B, len(starts))  # fmt: skip
            np.testing.assert_array_equal(result, want)
    else:
        key = random_mask(rng, (1 if other == "short batch" else B, T + 1))
        good = isinstance(causal, bool)
        result = outcome(mj.attention_mask, full, key, causal=causal, good=good)
        if result is not None:
            want = full[:, :, None] & key[:, None, :]
            if causal:
                want = want & np.tri(T, T + 1, dtype=bool)
            np.testing.assert_array_equal(result, want[:, None])


# --------------------------------------------------------------------------- losses


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@FUZZ
@given(
    rng=rngs(),
    classes=st.sampled_from([3, 1, 0]),
    logits_dtype=st.sampled_from([np.float32, np.int32, np.complex64]),
    labels_kind=st.sampled_from(["ids", "one-hot", "list", "float ids", "wrong shape",
                                 *BAD_ARRAYS]),
    out_of_range=st.sampled_from([None, -1, "C"]),
    mask_kind=st.sampled_from(["full", "rows (B, 1)", "list", "int 0/1", "too long", "None"]),
    reduction=st.sampled_from(["token_mean", "sequence_mean", "sum", "none", "mean"]),
    which=st.sampled_from(["masked_cross_entropy", "masked_accuracy"]),
    traced=st.booleans(),
)
def test_classification_losses(rng, classes, logits_dtype, labels_kind, out_of_range, mask_kind,
                               reduction, which, traced):  # fmt: skip
    mask = MASK_KINDS[mask_kind][0](rng, (B, T))
    mask_good = MASK_KINDS[mask_kind][1]
    full = np.broadcast_to(mask, (B, T)) if mask_good else random_mask(rng, (B, T))
    logits = random_data(rng, (B, T, classes), logits_dtype, full)
    ids = rng.integers(0, max(classes, 1), size=(B, T))
    ids[~full] = -7  # never read
    if out_of_range is not None and full.any():
        b, t = np.argwhere(full)[0]
        ids[b, t] = -1 if out_of_range == -1 else classes
    one_hot = np.eye(classes, dtype=np.float32)[np.clip(ids, 0, max(classes - 1, 0))] * (
        (ids >= 0) & (ids < classes))[..., None] if classes else np.zeros((B, T, 0), np.float32)
    labels = {"ids": ids, "one-hot": one_hot, "list": ids.tolist(),
              "float ids": ids.astype(np.float32), "wrong shape": ids[:, :-1]}.get(
        labels_kind, BAD_ARRAYS.get(labels_kind))  # fmt: skip
    integer = labels_kind in ("ids", "list")
    traced = traced and mask_good and mask_kind != "list" and labels_kind in ("ids", "one-hot")
    good = (
        classes >= 1 and logits_dtype != np.complex64 and mask_good
        and labels_kind in ("ids", "one-hot", "list")
        and (which == "masked_accuracy" or reduction != "mean")
        and (traced or not integer or out_of_range is None)
    )
    kwargs = {"reduction": reduction} if which == "masked_cross_entropy" else {}
    fn = getattr(mj, which)
    result = outcome(fn, logits, labels, mask, good=good, traced=traced, **kwargs)
    if result is None:
        return
    target = one_hot if integer or labels_kind == "one-hot" else None
    wide = np.where(full[..., None], logits.astype(np.float64), 0)
    if which == "masked_accuracy":
        hits = (wide.argmax(-1) == ids) & (ids >= 0) & (ids < classes)
        want = hits[full].mean() if full.any() else 0.0
        assert_close(result, want)
        return
    loss = np.where(full, -(target * log_softmax(wide)).sum(-1), 0)
    count = full.sum()
    want = {
        "none": loss,
        "sum": loss.sum(),
        "token_mean": loss.sum() / max(count, 1),
        "sequence_mean": np.mean([loss[b][full[b]].mean() for b in range(B) if full[b].any()])
        if full.any() else 0.0,
    }[reduction]
    assert np.all(np.isfinite(np.asarray(result)))
    assert_close(result, want)


@FUZZ
@given(
    rng=rngs(),
    shape=st.sampled_from(SHAPES),
    dtype=st.sampled_from([np.float32, np.int32, np.complex64, np.bool_]),
    kind=st.sampled_from(["numpy", "list", "jax", "broadcast target", *BAD_ARRAYS]),
    mask_kind=st.sampled_from(["full", "rows (B, 1)", "every axis", "int 0/1", "too long"]),
    reduction=st.sampled_from(["token_mean", "sequence_mean", "sum", "none", None]),
)
def test_regression_losses(rng, shape, dtype, kind, mask_kind, reduction):
    make_mask, mask_good = MASK_KINDS[mask_kind]
    mask = make_mask(rng, shape)
    full_mask = np.asarray(mask) if mask_good else random_mask(rng, shape[:2])
    predictions = random_data(rng, shape, dtype, full_mask)
    targets = random_data(rng, shape, dtype, full_mask)
    second = (targets[..., :1] if kind == "broadcast target" else
              BAD_ARRAYS[kind] if kind in BAD_ARRAYS else as_kind(targets, kind))  # fmt: skip
    good = mask_good and dtype != np.bool_ and kind in ("numpy", "list", "jax") and (
        reduction is not None)
    result = outcome(mj.masked_mse, as_kind(predictions, "numpy"), second, mask,
                     reduction=reduction, good=good)  # fmt: skip
    full = leading(full_mask, shape)
    if result is not None:
        error = np.where(full, np.abs(predictions.astype(np.complex128) - targets) ** 2, 0).real
        token_axes = tuple(range(np.ndim(full_mask), len(shape)))
        per_token = error.mean(token_axes)
        token_mask = np.asarray(full_mask)
        assert_close(mj.reduce_masked_loss(per_token, token_mask, reduction), result)
    loss_good = mask_good and dtype != np.complex64 and reduction is not None and (
        kind not in BAD_ARRAYS)
    loss = second if kind in BAD_ARRAYS else predictions
    result = outcome(mj.reduce_masked_loss, loss, mask, reduction, good=loss_good)
    if result is None:
        return
    values = np.where(full, predictions.astype(np.float64), 0)
    if reduction == "none":
        want = values
    elif reduction == "sum":
        want = values.sum()
    elif reduction == "token_mean":
        want = values.sum() / max(full.sum(), 1)
    else:
        axes = tuple(range(1, len(shape)))
        rows = full.sum(axes) > 0
        per_row = values.sum(axes) / np.maximum(full.sum(axes), 1)
        want = per_row[rows].mean() if rows.any() else 0.0
    assert_close(result, want)


# --------------------------------------------------------------------------- initialisers

INITS = {"simple_rnn": mj.init_simple_rnn_params, "lstm": mj.init_lstm_params,
         "gru": mj.init_gru_params}  # fmt: skip
KEYS = {
    "key": lambda: jax.random.key(0),
    "int seed": lambda: 0,
    "None": lambda: None,
    "float array": lambda: np.zeros(2, np.float32),
    "two keys": lambda: jax.random.split(jax.random.key(0)),
}


@FUZZ
@given(
    cell=st.sampled_from(list(INITS)),
    key=st.sampled_from(list(KEYS)),
    in_features=st.sampled_from([2, -1, 2.0, "2"]),
    hidden=st.sampled_from([3, 0, -1, None]),
    dtype=st.sampled_from([jnp.float32, jnp.int32, "nope"]),
)
def test_initialisers(cell, key, in_features, hidden, dtype):
    """One good shape per cell, to compile once (D=0 and legacy keys: test_errors_core.py)."""
    good = key == "key" and in_features == 2 and type(in_features) is int and hidden == 3
    good &= dtype is jnp.float32
    params = outcome(INITS[cell], KEYS[key](), in_features, hidden, dtype=dtype, good=good)
    if params is None:
        return
    g = {"simple_rnn": 1, "lstm": 4, "gru": 3}[cell]
    assert params["kernel"].shape == (in_features, g * hidden)
    assert params["recurrent_kernel"].shape == (hidden, g * hidden)
    assert params["bias"].shape == ((2, g * hidden) if cell == "gru" else (g * hidden,))
    assert all(np.all(np.isfinite(p)) for p in params.values())


# --------------------------------------------------------------------------- RNN kernels

RNN_PARAMS = {c: random_params(c, np.random.default_rng(0), D, 3) for c in ("simple_rnn", "lstm",
                                                                           "gru")}  # fmt: skip


def elman_step(params, h, x_t):
    h = jnp.tanh(x_t @ params["kernel"] + h @ params["recurrent_kernel"] + params["bias"][None])
    return h, h


@FEWER
@given(
    rng=rngs(),
    cell=st.sampled_from(["simple_rnn", "lstm", "gru", "rnn"]),
    x_kind=st.sampled_from(["numpy", "list", "jax", "int", "2-D", *BAD_ARRAYS]),
    mask_kind=st.sampled_from(["full", "list", "rows (B, 1)", "None", "int 0/1", "too long",
                               "every axis"]),
    flag=st.sampled_from([False, "yes", 1, None]),
    unroll=st.sampled_from([1, 0, 2.0, True]),
    mode=st.sampled_from(["eager", "jit", "jvp"]),
)
def test_rnn_kernels(rng, cell, x_kind, mask_kind, flag, unroll, mode):
    """Argument abuse of the kernels; values against the loop reference. Flags stay at
    their defaults when good, so each kernel compiles once (gradients: test_rnn.py)."""
    make_mask, mask_good = MASK_KINDS[mask_kind]
    mask = make_mask(rng, (B, T, D)) if mask_kind != "None" else None
    mask_good = mask_kind == "None" or (mask_good and np.ndim(mask) == 2)
    full = np.ones((B, T), bool) if mask is None else (
        np.broadcast_to(mask, (B, T)) if mask_good else random_mask(rng, (B, T)))
    x = random_data(rng, (B, T, D), np.float32, full)
    bad = {"int": np.zeros((B, T, D), np.int32), "2-D": x[..., 0], **BAD_ARRAYS}
    data = bad[x_kind] if x_kind in bad else as_kind(x, x_kind)
    good = x_kind in ("numpy", "list", "jax") and mask_good and flag is False
    good &= unroll in (1, True)
    params = RNN_PARAMS["simple_rnn" if cell == "rnn" else cell]
    if cell == "rnn":
        fn, before, after = mj.rnn, (elman_step, params), (mask, jnp.zeros((B, 3)))
    else:
        fn, before, after = getattr(mj, cell), (params,), (mask,)
    kwargs = {"reverse": flag, "unroll": unroll}
    if mode == "jvp":
        if x_kind in ("numpy", "jax"):
            with pytest.raises((TypeError, ValueError)) as info:
                jax.jvp(lambda x: fn(*before, x, *after, **kwargs)[0], (jnp.asarray(x),),
                        (jnp.ones_like(x),))  # fmt: skip
            assert_clear_error(info.value, fn)
        return
    traced = mode == "jit" and good and x_kind != "list" and mask_kind != "list"
    result = outcome(fn, *before, data, *after, good=good, traced=traced, **kwargs)
    if result is None:
        return
    outputs, _ = result
    want, _ = rnn_ref("simple_rnn" if cell == "rnn" else cell, params, np.nan_to_num(x), full)
    np.testing.assert_allclose(outputs, want, rtol=1e-5, atol=1e-5)


@FEWER
@given(
    kernel=st.sampled_from([mj.lstm, None, "lstm", [mj.lstm]]),
    params=st.sampled_from(["pair", "one", "list of two"]),
    merge_mode=st.sampled_from(["concat", "avg", None]),
)
def test_rnn_compositions_reject_bad_arguments(kernel, params, merge_mode):
    """Abuse only: the good calls are tested in test_rnn_layers.py (they compile)."""
    one = RNN_PARAMS["lstm"]
    given_params = {"pair": (one, one), "one": one, "list of two": [one, one]}[params]
    x = np.zeros((B, T, D), np.float32)
    if not callable(kernel) or params == "one" or merge_mode == "avg":
        outcome(mj.bidirectional, kernel, given_params, x, merge_mode=merge_mode, good=False)
    # one layer's params for two layers, or one kernel for two layers: never good here
    outcome(mj.stacked_rnn, kernel, given_params, x, good=False)
