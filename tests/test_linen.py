"""`masking_jax.linen`: every Flax Linen cell through `RNN(cell)` against `nn.RNN(cell)(x,
seq_lengths=...)` (values, final carry, gradients) on every mask layout, variables shared with
`nn.RNN` both ways, the Keras-layout layers against the core kernels, `Bidirectional`, pooling,
an optax training loop written the Linen way, NaN padding, empty rows, jit / vmap / grad. Bad
arguments: test_errors_linen.py.

One small shape throughout (B=3, T=5, D=2, H=4): the suite is compile-bound.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import relaid

import masking_jax as mj
from masking_jax import linen as ml

B, T, D, H = 3, 5, 2, 4
LENGTHS = np.array([5, 3, 0])  # a full row, a short one, an empty one
TOL = {"rtol": 1e-5, "atol": 1e-6}


class PeepholeCell(nn.Module):
    """A user's own Linen cell: an LSTM whose input gate reads c; carry `(c, h)`."""

    features: int

    @nn.compact
    def __call__(self, carry, x_t):
        c, h = carry
        z = nn.Dense(4 * self.features)(jnp.concatenate([x_t, h], axis=-1))
        i, f, g, o = jnp.split(z, 4, axis=-1)
        peephole = self.param("peephole", nn.initializers.constant(0.5), (self.features,))
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i + c * peephole[None]) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        zeros = jnp.zeros((*input_shape[:-1], self.features))
        return zeros, zeros

    @property
    def num_feature_axes(self):  # what nn.RNN asks of a cell
        return 1


CELLS = {
    "LSTMCell": nn.LSTMCell(H),
    "OptimizedLSTMCell": nn.OptimizedLSTMCell(H),
    "GRUCell": nn.GRUCell(H),
    "SimpleCell": nn.SimpleCell(H),
    "MGUCell": nn.MGUCell(H),
    "PeepholeCell": PeepholeCell(H),
}


@pytest.fixture(scope="module")
def x_post():
    return np.random.default_rng(1).standard_normal((B, T, D)).astype(np.float32)


@pytest.fixture(scope="module")
def layouts(x_post):
    """`(name, x with NaN padding, mask, positions)` for post, pre and gappy."""
    return [(name, jnp.asarray(x), jnp.asarray(mask), pos)
            for name, x, mask, pos in relaid(x_post, LENGTHS)]  # fmt: skip


def _loss(y, carry, mask):
    """What both RNNs are differentiated through: real outputs, and the final carry of
    non-empty rows (`nn.RNN`'s is undefined for an empty row)."""
    real = jnp.sum(jnp.where(mask[:, :, None], jnp.sin(y), 0.0))
    nonempty = mask.any(axis=1)[:, None]
    return real + sum(jnp.sum(jnp.where(nonempty, jnp.cos(c), 0.0)) for c in jax.tree.leaves(carry))


@functools.partial(jax.jit, static_argnums=0)
def ours_value_and_grad(layer, variables, x, mask):
    def loss(variables, x):
        y, carry = layer.apply(variables, x, mask=mask)
        return _loss(y, carry, mask), (y, carry)

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(variables, x)


@functools.partial(jax.jit, static_argnums=0)
def flax_value_and_grad(rnn, variables, x, lengths):
    def loss(variables, x):
        carry, y = rnn.apply(variables, x, seq_lengths=lengths)
        return _loss(y, carry, jnp.arange(T)[None] < lengths[:, None]), (y, carry)

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(variables, x)


def _close(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **TOL), a, b)


CASES = [(name, False) for name in CELLS] + [("LSTMCell", True)]  # reverse: one cell suffices


