"""Masked losses and metrics over real steps, ready for an optax training step.

Shape legend: B batch, T time, C classes, D features. Masks are boolean,
True = real step, and cover the leading axes of the per-token loss, e.g. `(B, T)`.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import align_mask, as_array, check_choice
from ._ops import abs_squared, masked_count, masked_mean, masked_sum

REDUCTIONS = ("token_mean", "sequence_mean", "sum", "none")


def reduce_masked_loss(loss: Any, mask: Any, reduction: str = "token_mean") -> jax.Array:
    """Reduces a per-token loss over its real entries.

    Args:
      loss: per-token loss, e.g. `(B, T)`.
      mask: bool covering the leading axes of `loss` (True = real step).
      reduction: "token_mean" (the Keras weighting: sum over real tokens / their
        count), "sequence_mean" (mean over each row's real tokens, then over the rows
        that have any), "sum", or "none" (the loss with zeros at padding).

    Returns:
      A scalar, or `loss`'s shape for "none". A batch with no real token gives 0.

    Examples:
      >>> loss = jnp.array([[1.0, 3.0, jnp.nan], [2.0, jnp.nan, jnp.nan]])
      >>> mask = jnp.array([[True, True, False], [True, False, False]])
      >>> reduce_masked_loss(loss, mask), reduce_masked_loss(loss, mask, "sequence_mean")
      (Array(2., dtype=float32), Array(2., dtype=float32))
    """
    check_choice(reduction, "reduction", REDUCTIONS)
    loss = as_array(loss, "loss", complex_ok=False)
    if reduction == "none":
        return jnp.where(align_mask(mask, loss), loss, 0)
    every_axis = tuple(range(loss.ndim))
    if reduction == "sum":
        return masked_sum(loss, mask, every_axis)
    if reduction == "token_mean":
        return masked_mean(loss, mask, every_axis)
    per_row_axes = every_axis[1:]
    per_row = masked_mean(loss, mask, per_row_axes)
    return masked_mean(per_row, masked_count(loss, mask, per_row_axes) > 0, 0)


def _logits_and_labels(logits: Any, labels: Any) -> tuple[jax.Array, jax.Array, bool]:
    """Checked `logits` `(..., C)` and `labels`; True for integer class ids `(...)`,
    False for class probabilities `(..., C)`."""
    logits = as_array(logits, "logits", complex_ok=False)
    labels = as_array(labels, "labels", complex_ok=False)
    if logits.ndim < 2 or logits.shape[-1] == 0:
        raise ValueError(
            f"`logits` must have a class axis of at least one class, e.g. (B, T, C); got "
            f"shape {logits.shape}."
        )
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if labels.shape != logits.shape[:-1]:
            raise ValueError(
                f"integer `labels` must have the shape of `logits` without the class axis, "
                f"{logits.shape[:-1]}; got {labels.shape}."
            )
        return logits, labels, True
    if labels.shape != logits.shape:
        raise ValueError(
            f"float `labels` (one-hot or probabilities) must have the shape of `logits`, "
            f"{logits.shape}; got {labels.shape}. Integer class ids need an integer dtype."
        )
    return logits, labels, False


def _check_label_range(labels: jax.Array, token_mask: jax.Array, classes: int) -> None:
    """Raises when a concrete label at a real step is outside `[0, classes)`.

    Padded steps may hold anything (e.g. -1). Traced labels cannot be checked; the
    losses then define the result (see `masked_cross_entropy`).
    """
    if isinstance(labels, jax.core.Tracer) or isinstance(token_mask, jax.core.Tracer):
        return
    real = np.asarray(labels)[np.broadcast_to(np.asarray(token_mask), labels.shape)]
    if real.size and (real.min() < 0 or real.max() >= classes):
        raise ValueError(
            f"integer `labels` at real steps must be class ids in [0, {classes}) for "
            f"`logits` with C={classes} classes; got values from {real.min()} to "
            f"{real.max()}. Labels at padded steps are never read."
        )


def masked_cross_entropy(
    logits: Any, labels: Any, mask: Any, reduction: str = "token_mean"
) -> jax.Array:
    """Softmax cross-entropy over real tokens.

    Args:
      logits: `(B, T, C)` unnormalised scores (integer scores count as the default
        float dtype).
      labels: integer class ids `(B, T)` or float one-hot / probabilities `(B, T, C)`.
        Labels at padded steps are never read (any value is fine there).
      mask: bool `(B, T)`, True = real step.
      reduction: see `reduce_masked_loss`.

    An integer label at a real step must lie in `[0, C)`: outside `jax.jit` any
    other raises `ValueError`. Under `jit` it cannot be checked, and it counts as
    the all-zero one-hot row that `jax.nn.one_hot` makes for it: that token's loss
    is 0, with no gradient, but it still counts in "token_mean" (never NaN, never
    another class).

    Examples:
      >>> logits = jnp.array([[[0.0, 0.0], [jnp.nan, 0.0]]])
      >>> masked_cross_entropy(logits, jnp.array([[1, -1]]), jnp.array([[True, False]]))
      Array(0.6931472, dtype=float32)
    """
    logits, labels, integer_labels = _logits_and_labels(logits, labels)
    token_mask = align_mask(mask, logits[..., 0], "mask", "logits without the class axis")
    # integer scores as floats first: `jax.nn.log_softmax` would cast its -inf start to int
    logits = logits.astype(jnp.result_type(logits.dtype, float))
    log_probs = jax.nn.log_softmax(jnp.where(token_mask[..., None], logits, 0), axis=-1)
    if integer_labels:
        classes = logits.shape[-1]
        _check_label_range(labels, token_mask, classes)
        ids = jnp.where(token_mask, labels, 0)
        in_range = (ids >= 0) & (ids < classes)
        picked = jnp.take_along_axis(log_probs, jnp.clip(ids, 0, classes - 1)[..., None], -1)
        loss = jnp.where(in_range, -picked[..., 0], 0)
    else:
        loss = -jnp.sum(jnp.where(token_mask[..., None], labels, 0) * log_probs, axis=-1)
    return reduce_masked_loss(loss, token_mask, reduction)


def masked_mse(
    predictions: Any, targets: Any, mask: Any, reduction: str = "token_mean"
) -> jax.Array:
    """Mean squared error over real tokens (Keras MSE: the mean over each token's features).

    Args:
      predictions, targets: `(B, T, ...)` of one shape, numeric (complex gives the
        mean of `|error|**2`; boolean raises `TypeError`).
      mask: bool covering the leading axes, e.g. `(B, T)`; the per-token error
        averages the axes the mask does not cover.
      reduction: see `reduce_masked_loss`.

    Examples:
      >>> masked_mse(jnp.array([[1.0, 5.0]]), jnp.array([[3.0, jnp.nan]]),
      ...            jnp.array([[True, False]]))
      Array(4., dtype=float32)
    """
    predictions = as_array(predictions, "predictions", bool_ok=False)
    targets = as_array(targets, "targets", bool_ok=False)
    if predictions.shape != targets.shape:
        raise ValueError(
            f"`predictions` and `targets` must have one shape; got {predictions.shape} "
            f"and {targets.shape}."
        )
    full_mask = align_mask(mask, predictions, "mask", "predictions")
    error = jnp.where(full_mask, predictions - targets, 0)
    token_axes = tuple(range(np.ndim(mask), predictions.ndim))
    per_token = jnp.mean(abs_squared(error), axis=token_axes)
    return reduce_masked_loss(per_token, mask, reduction)


def masked_accuracy(logits: Any, labels: Any, mask: Any) -> jax.Array:
    """Fraction of real tokens whose arg-max class equals the label (0 with none real).

    Args:
      logits: `(B, T, C)` scores.
      labels: integer ids `(B, T)` or one-hot `(B, T, C)`.
      mask: bool `(B, T)`, True = real step.

    Integer labels at real steps outside `[0, C)` raise `ValueError` outside `jit`;
    under `jit` they count as misses, as does a one-hot row with no positive entry.

    Examples:
      >>> masked_accuracy(jnp.array([[[0.0, 1.0], [1.0, 0.0]]]), jnp.array([[1, 1]]),
      ...                 jnp.array([[True, False]]))
      Array(1., dtype=float32)
    """
    logits, labels, integer_labels = _logits_and_labels(logits, labels)
    if integer_labels:
        _check_label_range(labels, align_mask(mask, labels, "mask", "labels"), logits.shape[-1])
    ids = labels if integer_labels else jnp.argmax(labels, axis=-1)
    hits = jnp.argmax(logits, axis=-1) == ids
    if not integer_labels:  # an all-zero row names no class: a miss, like an id out of range
        hits &= jnp.any(labels > 0, axis=-1)
    hits = hits.astype(jnp.float32)
    return reduce_masked_loss(hits, mask, "token_mean")
