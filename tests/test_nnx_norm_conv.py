"""masking_jax.nnx.BatchNorm and Conv1D: against Keras 3 with copied weights, against
slow references on the real steps, NaN in padding, empty batches, jit / vmap / grad."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from flax import nnx
from helpers import (
    LAYOUT_MASKS,
    assert_vmap_matches_one_compile,
    jit_apply,
    jit_call_layer,
    keras_mode,
    poison_padding,
)

import masking_jax as mj
from masking_jax import nnx as mnx

B, T, D, H = 3, 6, 4, 5
# gappy, pre-padded, and an empty row
MASK = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]], bool)
POST = LAYOUT_MASKS["post"]


def _x(seed, shape=(B, T, D)):
    return (np.random.default_rng(seed).normal(size=shape) * 2 + 1).astype(np.float32)


# --------------------------------------------------------------------------- BatchNorm


def _stats(layer):
    return np.asarray(layer.moving_mean[...]), np.asarray(layer.moving_variance[...])


def _keras_bn(seed):
    keras.utils.set_random_seed(seed)
    k_bn = keras.layers.BatchNormalization(momentum=0.9)
    with keras_mode:
        k_bn.build((None, T, D))
    rng = np.random.default_rng(seed)
    for w in k_bn.weights:  # non-trivial gamma, beta and moving statistics
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
    return k_bn


@pytest.mark.parametrize("masked", [True, False])
def test_batch_norm_matches_keras_in_training_and_evaluation(masked):
    mask = MASK if masked else None
    x = _x(0)
    k_bn = _keras_bn(1)
    layer = mnx.load_keras_weights(mnx.BatchNorm(D, momentum=0.9, rngs=nnx.Rngs(0)), k_bn)
    real = MASK if masked else np.ones((B, T), bool)
    with keras_mode:
        expected = np.asarray(k_bn(x, training=True, mask=mask))
    got = np.asarray(jit_call_layer(layer, poison_padding(x, real), mask if masked else None))
    np.testing.assert_allclose(got[real], expected[real], rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(_stats(layer), (k_bn.moving_mean, k_bn.moving_variance), strict=True):
        np.testing.assert_allclose(ours, np.asarray(theirs.value), rtol=1e-5, atol=1e-6)
    with keras_mode:
        expected = np.asarray(k_bn(x, training=False, mask=mask))
    layer.eval()
    got = np.asarray(jit_call_layer(layer, x, mask))
    np.testing.assert_allclose(got[real], expected[real], rtol=1e-5, atol=1e-5)


def _batch_norm_reference(x, gamma, beta, eps=1e-3):
    """The unmasked batch norm of a (N, D) batch of real steps."""
    mean, var = jnp.mean(x, 0, keepdims=True), jnp.var(x, 0, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * gamma[None] + beta[None]


def test_batch_norm_equals_the_unmasked_one_on_the_real_steps_with_gradients():
    x, weights = _x(2), _x(3, (B, T, D))
    layer = mnx.BatchNorm(D, rngs=nnx.Rngs(0))
    layer.gamma[...] = jnp.linspace(0.5, 2.0, D)

    def loss(layer, x):
        return jnp.sum(jnp.tanh(layer(x, mask=MASK)) * weights)

    value, (g_layer, g_x) = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))(
        layer, poison_padding(x, MASK)
    )

    def reference(gamma, beta, real):
        return jnp.sum(jnp.tanh(_batch_norm_reference(real, gamma, beta)) * weights[MASK])

    ref_value, ref_grads = jax.value_and_grad(reference, argnums=(0, 1, 2))(
        layer.gamma[...], layer.beta[...], x[MASK]
    )
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(g_layer.gamma[...], ref_grads[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g_layer.beta[...], ref_grads[1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_x)[MASK], ref_grads[2], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(g_x)[~MASK], 0.0)
    y = np.asarray(jit_call_layer(layer, poison_padding(x, MASK), MASK))
    np.testing.assert_array_equal(y[~MASK], 0.0)  # padded steps come out as zeros


def test_batch_norm_ignores_the_amount_of_padding_unlike_an_unmasked_one():
    """One batch post-padded to T and over-padded to 2T: same outputs and statistics."""
    x = _x(4)
    long_x = np.concatenate([x, np.zeros_like(x)], axis=1)
    long_mask = np.concatenate([POST, np.zeros_like(POST)], axis=1)
    ours, plain = mnx.BatchNorm(D, rngs=nnx.Rngs(0)), nnx.BatchNorm(D, rngs=nnx.Rngs(0))
    short = np.asarray(jit_call_layer(ours, x, POST))
    stats = _stats(ours)
    ours = mnx.BatchNorm(D, rngs=nnx.Rngs(0))
    long = np.asarray(jit_call_layer(ours, long_x, long_mask))
    np.testing.assert_allclose(long[:, :T][POST], short[POST], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_stats(ours), stats, rtol=1e-6)
    shifted = np.asarray(jit_apply(plain, long_x))[:, :T]
    assert not np.allclose(shifted[POST], np.asarray(jit_apply(plain, x))[POST], atol=1e-2)


def test_batch_norm_with_no_real_step_keeps_its_statistics_and_stays_finite():
    layer = mnx.BatchNorm(D, rngs=nnx.Rngs(0))
    jit_call_layer(layer, _x(5), MASK)
    before = _stats(layer)
    empty = np.zeros((B, T), bool)
    y = jit_call_layer(layer, poison_padding(_x(5), empty), empty)
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(_stats(layer), before)
    grads = nnx.jit(nnx.grad(lambda m, x, k: jnp.sum(m(x, mask=k))))(layer, _x(5), empty)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_batch_norm_modes_masked_input_and_sequential():
    x = _x(6)
    layer = mnx.BatchNorm(D, use_running_average=True, rngs=nnx.Rngs(0))
    out = jit_apply(layer, mj.Masked(x, MASK))
    assert isinstance(out, mj.Masked)
    np.testing.assert_array_equal(out.mask, MASK)
    # moving statistics at their start (0, 1): the identity up to epsilon on real steps
    np.testing.assert_allclose(out.data[MASK], x[MASK] / np.sqrt(1 + 1e-3), rtol=1e-6)
    before = _stats(layer)
    trained = nnx.jit(lambda m, x, k: m(x, mask=k, use_running_average=False))(layer, x, MASK)
    assert not np.allclose(_stats(layer)[0], before[0])  # one call in training mode
    np.testing.assert_allclose(
        np.asarray(trained)[MASK].mean(0), np.zeros(D), atol=1e-5
    )  # normalised with the batch statistics of the real steps
    model = mnx.Sequential(mnx.Conv1D(D, H, 2, padding="causal", rngs=nnx.Rngs(0)),
                           mnx.BatchNorm(H, rngs=nnx.Rngs(0)))  # fmt: skip
    model.eval()
    assert model.layers[1].use_running_average
    model.train()
    assert not model.layers[1].use_running_average
    out = jit_apply(model, mj.Masked(poison_padding(x, MASK), MASK))
    np.testing.assert_array_equal(out.mask, MASK)
    assert np.isfinite(out.data).all()


# --------------------------------------------------------------------------- Conv1D

CONV_CASES = [
    pytest.param(3, 1, "valid", 1, id="valid"),
    pytest.param(2, 2, "same", 1, id="same-strides2"),
    pytest.param(2, 1, "causal", 2, id="causal-dilation2"),
    pytest.param(3, 2, "causal", 1, id="causal-strides2"),
    pytest.param(2, 1, "same", 1, id="same"),
]


def _keras_conv(kernel_size, strides, padding, dilation, seed):
    keras.utils.set_random_seed(seed)
    k_conv = keras.layers.Conv1D(
        H, kernel_size, strides=strides, padding=padding, dilation_rate=dilation
    )
    with keras_mode:
        k_conv.build((None, T, D))
    k_conv.bias.assign(np.linspace(-1, 1, H).astype(np.float32))
    return k_conv


@pytest.mark.parametrize("kernel_size, strides, padding, dilation", CONV_CASES)
def test_conv1d_matches_keras_on_zero_padded_input(kernel_size, strides, padding, dilation):
    x = _x(7)
    k_conv = _keras_conv(kernel_size, strides, padding, dilation, 2)
    layer = mnx.Conv1D(D, H, kernel_size, strides=strides, padding=padding,
                       dilation=dilation, rngs=nnx.Rngs(0))  # fmt: skip
    mnx.load_keras_weights(layer, k_conv)
    with keras_mode:
        expected = np.asarray(k_conv(np.where(MASK[..., None], x, 0)))
        unmasked = np.asarray(k_conv(x))
    np.testing.assert_allclose(jit_call_layer(layer, poison_padding(x, MASK), MASK), expected,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(jit_apply(layer, x), unmasked, rtol=1e-5, atol=1e-5)
    out_mask = layer.compute_mask(x, MASK)
    np.testing.assert_array_equal(
        out_mask, mj.window_mask(MASK, kernel_size, strides, padding, dilation)
    )
    assert out_mask.shape == expected.shape[:2]
    # on post-padded rows the real outputs are those of the unpadded sequences
    # ("same" only with strides 1: its padding depends on the padded length)
    if padding == "same" and strides > 1:
        return
    got = jit_apply(layer, mj.Masked(poison_padding(x, POST), POST))
    kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    for b, n in enumerate(POST.sum(1)):
        real = np.asarray(got.data[b])[np.asarray(got.mask[b])]
        alone = _conv_loop(x[b, :n], kernel, bias, strides, padding, dilation)
        np.testing.assert_allclose(real, alone.reshape(real.shape), rtol=1e-5, atol=1e-5)


def _conv_loop(x, kernel, bias, strides, padding, dilation):
    """Slow reference: Keras Conv1D on one unpadded (n, D) sequence, as plain loops."""
    span = dilation * (len(kernel) - 1)
    left = {"valid": 0, "causal": span, "same": span // 2}[padding]  # "same" for strides 1
    right = span - left if padding == "same" else 0
    x = np.concatenate([np.zeros((left, x.shape[1])), x, np.zeros((right, x.shape[1]))])
    starts = range(0, len(x) - span, strides)
    return np.array([
        sum(x[t + j * dilation] @ kernel[j] for j in range(len(kernel))) + bias for t in starts
    ])  # fmt: skip


def test_conv1d_nan_padding_gradients_jit_vmap():
    layer = mnx.Conv1D(D, H, 3, padding="same", rngs=nnx.Rngs(0))
    x = _x(8)

    def loss(layer, x, mask):
        y = mnx.call_with_mask(layer, x, mask)
        return mj.masked_mean(jnp.tanh(y[0]), y[1], axis=(0, 1)).sum()

    grad = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))
    clean, poisoned = grad(layer, x, MASK), grad(layer, poison_padding(x, MASK), MASK)
    for leaf in jax.tree.leaves(poisoned):
        assert np.isfinite(leaf).all()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 poisoned, clean)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(poisoned[1][1])[~MASK], 0.0)
    masks = np.stack([MASK, POST])
    xs = np.stack([poison_padding(x, MASK), poison_padding(_x(9), POST)])
    assert_vmap_matches_one_compile(
        layer, xs, masks, lambda layer, x, mask: layer(mj.Masked(x, mask)).data
    )


def test_conv_batch_norm_pooling_sequential_matches_keras():
    """Keras: Masking -> Conv1D (drops the mask) -> BatchNormalization -> pooling; ours keeps
    the mask, so compare on full rows, where both see every step."""
    keras.utils.set_random_seed(4)
    with keras_mode:
        k_model = keras.Sequential([
            keras.Input((T, D)),
            keras.layers.Conv1D(H, 2, padding="causal"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2),
        ])  # fmt: skip
    rngs = nnx.Rngs(0)
    model = mnx.Sequential(
        mnx.Conv1D(D, H, 2, padding="causal", rngs=rngs),
        mnx.BatchNorm(H, rngs=rngs),
        mnx.GlobalAveragePooling1D(),
        nnx.Linear(H, 2, rngs=rngs),
    )
    mnx.load_keras_weights(model, k_model)
    model.eval()
    x = _x(10)
    with keras_mode:
        expected = np.asarray(k_model(x, training=False))
    out = jit_apply(model, mj.Masked(x, np.ones((B, T), bool)))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert not isinstance(out, mj.Masked)  # pooling ended the mask: a plain array
    assert np.isfinite(jit_apply(model, mj.Masked(poison_padding(x, MASK), MASK))).all()


def test_bad_arguments():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="`padding` must be one of"):
        mnx.Conv1D(D, H, 2, padding="full", rngs=rngs)
    with pytest.raises(ValueError, match="`kernel_size` must be >= 1"):
        mnx.Conv1D(D, H, 0, rngs=rngs)
    with pytest.raises(TypeError, match="`strides` must be an int"):
        mnx.Conv1D(D, H, 2, strides=1.5, rngs=rngs)
    conv = mnx.Conv1D(D, H, 2, rngs=rngs)
    with pytest.raises(ValueError, match="`x` must have 4 features"):
        conv(_x(0, (B, T, D + 1)))
    with pytest.raises(ValueError, match="`x` must be 3-D"):
        conv(_x(0)[0])
    with pytest.raises(ValueError, match="does not match"):
        conv(_x(0), mask=MASK[:, :3])
    with pytest.raises(ValueError, match="`momentum`"):
        mnx.BatchNorm(D, momentum=1.5, rngs=rngs)
    with pytest.raises(ValueError, match="`epsilon`"):
        mnx.BatchNorm(D, epsilon=0.0, rngs=rngs)
    bn = mnx.BatchNorm(D, rngs=rngs)
    with pytest.raises(ValueError, match=r"\(B, \.\.\., 4\)"):
        bn(_x(0, (B, T, D + 1)))
    with pytest.raises(TypeError, match="carries its own mask"):
        bn(mj.Masked(_x(0), MASK), mask=MASK)
    k_bn = keras.layers.BatchNormalization(center=False)
    with keras_mode:
        k_bn.build((None, T, D))
    with pytest.raises(ValueError, match="center"):
        mnx.load_keras_weights(bn, k_bn)
    with pytest.raises(TypeError, match=r"`module` must be a Conv1D .*; got BatchNorm"):
        mnx.load_keras_weights(bn, _keras_conv(2, 1, "valid", 1, 0))