@pytest.mark.parametrize("name, reverse", CASES)
def test_every_linen_cell_equals_nn_rnn_on_every_layout(name, reverse, x_post, layouts):
    cell = CELLS[name]
    theirs = nn.RNN(cell, return_carry=True, reverse=reverse, keep_order=True)
    variables = theirs.init(jax.random.key(0), jnp.asarray(x_post))  # Flax's variables
    (loss_ref, (y_ref, carry_ref)), (dvars_ref, dx_ref) = flax_value_and_grad(
        theirs, variables, jnp.asarray(x_post), jnp.asarray(LENGTHS)
    )
    ours = ml.RNN(cell, return_state=True, reverse=reverse)
    # the variables are nn.RNN's (tree and values): either module runs the other's
    shape = jax.ShapeDtypeStruct((B, T, D), jnp.float32)
    jax.tree.map(np.testing.assert_array_equal, ours.lazy_init(jax.random.key(0), shape),
                 variables)  # fmt: skip
    initial = cell.initialize_carry(jax.random.key(0), (B, D))
    for layout, x, mask, positions in layouts:  # one compile for every layout
        (loss, (y, carry)), (dvars, dx) = ours_value_and_grad(ours, variables, x, mask)
        assert np.isfinite(np.asarray(y)).all() and np.isfinite(np.asarray(dx)).all(), layout
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-5, err_msg=layout)
        _close(dvars, dvars_ref)  # the same sequences give the same parameter gradients
        assert (np.asarray(dx)[~np.asarray(mask)] == 0).all()  # NaN padding gets none
        for b, pos in enumerate(positions):
            n = len(pos)
            np.testing.assert_allclose(y[b, pos], y_ref[b, :n], **TOL, err_msg=layout)
            np.testing.assert_allclose(dx[b, pos], dx_ref[b, :n], **TOL, err_msg=layout)
            expected = carry_ref if n else initial  # an empty row keeps its initial carry
            jax.tree.map(lambda a, e, b=b: np.testing.assert_allclose(a[b], e[b], **TOL),
                         carry, expected)  # fmt: skip
        assert (np.asarray(y[2]) == 0).all()  # no real step: the zero initial output


class Tagger(nn.Module):
    """A user's model written for `nn.RNN`; `rnn` is the class that runs its cell."""

    rnn: type

    @nn.compact
    def __call__(self, x, seq_lengths):
        y = self.rnn(nn.OptimizedLSTMCell(H))(x, seq_lengths=seq_lengths)
        return nn.Dense(2)(y)


def test_a_model_written_for_nn_rnn_switches_by_one_name():
    """`nn.RNN(cell)(x, seq_lengths=...)` -> `masking_jax.linen.RNN(cell)(...)`: the same
    call, and the same variables (tree and values) from the same key."""
    x = jax.ShapeDtypeStruct((B, T, D), jnp.float32)  # lazy_init: variables, no compute
    lengths, key = jnp.asarray(LENGTHS), jax.random.key(3)
    theirs = Tagger(nn.RNN).lazy_init(key, x, lengths)
    ours = Tagger(ml.RNN).lazy_init(key, x, lengths)
    assert jax.tree.structure(theirs) == jax.tree.structure(ours)
    jax.tree.map(np.testing.assert_array_equal, theirs, ours)


def test_options_masked_input_and_seq_lengths(x_post, layouts):
    cell = CELLS["GRUCell"]
    _, x, mask, positions = layouts[2]
    variables = ml.RNN(cell).init(jax.random.key(0), x, mask=mask)
    seq = ml.RNN(cell).apply(variables, x, mask=mask)
    last = ml.RNN(cell, return_sequences=False, zero_output_for_mask=True).apply(
        variables, x, mask=mask
    )
    for b, pos in enumerate(positions):  # the output after each row's last real step
        np.testing.assert_allclose(last[b], seq[b, pos[-1]] if len(pos) else 0.0, **TOL)
        steps = np.arange(T)
        for t in steps[~np.isin(steps, pos)]:  # padded steps repeat the previous output
            before = pos[pos < t]
            np.testing.assert_allclose(seq[b, t], seq[b, before[-1]] if len(before) else 0.0)
    zeros = ml.RNN(cell, zero_output_for_mask=True).apply(variables, x, mask=mask)
    assert (np.asarray(zeros)[~np.asarray(mask)] == 0).all()
    out = ml.RNN(cell).apply(variables, mj.Masked(x, mask))
    assert isinstance(out, mj.Masked) and out.mask is mask
    np.testing.assert_array_equal(out.data, seq)
    by_lengths = ml.RNN(cell).apply(variables, jnp.asarray(x_post), seq_lengths=LENGTHS)
    post_mask = np.asarray(layouts[0][2])
    np.testing.assert_allclose(by_lengths[post_mask], seq[np.asarray(mask)], **TOL)


