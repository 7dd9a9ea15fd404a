"""Training a masked NNX model with optax and the core's masked losses."""

import numpy as np
import optax
from flax import nnx

import masking_jax as mj
from masking_jax import nnx as mnx


def _toy_batch(rng, batch=32, steps=10, vocab=5):
    """Token ids post- or pre-padded to a random length; label at step t: has token 1 been
    seen at or before t (needs memory, so only a recurrent model can learn it)."""
    lengths = rng.integers(2, steps + 1, size=batch)
    ids = rng.integers(1, vocab, size=(batch, steps))
    pre = rng.random(batch) < 0.5
    positions = np.arange(steps)
    mask = np.where(
        pre[:, None], positions >= steps - lengths[:, None], positions < lengths[:, None]
    )
    ids = np.where(mask, ids, 0).astype(np.int32)
    seen = np.zeros_like(ids)
    for b in range(batch):
        seen[b] = np.maximum.accumulate((ids[b] == 1) & mask[b])
    return ids, seen.astype(np.int32), mask


def test_masked_gru_trains_with_optax():
    rngs = nnx.Rngs(0)
    model = mnx.Sequential(
        mnx.Embedding(5, 8, mask_zero=True, rngs=rngs),
        mnx.GRU(8, 16, return_sequences=True, rngs=rngs),
        nnx.Linear(16, 2, rngs=rngs),
    )
    optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)

    def loss_fn(model, ids, labels):
        out = model(mj.Masked(ids, ids != 0))  # the mask comes from Embedding(mask_zero)
        return mj.masked_cross_entropy(out.data, labels, out.mask)

    @nnx.jit
    def train_step(model, optimizer, ids, labels):
        loss, grads = nnx.value_and_grad(loss_fn)(model, ids, labels)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def evaluate(model, ids, labels, mask):
        logits = model(ids)  # arrays in, arrays out: Embedding(mask_zero) masks inside
        return loss_fn(model, ids, labels), mj.masked_accuracy(logits, labels, mask)

    rng = np.random.default_rng(0)
    eval_batch = _toy_batch(np.random.default_rng(1), batch=64)
    start, _ = evaluate(model, *eval_batch)
    for _ in range(60):
        ids, labels, _ = _toy_batch(rng)
        train_step(model, optimizer, ids, labels)
    end, accuracy = evaluate(model, *eval_batch)
    assert np.isfinite(end) and end < 0.25 * start, (start, end)
    assert float(accuracy) > 0.9
