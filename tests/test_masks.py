"""Tests of the `Masked` pytree, the mask makers and the mask transforms.

References are Keras 3 (on JAX) where Keras defines the rule, numpy loops over the
real steps (`x[mask]` row by row) otherwise. Masks: True = real step, False = padding.
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import masking_jax as mj
from masking_jax import Masked

SETTINGS = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=15, deadline=None)


# --------------------------------------------------------------------------- helpers


def random_mask(rng, batch, steps, kind, lengths=None):
    """A (B, T) bool mask: "post"/"pre" padded from random lengths, or "gappy"."""
    if kind == "gappy":
        return rng.random((batch, steps)) < 0.6
    if lengths is None:
        lengths = rng.integers(0, steps + 1, size=batch)
    return np.array(mj.lengths_to_mask(np.asarray(lengths, np.int32), steps, padding=kind))


def random_data(rng, mask, features=2, nan_padding=True):
    """Float data (B, T, D) with NaN at the padding (so any read of it shows)."""
    data = rng.normal(size=(*mask.shape, features)).astype(np.float32)
    if nan_padding:
        data[~mask] = np.nan
    return data


@st.composite
def masked_batches(draw, kinds=("post", "pre", "gappy"), steps=(1, 4, 7)):
    """(data (B, T, D) with NaN padding, mask (B, T)) from a few shapes, to bound compiles."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = draw(st.sampled_from([1, 3]))
    mask = random_mask(rng, batch, draw(st.sampled_from(steps)), draw(st.sampled_from(kinds)))
    mask[0] = draw(st.sampled_from([mask[0], False, True]))  # fully padded / fully real rows
    return random_data(rng, mask), mask


def assert_tree_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


# Property tests run the transforms under jit: one compile per shape, not per op.
reverse_valid = jax.jit(mj.reverse_valid)
compact = jax.jit(mj.compact)
uncompact = jax.jit(mj.uncompact)
window_mask = jax.jit(mj.window_mask, static_argnums=(1, 2, 3, 4))
attention = jax.jit(jax.nn.dot_product_attention, static_argnames="is_causal")


# --------------------------------------------------------------------------- Masked


def _example(seed=0, batch=3, steps=5, features=2):
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, batch, steps, "gappy")
    mask[0] = False
    return random_data(rng, mask, features), mask


def test_masked_filled_removes_nan_padding_under_jit():
    data, mask = _example()
    out = jax.jit(lambda m: m.filled(-3.0))(Masked(data, mask))
    assert isinstance(out, Masked)
    np.testing.assert_array_equal(out.data, np.where(mask[..., None], data, -3.0))
    np.testing.assert_array_equal(out.mask, mask)
    assert not np.isnan(np.asarray(out.data)).any()
    # an int leaf keeps its dtype
    ints = Masked(np.arange(6, dtype=np.int32).reshape(2, 3), mask[:2, :3]).filled(7)
    assert ints.data.dtype == jnp.int32
    np.testing.assert_array_equal(ints.data, np.where(mask[:2, :3], np.arange(6).reshape(2, 3), 7))


def test_masked_vmap_over_extra_leading_axis():
    rng = np.random.default_rng(1)
    mask = np.stack([random_mask(rng, 3, 5, "gappy") for _ in range(4)])  # (V, B, T)
    data = random_data(rng, mask)  # (V, B, T, D)

    def masked_sum(m):
        return jnp.sum(m.filled(0.0).data, axis=1)  # (B, D)

    out = jax.vmap(masked_sum)(Masked(data, mask))
    expected = [[data[v, b][mask[v, b]].sum(axis=0) for b in range(3)] for v in range(4)]
    np.testing.assert_allclose(out, np.array(expected), rtol=1e-6, atol=1e-6)


def test_masked_grad_through_a_function_that_builds_it():
    data, mask = _example()

    def loss(x):
        return jnp.sum(Masked(x, mask).filled(0.0).data ** 2)

    grad = jax.jit(jax.grad(loss))(data)
    # NaN in the padding gives a zero, finite gradient there
    np.testing.assert_allclose(grad, np.where(mask[..., None], 2 * data, 0.0), rtol=1e-6)
    assert np.isfinite(np.asarray(grad)).all()


