"""Bad input to the core gives a clear error at trace time; edge shapes give defined results.

The catalogue continues for the RNN kernels in `test_rnn_errors.py` (params keys and
shapes, 2-D inputs, dtypes, initial states, activations, merge modes) and for the NNX
layers in `test_nnx.py::test_errors`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import masking_jax as mj

X = np.zeros((2, 3, 4), np.float32)
MASK = np.ones((2, 3), bool)


@pytest.mark.parametrize(
    "mask",
    [np.ones((2, 4), bool), np.ones((3, 3), bool), np.ones((2, 3, 4, 1), bool),
     np.ones((3,), bool)],
    ids=["wrong-time", "wrong-batch", "too-many-axes", "trailing-not-leading"],
)
def test_misaligned_mask_names_both_shapes(mask):
    with pytest.raises(ValueError, match=r"`mask` of shape .* leading axes of `x` of shape"):
        jax.jit(mj.masked_mean)(X, mask)


@pytest.mark.parametrize("mask", [MASK.astype(np.int32), MASK.astype(np.float32)])
def test_non_boolean_mask_is_rejected_with_the_fix(mask):
    with pytest.raises(TypeError, match=r"boolean array \(True = real step.*astype\(bool\)"):
        mj.masked_sum(X, mask)


def test_ragged_mask_is_a_type_error():
    with pytest.raises(TypeError, match="`mask` must be a boolean array"):
        mj.masked_sum(X, [[True], [True, False]])


@pytest.mark.parametrize(
    ("lengths", "error", "match"),
    [
        ([1, -1], ValueError, r"`lengths` must lie in \[0, maxlen=3\]"),
        ([1, 4], ValueError, r"`lengths` must lie in \[0, maxlen=3\]"),
        ([1.0, 2.0], TypeError, "`lengths` must hold integers; got dtype float"),
    ],
)
def test_bad_lengths(lengths, error, match):
    with pytest.raises(error, match=match):
        mj.lengths_to_mask(lengths, 3)


@pytest.mark.parametrize(
    ("maxlen", "error"), [(-1, ValueError), (2.0, TypeError), (None, TypeError)]
)
def test_bad_maxlen_for_lengths_to_mask(maxlen, error):
    with pytest.raises(error, match="`maxlen`"):
        mj.lengths_to_mask([1, 2], maxlen)


def test_lengths_beyond_maxlen_under_jit_saturate_as_documented():
    mask = jax.jit(mj.lengths_to_mask, static_argnums=1)(jnp.array([-2, 5]), 3)
    np.testing.assert_array_equal(mask, [[False] * 3, [True] * 3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"padding": "left"}, "`padding` must be one of 'pre', 'post'; got 'left'"),
        ({"truncating": "end"}, "`truncating` must be one of 'pre', 'post'; got 'end'"),
        ({"maxlen": -2}, "`maxlen` must be >= 0"),
        ({"value": 0.5}, "`value` holds non-integral floats but `dtype` is int32"),
        ({"value": "x"}, "`value` must be a number"),
    ],
)
def test_bad_pad_sequences_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mj.pad_sequences([[1, 2], [3]], **kwargs)


def test_pad_sequences_rejects_ragged_steps_and_truncating_floats():
    with pytest.raises(ValueError, match="share the shape of one step"):
        mj.pad_sequences([np.zeros((2, 3)), np.zeros((1, 4))], dtype="float32")
    with pytest.raises(ValueError, match=r"`sequences\[0\]` holds non-integral floats"):
        mj.pad_sequences([[1.5, 2.0]])
    with pytest.raises(TypeError, match="`sequences` must be a list of sequences"):
        mj.pad_sequences(5)
    with pytest.raises(ValueError, match=r"`sequences\[1\]` must be a sequence"):
        mj.pad_sequences([[1], 2])


def test_bad_bucket():
    with pytest.raises(ValueError, match="`bucket` must be None, a positive int or 'pow2'"):
        mj.bucket_length(5, "pow3")
    with pytest.raises(ValueError, match="`bucket` must be >= 1"):
        mj.pad_masked([[1.0]], bucket=0)


def test_masked_with_mismatched_pytrees():
    data = {"a": np.zeros((2, 3)), "b": np.zeros((2, 3, 5))}
    with pytest.raises(ValueError, match="structure of `data`"):
        mj.Masked(data, {"a": MASK})
    with pytest.raises(ValueError, match="does not match the leading axes"):
        mj.Masked(data, {"a": MASK, "b": np.ones((2, 5), bool)})
    with pytest.raises(TypeError, match="boolean array"):
        mj.Masked(data, MASK.astype(int))


def test_mask_makers_reject_wrong_rank_and_dtype():
    with pytest.raises(ValueError, match=r"feature axis, shape \(B, T, D\).*mask_from_ids"):
        mj.mask_from_value(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="`ids` must be integer token ids; got dtype float"):
        mj.mask_from_ids(np.zeros((2, 3)))


def test_window_and_attention_mask_arguments():
    with pytest.raises(ValueError, match="`padding` must be one of 'valid', 'same'"):
        mj.window_mask(MASK, 2, padding="full")
    with pytest.raises(ValueError, match="`kernel_size` must be >= 1"):
        mj.window_mask(MASK, 0)
    with pytest.raises(ValueError, match=r"`mask` must be 2-D \(B, T\)"):
        mj.window_mask(MASK[0], 2)
    with pytest.raises(ValueError, match="`key_mask` batch size must match"):
        mj.attention_mask(MASK, np.ones((3, 4), bool))


def test_bad_axis_and_reduction():
    with pytest.raises(ValueError, match=r"`axis` must be in \[-3, 3\)"):
        mj.masked_sum(X, MASK, axis=3)
    with pytest.raises(ValueError, match="`axis` repeats an axis"):
        mj.masked_sum(X, MASK, axis=(1, -2))
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        mj.reduce_masked_loss(X[..., 0], MASK, "avg")


def test_time_transforms_need_array_data_and_2d_masks():
    with pytest.raises(TypeError, match="must be a Masked"):
        mj.reverse_valid(X)
    with pytest.raises(TypeError, match=r"`x.data` must be one array here.*jax.tree.map"):
        mj.compact(mj.Masked({"a": X}, MASK))
    with pytest.raises(ValueError, match="`order` must be the integer"):
        mj.uncompact(mj.Masked(X, MASK), np.zeros((2, 4), np.int32))


@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 0, 4)], ids=["empty-batch", "zero-steps"])
def test_empty_batch_and_zero_steps_give_defined_results(shape):
    x, mask = np.zeros(shape, np.float32), np.zeros(shape[:2], bool)
    assert mj.masked_mean(x, mask).shape == (shape[0], 4)
    assert np.all(mj.masked_max(x, mask) == 0)
    assert mj.masked_softmax(x[..., 0], mask).shape == shape[:2]
    assert mj.masked_cross_entropy(x, np.zeros(shape[:2], np.int32), mask) == 0
    assert mj.reverse_valid(mj.Masked(x, mask)).data.shape == shape
    packed, order = mj.compact(mj.Masked(x, mask))
    assert mj.uncompact(packed, order).data.shape == shape
    np.testing.assert_array_equal(mj.mask_to_lengths(mask), np.zeros(shape[0], np.int32))
    assert mj.pad_sequences([[]] * shape[0], maxlen=shape[1]).shape == shape[:2]
