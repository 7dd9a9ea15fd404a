"""`masking_jax.nnx.RNN(cell)`: every Flax NNX cell against `nnx.RNN(cell)(x, seq_lengths=...)` on
right-padded data, any other mask layout giving the same results, NaN padding, gradients, mask
propagation in `Sequential`, and a user's own NNX cell."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import relaid

import masking_jax as mj
from masking_jax import nnx as mnx

B, T, D, H = 5, 7, 3, 4
LENGTHS = np.array([7, 3, 0, 1, 5])
CELLS = {
    "LSTMCell": lambda: nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)),
    "OptimizedLSTMCell": lambda: nnx.OptimizedLSTMCell(D, H, rngs=nnx.Rngs(0)),
    "GRUCell": lambda: nnx.GRUCell(D, H, rngs=nnx.Rngs(0)),
    "SimpleCell": lambda: nnx.SimpleCell(D, H, rngs=nnx.Rngs(0)),
}


def layouts(x_post):
    """The post-padded batch and the same sequences pre-padded and with holes, as
    `(name, x (NaN padding), mask, positions)`; `positions[b]` are row b's real steps."""
    return [(name, jnp.asarray(x), jnp.asarray(mask), positions)
            for name, x, mask, positions in relaid(x_post, LENGTHS)]


@pytest.fixture(scope="module")
def x_post():
    return np.random.default_rng(1).standard_normal((B, T, D)).astype(np.float32)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
def test_every_nnx_cell_equals_nnx_rnn_with_seq_lengths_on_every_layout(name, reverse, x_post):
    cell = CELLS[name]()
    carry_ref, y_ref = nnx.RNN(cell, return_carry=True, reverse=reverse, keep_order=True)(
        jnp.asarray(x_post), seq_lengths=jnp.asarray(LENGTHS)
    )
    layer = mnx.RNN(cell, return_sequences=True, return_state=True, reverse=reverse)
    initial = layer.initialize_carry(B, D)
    run = nnx.jit(lambda layer, x, mask: layer(x, mask=mask))  # one compile for all layouts
    for _, x, mask, positions in layouts(x_post):
        y, carry = run(layer, x, mask)
        assert np.isfinite(np.asarray(y)).all()
        for b, pos in enumerate(positions):
            np.testing.assert_allclose(y[b, pos], y_ref[b, : len(pos)], rtol=1e-5, atol=1e-6)
            expected = initial if len(pos) == 0 else carry_ref  # nnx.RNN: undefined for 0
            jax.tree.map(
                lambda a, e, b=b: np.testing.assert_allclose(a[b], e[b], rtol=1e-5, atol=1e-6),
                carry, expected,
            )  # fmt: skip


def test_gradients_are_layout_free_and_nan_padding_never_reaches_them(x_post):
    cell = CELLS["LSTMCell"]()
    layer = mnx.RNN(cell, return_sequences=True)

    def loss(layer, x, mask):
        y = layer(x, mask=mask)
        return jnp.sum(jnp.where(mask[:, :, None], jnp.sin(y), 0.0))

    grad = nnx.jit(nnx.grad(loss, argnums=(0, 1)))
    results = [(grad(layer, x, mask), mask) for _, x, mask, _ in layouts(x_post)]
    (base, _), *others = results
    for (grads, mask) in [results[0], *others]:
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))
        assert (np.asarray(grads[1])[~np.asarray(mask)] == 0).all()
    for grads, _ in others:  # the same sequences give the same parameter gradients
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     nnx.state(grads[0]), nnx.state(base[0]))  # fmt: skip


def test_last_output_zero_outputs_and_masked_input(x_post):
    cell = CELLS["GRUCell"]()
    _, x, mask, positions = layouts(x_post)[2]
    seq = mnx.RNN(cell, return_sequences=True)(x, mask=mask)
    last = mnx.RNN(cell, zero_output_for_mask=True)(x, mask=mask)
    for b, pos in enumerate(positions):  # the output after each row's last real step
        np.testing.assert_allclose(last[b], seq[b, pos[-1]] if len(pos) else 0.0, atol=1e-6)
    zeros = mnx.RNN(cell, return_sequences=True, zero_output_for_mask=True)(x, mask=mask)
    assert (np.asarray(zeros)[~np.asarray(mask)] == 0).all()
    out = mnx.RNN(cell, return_sequences=True)(mj.Masked(x, mask))
    assert isinstance(out, mj.Masked) and out.mask is mask


class PeepholeCell(nnx.Module):
    """A user's own NNX cell: an LSTM whose input gate reads c."""

    def __init__(self, in_features, hidden, *, rngs):
        self.hidden = hidden
        self.dense = nnx.Linear(in_features + hidden, 4 * hidden, rngs=rngs)
        self.peephole = nnx.Param(jnp.full((hidden,), 0.5))

    def __call__(self, carry, x_t):
        c, h = carry
        i, f, g, o = jnp.split(self.dense(jnp.concatenate([x_t, h], axis=-1)), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i + c * self.peephole[None]) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    def initialize_carry(self, input_shape, rngs=None):
        zeros = jnp.zeros((*input_shape[:-1], self.hidden))
        return zeros, zeros


def test_a_user_cell_trains_in_sequential_with_optax(x_post):
    rngs = nnx.Rngs(0)
    model = mnx.Sequential(
        mnx.RNN(PeepholeCell(D, H, rngs=rngs), return_sequences=True),  # passes the mask on
        mnx.GlobalAveragePooling1D(),                                    # ends it
        nnx.Linear(H, 2, rngs=rngs),
    )
    _, x, mask, _ = layouts(x_post)[1]
    labels = jnp.asarray(LENGTHS > 2, jnp.int32)
    optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)

    def loss_fn(model):
        logits = model(x, mask=mask)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer)) for _ in range(30)]
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]


def test_bad_cells_raise_clear_errors():
    with pytest.raises(TypeError, match="`cell` must be a Flax NNX cell"):
        mnx.RNN(lambda carry, x: (carry, x))
    with pytest.raises(TypeError, match="`return_sequences` must be a Python bool"):
        mnx.RNN(CELLS["GRUCell"](), return_sequences="yes")

    class NoInit(nnx.Module):
        def __call__(self, carry, x_t):
            return carry, x_t

    with pytest.raises(TypeError, match="no `initialize_carry`; pass `initial_carry="):
        mnx.RNN(NoInit())(jnp.zeros((B, T, D)))
    out = mnx.RNN(NoInit(), return_sequences=True)(jnp.ones((B, T, D)), initial_carry=jnp.zeros(B))
    assert out.shape == (B, T, D)