def test_masked_grad_wrt_the_masked_itself():
    data, mask = _example()

    def loss(m):
        return jnp.sum(m.filled(0.0).data ** 2)

    grads = jax.grad(loss, allow_int=True)(Masked(data, mask))
    assert isinstance(grads, Masked)
    assert grads.mask.dtype == jax.dtypes.float0
    np.testing.assert_allclose(grads.data, np.where(mask[..., None], 2 * data, 0.0), rtol=1e-6)
    with pytest.raises(TypeError, match="bool"):  # documented: the mask is not differentiable
        jax.grad(loss)(Masked(data, mask))


def test_masked_as_scan_carry_and_xs():
    data, mask = _example(seed=2, batch=3, steps=6)
    xs = Masked(np.swapaxes(data, 0, 1), mask.T)  # time-major (T, B, D) with (T, B) mask

    def step(carry, x_t):
        total = carry.data + jnp.where(x_t.mask[:, None], x_t.data, 0.0)
        return Masked(total, carry.mask | x_t.mask), x_t.filled(0.0)

    init = Masked(jnp.zeros((3, 2)), jnp.zeros((3,), bool))
    final, ys = jax.jit(lambda c, x: lax.scan(step, c, x))(init, xs)
    assert isinstance(final, Masked) and isinstance(ys, Masked)
    expected = np.array([data[b][mask[b]].sum(axis=0) for b in range(3)])
    np.testing.assert_allclose(final.data, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(final.mask, mask.any(axis=1))
    np.testing.assert_array_equal(ys.data, np.where(mask.T[..., None], xs.data, 0.0))
    np.testing.assert_array_equal(ys.mask, mask.T)


def test_masked_pytree_data_with_per_leaf_and_shared_masks():
    rng = np.random.default_rng(3)
    mask_a = random_mask(rng, 2, 4, "gappy")
    mask_b = random_mask(rng, 2, 4, "post")
    data = {"a": random_data(rng, mask_a), "b": np.where(mask_b, 5, -9).astype(np.int32)}

    per_leaf = jax.jit(lambda m: m.filled(0))(Masked(data, {"a": mask_a, "b": mask_b}))
    np.testing.assert_array_equal(per_leaf.data["a"], np.where(mask_a[..., None], data["a"], 0))
    np.testing.assert_array_equal(per_leaf.data["b"], np.where(mask_b, 5, 0))
    assert per_leaf.data["b"].dtype == jnp.int32
    assert_tree_equal(per_leaf.mask, {"a": mask_a, "b": mask_b})

    shared = jax.jit(lambda m: m.filled(0))(Masked(data, mask_a))
    np.testing.assert_array_equal(shared.data["a"], np.where(mask_a[..., None], data["a"], 0))
    np.testing.assert_array_equal(shared.data["b"], np.where(mask_a, data["b"], 0))
    np.testing.assert_array_equal(shared.mask, mask_a)
    assert not np.isnan(np.asarray(shared.data["a"])).any()

    # a mask with size-1 axes broadcasts over the data axis
    rows = Masked(data["a"], np.array([[True], [False]])).filled(0.0)
    np.testing.assert_array_equal(rows.data[1], 0.0)
    np.testing.assert_array_equal(rows.data[0], data["a"][0])


def test_masked_errors():
    data, mask = _example()
    with pytest.raises(ValueError, match="structure"):
        Masked({"a": data, "b": data}, {"a": mask, "c": mask})
    with pytest.raises(ValueError, match="structure"):
        Masked({"a": data, "b": data}, [mask, mask])
    with pytest.raises(ValueError, match="structure"):
        Masked(data, None)
    with pytest.raises(ValueError, match="at least one array"):
        Masked({}, mask)
    with pytest.raises(TypeError, match="boolean"):
        Masked(data, mask.astype(np.int32))
    with pytest.raises(TypeError, match="boolean"):
        Masked(data, mask.astype(np.float32))
    with pytest.raises(TypeError, match="boolean"):
        Masked({"a": data, "b": data}, {"a": mask, "b": mask.astype(np.int8)})
    with pytest.raises(ValueError, match="leading axes"):
        Masked(data, mask.T)  # (T, B) for (B, T, D)
    with pytest.raises(ValueError, match="leading axes"):
        Masked(data, np.ones((3, 5, 2, 1), bool))  # more axes than the data
    with pytest.raises(ValueError, match="leading axes"):
        Masked(data, mask[:, :4])
    with pytest.raises(ValueError, match="leading axes"):  # checked at trace time too
        jax.jit(lambda x: Masked(x, mask[:, :4]))(data)


# --------------------------------------------------------------------------- mask makers


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    mask_value=st.sampled_from([0.0, -1.0, 2.5]),
    shape=st.sampled_from([(2, 5, 3), (3, 4, 2, 2)]),
)
def test_masking_matches_keras(seed, mask_value, shape):
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([mask_value, 1.0, -2.0], np.float32), size=shape, p=[0.6, 0.2, 0.2])
    x[rng.random(shape[:-1]) < 0.4] = mask_value  # some fully equal steps
    layer = keras.layers.Masking(mask_value=mask_value)
    keras_mask = np.asarray(layer.compute_mask(x))
    mask = mj.mask_from_value(x, mask_value)
    np.testing.assert_array_equal(mask, keras_mask)
    np.testing.assert_array_equal(mask, (x != mask_value).any(axis=-1))
    out = mj.masking(x, mask_value)
    np.testing.assert_array_equal(out.data, np.asarray(layer(x)))
    np.testing.assert_array_equal(out.mask, keras_mask)
    np.testing.assert_array_equal(jax.jit(mj.mask_from_value)(x, mask_value), keras_mask)


