"""The kernels equal Keras 3 `SimpleRNN`, `LSTM`, `GRU` and `Bidirectional` (JAX backend) given
the same weights and mask: post, pre and gappy masks, fully masked rows, initial states, both
`zero_output_for_mask` settings, and `go_backwards` (whose outputs Keras returns flipped)."""

import functools
import os

import jax
import numpy as np
import pytest
from helpers import keras_mode
from rnn_reference import MASK_ROWS, padded_inputs, random_params, random_state

import masking_jax as mj
from masking_jax._rnn._dropout import dropout_scales

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("the Keras comparison needs KERAS_BACKEND=jax", allow_module_level=True)

KERNELS = {"simple_rnn": mj.simple_rnn, "lstm": mj.lstm, "gru": mj.gru}
LAYERS = {
    "simple_rnn": keras.layers.SimpleRNN,
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
}
B, T = MASK_ROWS.shape
D, H = 3, 4
TOL = {"rtol": 1e-5, "atol": 1e-5}


def keras_weights(params):
    return [params[k] for k in ("kernel", "recurrent_kernel", "bias") if params[k] is not None]


def keras_layer(cell, params, **options):
    with keras_mode:
        layer = LAYERS[cell](H, return_sequences=True, return_state=True, **options)
        layer.build((B, T, D))
        layer.set_weights(keras_weights(params))
    return layer


def run_keras(layer, x, mask, initial_state=None):
    """Keras outputs realigned with the input positions, and its final states as a list."""
    if initial_state is not None:
        initial_state = list(initial_state) if isinstance(initial_state, tuple) else [initial_state]
    with keras_mode:
        outputs, *states = layer(x, mask=mask, initial_state=initial_state)
    outputs = np.asarray(outputs)
    return (outputs[:, ::-1] if layer.go_backwards else outputs), [np.asarray(s) for s in states]


def assert_matches_keras(ours, theirs):
    outputs, final = ours
    k_outputs, k_states = theirs
    np.testing.assert_allclose(outputs, k_outputs, **TOL)
    for s, k in zip(jax.tree.leaves(final), k_states, strict=True):
        np.testing.assert_allclose(s, k, **TOL)


