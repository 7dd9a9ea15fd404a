"""Shared test helpers: masks of every layout, data with poisoned padding, the jitted layer
calls and the Keras context that the layer tests share."""

import jax
import numpy as np
from flax import nnx

LAYOUTS = ("post", "pre", "gappy", "empty_rows")

# (B=3, T=6) masks of the NNX layer tests: post-padded (lengths 6, 4, 1), pre-padded
# (6, 4, 1) and gappy.
LAYOUT_MASKS = {
    "post": np.arange(6) < np.array([6, 4, 1])[:, None],
    "pre": np.arange(6) >= np.array([0, 2, 5])[:, None],
    "gappy": np.array([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 1], [1, 1, 0, 0, 0, 0]], bool),
}

# Keras' own code broadcasts by rank: run it (only it, `with keras_mode:`) outside the
# suite's strict `jax_numpy_rank_promotion="raise"` (conftest.py).
keras_mode = jax.numpy_rank_promotion("allow")


def call_layer(layer, x, mask):
    """`layer(x, mask=mask)`, eagerly."""
    return layer(x, mask=mask)


jit_call_layer = nnx.jit(call_layer)  # one program per layer structure and input shapes
jit_apply = nnx.jit(lambda layer, x: layer(x))  # `layer(x)`, e.g. on a `Masked` or token ids


def random_mask(rng: np.random.Generator, batch: int, steps: int, layout: str) -> np.ndarray:
    """A bool (B, T) mask, True = real step, in the given layout.

    "post"/"pre": real steps first/last with lengths in [0, T]; "gappy": random
    holes; "empty_rows": gappy with the first row fully masked.
    """
    if layout in ("post", "pre"):
        lengths = rng.integers(0, steps + 1, size=batch)
        lengths[0] = steps  # always one full row
        positions = np.arange(steps)
        return (
            positions < lengths[:, None]
            if layout == "post"
            else positions >= steps - lengths[:, None]
        )
    mask = rng.random((batch, steps)) < 0.6
    if layout == "empty_rows":
        mask[0] = False
    return mask


def poison_padding(x: np.ndarray, mask: np.ndarray, value: float = np.nan) -> np.ndarray:
    """A copy of x with `value` (NaN by default) at every padded step."""
    x = np.array(x, dtype=np.float32, copy=True)
    x[~mask] = value
    return x


def relaid(x_post: np.ndarray, lengths, seed: int = 0) -> list[tuple]:
    """The same sequences post-padded, pre-padded and with holes, NaN in the padding.

    Row b's sequence is `x_post[b, :lengths[b]]`. Returns `(name, x, mask, positions)`
    for the layouts "post", "pre" and "gappy"; `positions[b]` are row b's real steps
    in that layout, in order.
    """
    rng = np.random.default_rng(seed)
    batch, steps = x_post.shape[:2]
    out = []
    for name in ("post", "pre", "gappy"):
        x = np.full_like(x_post, np.nan)
        mask = np.zeros((batch, steps), bool)
        positions = []
        for b, n in enumerate(lengths):
            if name == "post":
                pos = np.arange(n)
            elif name == "pre":
                pos = np.arange(steps - n, steps)
            else:
                pos = np.sort(rng.choice(steps, n, replace=False))
            x[b, pos] = x_post[b, :n]
            mask[b, pos] = True
            positions.append(pos)
        out.append((name, x, mask, positions))
    return out


def assert_vmap_matches_one_compile(module, xs, masks, call):
    """`jax.vmap` over a leading axis of batches equals one jitted call per batch, and those
    calls share one compile (a new mask value does not retrace).

    `call(module, x, mask)` returns an array; `xs` is (K, B, T, ...) and `masks` (K, B, T).
    """
    graphdef, state = nnx.split(module)

    def pure(state, x, mask):
        return call(nnx.merge(graphdef, state), x, mask)

    out = jax.jit(jax.vmap(pure, in_axes=(None, 0, 0)))(state, xs, masks)
    jitted = jax.jit(pure)
    expected = np.stack([jitted(state, x, m) for x, m in zip(xs, masks, strict=True)])
    assert jitted._cache_size() == 1
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
