"""The kernels' argument errors: raised at trace time, naming the argument, the rule, what
came in, and the fix."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rnn_reference import random_params

import masking_jax as mj

B, T, D, H = 2, 3, 3, 4
X = np.zeros((B, T, D), np.float32)
MASK = np.ones((B, T), bool)


def params(cell="lstm", **options):
    return random_params(cell, np.random.default_rng(0), D, H, **options)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        # x
        (lambda: mj.lstm(params(), X[0], MASK[0]), ValueError, r"`x` must be 3-D .*x\[None\]"),
        (lambda: mj.lstm(params(), X[..., 0]), ValueError, r"jax\.vmap.*x\[\.\.\., None\]"),
        (lambda: mj.gru(params("gru"), X.astype(np.complex64)), TypeError, "`x` must be a real"),
        # mask
        (lambda: mj.lstm(params(), X, MASK.astype(np.int32)), TypeError, r"astype\(bool\)"),
        (lambda: mj.lstm(params(), X, MASK[:, :2]), ValueError, "leading axes"),
        (lambda: mj.lstm(params(), X, MASK.T), ValueError, "does not match"),
        (lambda: mj.lstm(params(), X, MASK[..., None]), ValueError, r"`mask` must be 2-D"),
        # params
        (lambda: mj.lstm([1, 2, 3], X), TypeError, r"mapping .*get_weights"),
        (
            lambda: mj.lstm({k: v for k, v in params().items() if k != "bias"}, X),
            ValueError,
            r"missing key\(s\) 'bias'.*'kernel' \(D, 4H\)",
        ),
        (
            lambda: mj.lstm(params("gru"), X),
            ValueError,
            r"params\['kernel'\]` must have shape "
            r"\(D, 4H\) = \(3, 16\) for an LSTM with D=3 .* H=4 .* got \(3, 12\)",
        ),
        (lambda: mj.simple_rnn(params(), X), ValueError, r"params\['kernel'\].*\(D, H\)"),
        (lambda: mj.gru(dict(params("gru"), kernel=None), X), TypeError, "only 'bias' may be None"),
        (
            lambda: mj.lstm(dict(params(), bias=np.zeros(H, np.float32)), X),
            ValueError,
            r"params\['bias'\]` must have shape \(4H,\) = \(16,\)",
        ),
        (
            lambda: mj.lstm(dict(params(), recurrent_kernel=np.zeros(16, np.float32)), X),
            ValueError,
            r"recurrent_kernel'\]` must be 2-D",
        ),
        (
            lambda: mj.gru(params("gru", reset_after=False), X),
            ValueError,
            r"\(2, 3H\).*pass `reset_after=False`",
        ),
        (lambda: mj.gru(params("gru"), X, reset_after=False), ValueError, "reset_after=True"),
        (
            lambda: mj.lstm(dict(params(), kernel=np.zeros((D, 4 * H), np.int32)), X),
            TypeError,
            r"params\['kernel'\]` must be a floating",
        ),
        (lambda: mj.lstm(params(), X, D), TypeError, "must be a boolean array"),
        # initial state
        (
            lambda: mj.lstm(params(), X, initial_state=np.zeros((B, H), np.float32)),
            TypeError,
            r"pair \(h, c\)",
        ),
        (
            lambda: mj.gru(params("gru"), X, initial_state=np.zeros((B, H + 1), np.float32)),
            ValueError,
            r"`initial_state` must have shape \(B, H\) = \(2, 4\).*got \(2, 5\)",
        ),
        (
            lambda: mj.lstm(params(), X, initial_state=(np.zeros((B, H)), np.zeros((H,)))),
            ValueError,
            r"`initial_state c` must have shape",
        ),
        (
            lambda: mj.simple_rnn(params("simple_rnn"), X, initial_state=[np.zeros((B, H))] * 2),
            TypeError,
            "one",
        ),
        # options
        (lambda: mj.lstm(params(), X, activation="swish"), ValueError, "`activation` must be"),
        (
            lambda: mj.gru(params("gru"), X, recurrent_activation="soft"),
            ValueError,
            "`recurrent_activation` must be one of 'tanh', 'sigmoid', 'hard_sigmoid'",
        ),
        (lambda: mj.lstm(params(), X, reverse=jnp.array(True)), TypeError, "`reverse` must be"),
        (lambda: mj.lstm(params(), X, unroll=0), ValueError, "`unroll` must be >= 1"),
        (lambda: mj.lstm(params(), X, unroll=1.5), TypeError, r"`unroll` must be .*int"),
        # dropout
        (lambda: mj.lstm(params(), X, dropout=0.5), ValueError, r"`dropout_key` is required"),
        (
            lambda: mj.gru(params("gru"), X, recurrent_dropout=1.0, dropout_key=jax.random.key(0)),
            ValueError,
            r"`recurrent_dropout` must be in \[0, 1\).*got 1\.0",
        ),
        (lambda: mj.lstm(params(), X, dropout=-0.1), ValueError, r"`dropout` must be in \[0, 1\)"),
        (
            lambda: mj.lstm(params(), X, dropout=jnp.float32(0.5)),
            TypeError,
            r"`dropout` must be a Python float .*not an array",
        ),
        (
            lambda: mj.lstm(params(), X, dropout=0.5, dropout_key=jnp.zeros(3)),
            TypeError,
            r"`dropout_key` must be one PRNG key.*shape \(3,\)",
        ),
        (
            lambda: mj.lstm(
                params(), X, recurrent_dropout=0.5, dropout_key=jax.random.key(0), use_cudnn=True
            ),
            ValueError,
            "cuDNN has no recurrent dropout",
        ),
        (
            lambda: mj.bidirectional(mj.gru, (params("gru"),) * 2, X, dropout_key=0),
            TypeError,
            "`dropout_key` must be one PRNG key",
        ),
        # bidirectional and stacked
        (
            lambda: mj.bidirectional(mj.lstm, (params(), params()), X, merge_mode="max"),
            ValueError,
            "`merge_mode` must be one of 'concat', 'sum', 'mul', 'ave', None; got 'max'",
        ),
        (lambda: mj.bidirectional(mj.lstm, params(), X), TypeError, r"pair \(forward, backward\)"),
        (
            lambda: mj.bidirectional(mj.lstm, (params(), params()), X, reverse=True),
            TypeError,
            "sets `reverse`",
        ),
        (lambda: mj.bidirectional("lstm", (params(), params()), X), TypeError, "kernel function"),
        (lambda: mj.stacked_rnn(mj.lstm, params(), X), TypeError, "sequence"),
        (lambda: mj.stacked_rnn(mj.lstm, [], X), TypeError, "non-empty"),
        (
            lambda: mj.stacked_rnn([mj.lstm] * 3, [params(), params()], X),
            ValueError,
            "3 kernels for 2 layers",
        ),
        (
            lambda: mj.stacked_rnn(mj.lstm, [params()], X, initial_state=[None, None]),
            ValueError,
            "one entry",
        ),
        (
            lambda: mj.stacked_rnn(
                functools.partial(mj.bidirectional, mj.lstm, merge_mode=None),
                [(params(), params())],
                X,
            ),
            TypeError,
            "merge_mode other than None",
        ),
        # initialisers
        (lambda: mj.init_lstm_params(jax.random.key(0), 3.0, 4), TypeError, "`in_features`"),
        (lambda: mj.init_gru_params(jax.random.key(0), 3, -1), ValueError, "`hidden_features`"),
        (
            lambda: mj.init_simple_rnn_params(jax.random.key(0), 3, 4, dtype=jnp.int32),
            TypeError,
            "floating dtype",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_errors_raise_at_trace_time_under_jit():
    with pytest.raises(ValueError, match=r"params\['kernel'\]"):
        jax.jit(mj.lstm)(params("gru"), X, MASK)


def test_wider_params_than_inputs_raise():
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params())
        with pytest.raises(TypeError, match=r"float64, wider than the float32"):
            mj.lstm(wide, jnp.asarray(X, jnp.float32))
        outputs, _ = mj.lstm(wide, jnp.asarray(X, jnp.float64))
        assert outputs.dtype == jnp.float64
