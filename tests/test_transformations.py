"""Every family of public functions under jit, vmap, grad, checkpoint and inside lax.scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import poison_padding, random_mask

import masking_jax as mj

B, T, D, H = 3, 5, 4, 3
KEYS = jax.random.split(jax.random.key(0), 4)
LSTM = mj.init_lstm_params(KEYS[0], D, H)
GRU = mj.init_gru_params(KEYS[1], D, H)
SIMPLE = mj.init_simple_rnn_params(KEYS[2], D, H)
LABELS = jax.random.randint(KEYS[3], (B, T), 0, D)


def _ops(x, mask):
    return (mj.masked_mean(x, mask) + mj.masked_max(x, mask) + mj.masked_std(x, mask)
            + mj.masked_softmax(x, mask, axis=1).sum(1))


def _losses(x, mask):
    return (mj.masked_cross_entropy(x, LABELS, mask) + mj.masked_mse(x, 0.5 * x, mask)
            + mj.masked_cross_entropy(x, LABELS, mask, "none").sum())


def _masks(x, mask):
    packed, order = mj.compact(mj.Masked(x, mask))
    restored = mj.uncompact(packed, order).filled(0).data
    reversed_ = mj.reverse_valid(mj.Masked(x, mask)).filled(0).data
    return jnp.sum(restored * reversed_, axis=1)


def _rnns(x, mask):
    lstm_out, (h, c) = mj.lstm(LSTM, x, mask)
    gru_out, g = mj.gru(GRU, x, mask, reverse=True)
    simple_out, s = mj.simple_rnn(SIMPLE, x, mask, zero_output_for_mask=True)
    both, _ = mj.bidirectional(mj.gru, (GRU, GRU), x, mask, merge_mode="sum")
    pooled = sum(mj.masked_mean(o, mask) for o in (lstm_out, gru_out, simple_out, both))
    return pooled + h + c + g + s


FAMILIES = {"ops": _ops, "losses": _losses, "masks": _masks, "rnn": _rnns}


def _data(seed):
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, B, T, "empty_rows")
    return jnp.asarray(poison_padding(rng.normal(size=(B, T, D)), mask)), jnp.asarray(mask)


def _loss(family):
    return lambda x, mask: jnp.sum(jnp.sin(FAMILIES[family](x, mask)))


@pytest.mark.parametrize("family", FAMILIES)
def test_jit_equals_eager_and_is_finite(family):
    x, mask = _data(0)
    eager = FAMILIES[family](x, mask)
    np.testing.assert_allclose(jax.jit(FAMILIES[family])(x, mask), eager, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(eager))


@pytest.mark.parametrize("family", FAMILIES)
def test_vmap_over_an_extra_leading_axis(family):
    """Under jit (one program; jit equals eager is tested above)."""
    (x0, m0), (x1, m1) = _data(1), _data(2)
    batched = jax.jit(jax.vmap(FAMILIES[family]))(jnp.stack([x0, x1]), jnp.stack([m0, m1]))
    single = jax.jit(FAMILIES[family])
    np.testing.assert_allclose(batched[0], single(x0, m0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched[1], single(x1, m1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_grad_and_checkpoint_agree_and_ignore_padding(family):
    """Both gradients in one compiled program (jit equals eager is tested above)."""
    x, mask = _data(3)
    loss = _loss(family)
    grad, remat = jax.jit(lambda x, mask: (jax.grad(loss)(x, mask),
                                           jax.grad(jax.checkpoint(loss))(x, mask)))(x, mask)
    np.testing.assert_allclose(remat, grad, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[~np.asarray(mask)] == 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_inside_lax_scan_equals_a_python_loop(family):
    batches = [_data(seed) for seed in (4, 5, 6)]
    xs = (jnp.stack([x for x, _ in batches]), jnp.stack([m for _, m in batches]))

    def body(total, batch):
        out = FAMILIES[family](*batch)
        return total + jnp.sum(out), out

    total, outs = jax.lax.scan(body, jnp.zeros(()), xs)
    for i, batch in enumerate(batches):
        np.testing.assert_allclose(outs[i], FAMILIES[family](*batch), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(total, sum(jnp.sum(FAMILIES[family](*b)) for b in batches),
                               rtol=1e-5)


def test_same_seed_gives_the_same_results_twice():
    def run():
        params = mj.init_lstm_params(jax.random.key(7), D, H)
        x, mask = _data(8)
        return jax.jit(jax.value_and_grad(
            lambda p: jnp.sum(mj.lstm(p, x, mask)[0])))(params)

    (value_a, grads_a), (value_b, grads_b) = run(), run()
    assert float(value_a) == float(value_b)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b), strict=True):
        np.testing.assert_array_equal(a, b)