def test_mask_from_value_needs_a_feature_axis():
    with pytest.raises(ValueError, match="mask_from_ids"):
        mj.mask_from_value(np.zeros((2, 3)))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), pad_id=st.sampled_from([0, 3, -1]))
def test_mask_from_ids_matches_keras_embedding(seed, pad_id):
    rng = np.random.default_rng(seed)
    ids = rng.integers(-1, 5, size=(3, 6)).astype(np.int32)
    ids[:, 4:] = pad_id
    np.testing.assert_array_equal(mj.mask_from_ids(ids, pad_id), ids != pad_id)
    if pad_id == 0:
        layer = keras.layers.Embedding(8, 2, mask_zero=True)
        np.testing.assert_array_equal(mj.mask_from_ids(ids), np.asarray(layer.compute_mask(ids)))
    np.testing.assert_array_equal(jax.jit(mj.mask_from_ids)(ids, pad_id), ids != pad_id)


def test_mask_from_ids_rejects_float_ids():
    with pytest.raises(TypeError, match="`ids`"):
        mj.mask_from_ids(np.array([[1.0, 0.0]]))
    with pytest.raises(TypeError, match="`ids`"):
        jax.jit(mj.mask_from_ids)(jnp.array([[1.0, 0.0]]))


# --------------------------------------------------------------------------- split / concat


