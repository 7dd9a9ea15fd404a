"""masking_jax.nnx.MultiHeadAttention: against Keras 3 with copied weights, against a slow
loop over the real keys, NaN in padding, empty key rows, dropout, jit / vmap / grad."""

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

B, T, S, D, DKV, N, QKV, OUT, V = 3, 6, 4, 4, 3, 2, 6, 5, 9
MASKS = LAYOUT_MASKS  # (B, T) post-padded, pre-padded, gappy
# key rows for cross-attention: full, gappy, and all padding
KV_MASK = np.array([[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]], bool)


def _x(seed, shape=(B, T, D)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _layer(causal=False, cross=False, dropout_rate=0.0, seed=0):
    return mnx.MultiHeadAttention(
        N, D, QKV, OUT, in_kv_features=DKV if cross else None, causal=causal,
        dropout_rate=dropout_rate, rngs=nnx.Rngs(seed),
    )  # fmt: skip


@nnx.jit
def _cross(layer, q, kv, q_mask, kv_mask):
    return layer(q, kv, mask=q_mask, kv_mask=kv_mask)


def _reference(layer, q, kv, q_mask, kv_mask, causal):
    """Slow loop: each real query step attends, per head, the real keys it may see."""
    a = layer.attention
    w = {n: (np.asarray(getattr(a, n).kernel[...]), np.asarray(getattr(a, n).bias[...]))
         for n in ("query", "key", "value", "out")}  # fmt: skip
    out = np.zeros((q.shape[0], q.shape[1], OUT), np.float32)
    for b in range(q.shape[0]):
        for t in np.flatnonzero(q_mask[b]):
            keys = [s for s in np.flatnonzero(kv_mask[b]) if not causal or s <= t]
            if not keys:
                continue
            heads = []
            for n in range(N):
                qv = q[b, t] @ w["query"][0][:, n] + w["query"][1][n]
                kk = kv[b, keys] @ w["key"][0][:, n] + w["key"][1][n]
                vv = kv[b, keys] @ w["value"][0][:, n] + w["value"][1][n]
                scores = kk @ qv / np.sqrt(QKV // N)
                p = np.exp(scores - scores.max())
                heads.append((p / p.sum()) @ vv)
            out[b, t] = np.einsum("nh,nho->o", np.stack(heads), w["out"][0]) + w["out"][1]
    return out


def _keras_attention(seed):
    keras.utils.set_random_seed(seed)
    return keras.layers.MultiHeadAttention(N, key_dim=QKV // N, output_shape=OUT)


@pytest.mark.parametrize(
    "layout, causal", [("gappy", False), ("pre", True), ("post", True)]
)
def test_self_attention_matches_keras_and_the_slow_loop(layout, causal):
    mask = MASKS[layout]
    x = _x(1)
    k_layer = _keras_attention(1)
    with keras_mode:
        expected = np.asarray(
            k_layer(x, x, query_mask=mask, value_mask=mask, use_causal_mask=causal)
        )
    layer = mnx.load_keras_weights(_layer(causal), k_layer)
    got = np.asarray(jit_call_layer(layer, poison_padding(x, mask), mask))
    np.testing.assert_allclose(got[mask], expected[mask], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, _reference(layer, x, x, mask, mask, causal), atol=1e-5)
    np.testing.assert_array_equal(got[~mask], 0.0)  # padded queries attend nothing: zeros


def test_cross_attention_matches_keras_and_empty_key_rows_give_zeros():
    q_mask = MASKS["gappy"]
    q, kv = _x(2), _x(3, (B, S, DKV))
    k_layer = _keras_attention(2)
    with keras_mode:
        expected = np.asarray(k_layer(q, kv, query_mask=q_mask, value_mask=KV_MASK))
    layer = mnx.load_keras_weights(_layer(cross=True), k_layer)
    got = np.asarray(
        _cross(layer, poison_padding(q, q_mask), poison_padding(kv, KV_MASK), q_mask, KV_MASK)
    )
    attends = q_mask & KV_MASK.any(1)[:, None]  # the last row has no real key
    np.testing.assert_allclose(got[attends], expected[attends], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, _reference(layer, q, kv, q_mask, KV_MASK, False), atol=1e-5)
    np.testing.assert_array_equal(got[~attends], 0.0)
    # a missing mask counts as all real (Keras without that mask)
    with keras_mode:
        no_q_mask = np.asarray(k_layer(q, kv, value_mask=KV_MASK))
        no_mask = np.asarray(k_layer(q, kv))
    got = np.asarray(_cross(layer, q, poison_padding(kv, KV_MASK), np.ones((B, T), bool), KV_MASK))
    np.testing.assert_allclose(got[:2], no_q_mask[:2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(q, kv), no_mask, rtol=1e-5, atol=1e-5)


def _loss(layer, q, kv, q_mask, kv_mask):
    return jnp.sum(jnp.tanh(layer(q, kv, mask=q_mask, kv_mask=kv_mask)))


_value_and_grad = nnx.jit(nnx.value_and_grad(_loss, argnums=(0, 1, 2)))


def test_nan_padding_and_empty_rows_never_reach_values_or_gradients():
    q_mask = MASKS["gappy"]
    layer = _layer(cross=True)
    q, kv = _x(4), _x(5, (B, S, DKV))
    clean = _value_and_grad(layer, q, kv, q_mask, KV_MASK)
    poisoned = _value_and_grad(
        layer, poison_padding(q, q_mask), poison_padding(kv, KV_MASK, np.inf), q_mask, KV_MASK
    )
    value, (_, g_q, g_kv) = poisoned
    for leaf in jax.tree.leaves(poisoned):
        assert np.isfinite(leaf).all()
    np.testing.assert_allclose(value, clean[0], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 poisoned[1], clean[1])  # fmt: skip
    np.testing.assert_array_equal(np.asarray(g_q)[~q_mask], 0.0)
    np.testing.assert_array_equal(np.asarray(g_kv)[~KV_MASK], 0.0)
    # every query and every key padding: zeros out, zero gradients for the inputs
    empty = np.zeros((B, T), bool)
    value, (_, g_q, _) = _value_and_grad(layer, q, kv, empty, KV_MASK)
    assert value == 0.0 and not np.asarray(g_q).any()


def test_sequential_propagates_the_query_mask_and_is_padding_invariant():
    rngs = nnx.Rngs(0)
    model = mnx.Sequential(
        mnx.Embedding(V, D, mask_zero=True, rngs=rngs),
        _layer(),
        mnx.GlobalAveragePooling1D(),
    )
    ids = np.array([[3, 5, 1, 2, 0, 0], [0, 0, 0, 4, 4, 8], [0, 0, 0, 0, 0, 0]], np.int32)
    post = np.array([[3, 5, 1, 2, 0, 0], [4, 4, 8, 0, 0, 0], [0, 0, 0, 0, 0, 0]], np.int32)
    np.testing.assert_allclose(jit_apply(model, ids), jit_apply(model, post), rtol=1e-6,
                               atol=1e-7)  # fmt: skip
    np.testing.assert_array_equal(jit_apply(model, ids)[2], 0.0)  # an empty sequence
    out = model.layers[1](mj.Masked(_x(6), MASKS["pre"]))
    assert isinstance(out, mj.Masked)
    np.testing.assert_array_equal(out.mask, MASKS["pre"])
    np.testing.assert_array_equal(model.layers[1].compute_mask(_x(6), MASKS["pre"]), MASKS["pre"])
    _, mask = mnx.call_with_mask(model.layers[1], _x(6), MASKS["gappy"])
    np.testing.assert_array_equal(mask, MASKS["gappy"])


def test_vmap_and_no_retrace_for_new_masks():
    masks = np.stack([MASKS["gappy"], MASKS["pre"]])
    xs = np.stack([poison_padding(_x(7), masks[0]), poison_padding(_x(8), masks[1])])
    assert_vmap_matches_one_compile(
        _layer(causal=True), xs, masks, lambda layer, x, mask: layer(x, mask=mask)
    )


def test_dropout_in_training_only():
    mask = MASKS["gappy"]
    x = _x(9)
    layer = _layer(dropout_rate=0.5, seed=3)
    expected = _reference(layer, x, x, mask, mask, False)  # no dropout
    first = jit_call_layer(layer, poison_padding(x, mask), mask)  # training mode by default
    second = jit_call_layer(layer, poison_padding(x, mask), mask)
    assert np.isfinite(first).all() and np.isfinite(second).all()
    assert not np.allclose(first[mask], expected[mask], atol=1e-3)
    assert not np.allclose(first[mask], second[mask], atol=1e-3)  # a fresh draw per call
    np.testing.assert_array_equal(np.asarray(first)[~mask], 0.0)
    model = mnx.Sequential(layer)
    model.eval()
    np.testing.assert_allclose(jit_call_layer(layer, x, mask), expected, rtol=1e-5, atol=1e-5)
    model.train()
    assert not np.allclose(jit_call_layer(layer, x, mask)[mask], expected[mask], atol=1e-3)


def test_bad_arguments():
    x, mask = _x(0), MASKS["post"]
    with pytest.raises(TypeError, match="`causal` must be a Python bool"):
        _layer(causal=jnp.array(True))
    with pytest.raises(TypeError, match="`causal` must be a Python bool"):
        jax.jit(lambda c: _layer(causal=c))(True)
    with pytest.raises(ValueError, match="`dropout_rate`"):
        _layer(dropout_rate=1.0)
    layer = _layer()
    with pytest.raises(TypeError, match="`kv_mask` needs `kv`"):
        layer(x, mask=mask, kv_mask=mask)
    with pytest.raises(ValueError, match="`kv` must have 4 features"):
        layer(x, _x(0, (B, S, DKV)))
    with pytest.raises(ValueError, match="`x` must be 3-D"):
        layer(x[0], mask=mask[0])
    with pytest.raises(TypeError, match="carries its own mask"):
        layer(mj.Masked(x, mask), mask=mask)
    with pytest.raises(ValueError, match="does not match"):
        layer(x, mask=mask[:, :4])
    k_layer = keras.layers.MultiHeadAttention(N, key_dim=2)
    with keras_mode:
        k_layer.build(x.shape, x.shape)
    with pytest.raises(ValueError, match="shape"):
        mnx.load_keras_weights(layer, k_layer)
