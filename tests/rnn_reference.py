"""The slow reference for the RNN kernels: a plain Python loop over each row's valid steps.

It is the oracle for `masking_jax.simple_rnn`, `lstm`, `gru` and for every later fast
path. It shares no code with the package: the cells are written out gate by gate
from the Keras 3 equations (`keras/src/layers/rnn/{simple_rnn,lstm,gru}.py`), and
the mask is handled by visiting only the valid steps of each row, in order (or in
reverse), so padded inputs are never read. Written with `jax.numpy` so that
`jax.value_and_grad` works through it; the mask must be concrete (numpy).

Conventions it pins down (the kernels must agree):
- output at a valid step = h after the step;
- output at a masked step = zeros with `zero_output_for_mask`, else the h of the
  last valid step already consumed (in processing order), or the initial h;
- final state = the state after the last valid step consumed, or the initial state;
- dropout (given as explicit scales, one `(D,)` and one `(H,)` per row, 0 or
  1 / (1 - rate)): every step of a row reads `x_t * input_scale` and, in every
  recurrent matmul, `h * recurrent_scale`; the carried h and c are not dropped.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "sigmoid": lambda v: 1.0 / (1.0 + jnp.exp(-v)),
    "hard_sigmoid": lambda v: jnp.clip(v / 6.0 + 0.5, 0.0, 1.0),
    "relu": lambda v: jnp.maximum(v, 0.0),
    "linear": lambda v: v,
}


def _act(name):
    return name if callable(name) else ACTIVATIONS[name]


def _gates(w, n):
    """Splits the last axis of `w` into `n` equal gate blocks."""
    h = w.shape[-1] // n
    return [w[..., k * h : (k + 1) * h] for k in range(n)]


def simple_rnn_step(params, x_t, state, h_rec, activation="tanh"):
    """`h_rec`: the h that enters the recurrent matmul (h, or h dropped)."""
    act = _act(activation)
    k, r, b = params["kernel"], params["recurrent_kernel"], params["bias"]
    return (act(x_t @ k + h_rec @ r + (0.0 if b is None else b)),)


def lstm_step(params, x_t, state, h_rec, activation="tanh", recurrent_activation="sigmoid"):
    act, rec = _act(activation), _act(recurrent_activation)
    k_i, k_f, k_c, k_o = _gates(params["kernel"], 4)
    r_i, r_f, r_c, r_o = _gates(params["recurrent_kernel"], 4)
    b = params["bias"]
    b_i, b_f, b_c, b_o = (0.0,) * 4 if b is None else _gates(b, 4)
    _, c = state
    i = rec(x_t @ k_i + h_rec @ r_i + b_i)
    f = rec(x_t @ k_f + h_rec @ r_f + b_f)
    g = act(x_t @ k_c + h_rec @ r_c + b_c)
    o = rec(x_t @ k_o + h_rec @ r_o + b_o)
    c = f * c + i * g
    return (o * act(c), c)


def gru_step(
    params, x_t, state, h_rec, activation="tanh", recurrent_activation="sigmoid",
    reset_after=True,
):  # fmt: skip
    act, rec = _act(activation), _act(recurrent_activation)
    k_z, k_r, k_h = _gates(params["kernel"], 3)
    r_z, r_r, r_h = _gates(params["recurrent_kernel"], 3)
    b = params["bias"]
    if b is None:
        bi = bh = (0.0,) * 3
    elif reset_after:
        bi, bh = _gates(b[0], 3), _gates(b[1], 3)
    else:
        bi, bh = _gates(b, 3), (0.0,) * 3
    (h,) = state
    z = rec(x_t @ k_z + bi[0] + h_rec @ r_z + bh[0])
    r = rec(x_t @ k_r + bi[1] + h_rec @ r_r + bh[1])
    if reset_after:
        cand = act(x_t @ k_h + bi[2] + r * (h_rec @ r_h + bh[2]))
    else:
        cand = act(x_t @ k_h + bi[2] + (r * h_rec) @ r_h)
    return (z * h + (1.0 - z) * cand,)


STEPS = {"simple_rnn": simple_rnn_step, "lstm": lstm_step, "gru": gru_step}
N_STATES = {"simple_rnn": 1, "lstm": 2, "gru": 1}


@functools.partial(jax.jit, static_argnames=("cell", "options"))
def _step(params, x_row, t, state, x_scale, h_scale, *, cell, options):
    """One step of one row, reading only `x_row[t]`, its inputs and recurrent h scaled by the
    row's dropout scales. Jitted only so that the loop below costs one dispatch per step
    (eager, op by op, it is ten times slower); the math is the same."""
    return STEPS[cell](params, x_row[t] * x_scale, state, state[0] * h_scale, **dict(options))


def rnn_ref(
    cell,
    params,
    x,
    mask=None,
    *,
    initial_state=None,
    reverse=False,
    zero_output_for_mask=False,
    input_scale=None,
    recurrent_scale=None,
    **cell_options,
):
    """The reference for `masking_jax.<cell>` with the same arguments and returns.

    `cell` is "simple_rnn", "lstm" or "gru"; `mask` a concrete boolean (B, T) array
    or None. Computes in float32 (or x's dtype if wider). `input_scale` `(B, D)` and
    `recurrent_scale` `(B, H)` are explicit dropout scales (`None`: no dropout).
    """
    x = jnp.asarray(x)
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    x = x.astype(dtype)
    params = {k: None if v is None else jnp.asarray(v, dtype) for k, v in params.items()}
    step = functools.partial(_step, cell=cell, options=tuple(sorted(cell_options.items())))
    n_states = N_STATES[cell]
    batch, steps = x.shape[:2]
    hidden = params["recurrent_kernel"].shape[0]
    mask = np.ones((batch, steps), bool) if mask is None else np.asarray(mask, bool)
    if initial_state is None:
        initial_state = (jnp.zeros((batch, hidden), dtype),) * n_states
    elif n_states == 1:
        initial_state = (initial_state,)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    ones = functools.partial(jnp.ones, dtype=dtype)
    x_scales = ones((batch, x.shape[2])) if input_scale is None else jnp.asarray(input_scale)
    h_scales = ones((batch, hidden)) if recurrent_scale is None else jnp.asarray(recurrent_scale)

    outputs, finals = [], []
    for b in range(batch):
        state = tuple(jnp.asarray(s[b], dtype) for s in initial_state)
        x_row = x[b]
        row = [None] * steps
        for t in order:
            if mask[b, t]:
                state = step(params, x_row, t, state, x_scales[b], h_scales[b])
                row[t] = state[0]
            else:
                row[t] = jnp.zeros_like(state[0]) if zero_output_for_mask else state[0]
        outputs.append(jnp.stack(row) if steps else jnp.zeros((0, hidden), dtype))
        finals.append(state)
    outputs = jnp.stack(outputs) if batch else jnp.zeros((0, steps, hidden), dtype)
    final = tuple(
        jnp.stack([f[k] for f in finals]) if batch else jnp.zeros((0, hidden), dtype)
        for k in range(n_states)
    )
    return outputs, final if n_states == 2 else final[0]


# --- test data shared by the RNN test files -------------------------------------------

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}

# One row per mask layout: full, post-padded, pre-padded, holes, fully masked, holes
# with padding at both ends. T = 7.
MASK_ROWS = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 1],
        [1, 0, 1, 1, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 1, 1, 0],
    ],
    bool,
)


def random_params(cell, rng, in_features, hidden, *, reset_after=True, use_bias=True, scale=0.5):
    """Random float32 params in the Keras layout (non-zero biases, to test their layout)."""
    g = GATES[cell]
    if not use_bias:
        bias_shape = None
    elif cell == "gru" and reset_after:
        bias_shape = (2, 3 * hidden)
    else:
        bias_shape = (g * hidden,)
    return {
        "kernel": (scale * rng.standard_normal((in_features, g * hidden))).astype(np.float32),
        "recurrent_kernel": (scale * rng.standard_normal((hidden, g * hidden))).astype(np.float32),
        "bias": None
        if bias_shape is None
        else (scale * rng.standard_normal(bias_shape)).astype(np.float32),
    }


def random_state(cell, rng, batch, hidden):
    """A random initial state: h, or the pair (h, c) for LSTM."""
    h = (0.5 * rng.standard_normal((batch, hidden))).astype(np.float32)
    if cell == "lstm":
        return h, (0.5 * rng.standard_normal((batch, hidden))).astype(np.float32)
    return h


def padded_inputs(rng, mask, in_features, pad_value=np.nan):
    """Random float32 x of shape mask.shape + (D,), with `pad_value` at masked steps."""
    x = rng.standard_normal((*mask.shape, in_features)).astype(np.float32)
    x[~mask] = pad_value
    return x
