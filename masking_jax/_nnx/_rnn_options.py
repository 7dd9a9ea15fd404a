"""What the recurrent layers share: dropout driven by `rngs`, and the state of `stateful` layers.

- Dropout (`dropout_options`, `dropout_kwargs`): the rates, the layer's own
  `dropout_rngs` stream and the `deterministic` flag that `model.train()` /
  `model.eval()` set, as `nnx.Dropout` has them.
- `stateful_option`: the `stateful` flag and the variable it needs.
- `RecurrentState`: the `nnx.Variable` kind that holds the final state of a
  stateful layer between calls (not an `nnx.Param`, so optimizers built with
  `wrt=nnx.Param` leave it alone), and `carried_state` / `keep_state` /
  `forget_state` that read, write and clear it.

Shape legend: B batch, H hidden units.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ._arguments import check_bool, check_rate, check_rngs


class RecurrentState(nnx.Variable):
    """The state a `stateful=True` recurrent layer carries from one call to the next.

    Its value is `None` before the first call and after `reset_state()`, else the
    final state of the last call: h `(B, H)`, the LSTM's pair `(h, c)`, or a custom
    cell's carry. Select it with `nnx.state(model, RecurrentState)`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from masking_jax.nnx import GRU
      >>> layer = GRU(2, 3, stateful=True, rngs=nnx.Rngs(0))
      >>> _ = layer(jnp.ones((4, 5, 2)))  # starts from zeros, keeps its final h
      >>> layer.states.get_value().shape
      (4, 3)
      >>> layer.reset_state()
      >>> layer.states.get_value() is None
      True
    """


def dropout_options(
    layer: Any, dropout: Any, recurrent_dropout: Any, deterministic: Any, rngs: nnx.Rngs | None
) -> None:
    """Checks the dropout options and sets them on `layer`, with its `dropout_rngs`.

    A layer with a nonzero rate keeps its own fork of the `"dropout"` stream of `rngs`
    (the default stream if there is none), as `nnx.Dropout` does. Raises `TypeError`
    when such a layer has no `rngs`.
    """
    layer.dropout = check_rate(dropout, "dropout")
    layer.recurrent_dropout = check_rate(recurrent_dropout, "recurrent_dropout")
    layer.deterministic = check_bool(deterministic, "deterministic")
    if not (layer.dropout or layer.recurrent_dropout):
        layer.dropout_rngs = None
    elif rngs is None:
        raise TypeError("`rngs` is required for dropout: pass `rngs=nnx.Rngs(dropout=...)`.")
    else:
        layer.dropout_rngs = check_rngs(rngs)["dropout"].fork()


def stateful_option(layer: Any, stateful: Any) -> None:
    """Checks `stateful` and sets it on `layer`, with the `RecurrentState` it keeps (or None)."""
    layer.stateful = check_bool(stateful, "stateful")
    layer.states = RecurrentState(None) if layer.stateful else None


def dropout_kwargs(layer: Any) -> dict[str, Any]:
    """The kernel's dropout arguments for this call: none in evaluation (`deterministic`)."""
    if layer.deterministic or not (layer.dropout or layer.recurrent_dropout):
        return {}
    kwargs = {"dropout": layer.dropout, "dropout_key": layer.dropout_rngs()}
    if layer.recurrent_dropout:
        kwargs["recurrent_dropout"] = layer.recurrent_dropout
    return kwargs


def carried_state(layer: Any, x: Any) -> Any:
    """The state a layer starts this call on `x` `(B, T, D)` from, `None` for the default.

    `None` unless the layer is stateful and holds a state (and `x` is 3-D: a wrong rank
    is the kernel's to report). Raises `ValueError` when the state is that of a batch of
    another size.
    """
    if not layer.stateful or jnp.ndim(x) != 3:
        return None
    state = layer.states.get_value()
    if state is None:
        return None
    held, batch = jax.tree.leaves(state)[0].shape[0], jnp.shape(x)[0]
    if held != batch:
        raise ValueError(
            f"This stateful {type(layer).__name__} holds the state of a batch of {held} rows; "
            f"`x` has {batch}. Row b of each call continues row b of the last one, so keep "
            "the batch size, or call `reset_state()` to start afresh with any batch size."
        )
    return state


def keep_state(layer: Any, state: Any) -> None:
    """Stores `state` for the next call of a stateful layer (no gradient flows back
    through it, as in Keras); does nothing for a layer that is not stateful."""
    if layer.stateful:
        layer.states.set_value(jax.tree.map(jax.lax.stop_gradient, state))


def forget_state(layer: Any) -> None:
    """Forgets the state a stateful layer keeps: its next call starts afresh."""
    if layer.stateful:
        layer.states.set_value(None)
