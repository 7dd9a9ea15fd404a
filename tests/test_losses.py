"""Masked losses and metrics: equal to optax / Keras on real tokens, blind to padding."""

import warnings

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
from helpers import LAYOUTS, poison_padding, random_mask

import masking_jax as mj


def _batch(seed, layout, classes=4):
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, 5, 6, layout)
    logits = rng.normal(size=(5, 6, classes)).astype(np.float32)
    labels = rng.integers(0, classes, size=(5, 6)).astype(np.int32)
    return logits, labels, mask


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cross_entropy_equals_optax_on_real_tokens(layout):
    logits, labels, mask = _batch(0, layout)
    per_token = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    real = per_token[mask]
    np.testing.assert_allclose(
        mj.masked_cross_entropy(logits, labels, mask), real.mean() if real.size else 0.0,
        rtol=1e-5)
    np.testing.assert_allclose(mj.masked_cross_entropy(logits, labels, mask, "sum"), real.sum(),
                               rtol=1e-5)
    np.testing.assert_allclose(mj.masked_cross_entropy(logits, labels, mask, "none"),
                               np.where(mask, per_token, 0), rtol=1e-5)
    rows = [per_token[b][mask[b]].mean() for b in range(5) if mask[b].any()]
    np.testing.assert_allclose(mj.masked_cross_entropy(logits, labels, mask, "sequence_mean"),
                               np.mean(rows), rtol=1e-5)


def test_cross_entropy_uses_the_keras_weighting():
    """Keras with a mask: sum of the loss over real tokens / number of real tokens."""
    logits, labels, mask = _batch(1, "gappy")
    keras_sum = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(
        labels, logits, sample_weight=mask.astype(np.float32))
    np.testing.assert_allclose(mj.masked_cross_entropy(logits, labels, mask),
                               float(keras_sum) / mask.sum(), rtol=1e-5)


def test_one_hot_labels_equal_integer_labels():
    logits, labels, mask = _batch(2, "pre")
    one_hot = jax.nn.one_hot(labels, logits.shape[-1])
    np.testing.assert_allclose(mj.masked_cross_entropy(logits, one_hot, mask),
                               mj.masked_cross_entropy(logits, labels, mask), rtol=1e-6)


def test_integer_logits_equal_their_float_values_without_a_cast_warning():
    """`jax.nn.log_softmax` casts its -inf start to the input's dtype: our loss must hand it
    floats (an integer cast once warned "invalid value encountered in cast")."""
    logits, labels, mask = _batch(2, "pre")
    scores = np.round(logits * 3).astype(np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = mj.masked_cross_entropy(scores, labels, mask)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, mj.masked_cross_entropy(scores.astype(np.float32), labels,
                                                            mask), rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("reduction", ["token_mean", "sequence_mean", "sum"])
def test_cross_entropy_ignores_poisoned_padding_in_value_and_gradient(reduction):
    logits, labels, mask = _batch(3, "empty_rows")
    garbage_labels = np.where(mask, labels, -7)  # out-of-range ids at padding
    poisoned = poison_padding(logits, mask)

    def loss(lg, lb):
        return mj.masked_cross_entropy(lg, lb, mask, reduction)

    value, grad = jax.value_and_grad(loss)(logits, labels)
    value_p, grad_p = jax.value_and_grad(loss)(poisoned, garbage_labels)
    np.testing.assert_allclose(value_p, value, rtol=1e-6)
    np.testing.assert_allclose(grad_p, grad, rtol=1e-6, atol=1e-8)
    assert np.all(np.asarray(grad_p)[~mask] == 0)


def test_mse_equals_keras_weighting_and_ignores_nan_targets():
    rng = np.random.default_rng(4)
    mask = random_mask(rng, 4, 5, "gappy")
    predictions = rng.normal(size=(4, 5, 3)).astype(np.float32)
    targets = rng.normal(size=(4, 5, 3)).astype(np.float32)
    keras_sum = keras.losses.MeanSquaredError(reduction="sum")(
        targets, predictions, sample_weight=mask.astype(np.float32))
    expected = float(keras_sum) / mask.sum()
    np.testing.assert_allclose(mj.masked_mse(predictions, targets, mask), expected, rtol=1e-5)
    poisoned = poison_padding(targets, mask)
    grad = jax.grad(mj.masked_mse)(predictions, poisoned, mask)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~mask] == 0)


def test_accuracy_counts_real_tokens_only():
    logits, labels, mask = _batch(5, "post")
    hits = (logits.argmax(-1) == labels)[mask]
    np.testing.assert_allclose(mj.masked_accuracy(logits, labels, mask), hits.mean(), rtol=1e-6)
    one_hot = jax.nn.one_hot(labels, logits.shape[-1])
    np.testing.assert_allclose(mj.masked_accuracy(logits, one_hot, mask), hits.mean(), rtol=1e-6)


def test_fully_masked_batch_gives_zero_and_finite_gradients():
    logits, labels, _ = _batch(6, "post")
    mask = np.zeros(labels.shape, bool)
    for reduction in ("token_mean", "sequence_mean", "sum"):
        value, grad = jax.value_and_grad(mj.masked_cross_entropy)(
            poison_padding(logits, mask), labels, mask, reduction)
        assert float(value) == 0.0
        assert np.all(np.asarray(grad) == 0)
    assert float(mj.masked_accuracy(logits, labels, mask)) == 0.0


def test_bad_labels_and_reduction_raise():
    logits, labels, mask = _batch(7, "post")
    with pytest.raises(ValueError, match="integer `labels` must have the shape"):
        mj.masked_cross_entropy(logits, labels[:, :-1], mask)
    with pytest.raises(ValueError, match="float `labels`"):
        mj.masked_cross_entropy(logits, labels.astype(np.float32), mask)
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        mj.masked_cross_entropy(logits, labels, mask, "mean")
    with pytest.raises(ValueError, match="`predictions` and `targets`"):
        mj.masked_mse(logits, logits[..., 0], mask)


def test_masked_loss_trains_with_optax():
    """A masked mean-pooling model learns which tokens occur, padding is never counted."""
    rng = np.random.default_rng(8)
    sequences = [rng.integers(1, 6, size=rng.integers(2, 9)) for _ in range(64)]
    targets = np.array([float((s == 3).mean()) for s in sequences], np.float32)
    batch, _ = mj.pad_masked(sequences, bucket=4, value=3)  # pad with a misleading id
    ids, mask = jnp.asarray(batch.data), jnp.asarray(batch.mask)

    def loss_fn(params):
        per_step = params["embedding"][ids][..., 0]                  # (B, T)
        pooled = mj.masked_mean(per_step, mask)                      # (B,)
        return mj.masked_mse(pooled[:, None], targets[:, None], jnp.ones((64, 1), bool))

    params = {"embedding": jnp.zeros((6, 1))}
    optimizer = optax.adam(0.1)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    first = float(loss_fn(params))
    for _ in range(200):
        params, state, loss = step(params, state)
    assert float(loss) < 0.01 * first
