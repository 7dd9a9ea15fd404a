"""Mask consumers checked against numpy on the real entries only (x[mask])."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from helpers import LAYOUTS, poison_padding, random_mask
from jax.test_util import check_grads

import masking_jax as mj

REDUCERS = {
    "sum": (mj.masked_sum, np.sum, 0.0),
    "mean": (mj.masked_mean, np.mean, 0.0),
    "max": (mj.masked_max, np.max, 0.0),
    "min": (mj.masked_min, np.min, 0.0),
    "var": (mj.masked_var, np.var, 0.0),
    "std": (mj.masked_std, np.std, 0.0),
}


def _reference_over_time(np_fn, x, mask, empty):
    """Reduces each row over its real steps only; `empty` for rows with none."""
    rows = [np_fn(xb[mb], axis=0) if mb.any() else np.full(x.shape[2:], empty)
            for xb, mb in zip(x, mask, strict=True)]
    return np.stack(rows)


@pytest.mark.parametrize("name", REDUCERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_reductions_equal_numpy_on_real_steps(name, layout):
    fn, np_fn, empty = REDUCERS[name]
    rng = np.random.default_rng(0)
    mask = random_mask(rng, 5, 7, layout)
    x = poison_padding(rng.normal(size=(5, 7, 3)), mask)
    got = jax.jit(fn)(x, mask)
    np.testing.assert_allclose(got, _reference_over_time(np_fn, x, mask, empty), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("name", REDUCERS)
def test_reductions_over_several_axes_and_keepdims(name):
    fn, np_fn, _ = REDUCERS[name]
    rng = np.random.default_rng(1)
    mask = random_mask(rng, 4, 6, "gappy")
    x = poison_padding(rng.normal(size=(4, 6, 2)), mask, np.inf)
    got = fn(x, mask, axis=(0, 1), keepdims=True)
    assert got.shape == (1, 1, 2)
    np.testing.assert_allclose(got[0, 0], np_fn(x[mask], axis=0), rtol=1e-5)


def test_var_with_ddof_and_empty_rows_is_zero():
    x = np.array([[1.0, 3.0, np.nan], [5.0, np.nan, np.nan], [np.nan] * 3], np.float32)
    mask = ~np.isnan(x)
    np.testing.assert_allclose(mj.masked_var(x, mask, ddof=1), [2.0, 0.0, 0.0])


def test_max_min_on_integers_and_custom_fill():
    x = np.array([[3, -7, 100], [1, 2, 3]], np.int32)
    mask = np.array([[True, True, False], [False, False, False]])
    np.testing.assert_array_equal(mj.masked_max(x, mask, fill_value=-1), [3, -1])
    np.testing.assert_array_equal(mj.masked_min(x, mask, fill_value=9), [-7, 9])
    assert mj.masked_max(x, mask).dtype == jnp.int32


@pytest.mark.parametrize("name", REDUCERS)
def test_gradients_ignore_poisoned_padding(name):
    """Gradients with NaN/inf in the padding equal those with zeros there, and vanish there."""
    fn, _, _ = REDUCERS[name]
    rng = np.random.default_rng(2)
    mask = random_mask(rng, 4, 6, "empty_rows")
    clean = poison_padding(rng.normal(size=(4, 6, 3)), mask, 0.0)

    def loss(x):
        return jnp.sum(jnp.sin(fn(x, mask)))

    reference = jax.grad(loss)(clean)
    for poison in (np.nan, np.inf, -np.inf):
        value, grad = jax.value_and_grad(loss)(poison_padding(clean, mask, poison))
        assert np.isfinite(value)
        np.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-7)
        assert np.all(np.asarray(grad)[~mask] == 0)


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std"])
def test_check_grads_orders_1_and_2(name):
    fn, _, _ = REDUCERS[name]
    rng = np.random.default_rng(3)
    mask = np.array([[True, True, False, True], [False, True, True, False]])
    x = jnp.asarray(rng.normal(size=(2, 4, 2)), jnp.float32)
    check_grads(lambda x: fn(x, mask), (x,), order=2, modes=("rev",), atol=1e-2, rtol=1e-2)


def _softmax_reference(x, mask):
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        if mask[b].any():
            e = np.exp(x[b][mask[b]] - x[b][mask[b]].max())
            out[b][mask[b]] = e / e.sum()
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_softmax_equals_softmax_over_real_steps(layout):
    rng = np.random.default_rng(4)
    mask = random_mask(rng, 5, 6, layout)
    x = poison_padding(rng.normal(size=(5, 6)) * 3, mask)
    got = jax.jit(mj.masked_softmax)(x, mask)
    np.testing.assert_allclose(got, _softmax_reference(x, mask), rtol=1e-5, atol=1e-7)


def test_temporal_softmax_over_time_axis_of_scores_with_feature_axis():
    """The guide's TemporalSoftmax: (B, T, 1) scores, (B, T) mask, softmax over time."""
    rng = np.random.default_rng(5)
    mask = random_mask(rng, 3, 5, "pre")
    x = poison_padding(rng.normal(size=(3, 5, 1)), mask)
    got = mj.masked_softmax(x, mask, axis=1)
    np.testing.assert_allclose(got[..., 0], _softmax_reference(x[..., 0], mask), rtol=1e-5)


