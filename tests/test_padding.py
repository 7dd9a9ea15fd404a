"""Tests of host-side padding (`pad_sequences`, `pad_masked`, `bucket_length`) and of
the lengths <-> mask conversions.

`pad_sequences` is checked against `keras.utils.pad_sequences` on random cases; the
rest against plain numpy references. Masks: True = real step, False = padding.
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import masking_jax as mj

SETTINGS = settings(max_examples=40, deadline=None)


# --------------------------------------------------------------------------- helpers


def _kept(seq, maxlen, truncating):
    """The steps of `seq` that survive truncation to `maxlen` (numpy reference)."""
    seq = np.asarray(seq)
    if len(seq) <= maxlen:
        return seq
    return seq[len(seq) - maxlen :] if truncating == "pre" else seq[:maxlen]


@st.composite
def ragged_cases(draw, min_size=1):
    """Random ragged sequences: lists or arrays, step shapes (), (2,) or (2, 3), empties."""
    n = draw(st.integers(min_size, 5))
    step_shape = draw(st.sampled_from([(), (2,), (2, 3)]))
    dtype = draw(st.sampled_from(["int32", "int64", "float32", "float64"]))
    is_float = dtype.startswith("float")
    float_values = is_float and draw(st.booleans())
    lengths = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    as_lists = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    seqs = []
    for length in lengths:
        shape = (length, *step_shape)
        if float_values:
            values = rng.normal(size=shape) * 10
        else:
            values = rng.integers(-50, 50, size=shape)
            if draw(st.booleans()):
                values = values.astype(np.float64)  # integral floats fit an int dtype
        seqs.append(values.tolist() if as_lists else values)
    value = draw(st.sampled_from([0.0, -1.0, 0.5, np.nan] if is_float else [0, -1, 7]))
    return seqs, dtype, value


# --------------------------------------------------------------------------- pad_sequences


@SETTINGS
@given(
    case=ragged_cases(),
    maxlen=st.one_of(st.none(), st.integers(1, 8)),
    padding=st.sampled_from(["pre", "post"]),
    truncating=st.sampled_from(["pre", "post"]),
)
def test_pad_sequences_matches_keras(case, maxlen, padding, truncating):
    seqs, dtype, value = case
    kwargs = dict(maxlen=maxlen, dtype=dtype, padding=padding, truncating=truncating, value=value)
    ours = mj.pad_sequences(seqs, **kwargs)
    theirs = keras.utils.pad_sequences(seqs, **kwargs)
    assert isinstance(ours, np.ndarray)
    assert ours.dtype == theirs.dtype == np.dtype(dtype)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)  # NaN padding compares equal


def test_pad_sequences_defaults_match_keras():
    seqs = [[1], [2, 3], [4, 5, 6], []]
    for kwargs in [{}, {"maxlen": 2}, {"padding": "post", "value": -1}]:
        ours = mj.pad_sequences(seqs, **kwargs)
        np.testing.assert_array_equal(ours, keras.utils.pad_sequences(seqs, **kwargs))
        assert ours.dtype == np.int32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"padding": "middle"}, "`padding`"),
        ({"truncating": "left"}, "`truncating`"),
        ({"padding": None}, "`padding`"),
        ({"maxlen": -1}, "`maxlen`"),
    ],
)
def test_pad_sequences_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mj.pad_sequences([[1, 2], [3]], **kwargs)


def test_pad_sequences_ragged_steps_raise():
    with pytest.raises(ValueError, match="`sequences`"):
        mj.pad_sequences([np.zeros((2, 3)), np.zeros((1, 4))], dtype="float32")
    with pytest.raises(ValueError, match="`sequences`"):
        mj.pad_sequences([np.zeros((2, 3)), np.zeros((1, 3, 1))], dtype="float32")
    with pytest.raises(ValueError, match=r"`sequences\[1\]`"):
        mj.pad_sequences([[[1, 2]], [[1, 2], [3]]])


def test_pad_sequences_ragged_steps_raise_even_when_truncated_away():
    # The odd step shape sits in a part that truncation drops: still an error.
    with pytest.raises(ValueError, match="`sequences`"):
        mj.pad_sequences([np.zeros((3, 2)), np.zeros((3, 5))], maxlen=0, dtype="float32")


def test_pad_sequences_float_into_int_raises():
    with pytest.raises(ValueError, match=r"`sequences\[1\]`.*float"):
        mj.pad_sequences([[1, 2], [3.5]], dtype="int32")
    with pytest.raises(ValueError, match=r"`sequences\[0\]`"):
        mj.pad_sequences([np.array([1.0, np.nan])], dtype="int32")
    with pytest.raises(ValueError, match="`value`"):
        mj.pad_sequences([[1, 2], [3]], value=0.5)
    with pytest.raises(ValueError, match="`value`"):
        mj.pad_sequences([[1, 2], [3]], value="pad")
    # Integral floats are fine, as in Keras.
    out = mj.pad_sequences([[1.0, 2.0], [3.0]], dtype="int32", value=-1.0)
    np.testing.assert_array_equal(out, [[1, 2], [-1, 3]])


def test_pad_sequences_non_integral_floats_only_checked_where_kept():
    # A fractional value that truncation drops never reaches the int output.
    out = mj.pad_sequences([[0.5, 1.0, 2.0]], maxlen=2, truncating="pre")
    np.testing.assert_array_equal(out, [[1, 2]])


@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("step_shape", [(), (3,)])
def test_pad_sequences_maxlen_zero(truncating, step_shape):
    seqs = [np.ones((2, *step_shape)), np.ones((0, *step_shape)), np.ones((4, *step_shape))]
    out = mj.pad_sequences(seqs, maxlen=0, dtype="float32", truncating=truncating)
    assert out.shape == (3, 0, *step_shape)
    assert out.dtype == np.float32


def test_pad_sequences_empty_list():
    out = mj.pad_sequences([])
    assert out.shape == (0, 0)
    assert out.dtype == np.int32
    assert mj.pad_sequences([], maxlen=4).shape == (0, 4)


def test_pad_sequences_not_a_list_raises():
    with pytest.raises(TypeError, match="`sequences`"):
        mj.pad_sequences(3)
    with pytest.raises(ValueError, match=r"`sequences\[1\]`"):
        mj.pad_sequences([[1], 2])


# --------------------------------------------------------------------------- bucket_length


@SETTINGS
@given(length=st.one_of(st.integers(0, 2**62), st.integers(1, 62).map(lambda k: 2**k + 1)))
def test_bucket_length_pow2(length):
    out = mj.bucket_length(length, "pow2")
    if length == 0:
        assert out == 0
    else:
        assert out >= length
        assert out & (out - 1) == 0  # a power of two
        assert out // 2 < length  # the smallest one


@SETTINGS
@given(length=st.integers(0, 10_000), bucket=st.integers(1, 64))
def test_bucket_length_multiple(length, bucket):
    out = mj.bucket_length(length, bucket)
    assert out % bucket == 0
    assert length <= out < length + bucket
    assert mj.bucket_length(length, None) == length


def test_bucket_length_examples_and_errors():
    assert [mj.bucket_length(n, "pow2") for n in (0, 1, 2, 3, 5, 8, 9)] == [0, 1, 2, 4, 8, 8, 16]
    assert [mj.bucket_length(n, 8) for n in (0, 1, 8, 9)] == [0, 8, 8, 16]
    with pytest.raises(ValueError, match="`bucket`"):
        mj.bucket_length(5, "pow3")
    with pytest.raises(ValueError, match="`bucket`"):
        mj.bucket_length(5, 0)
    with pytest.raises(ValueError, match="`length`"):
        mj.bucket_length(-1, 8)
    with pytest.raises(TypeError, match="`length`"):
        mj.bucket_length(5.0, 8)
    with pytest.raises(TypeError, match="`bucket`"):
        mj.bucket_length(5, 2.0)


# --------------------------------------------------------------------------- pad_masked


@SETTINGS
@given(
    case=ragged_cases(),
    maxlen=st.one_of(st.none(), st.integers(0, 8)),
    padding=st.sampled_from(["pre", "post"]),
    truncating=st.sampled_from(["pre", "post"]),
    bucket=st.sampled_from([None, 1, 4, 5, "pow2"]),
)
def test_pad_masked_data_mask_and_lengths_agree(case, maxlen, padding, truncating, bucket):
    seqs, dtype, value = case
    batch, lengths = mj.pad_masked(
        seqs, maxlen, dtype=dtype, padding=padding, truncating=truncating, value=value,
        bucket=bucket,
    )
    data, mask = batch.data, batch.mask
    effective = max(len(s) for s in seqs) if maxlen is None else maxlen
    steps = mj.bucket_length(effective, bucket)
    step_shape = next((np.shape(s)[1:] for s in seqs if len(s)), ())
    assert isinstance(data, np.ndarray) and isinstance(mask, np.ndarray)
    assert data.shape == (len(seqs), steps, *step_shape)
    assert data.dtype == np.dtype(dtype)
    assert mask.dtype == np.bool_ and mask.shape == (len(seqs), steps)
    assert lengths.dtype == np.int32
    np.testing.assert_array_equal(lengths, [min(len(s), effective) for s in seqs])
    np.testing.assert_array_equal(mask.sum(axis=1), lengths)
    np.testing.assert_array_equal(mask, np.asarray(mj.lengths_to_mask(lengths, steps, padding)))
    for i, seq in enumerate(seqs):
        kept = _kept(seq, effective, truncating).astype(dtype)
        np.testing.assert_array_equal(data[i][mask[i]], kept.reshape(-1, *step_shape))
        padded = data[i][~mask[i]]
        np.testing.assert_array_equal(padded, np.full(padded.shape, value, dtype))
    # Without bucketing it is exactly pad_sequences with the same arguments.
    if bucket is None:
        np.testing.assert_array_equal(
            data, mj.pad_sequences(seqs, effective, dtype, padding, truncating, value)
        )


def test_pad_masked_example_pre_and_post():
    post, lengths = mj.pad_masked([[1, 2, 3], [4]], bucket=4)
    np.testing.assert_array_equal(post.data, [[1, 2, 3, 0], [4, 0, 0, 0]])
    np.testing.assert_array_equal(post.mask, [[1, 1, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1])
    pre, _ = mj.pad_masked([[1, 2, 3], [4]], padding="pre", value=-1, bucket=4)
    np.testing.assert_array_equal(pre.data, [[-1, 1, 2, 3], [-1, -1, -1, 4]])
    np.testing.assert_array_equal(pre.mask, [[0, 1, 1, 1], [0, 0, 0, 1]])


def test_pad_masked_truncation_sides():
    post, lengths = mj.pad_masked([[1, 2, 3, 4], [5]], 2)
    np.testing.assert_array_equal(post.data, [[1, 2], [5, 0]])
    np.testing.assert_array_equal(lengths, [2, 1])
    pre, _ = mj.pad_masked([[1, 2, 3, 4], [5]], 2, truncating="pre")
    np.testing.assert_array_equal(pre.data, [[3, 4], [5, 0]])


def test_pad_masked_dtype_inference():
    # Inferred as JAX stores it: Python ints -> int32, floats -> float32 (x64 off).
    ints, _ = mj.pad_masked([[1, 2], [3]])
    assert ints.data.dtype == np.int32
    floats, _ = mj.pad_masked([[1.5, 2.0], [3.25]])
    assert floats.data.dtype == np.float32
    np.testing.assert_array_equal(floats.data, [[1.5, 2.0], [3.25, 0.0]])
    mixed, _ = mj.pad_masked([np.array([1, 2], np.int32), np.array([0.5], np.float32)])
    assert mixed.data.dtype == np.float32  # one float sequence makes the batch float
    np.testing.assert_array_equal(mixed.data, [[1.0, 2.0], [0.5, 0.0]])
    half, _ = mj.pad_masked([np.ones((2, 3), np.float16), np.ones((0, 3), np.float16)])
    assert half.data.dtype == np.float16 and half.data.shape == (2, 2, 3)
    empty, lengths = mj.pad_masked([[], []], bucket=4)
    assert empty.data.dtype == np.float32 and empty.data.shape == (2, 0)
    np.testing.assert_array_equal(lengths, [0, 0])
    explicit, _ = mj.pad_masked([[1, 2], [3]], dtype="float32")
    assert explicit.data.dtype == np.float32


def test_pad_masked_errors():
    with pytest.raises(ValueError, match="`padding`"):
        mj.pad_masked([[1.0]], padding="both")
    with pytest.raises(ValueError, match="`bucket`"):
        mj.pad_masked([[1.0]], bucket="pow10")
    with pytest.raises(ValueError, match="`maxlen`"):
        mj.pad_masked([[1.0]], -2)
    with pytest.raises(ValueError, match="`value`"):
        mj.pad_masked([[1, 2], [3]], value=0.5)


def test_pad_masked_bucketing_bounds_compilations():
    """Batches of random lengths compile once per bucket, not once per length."""
    traces = []

    @jax.jit
    def total(batch):
        traces.append(batch.data.shape)
        return jnp.sum(jnp.where(batch.mask[..., None], batch.data, 0.0))

    rng = np.random.default_rng(0)
    longest_seen = set()
    for _ in range(25):
        lengths = rng.integers(1, 60, size=4)
        seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in lengths]
        longest_seen.add(int(lengths.max()))
        batch, _ = mj.pad_masked(seqs, bucket="pow2", value=np.nan)
        expected = sum(float(s.sum(dtype=np.float64)) for s in seqs)
        np.testing.assert_allclose(float(total(batch)), expected, rtol=1e-5, atol=1e-4)
    # pow2 buckets of lengths 1..59: at most {1, 2, 4, ..., 64}; in practice the top few.
    assert len(traces) == len(set(traces)) <= 7
    assert len(traces) < len(longest_seen)  # without buckets every new length would retrace
    assert all(t[1] & (t[1] - 1) == 0 for t in traces)

    traces.clear()
    for _ in range(25):
        seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in rng.integers(1, 60, 4)]
        total(mj.pad_masked(seqs, bucket=16)[0])
    assert len(traces) <= 4 and all(t[1] % 16 == 0 for t in traces)


# --------------------------------------------------------------------------- lengths <-> mask


def _np_lengths_to_mask(lengths, maxlen, padding):
    steps = np.arange(maxlen)
    lengths = np.asarray(lengths)[..., None]
    return steps < lengths if padding == "post" else steps >= maxlen - lengths


@SETTINGS
@given(
    data=st.data(),
    maxlen=st.sampled_from([0, 1, 5]),
    batch=st.sampled_from([(0,), (4,), (2, 3)]),
    padding=st.sampled_from(["pre", "post"]),
)
def test_lengths_mask_round_trip(data, maxlen, batch, padding):
    size = int(np.prod(batch))
    lengths = np.array(
        data.draw(st.lists(st.integers(0, maxlen), min_size=size, max_size=size)), np.int32
    ).reshape(batch)
    mask = mj.lengths_to_mask(lengths, maxlen, padding=padding)
    assert mask.dtype == jnp.bool_ and mask.shape == (*batch, maxlen)
    np.testing.assert_array_equal(mask, _np_lengths_to_mask(lengths, maxlen, padding))
    back = mj.mask_to_lengths(mask)
    assert back.dtype == jnp.int32
    np.testing.assert_array_equal(back, lengths)
    # pre-padding is post-padding mirrored in time
    other = "pre" if padding == "post" else "post"
    np.testing.assert_array_equal(mask, mj.lengths_to_mask(lengths, maxlen, other)[..., ::-1])


@SETTINGS
@given(mask=st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=4))
def test_mask_to_lengths_counts_real_steps_of_gappy_masks(mask):
    mask = np.array(mask)
    np.testing.assert_array_equal(mj.mask_to_lengths(mask), mask.sum(axis=1))
    np.testing.assert_array_equal(jax.jit(mj.mask_to_lengths)(mask), mask.sum(axis=1))


def test_lengths_to_mask_accepts_lists_and_int_dtypes():
    expected = [[True, True, False], [False, False, False], [True, True, True]]
    for lengths in ([2, 0, 3], np.array([2, 0, 3], np.int64), jnp.array([2, 0, 3], jnp.int32),
                    np.array([2, 0, 3], np.uint8)):
        np.testing.assert_array_equal(mj.lengths_to_mask(lengths, 3), expected)
    np.testing.assert_array_equal(mj.lengths_to_mask(np.int32(2), 3), [True, True, False])
    np.testing.assert_array_equal(mj.lengths_to_mask([1], np.int64(2), "pre"), [[False, True]])


def test_lengths_to_mask_errors():
    with pytest.raises(ValueError, match="`lengths`"):
        mj.lengths_to_mask([1, -1], 3)
    with pytest.raises(ValueError, match=r"`lengths`.*maxlen=3"):
        mj.lengths_to_mask(np.array([1, 4]), 3)
    with pytest.raises(ValueError, match="`lengths`"):
        mj.lengths_to_mask(jnp.array([5]), 3)
    with pytest.raises(TypeError, match="`lengths`"):
        mj.lengths_to_mask([1.0, 2.0], 3)
    with pytest.raises(TypeError, match="`lengths`"):
        mj.lengths_to_mask(np.array([True, False]), 3)
    with pytest.raises(TypeError, match="`maxlen`"):
        mj.lengths_to_mask([1, 2], 3.0)
    np.testing.assert_array_equal(mj.lengths_to_mask([1, 2], jnp.int32(3)),
                                  mj.lengths_to_mask([1, 2], 3))  # a concrete JAX int is fine
    with pytest.raises(TypeError, match=r"`maxlen` must be an int .*not traced"):
        jax.jit(mj.lengths_to_mask)(jnp.array([1, 2]), jnp.int32(3))
    with pytest.raises(TypeError, match="`maxlen`"):
        mj.lengths_to_mask([1, 2], None)
    with pytest.raises(ValueError, match="`maxlen`"):
        mj.lengths_to_mask([0], -1)
    with pytest.raises(ValueError, match="`padding`"):
        mj.lengths_to_mask([1, 2], 3, padding="left")
    with pytest.raises(TypeError, match="`mask`"):
        mj.mask_to_lengths(np.array([[1, 0]]))
    with pytest.raises(ValueError, match="`mask`"):
        mj.mask_to_lengths(np.array(True))


@pytest.mark.parametrize("padding", ["pre", "post"])
def test_lengths_to_mask_under_jit_with_traced_lengths(padding):
    traces = []

    @jax.jit
    def f(lengths):
        traces.append(None)
        return mj.lengths_to_mask(lengths, 6, padding=padding)

    rng = np.random.default_rng(1)
    for _ in range(5):
        lengths = jnp.asarray(rng.integers(0, 7, size=4), jnp.int32)
        np.testing.assert_array_equal(f(lengths), _np_lengths_to_mask(lengths, 6, padding))
    assert len(traces) == 1  # new length values never retrace
    # Documented: out-of-range traced lengths saturate instead of raising.
    np.testing.assert_array_equal(f(jnp.array([-2, 9, 0, 6], jnp.int32)).sum(axis=1), [0, 6, 0, 6])
    # and under vmap over an extra leading axis
    lengths = jnp.asarray(rng.integers(0, 7, size=(3, 4)), jnp.int32)
    np.testing.assert_array_equal(
        jax.vmap(lambda n: mj.lengths_to_mask(n, 6, padding))(lengths),
        _np_lengths_to_mask(lengths, 6, padding),
    )
