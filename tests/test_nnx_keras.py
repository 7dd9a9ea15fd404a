"""masking_jax.nnx against Keras 3: weight transfer with equal outputs, mask propagation."""

import jax
import keras
import numpy as np
import pytest
from flax import nnx
from helpers import LAYOUT_MASKS, keras_mode

from masking_jax import nnx as mnx

B, T, V, D, H = 3, 6, 9, 3, 4
LAYOUTS = LAYOUT_MASKS  # (B, T) post-padded, pre-padded, gappy


def _ids(mask, seed=0):
    ids = np.random.default_rng(seed).integers(1, V, size=mask.shape)
    return np.where(mask, ids, 0).astype("int32")


def _keras_model():
    keras.utils.set_random_seed(0)
    with keras_mode:
        return _keras_sequential()


def _keras_sequential():
    return keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            keras.layers.Embedding(V, D, mask_zero=True),
            keras.layers.LSTM(H, return_sequences=True),
            keras.layers.Bidirectional(
                keras.layers.GRU(H, return_sequences=True), merge_mode="sum"
            ),
            keras.layers.Dense(H, activation="relu"),
            keras.layers.Bidirectional(keras.layers.SimpleRNN(H), merge_mode="concat"),
            keras.layers.Dense(2),
        ]
    )


def _our_model(rngs):
    return mnx.Sequential(
        mnx.Embedding(V, D, mask_zero=True, rngs=rngs),
        mnx.LSTM(D, H, return_sequences=True, rngs=rngs),
        mnx.Bidirectional(mnx.GRU(H, H, return_sequences=True, rngs=rngs), "sum", rngs=rngs),
        nnx.Linear(H, H, rngs=rngs),
        lambda x: nnx.relu(x),
        mnx.Bidirectional(mnx.SimpleRNN(H, H, rngs=rngs), "concat", rngs=rngs),
        nnx.Linear(2 * H, 2, rngs=rngs),
    )


def test_keras_model_weights_give_same_outputs():
    k_model = _keras_model()
    model = mnx.load_keras_weights(_our_model(nnx.Rngs(0)), k_model)
    ids = _ids(np.concatenate(list(LAYOUTS.values())))  # post, pre and gappy rows
    with keras_mode:
        expected = np.asarray(k_model(ids))
    np.testing.assert_allclose(
        nnx.jit(lambda m, ids: m(ids))(model, ids), expected, rtol=1e-5, atol=1e-5
    )


