"""The correctness check run before timing: a peer's results against masking_jax's.

Only what the semantics share is compared: outputs at real steps (peers differ at
padded steps), the final states, and for forward+backward the loss and the
gradient with respect to x at real steps. Errors are scaled absolute errors,
`max |ours - peer| / max(1, max |ours|)` ("relative-ish"), so one tolerance fits
values near 0 and large sums alike.
"""

import numpy as np

from .peers import Forward, Gradient

TOLERANCE = 1e-4  # float32 on CPU; TF32 matmuls on GPU need a looser one


def _scaled_error(ours: np.ndarray, peer: np.ndarray) -> float:
    ours, peer = np.asarray(ours, np.float64), np.asarray(peer, np.float64)
    if ours.shape != peer.shape:
        return float("inf")
    if ours.size == 0:
        return 0.0
    return float(np.max(np.abs(ours - peer)) / max(1.0, float(np.max(np.abs(ours)))))


def error(ours: Forward | Gradient, peer: Forward | Gradient, mask: np.ndarray) -> float:
    """The largest scaled error over everything the two results must share (NaN counts)."""
    if isinstance(ours, Forward):
        errors = [_scaled_error(ours.outputs[mask], peer.outputs[mask])]
        if len(ours.states) != len(peer.states):
            return float("inf")
        errors += [_scaled_error(a, b) for a, b in zip(ours.states, peer.states, strict=True)]
    else:
        errors = [
            _scaled_error(np.array(ours.loss), np.array(peer.loss)),
            _scaled_error(ours.grad_x[mask], peer.grad_x[mask]),
        ]
    worst = max(errors)
    return float("inf") if np.isnan(worst) else worst