@pytest.mark.parametrize("cell", list(KERNELS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_matches_keras(cell, go_backwards, zero_output_for_mask):
    """Every mask layout of MASK_ROWS (post, pre, gappy, fully masked), with and without an
    initial state."""
    rng = np.random.default_rng(0)
    params = random_params(cell, rng, D, H)
    x = padded_inputs(rng, MASK_ROWS, D, pad_value=0.0)  # Keras has no double where
    state = random_state(cell, rng, B, H)
    options = {"go_backwards": go_backwards, "zero_output_for_mask": zero_output_for_mask}
    layer = keras_layer(cell, params, **options)
    kernel = functools.partial(
        KERNELS[cell], reverse=go_backwards, zero_output_for_mask=zero_output_for_mask
    )
    for initial_state in (None, state):
        assert_matches_keras(
            kernel(params, x, MASK_ROWS, initial_state=initial_state),
            run_keras(layer, x, MASK_ROWS, initial_state),
        )


@pytest.mark.parametrize(
    ("cell", "options"),
    [
        ("simple_rnn", {"activation": "relu"}),
        ("lstm", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
        ("gru", {"activation": "linear", "recurrent_activation": "hard_sigmoid"}),
        ("gru", {"reset_after": False}),
        ("gru", {"reset_after": False, "use_bias": False}),
        ("lstm", {"use_bias": False}),
    ],
)
def test_options_match_keras(cell, options):
    rng = np.random.default_rng(1)
    use_bias = options.get("use_bias", True)
    reset_after = options.get("reset_after", True)
    params = random_params(cell, rng, D, H, reset_after=reset_after, use_bias=use_bias)
    x = padded_inputs(rng, MASK_ROWS, D, pad_value=0.0)
    state = random_state(cell, rng, B, H)
    layer = keras_layer(cell, params, **options)
    ours = KERNELS[cell](
        params,
        x,
        MASK_ROWS,
        initial_state=state,
        **{k: v for k, v in options.items() if k != "use_bias"},
    )
    assert_matches_keras(ours, run_keras(layer, x, MASK_ROWS, state))


@pytest.mark.parametrize("merge_mode", ["concat", "ave"])
def test_bidirectional_matches_keras(merge_mode):
    rng = np.random.default_rng(2)
    forward, backward = (random_params("lstm", rng, D, H) for _ in range(2))
    x = padded_inputs(rng, MASK_ROWS, D, pad_value=0.0)
    with keras_mode:
        layer = keras.layers.Bidirectional(
            keras.layers.LSTM(H, return_sequences=True, return_state=True), merge_mode=merge_mode
        )
        layer.build((B, T, D))
        layer.set_weights(keras_weights(forward) + keras_weights(backward))
        k_outputs, *k_states = layer(x, mask=MASK_ROWS)
    outputs, states = mj.bidirectional(
        mj.lstm, (forward, backward), x, MASK_ROWS, merge_mode=merge_mode
    )
    np.testing.assert_allclose(outputs, k_outputs, **TOL)
    for s, k in zip(jax.tree.leaves(states), k_states, strict=True):
        np.testing.assert_allclose(s, k, **TOL)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras's
@pytest.mark.parametrize("cell", list(KERNELS))
def test_initialisers_fit_keras_layers(cell):
    """Our initialisers give the shapes, dtypes and bias values of a freshly built Keras layer."""
    init = {
        "simple_rnn": mj.init_simple_rnn_params,
        "lstm": mj.init_lstm_params,
        "gru": mj.init_gru_params,
    }[cell]
    params = init(jax.random.key(0), D, H)
    with keras_mode:
        layer = LAYERS[cell](H)
        layer.build((B, T, D))
    fresh = dict(zip(("kernel", "recurrent_kernel", "bias"), layer.get_weights(), strict=True))
    for key, value in fresh.items():
        assert params[key].shape == value.shape and params[key].dtype == value.dtype
    np.testing.assert_array_equal(params["bias"], fresh["bias"])
    with keras_mode:
        layer.set_weights(keras_weights(params))


@pytest.mark.parametrize(
    ("cell", "options"),
    [("simple_rnn", {}), ("lstm", {}), ("gru", {}), ("gru", {"reset_after": False})],
    ids=["simple_rnn", "lstm", "gru", "gru_reset_before"],
)
def test_dropout_equals_keras_given_the_same_masks(cell, options):
    """Keras keeps a call's dropout masks on its cell; set there, they are ours. With
    `recurrent_dropout` its LSTM and GRU take one mask per gate: the same one for every gate
    is our rule. Every mask layout of MASK_ROWS, in training mode."""
    rng = np.random.default_rng(0)
    params = random_params(cell, rng, D, H, **options)
    x = padded_inputs(rng, MASK_ROWS, D, pad_value=0.0)
    rates = {"dropout": 0.3, "recurrent_dropout": 0.4}
    key = jax.random.key(3)
    x_scale, h_scale = dropout_scales(key, B, D, H, *rates.values(), np.float32)
    layer = keras_layer(cell, params, **rates, **options)
    gates = {"simple_rnn": None, "lstm": 4, "gru": 3}[cell]
    layer.cell._dropout_mask = x_scale if gates is None else [x_scale] * gates
    layer.cell._recurrent_dropout_mask = h_scale if gates is None else [h_scale] * gates
    with keras_mode:
        outputs, *states = layer(x, mask=MASK_ROWS, training=True)
    ours = KERNELS[cell](params, x, MASK_ROWS, dropout_key=key, **rates, **options)
    assert_matches_keras(ours, (np.asarray(outputs), [np.asarray(s) for s in states]))