class TemporalSplit(keras.layers.Layer):
    """The Keras masking guide's TemporalSplit layer, verbatim in its logic."""

    def call(self, inputs):
        return keras.ops.split(inputs, 2, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else keras.ops.split(mask, 2, axis=1)


def test_split_time_matches_the_guides_temporal_split():
    data, mask = _example(seed=4, steps=6)
    parts = mj.split_time(Masked(data, mask), 2)
    layer = TemporalSplit()
    for part, keras_data, keras_mask in zip(
        parts, layer(data), layer.compute_mask(data, mask), strict=True
    ):
        assert isinstance(part, Masked)
        np.testing.assert_array_equal(part.data, np.asarray(keras_data))
        np.testing.assert_array_equal(part.mask, np.asarray(keras_mask))
    # uneven split points, as in jnp.split, and under jit
    parts = jax.jit(lambda m: mj.split_time(m, [1, 4]))(Masked(data, mask))
    assert [p.mask.shape[1] for p in parts] == [1, 3, 2]
    for part, d, m in zip(parts, np.split(data, [1, 4], 1), np.split(mask, [1, 4], 1), strict=True):
        np.testing.assert_array_equal(part.data, d)
        np.testing.assert_array_equal(part.mask, m)
    with pytest.raises(TypeError, match="Masked"):
        mj.split_time(data, 2)


@st.composite
def concat_items(draw, same_features):
    """2-3 items, each a Masked or a plain array (no mask), (B=2, T=4, D_i)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    items, keras_masks = [], []
    for _ in range(draw(st.integers(2, 3))):
        data = rng.normal(size=(2, 4, 3 if same_features else draw(st.integers(1, 3))))
        data = data.astype(np.float32)
        if draw(st.booleans()):
            mask = random_mask(rng, 2, 4, draw(st.sampled_from(["post", "pre", "gappy"])))
            items.append(Masked(data, mask))
            keras_masks.append(mask)
        else:
            items.append(data)
            keras_masks.append(None)
    return items, keras_masks


def _data(item):
    return item.data if isinstance(item, Masked) else item


@FEW
@given(case=concat_items(same_features=False))
def test_concat_features_matches_keras_concatenate(case):
    items, keras_masks = case
    datas = [_data(i) for i in items]
    out = mj.concat_features(items)
    np.testing.assert_array_equal(out.data, np.concatenate(datas, axis=-1))
    keras_mask = keras.layers.Concatenate(axis=-1).compute_mask(datas, keras_masks)
    if keras_mask is None:  # Keras: no input had a mask; ours: every step is real
        np.testing.assert_array_equal(out.mask, True)
    else:
        np.testing.assert_array_equal(out.mask, np.asarray(keras_mask))


@FEW
@given(case=concat_items(same_features=True))
def test_concat_time_matches_keras_concatenate(case):
    items, keras_masks = case
    datas = [_data(i) for i in items]
    out = mj.concat_time(items)
    np.testing.assert_array_equal(out.data, np.concatenate(datas, axis=1))
    keras_mask = keras.layers.Concatenate(axis=1).compute_mask(datas, keras_masks)
    expected = np.ones(out.mask.shape, bool) if keras_mask is None else np.asarray(keras_mask)
    np.testing.assert_array_equal(out.mask, expected)
    filled_masks = [np.ones((2, 4), bool) if m is None else m for m in keras_masks]
    np.testing.assert_array_equal(out.mask, np.concatenate(filled_masks, axis=1))


def test_concat_errors():
    with pytest.raises(ValueError, match="at least one"):
        mj.concat_time([])
    with pytest.raises(ValueError, match=r"`items\[1\]`"):
        mj.concat_features([np.zeros((2, 3, 1)), np.zeros(3)])


# --------------------------------------------------------------------------- mask_and / mask_or


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    present=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_mask_and_or_with_none(seed, present):
    rng = np.random.default_rng(seed)
    masks = [rng.random((2, 5)) < 0.5 if p else None for p in present]
    real = [m for m in masks if m is not None]
    got_and, got_or = mj.mask_and(*masks), mj.mask_or(*masks)
    if not real:
        assert got_and is None and got_or is None
        return
    np.testing.assert_array_equal(got_and, np.logical_and.reduce(real))
    # None means "no mask": all real, so it wins an OR
    expected_or = np.ones((2, 5), bool) if len(real) < len(masks) else np.logical_or.reduce(real)
    np.testing.assert_array_equal(got_or, expected_or)


def test_mask_and_or_across_ranks_and_errors():
    rng = np.random.default_rng(5)
    time_mask = rng.random((2, 5)) < 0.5
    feature_mask = rng.random((2, 5, 3)) < 0.5
    np.testing.assert_array_equal(
        mj.mask_and(time_mask, feature_mask), time_mask[..., None] & feature_mask
    )
    np.testing.assert_array_equal(
        mj.mask_or(feature_mask, time_mask), time_mask[..., None] | feature_mask
    )
    # a size-1 axis broadcasts, whichever order the masks come in
    row_mask = np.array([[True], [False]])
    for masks in [(row_mask, time_mask), (time_mask, row_mask)]:
        np.testing.assert_array_equal(mj.mask_and(*masks), row_mask & time_mask)
        np.testing.assert_array_equal(mj.mask_or(*masks), row_mask | time_mask)
    with pytest.raises(TypeError, match=r"`masks\[1\]`"):
        mj.mask_and(time_mask, time_mask.astype(np.int32))
    with pytest.raises(ValueError, match="leading axes"):
        mj.mask_or(time_mask, time_mask[:, :4])


# --------------------------------------------------------------------------- reverse_valid


@SETTINGS
@given(batch=masked_batches())
def test_reverse_valid_reverses_the_real_values(batch):
    data, mask = batch
    out = reverse_valid(Masked(data, mask))
    np.testing.assert_array_equal(out.mask, mask)
    out_data = np.asarray(out.data)
    for b in range(len(mask)):
        np.testing.assert_array_equal(out_data[b][mask[b]], data[b][mask[b]][::-1])
        np.testing.assert_array_equal(out_data[b][~mask[b]], data[b][~mask[b]])  # untouched
    again = reverse_valid(out)
    np.testing.assert_array_equal(again.data, data)  # an involution, NaN padding included


@FEW
@given(seed=st.integers(0, 2**32 - 1))
def test_reverse_valid_pre_and_post_padding_agree(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 6, size=3)
    lengths[0] = max(lengths[0], 1)  # all-empty batches lose the feature axis (see pad_masked)
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]
    for padding in ("pre", "post"):
        batch, _ = mj.pad_masked(seqs, 6, padding=padding, value=np.nan)
        out = mj.reverse_valid(batch)
        for seq, row, row_mask in zip(seqs, np.asarray(out.data), batch.mask, strict=True):
            np.testing.assert_array_equal(row[row_mask], seq[::-1])


# --------------------------------------------------------------------------- compact / uncompact


@SETTINGS
@given(batch=masked_batches())
def test_compact_moves_real_steps_first_and_uncompact_undoes_it(batch):
    data, mask = batch
    packed, order = compact(Masked(data, mask))
    counts = mask.sum(axis=1)
    np.testing.assert_array_equal(packed.mask, mj.lengths_to_mask(counts, mask.shape[1]))
    packed_data = np.asarray(packed.data)
    for b in range(len(mask)):
        np.testing.assert_array_equal(packed_data[b][: counts[b]], data[b][mask[b]])
        assert sorted(np.asarray(order[b]).tolist()) == list(range(mask.shape[1]))
    assert order.dtype == jnp.int32
    back = uncompact(packed, order)
    np.testing.assert_array_equal(back.data, data)  # exact, NaN padding included
    np.testing.assert_array_equal(back.mask, mask)


def test_gradients_through_moving_transforms_ignore_nan_padding():
    data, mask = _example(seed=11, batch=3, steps=6)
    weights = np.random.default_rng(12).normal(size=data.shape).astype(np.float32)

    @jax.jit
    def grads(x):
        def loss(x, transform):
            return jnp.sum(weights * transform(Masked(x, mask)).filled(0.0).data)

        return (
            jax.grad(loss)(x, mj.reverse_valid),
            jax.grad(loss)(x, lambda m: mj.compact(m)[0]),
        )

    reverse_grad, compact_grad = (np.asarray(g) for g in grads(data))
    for grad in (reverse_grad, compact_grad):
        assert np.isfinite(grad).all()
        np.testing.assert_array_equal(grad[~mask], 0.0)
    # each real input step receives the weight of the position it moved to
    for b in range(3):
        real = mask[b]
        np.testing.assert_array_equal(reverse_grad[b][real], weights[b][real][::-1])
        np.testing.assert_array_equal(compact_grad[b][real], weights[b][: real.sum()])


def test_uncompact_rejects_a_wrong_order():
    data, mask = _example()
    packed, order = mj.compact(Masked(data, mask))
    with pytest.raises(ValueError, match="`order`"):
        mj.uncompact(packed, order[:, :3])
    with pytest.raises(ValueError, match="`order`"):
        mj.uncompact(packed, order.astype(jnp.float32))
    with pytest.raises(TypeError, match="one array"):
        mj.compact(Masked({"a": data}, mask))


# --------------------------------------------------------------------------- window_mask


def _valid_len(length, kernel_size, strides, dilation):
    return max(0, (length - dilation * (kernel_size - 1) - 1) // strides + 1)


def _np_window_mask(mask, kernel_size, strides, padding, dilation):
    """Numpy loop: a "valid" output is real iff every input it reads is real."""
    batch, steps = mask.shape
    if padding in ("same", "causal"):  # the window is centred on / ends at t * strides
        return mask[:, ::strides]
    out = np.zeros((batch, _valid_len(steps, kernel_size, strides, dilation)), bool)
    for b in range(batch):
        for t in range(out.shape[1]):
            out[b, t] = all(mask[b, t * strides + j * dilation] for j in range(kernel_size))
    return out


# Three post-padded rows of random lengths, and window sizes to run over them.
POST_PADDED_WINDOWS = given(
    data=st.data(),
    steps=st.sampled_from([6, 9]),
    kernel_size=st.integers(1, 3),
    strides=st.integers(1, 3),
    dilation=st.integers(1, 2),
)


def _post_padded_window(data, steps, kernel_size, strides, padding, dilation):
    """(lengths (3,), mask (3, T), window_mask output) for three drawn post-padded rows."""
    lengths = np.array(data.draw(st.lists(st.integers(0, steps), min_size=3, max_size=3)))
    mask = np.asarray(mj.lengths_to_mask(lengths.astype(np.int32), steps))
    return lengths, mask, np.asarray(mj.window_mask(mask, kernel_size, strides, padding, dilation))


def _conv(x, kernel, strides, padding, dilation):
    """1-D correlation of (B, T) x with a (k,) kernel via lax.conv_general_dilated."""
    return lax.conv_general_dilated(
        x[:, None, :], kernel[None, None, :], (strides,), padding, rhs_dilation=(dilation,)
    )[:, 0]


@SETTINGS
@POST_PADDED_WINDOWS
def test_window_mask_valid_matches_running_the_window_on_unpadded_sequences(
    data, steps, kernel_size, strides, dilation
):
    lengths, mask, out = _post_padded_window(data, steps, kernel_size, strides, "valid",
                                             dilation)
    expected_len = _valid_len(steps, kernel_size, strides, dilation)
    assert out.shape == (3, expected_len)
    # the real outputs are a prefix, as many as the window yields on the unpadded sequence
    counts = [_valid_len(n, kernel_size, strides, dilation) for n in lengths]
    np.testing.assert_array_equal(out, np.arange(expected_len) < np.array(counts)[:, None])
    # the layer's own output length on the padded input
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, steps)).astype(np.float32)
    kernel = rng.normal(size=(kernel_size,)).astype(np.float32)
    padded_x = np.where(mask, x, np.nan)
    conv = np.asarray(_conv(padded_x, kernel, strides, "VALID", dilation))
    pooled = lax.reduce_window(
        padded_x, 0.0, lax.add, (1, kernel_size), (1, strides), "VALID",
        window_dilation=(1, dilation),
    )
    assert conv.shape == pooled.shape == out.shape
    # real outputs read no padding (no NaN) and equal the window run on the unpadded sequence
    assert not np.isnan(conv[out]).any() and np.isnan(conv[~out]).all()
    for b, n in enumerate(lengths):
        span = dilation * (kernel_size - 1)
        ref = [x[b, t : t + span + 1 : dilation] @ kernel for t in range(0, n - span, strides)]
        np.testing.assert_allclose(conv[b][out[b]], np.array(ref).reshape(-1), rtol=1e-5, atol=1e-5)


@SETTINGS
@POST_PADDED_WINDOWS
def test_window_mask_same(data, steps, kernel_size, strides, dilation):
    lengths, mask, out = _post_padded_window(data, steps, kernel_size, strides, "same",
                                             dilation)
    x = np.ones((3, steps), np.float32)
    conv = _conv(x, np.ones((kernel_size,), np.float32), strides, "SAME", dilation)
    assert out.shape == conv.shape == (3, -(-steps // strides))
    counts = -(-lengths // strides)  # ceil(L / s) real outputs
    np.testing.assert_array_equal(out, np.arange(out.shape[1]) < counts[:, None])
    if strides == 1:
        # with zero-filled padding the real outputs equal "same" on the unpadded sequence
        rng = np.random.default_rng(1)
        x = np.where(mask, rng.normal(size=(3, steps)), 0.0).astype(np.float32)
        kernel = rng.normal(size=(kernel_size,)).astype(np.float32)
        conv = np.asarray(_conv(x, kernel, 1, "SAME", dilation))
        for b, n in enumerate(lengths):
            if n:
                ref = np.asarray(_conv(x[b : b + 1, :n], kernel, 1, "SAME", dilation))[0]
                np.testing.assert_allclose(conv[b][out[b]], ref, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(
    batch=masked_batches(kinds=("gappy", "pre"), steps=(7,)),
    kernel_size=st.integers(1, 3),
    strides=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=st.sampled_from(["valid", "same", "causal"]),
)
def test_window_mask_gappy_matches_numpy_loop(batch, kernel_size, strides, dilation, padding):
    _, mask = batch
    out = window_mask(mask, kernel_size, strides, padding, dilation)
    expected = _np_window_mask(mask, kernel_size, strides, padding, dilation)
    np.testing.assert_array_equal(out, expected)


def test_window_mask_short_sequences_and_errors():
    mask = np.ones((2, 2), bool)
    assert mj.window_mask(mask, 3).shape == (2, 0)  # window longer than the sequence
    assert mj.window_mask(mask, 2, dilation=2).shape == (2, 0)
    with pytest.raises(ValueError, match="`kernel_size`"):
        mj.window_mask(mask, 0)
    with pytest.raises(TypeError, match="`strides`"):
        mj.window_mask(mask, 2, strides=1.0)
    with pytest.raises(ValueError, match="`padding`"):
        mj.window_mask(mask, 2, padding="full")
    with pytest.raises(TypeError, match="`mask`"):
        mj.window_mask(mask.astype(np.int32), 2)
    with pytest.raises(ValueError, match="`mask`"):
        mj.window_mask(mask[..., None], 2)


# --------------------------------------------------------------------------- attention_mask


def _np_attention_mask(query_mask, key_mask, causal):
    allowed = query_mask[:, :, None] & key_mask[:, None, :]
    if causal:
        steps_q, steps_k = allowed.shape[1:]
        allowed &= np.arange(steps_k)[None, :] <= np.arange(steps_q)[:, None]
    return allowed[:, None]


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    key_steps=st.sampled_from([None, 3, 6]),
    causal=st.booleans(),
)
def test_attention_mask_matches_numpy(seed, key_steps, causal):
    rng = np.random.default_rng(seed)
    query_mask = random_mask(rng, 2, 5, "gappy")
    key_mask = None if key_steps is None else random_mask(rng, 2, key_steps, "gappy")
    out = jax.jit(mj.attention_mask, static_argnames="causal")(query_mask, key_mask, causal=causal)
    keys = query_mask if key_mask is None else key_mask
    assert out.dtype == jnp.bool_ and out.shape == (2, 1, 5, keys.shape[1])
    np.testing.assert_array_equal(out, _np_attention_mask(query_mask, keys, causal))


def test_attention_mask_errors():
    mask = np.ones((2, 4), bool)
    with pytest.raises(ValueError, match="batch size"):
        mj.attention_mask(mask, np.ones((3, 4), bool))
    with pytest.raises(TypeError, match="`query_mask`"):
        mj.attention_mask(mask.astype(np.int32))
    with pytest.raises(TypeError, match="`key_mask`"):
        mj.attention_mask(mask, mask.astype(np.float32))
    with pytest.raises(ValueError, match="`query_mask`"):
        mj.attention_mask(mask[..., None])


def _unpadded(x, row_mask):
    return x[None][:, row_mask]


@pytest.mark.parametrize("padding", ["post", "pre"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_mask_in_dot_product_attention(padding, causal):
    rng = np.random.default_rng(6)
    lengths = np.array([5, 2, 0], np.int32)  # full, partial, fully padded
    mask = random_mask(rng, 3, 5, padding, lengths)
    q, k, v = (rng.normal(size=(3, 5, 2, 4)).astype(np.float32) for _ in range(3))
    k[~mask], v[~mask] = 1e3, -1e3  # finite garbage in the padding
    out = np.asarray(attention(q, k, v, mask=mj.attention_mask(mask, causal=causal)))
    # jax gives a fully masked query row uniform weights over all keys: finite, not NaN
    assert np.isfinite(out).all()
    for b in range(3):
        if lengths[b]:
            ref = attention(*(_unpadded(a[b], mask[b]) for a in (q, k, v)), is_causal=causal)
            np.testing.assert_allclose(out[b][mask[b]], ref[0], rtol=1e-5, atol=1e-5)


def test_attention_mask_cross_attention_in_dot_product_attention():
    rng = np.random.default_rng(7)
    query_mask = random_mask(rng, 2, 4, "post", [4, 1])
    key_mask = random_mask(rng, 2, 6, "gappy")
    key_mask[:, 0] = True
    q = rng.normal(size=(2, 4, 1, 3)).astype(np.float32)
    k, v = (rng.normal(size=(2, 6, 1, 3)).astype(np.float32) for _ in range(2))
    v[~key_mask] = 1e4
    out = attention(q, k, v, mask=mj.attention_mask(query_mask, key_mask))
    for b in range(2):
        ref = attention(
            _unpadded(q[b], query_mask[b]), *(_unpadded(a[b], key_mask[b]) for a in (k, v))
        )
        np.testing.assert_allclose(out[b][query_mask[b]], ref[0], rtol=1e-5, atol=1e-5)


def test_attention_mask_in_flax_nnx_multi_head_attention():
    rng = np.random.default_rng(8)
    lengths = np.array([6, 3, 0], np.int32)
    mask = random_mask(rng, 3, 6, "post", lengths)
    x = rng.normal(size=(3, 6, 4)).astype(np.float32)
    x[~mask] = 50.0  # finite garbage in the padding
    mha = nnx.MultiHeadAttention(2, 4, qkv_features=8, decode=False, rngs=nnx.Rngs(0))
    call = nnx.jit(lambda module, x, mask=None: module(x, mask=mask))
    out = np.asarray(call(mha, x, mj.attention_mask(mask)))
    assert np.isfinite(out).all()
    for b in range(2):
        ref = call(mha, _unpadded(x[b], mask[b]))
        np.testing.assert_allclose(out[b][mask[b]], ref[0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- jit, vmap, retracing


def test_transforms_do_not_retrace_when_only_mask_values_change():
    traces = []

    @jax.jit
    def pipeline(x, lengths):
        traces.append(None)
        packed, order = mj.compact(mj.reverse_valid(x))
        post = mj.lengths_to_mask(lengths, x.mask.shape[1])
        att = mj.attention_mask(packed.mask, causal=True)
        win = mj.window_mask(x.mask, 2)
        return mj.uncompact(packed, order), post, att, win

    rng = np.random.default_rng(9)
    for _ in range(4):
        mask = random_mask(rng, 3, 6, "gappy")
        data = random_data(rng, mask)
        back, post, att, win = pipeline(Masked(data, mask), mask.sum(axis=1).astype(np.int32))
        ref = mj.reverse_valid(Masked(data, mask))  # eager reference
        np.testing.assert_array_equal(back.data, ref.data)
        np.testing.assert_array_equal(post.sum(axis=1), mask.sum(axis=1))
        np.testing.assert_array_equal(win, _np_window_mask(mask, 2, 1, "valid", 1))
        assert att.shape == (3, 1, 6, 6)
    assert len(traces) == 1


def test_transforms_under_jit_and_vmap_over_an_extra_leading_axis():
    rng = np.random.default_rng(10)
    mask = np.stack([random_mask(rng, 3, 5, kind) for kind in ("post", "pre", "gappy")])
    data = random_data(rng, mask)  # (V=3, B=3, T=5, D=2)
    batched = Masked(data, mask)

    def per_item(fn):
        return [fn(Masked(data[v], mask[v])) for v in range(3)]

    def stacked(items):
        return jax.tree.map(lambda *xs: np.stack(xs), *items)

    def transforms(x):
        return {
            "reverse_valid": mj.reverse_valid(x),
            "compact": mj.compact(x),
            "uncompact": mj.uncompact(*mj.compact(x)),
            "split_time": mj.split_time(x, [2]),
            "concat_time": mj.concat_time([x, x.data]),
            "concat_features": mj.concat_features([x, mj.reverse_valid(x)]),
            "window_valid": mj.window_mask(x.mask, 2, strides=2),
            "window_same": mj.window_mask(x.mask, 3, padding="same", strides=2),
            "attention": mj.attention_mask(x.mask, causal=True),
            "and": mj.mask_and(x.mask, mj.mask_from_value(x.filled(0.0).data)),
            "lengths": mj.mask_to_lengths(x.mask),
        }

    got = jax.jit(jax.vmap(transforms))(batched)
    expected = stacked(per_item(jax.jit(transforms)))
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    assert_tree_equal(got, expected)
    # spot-check the per-item reference itself against numpy
    for v in range(3):
        for b in range(3):
            row = expected["reverse_valid"].data[v, b]
            np.testing.assert_array_equal(row[mask[v, b]], data[v, b][mask[v, b]][::-1])
