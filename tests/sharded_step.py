"""Data-parallel masked-LSTM training step on 8 simulated CPU devices (run as a subprocess).

Prints one JSON line comparing the sharded step with the single-device step. The
parent test sets XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import masking_jax as mj


def loss_fn(params, x, mask, labels):
    """Masked LSTM over ragged sequences, masked mean pool, dense, cross-entropy."""
    outputs, _ = mj.lstm(params["lstm"], x, mask)
    logits = mj.masked_mean(outputs, mask) @ params["dense"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def main():
    devices = jax.devices()
    assert len(devices) == 8, devices
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 13, size=32)  # ragged, some rows empty
    sequences = [rng.normal(size=(n, 5)).astype(np.float32) for n in lengths]
    batch, _ = mj.pad_masked(sequences, maxlen=12, padding="pre", value=np.nan)
    labels = rng.integers(0, 3, size=32)
    key_lstm, key_dense = jax.random.split(jax.random.key(0))
    params = {"lstm": mj.init_lstm_params(key_lstm, 5, 16),
              "dense": jax.random.normal(key_dense, (16, 3))}
    step = jax.jit(jax.value_and_grad(loss_fn))

    single = step(params, batch.data, batch.mask, labels)

    mesh = Mesh(np.array(devices), ("batch",))
    by_batch = NamedSharding(mesh, P("batch"))
    replicated = NamedSharding(mesh, P())
    sharded_inputs = [jax.device_put(a, by_batch) for a in (batch.data, batch.mask, labels)]
    sharded = step(jax.device_put(params, replicated), *sharded_inputs)

    loss_single, grads_single = single
    loss_sharded, grads_sharded = sharded
    grad_diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                    zip(jax.tree.leaves(grads_single), jax.tree.leaves(grads_sharded), strict=True))
    print(json.dumps({
        "devices": len(devices),
        "mask_shards": len(sharded_inputs[1].addressable_shards),
        "loss_single": float(loss_single),
        "loss_sharded": float(loss_sharded),
        "max_grad_diff": grad_diff,
        "finite": bool(np.isfinite(float(loss_sharded))),
    }))


if __name__ == "__main__":
    main()
