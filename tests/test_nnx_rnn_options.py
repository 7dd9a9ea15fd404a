"""The NNX recurrent layers' options: dropout driven by `rngs` and `model.train()`/`eval()`,
`stateful` layers with `reset_state()`, and integer inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import call_layer, jit_call_layer, poison_padding

import masking_jax as mj
from masking_jax import nnx as mnx
from masking_jax._rnn._dropout import dropout_scales

B, T, D, H = 3, 5, 2, 4  # the shapes of test_nnx.py
MASK = np.array(
    [[True] * 5, [True, True, True, False, False], [False, True, False, True, True]]
)  # full, post-padded, gappy
# A second half for stateful calls: row 1 ended in the first half, row 2 goes on with holes.
MASK_2 = np.array(
    [[True] * 5, [False] * 5, [True, False, False, True, False]]
)  # fmt: skip
LAYERS = {"simple_rnn": (mnx.SimpleRNN, mj.simple_rnn), "lstm": (mnx.LSTM, mj.lstm),
          "gru": (mnx.GRU, mj.gru)}  # fmt: skip
RATES = {"dropout": 0.3, "recurrent_dropout": 0.4}


def _x(seed=0, steps=T):
    return np.random.default_rng(seed).normal(size=(B, steps, D)).astype(np.float32)


def _params(layer):
    return {k: getattr(layer, k)[...] for k in ("kernel", "recurrent_kernel", "bias")}


def test_dropout_in_training_and_none_in_evaluation():
    layer = mnx.LSTM(D, H, return_sequences=True, rngs=nnx.Rngs(0), **RATES)
    plain = mnx.LSTM(D, H, return_sequences=True, rngs=nnx.Rngs(0))
    x = poison_padding(_x(), MASK)
    # Training (the default, as for nnx.Dropout): the kernel with a key from the layer's stream.
    key = nnx.clone(layer).dropout_rngs()
    y = layer(x, mask=MASK)
    expected, _ = mj.lstm(_params(layer), x, MASK, dropout_key=key, **RATES)
    np.testing.assert_array_equal(y, expected)
    assert not np.allclose(y, layer(x, mask=MASK))  # a fresh mask for each call
    assert np.isfinite(y).all()
    # Evaluation: exactly the layer without dropout (same params from the same seed).
    layer.eval()
    np.testing.assert_array_equal(layer(x, mask=MASK), plain(x, mask=MASK))
    layer.train()
    assert not layer.deterministic


def test_bidirectional_dropout_and_state_are_per_direction():
    """Each direction draws its own masks and keeps its own state; eval turns dropout off."""
    forward = mnx.GRU(D, H, return_sequences=True, stateful=True, rngs=nnx.Rngs(0), **RATES)
    bi = mnx.Bidirectional(forward, rngs=nnx.Rngs(1))
    layers = bi.forward_layer, bi.backward_layer
    keys = [nnx.clone(layer).dropout_rngs() for layer in layers]
    assert not np.array_equal(jax.random.key_data(keys[0]), jax.random.key_data(keys[1]))
    assert bi.backward_layer.recurrent_dropout == RATES["recurrent_dropout"]
    x = _x()

    def kernel(layer, **dropout):
        return mj.gru(_params(layer), x, MASK, reverse=layer.reverse, zero_output_for_mask=True,
                      **dropout)  # fmt: skip

    y = bi(x, mask=MASK)
    halves = [kernel(layer, dropout_key=k, **RATES) for layer, k in zip(layers, keys, strict=True)]
    np.testing.assert_array_equal(y, jnp.concatenate([out for out, _ in halves], -1))
    for layer, (_, h) in zip(layers, halves, strict=True):
        np.testing.assert_array_equal(layer.states.get_value(), h)
    bi.reset_state()
    assert all(layer.states.get_value() is None for layer in layers)
    bi.eval()
    plain = [kernel(layer)[0] for layer in layers]
    np.testing.assert_array_equal(bi(x, mask=MASK), jnp.concatenate(plain, -1))


def test_custom_cell_input_dropout():
    rnn = mnx.RNN(nnx.GRUCell(D, H, rngs=nnx.Rngs(0)), return_sequences=True, dropout=0.5,
                  rngs=nnx.Rngs(1))  # fmt: skip
    plain = mnx.RNN(nnx.GRUCell(D, H, rngs=nnx.Rngs(0)), return_sequences=True)
    x = _x()
    scale, _ = dropout_scales(nnx.clone(rnn).dropout_rngs(), B, D, 0, 0.5, 0.0, jnp.float32)
    np.testing.assert_allclose(rnn(x, mask=MASK), plain(x * scale[:, None, :], mask=MASK),
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    rnn.eval()
    np.testing.assert_array_equal(rnn(x, mask=MASK), plain(x, mask=MASK))


def test_a_training_step_with_dropout_under_jit():
    """Dropout inside nnx.jit and nnx.grad: NaN padding harmless, finite gradients, the
    dropout stream advances each step and eval predictions are deterministic."""
    rngs = nnx.Rngs(0)
    model = mnx.Sequential(mnx.LSTM(D, H, rngs=rngs, **RATES), nnx.Linear(H, 2, rngs=rngs))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, mask):
        loss = lambda m: jnp.mean(m(x, mask=mask) ** 2)  # noqa: E731
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value, grads

    x = poison_padding(_x(), MASK)
    count = model.layers[0].dropout_rngs.count[...]
    value, grads = step(model, optimizer, x, MASK)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert model.layers[0].dropout_rngs.count[...] == count + 1
    model.eval()
    np.testing.assert_array_equal(jit_call_layer(model, x, MASK), jit_call_layer(model, x, MASK))


def _stateful_case(layer, call):
    """Outputs of two calls on the halves, and of one call on the whole (a fresh copy)."""
    whole_layer = nnx.clone(layer)
    x = poison_padding(_x(1, 2 * T), np.concatenate([MASK, MASK_2], 1))
    first = call(layer, x[:, :T], MASK)
    second = call(layer, x[:, T:], MASK_2)
    whole = call(whole_layer, x, np.concatenate([MASK, MASK_2], 1))
    return first, second, whole


@pytest.mark.parametrize(("name", "call"), [("lstm", jit_call_layer), ("gru", call_layer)],
                         ids=["lstm_under_jit", "gru"])  # fmt: skip
def test_stateful_halves_equal_the_whole(name, call):
    cls, _ = LAYERS[name]
    layer = cls(D, H, return_sequences=True, return_state=True, stateful=True, rngs=nnx.Rngs(0))
    first, second, whole = _stateful_case(layer, call)
    # Outputs everywhere (padded steps continue the previous output) and the final states.
    np.testing.assert_allclose(jnp.concatenate([first[0], second[0]], 1), whole[0], atol=1e-6)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, atol=1e-6), second[1:], whole[1:])
    np.testing.assert_array_equal(second[1][1], first[1][1])  # row 1 ended in the first half
    kept = layer.states.get_value()
    jax.tree.map(np.testing.assert_array_equal, kept, second[1:] if name == "lstm" else second[1])
    # Not a Param, so `nnx.Optimizer(..., wrt=nnx.Param)` leaves it alone.
    assert set(nnx.state(layer, nnx.Param).keys()) == {"kernel", "recurrent_kernel", "bias"}
    with pytest.raises(ValueError, match=r"holds the state of a batch of 3 rows; `x` has 2"):
        layer(_x()[:2], mask=MASK[:2])
    layer.reset_state()
    assert layer.states.get_value() is None
    fresh = cls(D, H, return_sequences=True, return_state=True, rngs=nnx.Rngs(0))
    jax.tree.map(np.testing.assert_array_equal, call(layer, _x(), MASK), call(fresh, _x(), MASK))


def test_stateful_custom_cell():
    rnn = mnx.RNN(nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)), return_sequences=True,
                  return_state=True, stateful=True)  # fmt: skip
    _, second, whole = _stateful_case(rnn, call_layer)
    np.testing.assert_allclose(np.asarray(second[0])[MASK_2], np.asarray(whole[0])[:, T:][MASK_2],
                               atol=1e-6)  # fmt: skip
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, atol=1e-6), second[1], whole[1])
    jax.tree.map(np.testing.assert_array_equal, rnn.states.get_value(), second[1])
    rnn.reset_state()
    assert rnn.states.get_value() is None


def test_integer_inputs_are_cast():
    layer = mnx.GRU(D, H, rngs=nnx.Rngs(0))
    ids = np.arange(B * T * D, dtype=np.int32).reshape(B, T, D) % 3
    np.testing.assert_array_equal(layer(ids, mask=MASK), layer(ids.astype(np.float32), mask=MASK))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: mnx.LSTM(D, H, dropout=1.0, rngs=nnx.Rngs(0)), ValueError,
         r"`dropout` must be in \[0, 1\).*got 1\.0"),
        (lambda: mnx.GRU(D, H, recurrent_dropout="0.2", rngs=nnx.Rngs(0)), TypeError,
         r"`recurrent_dropout` must be a Python float"),
        (lambda: mnx.SimpleRNN(D, H, stateful=1, rngs=nnx.Rngs(0)), TypeError,
         r"`stateful` must be a Python bool"),
        (lambda: mnx.RNN(nnx.GRUCell(D, H, rngs=nnx.Rngs(0)), dropout=0.5), TypeError,
         r"`rngs` is required for dropout"),
    ],
)  # fmt: skip
def test_bad_options_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()
