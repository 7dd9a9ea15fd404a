"""masking_jax.nnx: layers, the mask protocol, Sequential, and NNX transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import poison_padding

import masking_jax as mj
from masking_jax import nnx as mnx

B, T, D, H = 3, 5, 2, 4
MASK = np.array(
    [[True] * 5, [True, True, True, False, False], [False, True, False, True, True]]
)  # post-padded, pre-padded with a hole (gappy), full


def _x(seed=0, shape=(B, T, D)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    "cls, kernel, n_states",
    [(mnx.SimpleRNN, mj.simple_rnn, 1), (mnx.LSTM, mj.lstm, 2), (mnx.GRU, mj.gru, 1)],
)
def test_rnn_layer_calls_kernel(cls, kernel, n_states):
    layer = cls(
        D,
        H,
        return_sequences=True,
        return_state=True,
        reverse=True,
        zero_output_for_mask=True,
        rngs=nnx.Rngs(0),
    )
    params = {k: getattr(layer, k)[...] for k in ("kernel", "recurrent_kernel", "bias")}
    x = poison_padding(_x(), MASK)
    y, *states = layer(x, mask=MASK)
    ref_y, ref_state = kernel(params, x, MASK, reverse=True, zero_output_for_mask=True)
    np.testing.assert_array_equal(y, ref_y)
    ref_states = ref_state if n_states == 2 else (ref_state,)
    assert len(states) == n_states
    for s, r in zip(states, ref_states, strict=True):
        np.testing.assert_array_equal(s, r)
    # return_sequences=False: the output after the last real step, the mask ends
    layer.return_sequences = False
    layer.return_state = False
    np.testing.assert_array_equal(layer(x, mask=MASK), ref_states[0])
    assert layer.compute_mask(x, MASK) is None


def test_rnn_param_names_and_shapes():
    shapes = {
        mnx.SimpleRNN: ((D, H), (H, H), (H,)),
        mnx.LSTM: ((D, 4 * H), (H, 4 * H), (4 * H,)),
        mnx.GRU: ((D, 3 * H), (H, 3 * H), (2, 3 * H)),
    }
    for cls, expected in shapes.items():
        layer = cls(D, H, rngs=nnx.Rngs(0))
        params = nnx.state(layer, nnx.Param)
        assert sorted(params) == ["bias", "kernel", "recurrent_kernel"]
        assert (layer.kernel.shape, layer.recurrent_kernel.shape, layer.bias.shape) == expected
    assert mnx.GRU(D, H, reset_after=False, rngs=nnx.Rngs(0)).bias.shape == (3 * H,)
    assert mnx.LSTM(D, H, use_bias=False, rngs=nnx.Rngs(0)).bias is None
    emb = mnx.Embedding(7, 3, rngs=nnx.Rngs(0))
    assert list(nnx.state(emb, nnx.Param)) == ["embedding"] and emb.embedding.shape == (7, 3)


def test_rnn_initial_state_and_masked_input():
    layer = mnx.LSTM(D, H, return_sequences=True, rngs=nnx.Rngs(0))
    h0 = jnp.ones((B, H))
    out = layer(mj.Masked(_x(), MASK), initial_state=(h0, h0))
    assert isinstance(out, mj.Masked) and out.data.shape == (B, T, H)
    np.testing.assert_array_equal(out.mask, MASK)
    np.testing.assert_array_equal(out.data[2, 0], h0[2])  # no real step yet: initial h


def test_bidirectional_matches_core_kernel():
    fwd = mnx.GRU(D, H, return_sequences=True, rngs=nnx.Rngs(0))
    bi = mnx.Bidirectional(fwd, "ave", rngs=nnx.Rngs(1))
    assert bi.backward_layer.reverse and not bi.forward_layer.reverse
    params = tuple(
        {k: getattr(layer, k)[...] for k in ("kernel", "recurrent_kernel", "bias")}
        for layer in (bi.forward_layer, bi.backward_layer)
    )
    x = poison_padding(_x(), MASK)
    ref, _ = mj.bidirectional(mj.gru, params, x, MASK, merge_mode="ave")
    np.testing.assert_allclose(bi(x, mask=MASK), ref, rtol=1e-6)
    pair = mnx.Bidirectional(fwd, None, backward_layer=bi.backward_layer)(mj.Masked(x, MASK))
    assert isinstance(pair, mj.Masked) and len(pair.data) == 2
    fwd.return_sequences, fwd.return_state = False, True
    y, h_f, h_b = bi(x, mask=MASK)
    np.testing.assert_allclose(y, (h_f + h_b) / 2, rtol=1e-6)
    assert bi.compute_mask(x, MASK) is None


def test_pooling_softmax_masking_embedding():
    x = poison_padding(_x(), MASK)
    np.testing.assert_array_equal(
        mnx.GlobalAveragePooling1D()(x, mask=MASK), mj.masked_mean(x, MASK)
    )
    np.testing.assert_array_equal(mnx.GlobalMaxPooling1D()(x, mask=MASK), mj.masked_max(x, MASK))
    assert mnx.GlobalMaxPooling1D(keepdims=True)(x, mask=MASK).shape == (B, 1, D)
    np.testing.assert_array_equal(
        mnx.TemporalSoftmax()(x, mask=MASK), mj.masked_softmax(x, MASK, axis=1)
    )
    masked = mnx.Masking(-1.0)(np.where(MASK[..., None], _x(), -1.0))
    np.testing.assert_array_equal(masked[~MASK], 0.0)
    emb = mnx.Embedding(6, 3, mask_zero=True, pad_id=5, rngs=nnx.Rngs(0))
    ids = np.where(MASK, 1, 5)
    np.testing.assert_array_equal(emb.compute_mask(ids), MASK)
    np.testing.assert_array_equal(emb(ids)[0, 0], emb.embedding[1])
    extra = np.ones((B, T), bool)
    extra[0, 0] = False
    np.testing.assert_array_equal(emb.compute_mask(ids, extra), MASK & extra)
    embedded = emb(mj.Masked(ids, extra))  # alone, a Masked in gives a Masked out
    np.testing.assert_array_equal(embedded.mask, MASK & extra)
    np.testing.assert_array_equal(embedded.data, emb(ids))


def test_split_and_concat_time_round_trip():
    x = _x()
    model = mnx.Sequential(mnx.TemporalSplit([2]), mnx.TemporalConcat())
    out = model(mj.Masked(x, MASK))
    np.testing.assert_array_equal(out.data, x)
    np.testing.assert_array_equal(out.mask, MASK)
    parts = mnx.TemporalSplit(indices_or_sections=[2])(mj.Masked(x, MASK))
    assert [p.mask.shape for p in parts] == [(B, 2), (B, 3)]
    # an input without a mask counts as all real
    cat = mnx.TemporalConcat()
    assert cat.compute_mask((x, x)) is None
    np.testing.assert_array_equal(
        cat.compute_mask((x, x), (MASK, None)), np.concatenate([MASK, np.ones_like(MASK)], 1)
    )


# --------------------------------------------------------------------------- protocol


class MyLayer(nnx.Module):
    """A custom layer that consumes the mask (takes `mask=`) and pools: the mask ends."""

    def __init__(self, rngs):
        self.rnn = mnx.LSTM(D, H, return_sequences=True, rngs=rngs)
        self.pool = mnx.GlobalAveragePooling1D()

    def __call__(self, x, mask=None):
        return self.pool(self.rnn(x, mask=mask), mask=mask)


class Opaque(nnx.Module):
    def __call__(self, x):
        return x


def test_call_with_mask_protocol():
    x = _x()
    for layer in (
        jax.nn.relu,
        jnp.tanh,
        lambda v: v * 2,
        nnx.Linear(D, 3, rngs=nnx.Rngs(0)),
        nnx.LayerNorm(D, rngs=nnx.Rngs(0)),
        nnx.RMSNorm(D, rngs=nnx.Rngs(0)),
        nnx.Dropout(0.5, deterministic=True),
        mnx.TemporalSoftmax(),
    ):
        assert mnx.call_with_mask(layer, x, MASK)[1] is MASK, layer
    # a module that does not declare its mask behaviour never loses the mask unnoticed
    with pytest.raises(TypeError, match=r"`layer` \(Opaque\) got a mask .*PassMask"):
        mnx.call_with_mask(Opaque(), x, MASK)
    assert mnx.call_with_mask(Opaque(), x)[1] is None  # no mask, nothing to lose
    assert mnx.call_with_mask(mnx.DropMask(Opaque()), x, MASK)[1] is None  # ended on purpose
    y, m = mnx.call_with_mask(mnx.PassMask(Opaque()), x, MASK)
    assert m is MASK
    np.testing.assert_array_equal(y, x)

    def no_mask(v):
        return v

    no_mask.supports_masking = False  # "cannot handle a mask", as in Keras 2
    with pytest.raises(TypeError, match=r"\(no_mask\) got a mask"):
        mnx.call_with_mask(no_mask, x, MASK)
    assert mnx.call_with_mask(mnx.DropMask(no_mask), x, MASK)[1] is None
    y, m = mnx.call_with_mask(MyLayer(nnx.Rngs(0)), x, MASK)
    assert y.shape == (B, H) and m is None
    # claiming to pass the mask on while pooling it away is caught, not propagated
    claims = MyLayer(nnx.Rngs(0))
    claims.supports_masking = True
    with pytest.raises(ValueError, match=r"\(MyLayer\) passes the mask on .* \(3, 4\)"):
        mnx.call_with_mask(claims, x, MASK)


def _ids():
    return np.where(MASK, np.arange(1, T + 1), 0)


def test_sequential_threads_mask():
    rngs = nnx.Rngs(0)
    model = mnx.Sequential(
        mnx.Embedding(T + 1, D, mask_zero=True, rngs=rngs),
        mnx.LSTM(D, H, return_sequences=True, rngs=rngs),
        nnx.Linear(H, H, rngs=rngs),
        jax.nn.relu,
        mnx.GRU(H, H, return_sequences=True, rngs=rngs),
        mnx.GlobalAveragePooling1D(),
    )
    ids = _ids()
    # the same computation by hand, with explicit masks
    emb, rnn1, lin, _, rnn2, pool = model.layers
    h = rnn1(emb(ids), mask=MASK)
    expected = pool(rnn2(jax.nn.relu(lin(h)), mask=MASK), mask=MASK)
    np.testing.assert_allclose(model(ids), expected, rtol=1e-6)
    out = model(mj.Masked(ids, np.ones_like(MASK)))  # pooling ended the mask: an array
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert model.compute_mask(ids) is None
    seq = mnx.Sequential(*list(model.layers)[:5])
    np.testing.assert_array_equal(seq.compute_mask(ids), MASK)
    # a mask-free model on arrays returns arrays
    assert isinstance(mnx.Sequential(jnp.tanh)(_x()), jax.Array)


def test_sequential_masking_layer_and_rnn_without_sequences():
    rngs = nnx.Rngs(0)
    model = mnx.Sequential(mnx.Masking(0.0), mnx.SimpleRNN(D, H, rngs=rngs))
    x = np.where(MASK[..., None], _x(), 0.0)
    _, expected = mj.simple_rnn(
        {k: getattr(model.layers[1], k)[...] for k in ("kernel", "recurrent_kernel", "bias")},
        x,
        MASK,
    )
    h = model(x)
    np.testing.assert_allclose(h, expected, rtol=1e-6)
    assert model.compute_mask(x) is None


# --------------------------------------------------------------------------- transforms


def _model(rngs):
    return mnx.Sequential(
        mnx.GRU(D, H, return_sequences=True, rngs=rngs),
        mnx.TemporalSoftmax(),
        mnx.GlobalMaxPooling1D(),
        nnx.Linear(H, 1, rngs=rngs),
    )


def _loss(model, x, mask):
    return jnp.sum(model(x, mask=mask) ** 2)


def test_nnx_jit_grad_and_split_merge():
    model = _model(nnx.Rngs(0))
    x = poison_padding(_x(), MASK)
    eager = nnx.jit(lambda m, x, k: m(x, mask=k))(model, x, MASK)
    assert np.isfinite(eager).all()
    grads = nnx.jit(nnx.grad(_loss))(model, x, MASK)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.isfinite(g).all() for g in leaves)
    graphdef, state = nnx.split(model)

    @jax.jit
    def pure(state, x, mask):
        return nnx.merge(graphdef, state)(mj.Masked(x, mask))

    out = pure(state, x, MASK)
    assert isinstance(out, jax.Array)  # the pooling ended the mask
    np.testing.assert_allclose(out, eager, rtol=1e-5)


def _repad(x, mask, steps, side, garbage):
    """Rows of (x, mask) moved into a new (B, steps) layout, padded on `side` with garbage."""
    out = np.full((x.shape[0], steps, *x.shape[2:]), garbage, np.float32)
    new_mask = np.zeros((x.shape[0], steps), bool)
    for b in range(x.shape[0]):
        real = x[b][mask[b]]
        n = len(real)
        pos = np.arange(n) if side == "post" else np.arange(steps - n, steps)
        out[b, pos], new_mask[b, pos] = real, True
    return out, new_mask


def test_model_padding_invariance():
    rngs = nnx.Rngs(1)
    model = mnx.Sequential(
        mnx.Bidirectional(mnx.LSTM(D, H, return_sequences=True, rngs=rngs), rngs=rngs),
        mnx.GlobalAveragePooling1D(),
        nnx.Linear(2 * H, 1, rngs=rngs),
    )
    lengths = np.array([5, 3, 1])
    mask = np.arange(T) < lengths[:, None]
    x = _x(2)

    @nnx.jit
    def predict_and_grad(model, x, mask):
        return nnx.value_and_grad(lambda m: jnp.sum(m(x, mask=mask)))(model), model(x, mask=mask)

    (ref_value, ref_grads), ref_pred = predict_and_grad(model, *_repad(x, mask, T, "post", 0.0))
    for steps, side, garbage in [(8, "pre", np.nan), (8, "post", np.inf)]:  # one compile
        (value, grads), pred = predict_and_grad(model, *_repad(x, mask, steps, side, garbage))
        np.testing.assert_allclose(pred, ref_pred, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(value, ref_value, rtol=1e-5)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, ref_grads
        )


def test_new_mask_values_do_not_retrace():
    model = _model(nnx.Rngs(0))
    traces = []

    @nnx.jit
    def predict(model, x, mask):
        traces.append(None)  # runs once per trace
        return model(mj.Masked(x, mask))

    x = _x()
    outs = [predict(model, x, m) for m in (MASK, ~MASK | np.eye(B, T, dtype=bool), MASK[::-1])]
    assert len(traces) == 1
    assert not np.allclose(outs[0], outs[1])  # the new mask did reach the computation


def test_vmap_over_a_leading_axis_of_a_pure_model():
    graphdef, state = nnx.split(_model(nnx.Rngs(0)))

    def pure(state, x, mask):
        return nnx.merge(graphdef, state)(x, mask=mask)

    xs = np.stack([poison_padding(_x(1), MASK), poison_padding(_x(2), MASK[::-1])])
    masks = np.stack([MASK, MASK[::-1]])  # (2, B, T)
    out = jax.jit(jax.vmap(pure, in_axes=(None, 0, 0)))(state, xs, masks)
    jitted = jax.jit(pure)
    expected = np.stack([jitted(state, x, m) for x, m in zip(xs, masks, strict=True)])
    assert jitted._cache_size() == 1  # the second mask value reused the first compile
    assert out.shape == (2, B, 1) and np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_bfloat16_inputs_match_float32():
    rngs = nnx.Rngs(0)
    lstm = mnx.LSTM(D, H, return_sequences=True, return_state=True, rngs=rngs)
    model = mnx.Sequential(mnx.LSTM(D, H, rngs=rngs), nnx.Linear(H, 2, rngs=rngs))
    x = poison_padding(_x(), MASK)
    x16 = jnp.asarray(x, jnp.bfloat16)
    y, h, c = lstm(x16, mask=MASK)
    # the kernels' dtype policy: outputs in x's dtype, states kept in float32
    assert (y.dtype, h.dtype, c.dtype) == (jnp.bfloat16, jnp.float32, jnp.float32)
    tol = {"rtol": 1e-2, "atol": 1e-2}  # bfloat16 keeps 8 bits of mantissa
    for got, want in zip((y, h, c), lstm(x, mask=MASK), strict=True):
        assert np.isfinite(np.asarray(got, np.float32)).all()
        np.testing.assert_allclose(np.asarray(got, np.float32), want, **tol)
    out16 = model(mj.Masked(x16, MASK))
    assert np.isfinite(np.asarray(out16, np.float32)).all()
    np.testing.assert_allclose(np.asarray(out16, np.float32), model(x, mask=MASK), **tol)


def test_unroll_does_not_change_results():
    layer = mnx.GRU(D, H, return_sequences=True, return_state=True, unroll=1, rngs=nnx.Rngs(0))
    bi = mnx.Bidirectional(layer, rngs=nnx.Rngs(1))
    x = poison_padding(_x(), MASK)
    expected = bi(x, mask=MASK)
    layer.unroll = bi.backward_layer.unroll = 2  # T = 5: two unrolled pairs and a remainder
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
        bi(x, mask=MASK),
        expected,
    )
    copied = mnx.Bidirectional(mnx.LSTM(D, H, unroll=2, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    assert copied.backward_layer.unroll == 2  # the backward copy keeps the option


# --------------------------------------------------------------------------- errors


def test_errors():
    rngs = nnx.Rngs(0)
    lstm = mnx.LSTM(D, H, rngs=rngs)
    with pytest.raises(ValueError, match="merge_mode"):
        mnx.Bidirectional(lstm, "max", rngs=rngs)
    with pytest.raises(TypeError, match="rngs"):
        mnx.Bidirectional(lstm)
    with pytest.raises(TypeError, match="`layer`"):
        mnx.Bidirectional(nnx.Linear(D, H, rngs=rngs), rngs=rngs)
    with pytest.raises(ValueError, match="reverse"):
        mnx.Bidirectional(lstm, backward_layer=mnx.LSTM(D, H, rngs=rngs))
    with pytest.raises(TypeError, match=r"x.data"):
        lstm(mj.Masked({"a": jnp.ones((B, T, D))}, MASK))
    with pytest.raises(TypeError, match="do not pass `mask`"):
        lstm(mj.Masked(_x(), MASK), mask=MASK)
    with pytest.raises(TypeError, match="integer token ids"):
        mnx.Embedding(3, 2, rngs=rngs)(jnp.ones((B, T)))
    with pytest.raises(TypeError, match="callable"):
        mnx.Sequential(lstm, 3)
    with pytest.raises(ValueError, match="one mask"):
        mnx.TemporalConcat()((_x(), _x()), (MASK,))
    # activation names are checked when the layer is built, by the kernels' own lookup
    with pytest.raises(ValueError, match="`activation` must be one of 'tanh'"):
        mnx.SimpleRNN(D, H, activation="gelu", rngs=rngs)
    with pytest.raises(ValueError, match="`recurrent_activation` must be one of"):
        mnx.GRU(D, H, recurrent_activation="hard_tanh", rngs=rngs)
    assert mnx.LSTM(D, H, activation=jax.nn.gelu, recurrent_activation=None, rngs=rngs)
