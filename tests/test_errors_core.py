"""The core's error catalogue, continued (issue 14): one test per class of abuse found.

Each case was a silent wrong result or an error from inside numpy/JAX before; now it
gives the right answer, a documented defined result under `jax.jit`, or a
`ValueError`/`TypeError` naming the argument. `test_errors.py` holds the first part
of the catalogue; `test_fuzz_core.py` fuzzes the same functions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import masking_jax as mj
from masking_jax import Masked

B, T, D = 2, 3, 2
X = np.arange(B * T * D, dtype=np.float32).reshape(B, T, D)
MASK = np.array([[True, True, False], [True, False, False]])
ROWS = np.array([[True], [False]])  # a (B, 1) mask: whole rows real or padded


# --------------------------------------------------------------------------- broadcast masks


def test_time_transforms_broadcast_a_row_mask_instead_of_dropping_steps():
    x = Masked(X, ROWS)
    packed, order = mj.compact(x)
    np.testing.assert_array_equal(packed.mask, [[True] * T, [False] * T])
    np.testing.assert_array_equal(packed.data[0], X[0])
    np.testing.assert_array_equal(mj.uncompact(packed, order).data, X)
    np.testing.assert_array_equal(mj.reverse_valid(x).data[0], X[0, ::-1])
    assert [p.mask.shape for p in mj.split_time(x, 3)] == [(B, 1)] * 3
    both = mj.concat_time([x, Masked(X, MASK)])
    np.testing.assert_array_equal(both.mask, np.concatenate([np.repeat(ROWS, T, 1), MASK], 1))


def test_masks_with_size_one_axes_combine_both_ways():
    steps = np.array([[True, False, True]])  # (1, T)
    np.testing.assert_array_equal(mj.mask_and(steps, ROWS), steps & ROWS)
    np.testing.assert_array_equal(mj.mask_or(ROWS, steps), steps | ROWS)
    with pytest.raises(ValueError, match=r"`masks\[0\]` of shape \(2, 3\) and `masks\[1\]`"):
        mj.mask_and(MASK, np.ones((B, T + 1), bool))


def test_attention_mask_broadcasts_a_batch_of_one_and_needs_a_static_causal():
    key = np.array([[True, True, False, True]])
    np.testing.assert_array_equal(mj.attention_mask(MASK, key)[:, 0],
                                  MASK[:, :, None] & key[:, None, :])  # fmt: skip
    for causal in ["yes", 1, None]:
        with pytest.raises(TypeError, match="`causal` must be a Python bool"):
            mj.attention_mask(MASK, causal=causal)
    with pytest.raises(TypeError, match="`causal` must be a Python bool"):
        jax.jit(lambda c: mj.attention_mask(MASK, causal=c))(True)


# --------------------------------------------------------------------------- integers that wrap


@pytest.mark.parametrize(
    ("sequences", "dtype"),
    [([[2**40, 1]], "int32"), ([np.array([2**40, 1])], "int32"), ([[300]], "int8"),
     ([[-1]], "uint8"), ([[1e6]], "float16")],
)
def test_padding_raises_instead_of_wrapping(sequences, dtype):
    with pytest.raises(OverflowError, match=r"`sequences\[0\]` holds values .*`dtype` is"):
        mj.pad_sequences(sequences, dtype=dtype)
    with pytest.raises(ValueError, match=r"`sequences\[0\]`"):  # the package's own rule
        mj.pad_masked(sequences, dtype=dtype)


def test_padding_checks_value_dtype_and_what_counts_as_a_sequence():
    with pytest.raises(OverflowError, match="`value` holds values from 1000"):
        mj.pad_sequences([[1]], maxlen=2, dtype="int8", value=1000)
    with pytest.raises(ValueError, match=r"`value` must be a scalar; got shape \(2,\)"):
        mj.pad_sequences([[1]], maxlen=3, value=np.zeros(2))
    with pytest.raises(TypeError, match="`dtype` must be a numpy dtype"):
        mj.pad_masked([[1.0]], dtype="nope")
    with pytest.raises(ValueError, match=r"`sequences\[0\]` holds complex values"):
        mj.pad_sequences([[1 + 2j]], dtype="float32")
    for item in [{"a": 1}, np.array(3)]:
        with pytest.raises(ValueError, match=r"`sequences\[0\]` must be a sequence"):
            mj.pad_sequences([item])


def test_pad_sequences_pads_pre_like_keras_and_pad_masked_post():
    np.testing.assert_array_equal(mj.pad_sequences([[1, 2], [3]]), [[1, 2], [0, 3]])
    batch, _ = mj.pad_masked([[1, 2], [3]])
    np.testing.assert_array_equal(batch.data, [[1, 2], [3, 0]])
    np.testing.assert_array_equal(mj.pad_sequences([[1, 2, 3]], maxlen=2), [[2, 3]])
    np.testing.assert_array_equal(mj.pad_masked([[1, 2, 3]], maxlen=2)[0].data, [[1, 2]])


def test_lengths_to_mask_saturates_huge_lengths_under_jit():
    lengths = jnp.array([2**31 + 5, 1, 0], jnp.uint32)  # int32 would wrap the first one
    mask = jax.jit(mj.lengths_to_mask, static_argnums=1)(lengths, 3)
    np.testing.assert_array_equal(mask, [[True] * 3, [True, False, False], [False] * 3])
    with pytest.raises(ValueError, match=r"`lengths` must lie in \[0, maxlen=3\]"):
        mj.lengths_to_mask(lengths, 3)
    with pytest.raises(ValueError, match=r"`maxlen` must be <= 2147483647"):
        mj.lengths_to_mask([1], 2**40)
    with pytest.raises(TypeError, match="`lengths` must be an integer array"):
        mj.lengths_to_mask([[1], [1, 2]], 3)


def test_mask_from_ids_checks_pad_id():
    ids = np.array([[3, 0, 0]], np.int32)
    for pad_id, error in [(0.5, TypeError), ("0", TypeError), (None, TypeError),
                          (2**40, ValueError)]:  # fmt: skip
        with pytest.raises(error, match="`pad_id`"):
            mj.mask_from_ids(ids, pad_id)
    traced = jax.jit(mj.mask_from_ids)(ids, jnp.int32(3))
    np.testing.assert_array_equal(traced, [[False, True, True]])


# --------------------------------------------------------------------------- losses


def test_out_of_range_labels_raise_eagerly_and_give_a_zero_one_hot_under_jit():
    logits = np.zeros((1, 3, 2), np.float32)
    mask = np.array([[True, True, False]])
    for bad in (-1, 2):
        labels = np.array([[0, bad, 7]])  # 7 sits at a padded step: never read
        with pytest.raises(ValueError, match=r"integer `labels` at real steps must be class ids"):
            mj.masked_cross_entropy(logits, labels, mask)
        with pytest.raises(ValueError, match=r"`labels` at real steps"):
            mj.masked_accuracy(logits, labels, mask)
        loss = jax.jit(mj.masked_cross_entropy)(logits, labels, mask)
        assert loss == pytest.approx(np.log(2) / 2)  # token 2 adds 0 but still counts
        grads = jax.jit(jax.grad(mj.masked_cross_entropy))(logits, labels, mask)
        np.testing.assert_array_equal(grads[0, 1], 0)
        favour_0 = logits + np.array([1.0, 0.0], np.float32)
        assert jax.jit(mj.masked_accuracy)(favour_0, labels, mask) == 0.5
    np.testing.assert_allclose(mj.masked_cross_entropy(logits, np.array([[0, 1, -5]]), mask),
                               np.log(2), rtol=1e-6)  # fmt: skip


def test_losses_check_classes_dtypes_and_masked_inputs():
    labels = np.zeros((B, T), np.int32)
    with pytest.raises(ValueError, match="`logits` must have a class axis of at least one class"):
        mj.masked_cross_entropy(np.zeros((B, T, 0), np.float32), labels, MASK)
    with pytest.raises(TypeError, match="`logits` must be a real array; got complex"):
        mj.masked_accuracy(np.zeros((B, T, 2), np.complex64), labels, MASK)
    with pytest.raises(TypeError, match=r"`labels` must be an array; got a Masked.*labels.data"):
        mj.masked_cross_entropy(np.zeros((B, T, 2)), Masked(labels, MASK), MASK)
    with pytest.raises(TypeError, match="`predictions` must be a numeric array; got boolean"):
        mj.masked_mse(X > 0, X > 0, MASK)
    with pytest.raises(TypeError, match="`loss` must be a real array"):
        mj.reduce_masked_loss(np.ones((B, T), np.complex64), MASK)
    # complex regression: the mean of |error|^2, real (was (e * e), complex and negative)
    error = mj.masked_mse(X.astype(np.complex64), X.astype(np.complex64) + 1j, MASK)
    assert error == 1 and not jnp.iscomplexobj(error)


# --------------------------------------------------------------------------- masked ops


@pytest.mark.parametrize("name", ["masked_sum", "masked_max", "masked_softmax", "masked_var"])
def test_axis_arguments(name):
    fn = getattr(mj, name)
    everything = fn(X, MASK, axis=None)
    real = X[np.broadcast_to(MASK[..., None], X.shape)]
    if name == "masked_sum":
        assert everything == real.sum()
    for axis in [1.0, True, "1"]:
        with pytest.raises(TypeError, match="`axis` must be a static int, a sequence of ints"):
            fn(X, MASK, axis=axis)
    with pytest.raises(TypeError, match="`axis` must be a static int"):
        jax.jit(lambda a: fn(X, MASK, axis=a))(1)
    np.testing.assert_array_equal(fn(X, MASK, axis=jnp.int32(1)), fn(X, MASK, axis=1))


def test_statistics_of_complex_and_boolean_data():
    z = (X + 1j * X[::-1]).astype(np.complex64)
    real = np.ma.array(z, mask=~np.broadcast_to(MASK[..., None], z.shape))
    var = mj.masked_var(z, MASK)
    assert not jnp.iscomplexobj(var)  # it was complex: the mean of (x - mean)^2
    np.testing.assert_allclose(var, np.ma.var(real, axis=1), rtol=1e-5)
    with pytest.raises(TypeError, match="`x` must be a real array; got complex"):
        mj.masked_max(z, MASK)
    flags = X > 4
    np.testing.assert_array_equal(mj.masked_max(flags, MASK), [[False, False], [True, True]])
    np.testing.assert_array_equal(mj.masked_min(flags, ~MASK), [[False, True], [True, True]])


def test_fill_value_must_fit_the_dtype_and_the_result():
    ints, empty = X.astype(np.int8), np.zeros((B, T), bool)
    for value, match in [(np.nan, "non-integral"), (0.5, "non-integral"), (1000, "outside")]:
        with pytest.raises(ValueError, match=f"`fill_value` holds {match}|`fill_value` holds"):
            mj.masked_max(ints, empty, fill_value=value)
    with pytest.raises(TypeError, match="`fill_value` must be a number"):
        mj.masked_min(X, MASK, fill_value="x")
    with pytest.raises(ValueError, match=r"`fill_value` must be a scalar or broadcast"):
        mj.masked_max(X, empty, fill_value=np.zeros((3, B, D)))
    np.testing.assert_array_equal(mj.masked_max(X, empty, fill_value=np.arange(D)), [[0, 1]] * B)


def test_static_options_of_the_ops():
    with pytest.raises(TypeError, match="`keepdims` must be a Python bool"):
        mj.masked_mean(X, MASK, keepdims="yes")
    for ddof, error in [(-1, ValueError), (0.5, TypeError), ("1", TypeError)]:
        with pytest.raises(error, match="`ddof`"):
            mj.masked_std(X, MASK, ddof=ddof)


@pytest.mark.parametrize("fn", [mj.masked_mean, mj.masked_softmax, mj.mask_from_value])
def test_a_masked_where_an_array_belongs_says_what_to_pass(fn):
    with pytest.raises(TypeError, match=r"got a Masked\. Pass its parts separately: `x.data`"):
        fn(Masked(X, MASK), MASK) if fn is not mj.mask_from_value else fn(Masked(X, MASK))
    with pytest.raises(TypeError, match=r"`mask` must be a boolean array .* got a Masked"):
        mj.masked_sum(X, Masked(X, MASK))


# --------------------------------------------------------------------------- Masked, makers


def test_masked_is_immutable():
    x = Masked(X, MASK)
    for field in ("data", "mask"):
        with pytest.raises(AttributeError, match=f"`{field}` cannot be reassigned"):
            setattr(x, field, np.ones((5, 5), bool))
    with pytest.raises(AttributeError, match="immutable"):
        del x.mask
    assert jax.tree.map(lambda a: a, x).mask is x.mask  # pytree rebuilding still works


def test_masked_rejects_nested_lists_of_data_and_takes_a_list_mask():
    with pytest.raises(TypeError, match=r"nested list is a pytree of Python scalars.*asarray"):
        Masked(X.tolist(), MASK)
    with pytest.raises(TypeError, match="`data` of a Masked must be arrays; got a Masked"):
        Masked(Masked(X, MASK), MASK)
    np.testing.assert_array_equal(Masked({"a": X}, MASK.tolist()).mask, MASK)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(np.nan, ValueError, "non-integral"), (0.5, ValueError, "non-integral"),
     (1000, OverflowError, "outside the range"), ("x", TypeError, "must be a number"),
     (np.zeros(5), ValueError, "broadcast")],
)
def test_filled_value_must_fit(value, error, match):
    with pytest.raises(error, match=f"`value`.*{match}|`value` {match}"):
        Masked(X.astype(np.int8), MASK).filled(value)


def test_mask_from_value_per_feature_and_nan():
    x = np.array([[[1.0, 2.0], [np.nan, np.nan], [1.0, 0.0]]], np.float32)
    np.testing.assert_array_equal(mj.mask_from_value(x, np.array([1.0, 2.0])),
                                  [[False, True, True]])  # fmt: skip
    np.testing.assert_array_equal(mj.mask_from_value(x, np.nan), [[True, False, True]])
    with pytest.raises(ValueError, match="`mask_value` holds non-integral"):
        mj.mask_from_value(np.ones((1, 3, 2), np.int32), 0.5)  # no int is 0.5: all real
    with pytest.raises(ValueError, match="`mask_value` must be a scalar or broadcast"):
        mj.mask_from_value(x, np.zeros(5))
    np.testing.assert_array_equal(mj.masking(x.tolist()).mask, [[True, True, True]])


# --------------------------------------------------------------------------- shapes in time


def test_split_time_checks_its_sections_and_points():
    x = Masked(X, MASK)
    for bad, match in [(2, "must divide the T=3"), (0, ">= 1"), ([2, 1], "increasing"),
                       ([4], "within the T=3"), (1.5, "must be an int")]:  # fmt: skip
        with pytest.raises((ValueError, TypeError), match=match):
            mj.split_time(x, bad)
    assert [p.data.shape[1] for p in mj.split_time(x, [0, 2])] == [0, 2, 1]


@pytest.mark.parametrize(
    ("second", "match"),
    [(np.zeros((3, 2, D)), r"`items\[1\]` of shape \(3, 2, 2\) does not fit"),
     (np.zeros((B, 2, D + 1)), r"`items\[1\]` of shape \(2, 2, 3\) does not fit"),
     (np.zeros((B, 2)), r"`items\[1\]` of shape \(2, 2\) does not fit"),
     (None, r"`items\[1\]` must be a numeric array; got NoneType")],
)
def test_concat_time_checks_the_other_axes(second, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mj.concat_time([Masked(X, MASK), second])


def test_concat_features_needs_a_feature_axis_and_equal_time():
    with pytest.raises(ValueError, match=r"`items\[0\]` must be \(B, T, D\)"):
        mj.concat_features([Masked(X[..., 0], MASK), X[..., 0]])
    with pytest.raises(ValueError, match=r"`items\[1\]` of shape \(2, 4, 2\) does not fit"):
        mj.concat_features([Masked(X, MASK), np.zeros((B, T + 1, D))])
    with pytest.raises(TypeError, match=r"`items` must be a list .*wrap one in a list"):
        mj.concat_time(Masked(X, MASK))


def test_uncompact_checks_a_concrete_order():
    with pytest.raises(ValueError, match="`order` must hold a permutation of the time steps"):
        mj.uncompact(Masked(X, MASK), np.zeros((B, T), np.int32))
    with pytest.raises(TypeError, match="`order` must be a numeric array; got NoneType"):
        mj.uncompact(Masked(X, MASK), None)


# --------------------------------------------------------------------------- initialisers, RNN


@pytest.mark.parametrize(
    ("key", "match"),
    [(0, "got int 0"), (None, "got NoneType"), (np.zeros(2, np.float32), "dtype float32"),
     (jax.random.split(jax.random.key(0)), r"shape \(2,\).*jax.vmap")],
)
def test_initialisers_need_one_key(key, match):
    with pytest.raises(TypeError, match=f"`key` must be one PRNG key.*{match}"):
        mj.init_gru_params(key, 2, 3)


def test_initialisers_zero_features_legacy_keys_and_dtypes():
    params = mj.init_lstm_params(jax.random.PRNGKey(0), 0, 3)  # was a ZeroDivisionError
    assert params["kernel"].shape == (0, 12) and params["recurrent_kernel"].shape == (3, 12)
    outputs, _ = mj.lstm(params, np.zeros((B, T, 0), np.float32), MASK)
    assert outputs.shape == (B, T, 3)
    with pytest.raises(TypeError, match=r"`dtype` must be a floating dtype.*'nope'"):
        mj.init_simple_rnn_params(jax.random.key(0), 2, 3, dtype="nope")


def test_forward_mode_through_a_kernel_says_what_to_use_instead():
    params = mj.init_gru_params(jax.random.key(0), D, 3)

    def forward(x):
        return mj.gru(params, x, MASK)[0]

    with pytest.raises(TypeError, match=r"`x`, `params` or `initial_state` .* forward mode.*"
                                        r"jax\.jacrev"):  # fmt: skip
        jax.jvp(forward, (jnp.asarray(X),), (jnp.ones_like(X),))
    with pytest.raises(TypeError, match="reverse-mode differentiation only"):
        jax.jacfwd(forward)(jnp.asarray(X))
    assert jax.jacrev(forward)(jnp.asarray(X)).shape == (B, T, 3, B, T, D)


def test_kernel_arguments_that_reached_numpy_or_jax():
    params = mj.init_lstm_params(jax.random.key(0), D, 3)
    with pytest.raises(TypeError, match=r"`x` must be an array; got a Masked.*`x.data`"):
        mj.lstm(params, Masked(X, MASK))
    with pytest.raises(TypeError, match="`x` must be a numeric array; got str"):
        mj.lstm(params, "abc")
    with pytest.raises(TypeError, match="`kernel` must be a kernel function"):
        mj.stacked_rnn(None, [params], X)
    other = mj.init_lstm_params(jax.random.key(1), D, 4)
    with pytest.raises(ValueError, match=r"`merge_mode`='sum' needs .* one shape"):
        mj.bidirectional(mj.lstm, (params, other), X, MASK, merge_mode="sum")