def test_vmap_over_layouts_gives_each_layout(layouts):
    layer = ml.RNN(CELLS["LSTMCell"])
    xs = jnp.stack([x for _, x, _, _ in layouts])  # (3 layouts, B, T, D)
    masks = jnp.stack([mask for _, _, mask, _ in layouts])
    variables = layer.init(jax.random.key(0), xs[0], mask=masks[0])
    ys = jax.jit(jax.vmap(lambda x, m: layer.apply(variables, x, mask=m)))(xs, masks)
    for i, (_, x, mask, _) in enumerate(layouts):
        np.testing.assert_allclose(ys[i], layer.apply(variables, x, mask=mask), **TOL)


KERAS_LAYERS = [
    (ml.LSTM(H, return_sequences=True, return_state=True, reverse=True), mj.lstm,
     {"reverse": True}, {"kernel": (D, 4 * H), "recurrent_kernel": (H, 4 * H), "bias": (4 * H,)}),
    (ml.GRU(H, return_sequences=True, return_state=True, zero_output_for_mask=True,
            reset_after=False), mj.gru, {"zero_output_for_mask": True, "reset_after": False},
     {"kernel": (D, 3 * H), "recurrent_kernel": (H, 3 * H), "bias": (3 * H,)}),
    (ml.SimpleRNN(H, return_sequences=True, return_state=True, activation="relu",
                  use_bias=False), mj.simple_rnn, {"activation": "relu"},
     {"kernel": (D, H), "recurrent_kernel": (H, H)}),
]  # fmt: skip


@pytest.mark.parametrize("layer, kernel, options, shapes", KERAS_LAYERS,
                         ids=["LSTM", "GRU", "SimpleRNN"])  # fmt: skip
def test_keras_layout_layers_equal_the_core_kernels(layer, kernel, options, shapes, layouts):
    _, x, mask, _ = layouts[2]  # gappy, NaN padding
    variables = layer.init(jax.random.key(0), x, mask=mask)
    params = variables["params"]
    assert {k: v.shape for k, v in params.items()} == shapes  # the Keras 3 layout
    y, *states = layer.apply(variables, x, mask=mask)
    outputs, state = kernel({"bias": None, **params}, x, mask, **options)
    np.testing.assert_array_equal(y, outputs)
    _close(tuple(states), state if isinstance(state, tuple) else (state,))
    last = layer.clone(return_sequences=False, return_state=False).apply(variables, x, mask=mask)
    np.testing.assert_array_equal(last, states[0])  # h after each row's last real step
    masked = layer.apply(variables, mj.Masked(x, mask))[0]
    assert isinstance(masked, mj.Masked) and masked.mask is mask


def test_default_lstm_params_are_keras_defaults():
    params = ml.LSTM(H).init(jax.random.key(0), jnp.ones((B, T, D)))["params"]
    np.testing.assert_array_equal(params["bias"], np.repeat([0.0, 1.0, 0.0, 0.0], H))
    rec = np.asarray(params["recurrent_kernel"])  # orthogonal: orthonormal rows
    np.testing.assert_allclose(rec @ rec.T, np.eye(H), atol=1e-5)