def _assert_outputs_match(ours, theirs):
    """Equal output tuples, ours a pytree (pairs for merge_mode=None), theirs flat."""
    ours, theirs = jax.tree.leaves(ours), list(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kind, options",
    [
        pytest.param("SimpleRNN", {}, id="SimpleRNN"),
        pytest.param("LSTM", {}, id="LSTM"),
        pytest.param("GRU", {}, id="GRU"),
        pytest.param(
            "GRU",
            {"reset_after": False, "recurrent_activation": "hard_sigmoid"},
            id="GRU-reset_before-hard_sigmoid",
        ),
        pytest.param("LSTM", {"use_bias": False, "activation": "relu"}, id="LSTM-nobias-relu"),
        pytest.param(
            "SimpleRNN", {"activation": "relu", "go_backwards": True}, id="SimpleRNN-relu-backwards"
        ),
        pytest.param("LSTM", {"go_backwards": True}, id="LSTM-backwards"),
    ],
)
def test_rnn_layer_weights_give_same_sequences_and_states(kind, options):
    keras.utils.set_random_seed(1)
    k_layer = getattr(keras.layers, kind)(H, return_sequences=True, return_state=True, **options)
    x = np.random.default_rng(1).normal(size=(B, T, D)).astype("float32")
    mask = LAYOUTS["gappy"]
    with keras_mode:
        k_y, *k_states = k_layer(x, mask=mask)
    ours = dict(options)
    go_backwards = ours.pop("go_backwards", False)
    layer = getattr(mnx, kind)(
        D, H, return_sequences=True, return_state=True, reverse=go_backwards, **ours,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    y, *states = mnx.load_keras_weights(layer, k_layer)(x, mask=mask)
    if go_backwards:
        # The documented difference: `reverse=True` keeps outputs aligned with the input
        # positions; Keras `go_backwards=True` returns them in processing order (flipped).
        assert not np.allclose(y, np.asarray(k_y), atol=1e-3)
        k_y = np.flip(np.asarray(k_y), axis=1)
    _assert_outputs_match((y, *states), (k_y, *k_states))


@pytest.mark.parametrize(
    "kind, merge_mode, return_sequences",
    [("LSTM", None, True), ("GRU", "mul", False), ("SimpleRNN", "ave", True)],
)
def test_bidirectional_merge_modes_match_keras(kind, merge_mode, return_sequences):
    keras.utils.set_random_seed(2)
    k_layer = keras.layers.Bidirectional(
        getattr(keras.layers, kind)(H, return_sequences=return_sequences, return_state=True),
        merge_mode=merge_mode,
    )
    x = np.random.default_rng(2).normal(size=(B, T, D)).astype("float32")
    mask = LAYOUTS["gappy"]
    with keras_mode:
        expected = k_layer(x, mask=mask)  # (*outputs, *forward_states, *backward_states)
    forward = getattr(mnx, kind)(
        D, H, return_sequences=return_sequences, return_state=True, rngs=nnx.Rngs(0)
    )
    layer = mnx.Bidirectional(forward, merge_mode, rngs=nnx.Rngs(1))
    _assert_outputs_match(mnx.load_keras_weights(layer, k_layer)(x, mask=mask), expected)


def test_propagation_matches_keras_compute_mask():
    x = np.random.default_rng(2).normal(size=(B, T, D)).astype("float32")
    mask = LAYOUTS["pre"]
    rngs = nnx.Rngs(0)
    pairs = [
        (
            keras.layers.LSTM(H, return_sequences=True),
            mnx.LSTM(D, H, return_sequences=True, rngs=rngs),
        ),
        (keras.layers.LSTM(H), mnx.LSTM(D, H, rngs=rngs)),
        (
            keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True)),
            mnx.Bidirectional(mnx.GRU(D, H, return_sequences=True, rngs=rngs), rngs=rngs),
        ),
        (
            keras.layers.Bidirectional(keras.layers.GRU(H)),
            mnx.Bidirectional(mnx.GRU(D, H, rngs=rngs), rngs=rngs),
        ),
        (keras.layers.GlobalAveragePooling1D(), mnx.GlobalAveragePooling1D()),
        (keras.layers.Dense(H), nnx.Linear(D, H, rngs=rngs)),
        (keras.layers.Dropout(0.5), nnx.Dropout(0.5, deterministic=True)),
        (keras.layers.LayerNormalization(), nnx.LayerNorm(D, rngs=rngs)),
        (keras.layers.Activation("tanh"), np.tanh),
        (keras.layers.Masking(0.0), mnx.Masking(0.0)),
    ]
    for k_layer, ours in pairs:
        with keras_mode:
            k_layer.build(x.shape)
            expected = k_layer.compute_mask(x, mask)
        _, got = mnx.call_with_mask(ours, x, mask)
        name = type(k_layer).__name__
        if expected is None:
            assert got is None, name
        else:
            np.testing.assert_array_equal(got, np.asarray(expected), err_msg=name)
    emb = keras.layers.Embedding(V, D, mask_zero=True)
    ids = _ids(mask)
    with keras_mode:
        expected = np.asarray(emb.compute_mask(ids))
    np.testing.assert_array_equal(
        mnx.Embedding(V, D, mask_zero=True, rngs=rngs).compute_mask(ids), expected
    )


def test_load_errors():
    rngs = nnx.Rngs(0)
    k_lstm = keras.layers.LSTM(H)
    with keras_mode:
        k_lstm.build((None, T, D))
    with pytest.raises(TypeError, match="`module` must be a LSTM"):
        mnx.load_keras_weights(mnx.GRU(D, H, rngs=rngs), k_lstm)
    with pytest.raises(ValueError, match="shape"):
        mnx.load_keras_weights(mnx.LSTM(D + 1, H, rngs=rngs), k_lstm)
    with pytest.raises(ValueError, match="use_bias"):
        mnx.load_keras_weights(mnx.LSTM(D, H, use_bias=False, rngs=rngs), k_lstm)
    with pytest.raises(TypeError, match="keras_layer"):
        mnx.load_keras_weights(mnx.LSTM(D, H, rngs=rngs), keras.layers.Flatten())


def test_masking_then_lstm_matches_keras():
    """The guide's `Masking` example: padded steps are all `mask_value`, the LSTM skips them."""
    keras.utils.set_random_seed(3)
    x = np.random.default_rng(3).normal(size=(B, T, D)).astype("float32")
    x[~LAYOUTS["gappy"]] = -1.0
    with keras_mode:
        k_model = keras.Sequential(
            [keras.Input((T, D)), keras.layers.Masking(-1.0), keras.layers.LSTM(H)]
        )
        expected = np.asarray(k_model(x))
    model = mnx.Sequential(mnx.Masking(-1.0), mnx.LSTM(D, H, rngs=nnx.Rngs(0)))
    out = mnx.load_keras_weights(model, k_model)(x)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