def test_softmax_broadcasts_a_key_padding_mask_over_heads_and_queries():
    rng = np.random.default_rng(6)
    key_mask = random_mask(rng, 2, 5, "gappy")
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    got = mj.masked_softmax(logits, key_mask[:, None, None, :])
    expected = _softmax_reference(logits.reshape(-1, 5),
                                  np.repeat(key_mask, 12, axis=0)).reshape(logits.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_softmax_gradients_finite_with_nan_padding_and_empty_rows():
    rng = np.random.default_rng(7)
    mask = random_mask(rng, 4, 5, "empty_rows")
    clean = poison_padding(rng.normal(size=(4, 5)), mask, 0.0)
    weights = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)

    def loss(x):
        return jnp.sum(mj.masked_softmax(x, mask) * weights)

    reference = jax.grad(loss)(clean)
    grad = jax.grad(loss)(poison_padding(clean, mask))
    np.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(grad)[~mask] == 0)
    check_grads(loss, (jnp.asarray(clean),), order=2, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_mean_over_time_matches_keras_global_average_pooling():
    rng = np.random.default_rng(8)
    mask = random_mask(rng, 4, 6, "post")
    mask[:, 0] = True  # Keras divides by zero on empty rows; we return 0 there
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    expected = keras.layers.GlobalAveragePooling1D()(x, mask=mask)
    np.testing.assert_allclose(mj.masked_mean(x, mask), expected, rtol=1e-5, atol=1e-6)


def test_vmap_over_an_extra_leading_axis():
    rng = np.random.default_rng(9)
    mask = np.stack([random_mask(rng, 3, 4, "gappy") for _ in range(2)])
    x = poison_padding(rng.normal(size=(2, 3, 4, 2)), mask)
    batched = jax.vmap(mj.masked_mean)(x, mask)
    for i in range(2):
        np.testing.assert_allclose(batched[i], mj.masked_mean(x[i], mask[i]), rtol=1e-6)


def test_new_mask_values_do_not_recompile():
    traces = []

    @jax.jit
    def pooled(x, mask):
        traces.append(None)
        return mj.masked_mean(x, mask) + mj.masked_max(x, mask) + mj.masked_softmax(
            x, mask, axis=1).sum(1)

    rng = np.random.default_rng(10)
    x = rng.normal(size=(3, 5, 2)).astype(np.float32)
    for layout in LAYOUTS:
        pooled(x, random_mask(rng, 3, 5, layout)).block_until_ready()
    assert len(traces) == 1


def test_bfloat16_inputs():
    mask = np.array([[True, True, False]])
    x = jnp.asarray([[1.0, 2.0, np.nan]], jnp.bfloat16)
    assert mj.masked_mean(x, mask).dtype == jnp.bfloat16
    assert float(mj.masked_mean(x, mask)[0]) == 1.5
    assert float(mj.masked_max(x, mask)[0]) == 2.0