def test_bidirectional_of_keras_layers_equals_the_core_bidirectional(layouts):
    _, x, mask, _ = layouts[2]
    bi = ml.Bidirectional(ml.LSTM(H, return_sequences=True, return_state=True))
    variables = bi.init(jax.random.key(0), x, mask=mask)
    forward, backward = variables["params"]["forward"], variables["params"]["backward"]
    assert not np.allclose(forward["kernel"], backward["kernel"])  # a copy with its own params
    y, h_f, c_f, h_b, c_b = bi.apply(variables, x, mask=mask)
    ref, states = mj.bidirectional(mj.lstm, (forward, backward), x, mask)
    np.testing.assert_allclose(y, ref, **TOL)  # padded steps are zeros, as in Keras
    _close(((h_f, c_f), (h_b, c_b)), states)
    last = ml.Bidirectional(ml.LSTM(H), merge_mode="sum").apply(variables, x, mask=mask)
    np.testing.assert_allclose(last, states[0][0] + states[1][0], **TOL)


def test_bidirectional_of_cells_is_layout_free_and_keeps_masked(layouts):
    _, x_post, mask_post, _ = layouts[0]
    bi = ml.Bidirectional(ml.RNN(CELLS["GRUCell"]), merge_mode=None)
    variables = bi.init(jax.random.key(0), x_post, mask=mask_post)
    sub = variables["params"]
    reverse = ml.RNN(CELLS["GRUCell"], reverse=True)
    results = []
    for _, x, mask, positions in layouts:
        out = bi.apply(variables, mj.Masked(x, mask))
        assert isinstance(out, mj.Masked) and out.mask == (mask, mask)
        y_f, y_b = out.data
        np.testing.assert_array_equal(y_f, jnp.where(
            mask[:, :, None], ml.RNN(CELLS["GRUCell"]).apply({"params": sub["forward"]}, x,
                                                             mask=mask), 0))  # fmt: skip
        np.testing.assert_array_equal(y_b, jnp.where(
            mask[:, :, None], reverse.apply({"params": sub["backward"]}, x, mask=mask), 0))
        results.append([(y_f[b, pos], y_b[b, pos]) for b, pos in enumerate(positions)])
    for other in results[1:]:
        _close(other, results[0])


def test_pooling_over_real_steps(layouts):
    _, x, mask, positions = layouts[2]
    mean = ml.GlobalAveragePooling1D().apply({}, x, mask=mask)
    peak = ml.GlobalMaxPooling1D(keepdims=True).apply({}, mj.Masked(x, mask))
    for b, pos in enumerate(positions):
        real = np.asarray(x[b, pos])
        np.testing.assert_allclose(mean[b], real.mean(0) if len(pos) else 0.0, **TOL)
        np.testing.assert_allclose(peak[b, 0], real.max(0) if len(pos) else 0.0)
    x_full = layouts[0][1][:1]  # a full row, no mask: a plain mean
    np.testing.assert_allclose(ml.GlobalAveragePooling1D().apply({}, x_full), x_full.mean(1))


class Classifier(nn.Module):
    """RNN over a Linen cell, masked mean over time, a dense layer."""

    @nn.compact
    def __call__(self, x, mask):
        y = ml.RNN(nn.GRUCell(H))(x, mask=mask)
        return nn.Dense(2)(ml.GlobalAveragePooling1D()(y, mask=mask))


def test_an_optax_training_loop_the_linen_way(layouts):
    _, x, mask, _ = layouts[1]  # pre-padded, NaN padding
    labels = jnp.array([0, 1, 0])
    model, optimizer = Classifier(), optax.adam(0.05)
    params = model.init(jax.random.key(0), x, mask)["params"]
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, x, mask):
        def loss_fn(params):
            logits = model.apply({"params": params}, x, mask)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(30):
        params, opt_state, loss = train_step(params, opt_state, x, mask)
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
