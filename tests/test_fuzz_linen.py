"""Fuzz harness over every public layer of `masking_jax.linen`, abused as users do.

The strategies, call kinds and outcome check are `test_fuzz_nnx`'s (same tiny shapes, so
the core kernels compile once for both): a drawn option or call either gives the
reference at the real steps (a plain loop over the real steps, `flax.linen.RNN` with
`seq_lengths`, numpy pooling) with no NaN there although the padding holds NaN, or
raises `ValueError`/`TypeError` from masking_jax's own code naming a bad parameter.
Linen modules are dataclasses: their options are checked when the module is built.

Bounded by default; `MASKING_JAX_FUZZ_PROFILE=nightly` draws many random examples.
"""

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_fuzz_nnx as nf
from hypothesis import given
from hypothesis import strategies as st
from rnn_reference import rnn_ref

import masking_jax as mj
from masking_jax import linen as ml

B, T, D, H = nf.B, nf.T, nf.D, nf.H
FLAG, SIZE_BAD, UNROLL, DTYPE, ACTIVATION = nf.FLAG, nf.SIZE_BAD, nf.UNROLL, nf.DTYPE, nf.ACTIVATION
KEY = jax.random.key(0)

# --------------------------------------------------------------------------- constructors

KERAS_OPTIONS = {
    "features": ([H, np.int64(H)], SIZE_BAD), "return_sequences": FLAG, "return_state": FLAG,
    "reverse": FLAG, "zero_output_for_mask": FLAG, "use_bias": FLAG, "unroll": UNROLL,
    "param_dtype": DTYPE, "activation": ACTIVATION,
}  # fmt: skip
GATES = {"recurrent_activation": ACTIVATION}
SPECS = {  # name: (build, {option: (valid values, invalid values)})
    "SimpleRNN": (ml.SimpleRNN, KERAS_OPTIONS),
    "LSTM": (ml.LSTM, {**KERAS_OPTIONS, **GATES, "unit_forget_bias": FLAG, "use_cudnn": FLAG}),
    "GRU": (ml.GRU, {**KERAS_OPTIONS, **GATES, "reset_after": FLAG}),
    "RNN": (ml.RNN, {
        "cell": ([nn.GRUCell(H)], [3, jax.nn.relu, "gru", None, nn.Dense]),
        "return_sequences": FLAG, "return_state": FLAG, "reverse": FLAG,
        "zero_output_for_mask": FLAG, "unroll": UNROLL,
    }),
    "Bidirectional": (ml.Bidirectional, {
        "forward": ([ml.GRU(H), ml.RNN(nn.GRUCell(H))], [nn.Dense(H), nn.GRUCell(H), "gru"]),
        "merge_mode": (["concat", "sum", "mul", "ave", None], ["max", "Concat", 1, ""]),
    }),
    "GlobalAveragePooling1D": (ml.GlobalAveragePooling1D, {"keepdims": FLAG}),
    "GlobalMaxPooling1D": (ml.GlobalMaxPooling1D, {"keepdims": FLAG}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_bad_option_alone_is_named(name):
    """Exhaustive, not drawn: every invalid value of every option, the others valid."""
    build, spec = SPECS[name]
    for option, (_, invalid) in spec.items():
        for value in invalid:
            kwargs = {k: valid[0] for k, (valid, _) in spec.items()}
            kwargs[option] = value
            nf.check_outcome(lambda: build(**kwargs), {option})  # noqa: B023


@nf.fuzz(60)
@given(data=st.data())
def test_constructors(data):
    """Up to two bad options at once; a valid layer keeps every option as given."""
    name = data.draw(st.sampled_from(sorted(SPECS)))
    build, spec = SPECS[name]
    kwargs, bad = nf.draw_kwargs(data, spec)
    layer = nf.check_outcome(lambda: build(**kwargs), bad)
    if layer is not None:
        for option, value in kwargs.items():
            assert getattr(layer, option) is value, option


BACKWARD = {  # backward layer of Bidirectional(GRU(H)): (layer, the option it gets wrong)
    "none": (None, None), "reverse": (ml.GRU(H, reverse=True), None),
    "cell_reverse": (ml.RNN(nn.GRUCell(H), reverse=True, return_sequences=False), None),
    "same_direction": (ml.GRU(H), "backward"),
    "sequences": (ml.GRU(H, reverse=True, return_sequences=True), "backward"),
    "state": (ml.LSTM(H, reverse=True, return_state=True), "backward"),
    "dense": (nn.Dense(H), "backward"), "string": ("gru", "backward"),
}  # fmt: skip


@nf.fuzz(20)
@given(backward=st.sampled_from(sorted(BACKWARD)), merge_mode=nf.pool(["concat", None],
                                                                    ["max", 0]))  # fmt: skip
def test_bidirectional_halves(backward, merge_mode):
    """Halves that disagree (direction, return_sequences, return_state) are named."""
    layer, wrong = BACKWARD[backward]
    (mode, mode_ok) = merge_mode
    bad = ({wrong} if wrong else set()) | (set() if mode_ok else {"merge_mode"})
    nf.check_outcome(lambda: ml.Bidirectional(ml.GRU(H), layer, merge_mode=mode), bad)


# --------------------------------------------------------------------------- calls

LAYERS = {  # name: (reference cell, layer); few static configurations (compiles)
    "lstm": ("lstm", ml.LSTM(H, return_sequences=True, zero_output_for_mask=True)),
    "lstm_rev_last": ("lstm", ml.LSTM(H, reverse=True)),
    "gru_rev": ("gru", ml.GRU(H, return_sequences=True, reverse=True)),
    "simple": ("simple_rnn", ml.SimpleRNN(H, return_sequences=True)),
    "cell": ("cell", ml.RNN(nn.SimpleCell(H))),
    "bidirectional": ("lstm", ml.Bidirectional(ml.LSTM(H, return_sequences=True))),
}
VARIABLES = {name: layer.init(KEY, np.ones((B, T, D), np.float32))
             for name, (_, layer) in LAYERS.items()}  # fmt: skip
_JITTED = {}


def _apply(name, args, kwargs, jit=False):
    """`layer.apply(variables, *args, **kwargs)`, eager or through one cached jit per layer."""
    layer = LAYERS[name][1]
    if not jit:
        return layer.apply(VARIABLES[name], *args, **kwargs)
    if name not in _JITTED:
        _JITTED[name] = jax.jit(lambda v, a, k: layer.apply(v, *a, **k))
    return _JITTED[name](VARIABLES[name], args, kwargs)


def _keras(params):
    return {"bias": None, **params}


def _cell_ref(name, x, mask):
    """A plain loop over each row's real steps with the Linen cell: outputs `(B, T, H)`."""
    cell, variables = LAYERS[name][1].cell, {"params": VARIABLES[name]["params"]["cell"]}
    out = np.zeros((*mask.shape, H), np.float32)
    for b in range(mask.shape[0]):
        carry = cell.initialize_carry(KEY, (1, D))
        for t in np.flatnonzero(mask[b]):
            carry, y = cell.apply(variables, carry, jnp.asarray(x[b : b + 1, t], jnp.float32))
            out[b, t] = y[0]
    return out


@nf.fuzz(40)
@given(which=st.sampled_from(list(LAYERS)), call=nf.calls(nf._rnn_valid, jit=st.booleans()))
def test_recurrent_layer_calls(which, call):
    """x shapes, dtypes (integers are cast), ranks; masks of every kind; Masked or (x, mask)."""
    if which == "cell" and call.bad == {"x"} and call.x.shape == (B, T, D + 1):
        with pytest.raises(flax.errors.ScopeParamShapeError):  # an arbitrary cell's own check
            _apply(which, *call.arguments())
        return
    out = nf.check_outcome(lambda: _apply(which, *call.arguments(), jit=call.jit), call.bad)
    if out is None:
        return
    cell, layer = LAYERS[which]
    mask, x = call.full[..., 0], call.x.astype(np.float32)  # the references see the cast x
    sequences = getattr(layer, "forward", layer).return_sequences
    assert isinstance(out, mj.Masked) == (sequences and call.passing == "masked_x")
    out = np.asarray(out.data if isinstance(out, mj.Masked) else out)
    params = VARIABLES[which]["params"]
    if which == "cell":
        nf._assert_real_steps_equal(out, _cell_ref(which, x, mask), call.full)
    elif which == "bidirectional":
        parts = [rnn_ref(cell, _keras(params[half]), x, mask, reverse=half == "backward")[0]
                 for half in ("forward", "backward")]  # fmt: skip
        nf._assert_real_steps_equal(out, np.concatenate(parts, -1), call.full)
    else:
        outputs, state = rnn_ref(cell, _keras(params), x, mask, reverse=layer.reverse,
                                 zero_output_for_mask=layer.zero_output_for_mask)  # fmt: skip
        if sequences:
            nf._assert_real_steps_equal(out, outputs, call.full)
        else:  # the output after each row's last real step: the final h
            assert np.isfinite(out).all()
            np.testing.assert_allclose(out, state[0], rtol=2e-5, atol=2e-6)


SEQ_LENGTHS = {  # seq_lengths of RNN(cell): (value, valid)
    "list": ([3, 1], True), "array": (np.array([0, 2]), True), "int64": (np.array([3, 3]), True),
    "float": (np.array([1.0, 2.0]), False), "long": ([4, 1], False), "negative": ([-1, 2], False),
    "batch": ([1, 2, 3], False), "matrix": ([[1, 2]], False), "ragged": ([[1], [1, 2]], False),
}  # fmt: skip


@nf.fuzz(20)
@given(lengths=st.sampled_from(sorted(SEQ_LENGTHS)), with_mask=st.booleans(),
       masked=st.booleans())  # fmt: skip
def test_cell_rnn_seq_lengths(lengths, with_mask, masked):
    """`seq_lengths=` (as for `nn.RNN`) gives `nn.RNN(cell)(x, seq_lengths=...)` at the real
    steps; bad lengths, or lengths with a mask (also a `Masked` x), are named."""
    value, ok = SEQ_LENGTHS[lengths]
    bad = set() if ok else {"seq_lengths"}
    if with_mask or masked:
        bad = {"seq_lengths", "mask"}
    x = nf._x("ok")
    if ok and not bad:
        real = np.arange(T) < np.asarray(value)[:, None]
        x = np.where(real[..., None], x, np.nan).astype(np.float32)
    arg = mj.Masked(x, nf.MASKS[0]) if masked else x
    kwargs = {"mask": nf.MASKS[1]} if with_mask and not masked else {}
    out = nf.check_outcome(lambda: _apply("cell", (arg,), {**kwargs, "seq_lengths": value}), bad)
    if out is None:
        return
    variables = VARIABLES["cell"]
    expected = nn.RNN(LAYERS["cell"][1].cell).apply(
        variables, np.nan_to_num(x), seq_lengths=np.asarray(value))  # fmt: skip
    full = np.broadcast_to(real[..., None], (B, T, H))
    nf._assert_real_steps_equal(np.asarray(out), np.asarray(expected), full)


POOLS = {  # name: (layer, kind of the numpy reference)
    "mean": (ml.GlobalAveragePooling1D(), "mean"),
    "max": (ml.GlobalMaxPooling1D(), "max"),
    "max_keepdims": (ml.GlobalMaxPooling1D(keepdims=True), "max"),
}


def _pool_apply(layer, args, kwargs):
    return layer.apply({}, *args, **kwargs)


_POOL_JIT = jax.jit(_pool_apply, static_argnums=0)


@nf.fuzz(40)
@given(which=st.sampled_from(list(POOLS)), call=nf.calls(nf._time_valid, jit=st.booleans()))
def test_pooling_calls(which, call):
    """Masked mean / max over the real steps as numpy gives it; the mask ends here."""
    layer, kind = POOLS[which]
    run = _POOL_JIT if call.jit else _pool_apply
    out = nf.check_outcome(lambda: run(layer, *call.arguments()), call.bad)
    if out is None:
        return
    assert not isinstance(out, mj.Masked)
    out = np.asarray(out, np.float64)
    assert np.isfinite(out).all(), "NaN or inf in a pooled output"
    expected = nf._np_pool(np.asarray(call.x, np.float64), call.full, kind)
    if layer.keepdims:
        expected = expected[:, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- coverage

FUZZED = {
    "SimpleRNN": test_recurrent_layer_calls, "LSTM": test_recurrent_layer_calls,
    "GRU": test_recurrent_layer_calls, "RNN": test_cell_rnn_seq_lengths,
    "Bidirectional": test_bidirectional_halves, "GlobalAveragePooling1D": test_pooling_calls,
    "GlobalMaxPooling1D": test_pooling_calls,
}  # fmt: skip


def test_every_public_name_is_fuzzed():
    assert set(ml.__all__) <= set(SPECS), "add the constructor spec to tests/test_fuzz_linen.py"
    missing = set(ml.__all__) - set(FUZZED)
    assert not missing, f"add a fuzz case to tests/test_fuzz_linen.py for {sorted(missing)}"
