"""Fuzz harness over every public layer of `masking_jax.nnx`, abused as users do.

Each test draws constructor or call arguments (bad Python types, zero and negative
sizes, floats for ints, strings for bools; shapes, dtypes, ranks, broadcastable and
misfit masks, a `Masked` in place of `(x, mask)`, eager or under `jit`) and knows which
draws are valid. A valid draw must give the reference result (a plain loop over the
real steps, or numpy) at the real steps, with no NaN there although the padding holds
NaN; an invalid draw must raise `ValueError`/`TypeError` from masking_jax's own code
(never from inside numpy, JAX or Flax) naming one of the bad parameters.

Bounded by default (few deterministic examples over tiny, reused shapes: seconds of
compiling); `MASKING_JAX_FUZZ_PROFILE=nightly` draws many random examples.
"""

import os
import pathlib
import re
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from rnn_reference import rnn_ref

import masking_jax as mj
from masking_jax import nnx as mnx

_PROFILES = {"default": {"max_examples": 25, "derandomize": True}, "nightly": {"max_examples": 600}}
PROFILE = os.environ.get("MASKING_JAX_FUZZ_PROFILE", "default")
if PROFILE not in _PROFILES:
    raise ValueError(
        f"MASKING_JAX_FUZZ_PROFILE must be one of {sorted(_PROFILES)}; got {PROFILE!r}."
    )


def fuzz(examples: int):
    """Settings: `examples` draws by default (the nightly profile draws its own number)."""
    options = {"max_examples": examples, "derandomize": True} if PROFILE == "default" else {}
    return settings(
        **{**_PROFILES[PROFILE], **options}, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip


B, T, D, H = 2, 3, 2, 3
MASKS = [  # (B, T) masks: post-padded and empty, pre-padded and gappy, full
    np.array([[True, True, False], [False, False, False]]),
    np.array([[False, True, True], [True, False, True]]),
    np.ones((B, T), bool),
]
_PACKAGE = pathlib.Path(mj.__file__).resolve().parent


def _names(message: str, names) -> bool:
    return any(re.search(rf"`{re.escape(n)}([`.\[=])", message) for n in names)


def check_outcome(call, bad: set[str]):
    """`call()`'s result when `bad` is empty; else asserts a clear error naming one of `bad`."""
    if currently_in_test_context():  # the share of each outcome, in hypothesis' statistics
        event("invalid: a clear error" if bad else "valid: compared with the reference")
    if not bad:
        return call()
    try:
        result = call()
    except (ValueError, TypeError) as err:
        frame = traceback.extract_tb(err.__traceback__)[-1]
        assert pathlib.Path(frame.filename).resolve().is_relative_to(_PACKAGE), (
            f"raised inside {frame.filename}:{frame.lineno}, not by masking_jax: {err!r}"
        )
        assert _names(str(err), bad), f"{type(err).__name__} names none of {sorted(bad)}: {err}"
        return None
    raise AssertionError(f"accepted bad {sorted(bad)}; returned {type(result).__name__}")


def pool(valid, invalid):
    """(value, is_valid) pairs drawn from a list of valid and a list of invalid values."""
    return st.one_of(
        st.sampled_from(valid).map(lambda v: (v, True)),
        st.sampled_from(invalid).map(lambda v: (v, False)),
    )


SIZE_BAD = [0, -1, 2.0, "2", True, None, [2], np.float32(2)]
FLAG = ([True, False, np.bool_(True)], ["True", "", 0, 1, 1.0, None, np.array(True)])
UNROLL = ([False, True, 1, 2, np.int32(3)], [0, -2, 1.5, "2", None])
DTYPE = ([jnp.float32, "float32", np.float32], [jnp.int32, "int8", "nope", None, 3])
ACTIVATION = (["tanh", "relu", None, jax.nn.gelu], ["gelu", "TANH", 3, ""])
RNGS = (["rngs"], [None, 0, "rngs-key"])  # "rngs" is made fresh per draw
RATE = ([0.0, 0.25, 0, np.float32(0.5)], [1.0, -0.1, "0.1", None, True, np.array(0.1), 1j,
                                          float("nan")])  # fmt: skip
RNN_OPTIONS = {"dropout": RATE, "recurrent_dropout": RATE, "stateful": FLAG, "deterministic": FLAG}
OPTIONAL_SIZE = ([None, 3], [s for s in SIZE_BAD if s is not None])


def _rngs(value):
    return {"rngs": nnx.Rngs(0), "rngs-key": jax.random.key(0)}.get(value, value)


def draw_kwargs(data, spec: dict) -> tuple[dict, set[str]]:
    """Keyword arguments, up to two of them drawn bad; returns them and the bad names.

    `spec` maps each name to its `(valid values, invalid values)`.
    """
    broken = data.draw(st.sets(st.sampled_from(sorted(spec)), max_size=2), label="broken")
    kwargs = {name: data.draw(st.sampled_from(invalid if name in broken else valid), label=name)
              for name, (valid, invalid) in spec.items()}  # fmt: skip
    if "rngs" in kwargs:
        kwargs["rngs"] = _rngs(kwargs["rngs"])
    return kwargs, broken


# --------------------------------------------------------------------------- constructors

RNN_CLASSES = {
    mnx.SimpleRNN: {},
    mnx.LSTM: {"unit_forget_bias": FLAG, "use_cudnn": FLAG, "recurrent_activation": ACTIVATION},
    mnx.GRU: {"reset_after": FLAG, "recurrent_activation": ACTIVATION},
}


@fuzz(60)
@given(data=st.data())
def test_rnn_constructors(data):
    cls = data.draw(st.sampled_from(list(RNN_CLASSES)))
    kwargs, bad = draw_kwargs(data, {
        "in_features": ([D, np.int64(D)], SIZE_BAD), "hidden_features": ([H], SIZE_BAD),
        "return_sequences": FLAG, "return_state": FLAG, "reverse": FLAG,
        "zero_output_for_mask": FLAG, "use_bias": FLAG, "unroll": UNROLL,
        "param_dtype": DTYPE, "activation": ACTIVATION, "rngs": RNGS, **RNN_OPTIONS,
        **RNN_CLASSES[cls],
    })  # fmt: skip
    layer = check_outcome(lambda: cls(**kwargs), bad)
    if layer is None:
        return
    for name in ("in_features", "hidden_features", "return_sequences", "return_state",
                 "reverse", "zero_output_for_mask", "use_bias", "stateful", "deterministic",
                 "dropout", "recurrent_dropout"):  # fmt: skip
        value = getattr(layer, name)
        assert value == kwargs[name] and type(value) in (int, bool, float), name
    assert layer.param_dtype == jnp.float32 and layer.unroll == kwargs["unroll"]
    assert isinstance(layer.states, mnx.RecurrentState) == kwargs["stateful"]
    assert (layer.dropout_rngs is None) == (kwargs["dropout"] == kwargs["recurrent_dropout"] == 0)


def _specs():
    """Every constructor's `(build, {option: (valid values, invalid values)})`."""
    cell = nnx.GRUCell(D, H, rngs=nnx.Rngs(0))
    rnn_options = {
        "in_features": ([D], SIZE_BAD), "hidden_features": ([H], SIZE_BAD),
        "return_sequences": FLAG, "return_state": FLAG, "reverse": FLAG,
        "zero_output_for_mask": FLAG, "use_bias": FLAG, "unroll": UNROLL,
        "param_dtype": DTYPE, "activation": ACTIVATION, "rngs": RNGS, **RNN_OPTIONS,
    }  # fmt: skip
    specs = {cls.__name__: (cls, {**rnn_options, **extra}) for cls, extra in RNN_CLASSES.items()}
    specs["RNN"] = (mnx.RNN, {
        "cell": ([cell], [3, jax.nn.relu, "gru", None]), "return_sequences": FLAG,
        "return_state": FLAG, "reverse": FLAG, "zero_output_for_mask": FLAG, "unroll": UNROLL,
        "rngs": (["rngs", None], [0, "rngs-key", "r"]), "dropout": RATE,
        "stateful": FLAG, "deterministic": FLAG,
    })  # fmt: skip
    specs["Embedding"] = (mnx.Embedding, {
        "num_embeddings": ([5], SIZE_BAD), "features": ([D], SIZE_BAD), "mask_zero": FLAG,
        "pad_id": ([0], [1.5, "0", True, None]), "param_dtype": DTYPE, "rngs": RNGS,
    })  # fmt: skip
    return {**specs, **NEW_LAYER_SPECS}


NEW_LAYER_SPECS = {  # qkv_features=3 is valid only when num_heads divides it (never here)
    "MultiHeadAttention": (mnx.MultiHeadAttention, {
        "num_heads": ([2, np.int64(2)], SIZE_BAD), "in_features": ([D], SIZE_BAD),
        "qkv_features": ([None, 4], [*OPTIONAL_SIZE[1], 3]), "out_features": OPTIONAL_SIZE,
        "in_kv_features": OPTIONAL_SIZE, "causal": FLAG, "dropout_rate": RATE,
        "use_bias": FLAG, "param_dtype": DTYPE, "rngs": RNGS,
    }),
    "BatchNorm": (mnx.BatchNorm, {
        "num_features": ([D], SIZE_BAD),
        "momentum": ([0.99, 0, 1, np.float32(0.5)], [1.5, -0.1, "0.9", None, True,
                                                     float("nan"), np.array(0.9)]),
        "epsilon": ([1e-3, 1], [0.0, -1.0, "1e-3", None, True, float("nan"), 1j]),
        "use_running_average": FLAG, "param_dtype": DTYPE, "rngs": RNGS,
    }),
    "Conv1D": (mnx.Conv1D, {
        "in_features": ([D], SIZE_BAD), "out_features": ([H], SIZE_BAD),
        "kernel_size": ([2, 1], SIZE_BAD), "strides": ([1, 2], SIZE_BAD),
        "padding": (["valid", "same", "causal"], ["VALID", "full", None, 1, "", ["same"]]),
        "dilation": ([1, 2], SIZE_BAD), "use_bias": FLAG, "param_dtype": DTYPE, "rngs": RNGS,
    }),
}  # fmt: skip


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU", "RNN", "Embedding",
                                  *NEW_LAYER_SPECS])  # fmt: skip
def test_each_bad_option_alone_is_named(name):
    """Exhaustive, not drawn: every invalid value of every option, the others valid."""
    build, spec = _specs()[name]
    for option, (_, invalid) in spec.items():
        for value in invalid:
            kwargs = {k: _rngs(valid[0]) for k, (valid, _) in spec.items()}
            kwargs[option] = _rngs(value) if option == "rngs" else value
            check_outcome(lambda: build(**kwargs), {option})  # noqa: B023


@fuzz(40)
@given(data=st.data())
def test_new_layer_constructors(data):
    """MultiHeadAttention, BatchNorm, Conv1D: options stored as checked Python values."""
    name = data.draw(st.sampled_from(sorted(NEW_LAYER_SPECS)))
    build, spec = NEW_LAYER_SPECS[name]
    kwargs, bad = draw_kwargs(data, spec)
    layer = check_outcome(lambda: build(**kwargs), bad)
    if layer is None:
        return
    if name == "MultiHeadAttention":
        inner = layer.attention
        assert (inner.num_heads, inner.in_features, layer.causal) == (
            kwargs["num_heads"], D, kwargs["causal"])
        assert inner.qkv_features == (kwargs["qkv_features"] or D)
        assert inner.out_features == (kwargs["out_features"] or D)
        assert inner.dropout_rate == kwargs["dropout_rate"]
        assert type(layer.causal) is bool and type(inner.num_heads) is int
        return
    names = {"BatchNorm": ("num_features", "momentum", "epsilon", "use_running_average"),
             "Conv1D": ("in_features", "out_features", "kernel_size", "strides", "dilation",
                        "padding")}[name]  # fmt: skip
    for option in names:
        value = getattr(layer, option)
        assert value == kwargs[option] and type(value) in (int, bool, float, str), option


@fuzz(40)
@given(data=st.data())
def test_cell_rnn_and_wrapper_constructors(data):
    cell = nnx.GRUCell(D, H, rngs=nnx.Rngs(0))
    kwargs, bad = draw_kwargs(data, {
        "cell": ([cell], [3, jax.nn.relu, "gru", None]),
        "return_sequences": FLAG, "return_state": FLAG, "reverse": FLAG,
        "zero_output_for_mask": FLAG, "unroll": UNROLL,
        "rngs": (["rngs", None], [0, "rngs-key", "r"]), "dropout": RATE,
        "stateful": FLAG, "deterministic": FLAG,
    })  # fmt: skip
    if "dropout" not in bad and kwargs["dropout"] and kwargs["rngs"] is None:
        bad = bad | {"rngs"}  # dropout draws its masks from rngs
    layer = check_outcome(lambda: mnx.RNN(kwargs.pop("cell"), **kwargs), bad)
    if layer is not None:
        assert layer.cell is cell and layer.return_sequences is bool(kwargs["return_sequences"])
        assert layer.stateful is bool(kwargs["stateful"]) and layer.dropout == kwargs["dropout"]
        assert isinstance(layer.states, mnx.RecurrentState) == layer.stateful
    wrapper = data.draw(st.sampled_from([mnx.PassMask, mnx.DropMask]))
    inner, ok = data.draw(pool([cell, jax.nn.relu, mnx.GlobalMaxPooling1D()], [3, None, "x"]))
    wrapped = check_outcome(lambda: wrapper(inner), set() if ok else {"layer"})
    assert wrapped is None or wrapped.layer is inner


@fuzz(60)
@given(data=st.data())
def test_other_layer_constructors(data):
    which = data.draw(st.sampled_from(["embedding", "masking", "pooling", "softmax", "split"]))
    if which == "embedding":
        kwargs, bad = draw_kwargs(data, {
            "num_embeddings": ([1, 5, np.int16(5)], SIZE_BAD), "features": ([D], SIZE_BAD),
            "mask_zero": FLAG, "pad_id": ([0, -1, 7, np.int64(3)], [1.5, "0", True, None]),
            "param_dtype": DTYPE, "rngs": RNGS,
        })  # fmt: skip
        layer = check_outcome(lambda: mnx.Embedding(**kwargs), bad)
        if layer is not None:
            assert layer.embedding.shape == (kwargs["num_embeddings"], D)
            assert type(layer.pad_id) is int and layer.mask_zero is bool(kwargs["mask_zero"])
        return
    value, ok = data.draw({
        "masking": pool([0.0, -1, np.float32(2.5), float("inf"), np.int8(3), np.array(1.0)],
                        [float("nan"), np.float32("nan"), "0", None, True, [0.0], 1j]),
        "pooling": pool(*FLAG),
        "softmax": pool([1, -1, 0, 2, np.int64(1)], [1.0, "1", None, True, (1,)]),
        "split": pool([1, 3, [1], [0, 3], (1, 1), np.array([1, 2]), [], np.int64(3)],
                      [0, -1, 2.0, "2", None, True, [2, 1], [1.5], [-1], "ab", {1: 2}]),
    }[which])  # fmt: skip
    build, name = {
        "masking": (mnx.Masking, "mask_value"),
        "pooling": (data.draw(st.sampled_from([mnx.GlobalAveragePooling1D,
                                               mnx.GlobalMaxPooling1D])), "keepdims"),
        "softmax": (mnx.TemporalSoftmax, "axis"),
        "split": (mnx.TemporalSplit, "indices_or_sections"),
    }[which]  # fmt: skip
    layer = check_outcome(lambda: build(value), set() if ok else {name})
    if layer is not None:
        stored = getattr(layer, name)
        assert type(stored) in (int, float, bool, tuple), (name, stored)
        assert np.array_equal(np.asarray(stored), np.asarray(value, dtype=np.asarray(stored).dtype))


def _rnn(cls, **options):
    return cls(D, H, rngs=nnx.Rngs(0), **options)


BIDIRECTIONAL_PARTS = {  # reused instances: building an RNN compiles its initialiser once
    "lstm": _rnn(mnx.LSTM, return_sequences=True, zero_output_for_mask=True),
    "lstm_rev": _rnn(mnx.LSTM, return_sequences=True, reverse=True),
    "lstm_rev_last": _rnn(mnx.LSTM, reverse=True),
    "gru_rev": _rnn(mnx.GRU, return_sequences=True, reverse=True),
    "gru_rev_state": _rnn(mnx.GRU, return_sequences=True, return_state=True, reverse=True),
    "lstm_rev_wide": mnx.LSTM(D, H + 1, return_sequences=True, reverse=True, rngs=nnx.Rngs(1)),
    "lstm_rev_d1": mnx.LSTM(D + 1, H, return_sequences=True, reverse=True, rngs=nnx.Rngs(1)),
}


@fuzz(40)
@given(
    layer=pool(["lstm"], [nnx.Linear(D, H, rngs=nnx.Rngs(0)), "lstm", 3]),
    backward=st.sampled_from([None, *BIDIRECTIONAL_PARTS, "linear"]),
    merge_mode=pool(["concat", "sum", "mul", "ave", None], ["max", "Concat", 1]),
    rngs=pool(["rngs", None], [0, "rngs-key"]),
)
def test_bidirectional_constructor(layer, backward, merge_mode, rngs):
    (layer_value, layer_ok), (mode, mode_ok), (rngs_value, rngs_ok) = layer, merge_mode, rngs
    forward = BIDIRECTIONAL_PARTS["lstm"] if layer_ok else layer_value
    backward_layer = {None: None, "linear": nnx.Linear(D, H, rngs=nnx.Rngs(0))}.get(
        backward, BIDIRECTIONAL_PARTS.get(backward)
    )
    bad = set() if layer_ok else {"layer"}
    bad |= set() if mode_ok else {"merge_mode"}
    if backward is None and (rngs_value is None or not rngs_ok):
        bad.add("rngs")
    else:
        fits = backward in ("lstm_rev", "gru_rev") or (
            backward == "lstm_rev_wide" and mode in ("concat", None)
        )
        if backward is not None and not fits:
            bad.add("backward_layer")
    bi = check_outcome(
        lambda: mnx.Bidirectional(forward, mode, backward_layer=backward_layer,
                                  rngs=_rngs(rngs_value)),
        bad,
    )  # fmt: skip
    if bi is not None:
        assert bi.backward_layer.reverse != bi.forward_layer.reverse


@fuzz(30)
@given(layers=st.lists(pool([jax.nn.relu, nnx.Linear(D, D, rngs=nnx.Rngs(0))],
                            [3, "relu", None, BIDIRECTIONAL_PARTS["gru_rev_state"]]),
                       max_size=3))  # fmt: skip
def test_sequential_constructor(layers):
    bad = set() if all(ok for _, ok in layers) else {"layers"}
    model = check_outcome(lambda: mnx.Sequential(*(v for v, _ in layers)), bad)
    assert model is None or len(model.layers) == len(layers)


# --------------------------------------------------------------------------- call arguments

X_KINDS = ["ok", "f64", "int", "rank2", "rank4", "wide"]
MASK_KINDS = ["none", "ok", "b1", "list", "row", "int", "float", "short", "batch3", "feat3d",
              "masked"]  # fmt: skip
PASSING = ["args", "masked_x", "masked_x_and_mask"]


def _x(kind: str) -> np.ndarray:
    shape = {"rank2": (B, T), "rank4": (B, T, D, 1), "wide": (B, T, D + 1)}.get(kind, (B, T, D))
    x = np.random.default_rng(0).normal(size=shape)
    return {"int": np.round(3 * x).astype(np.int32), "f64": x}.get(kind, x.astype(np.float32))


def _mask(kind: str, m: np.ndarray, x: np.ndarray):
    return {
        "none": None, "ok": m, "b1": m[:, :1], "list": m.tolist(), "row": m[:, 0],
        "int": m.astype(np.int32), "float": m.astype(np.float32), "short": m[:, : T - 1],
        "batch3": np.ones((3, T), bool), "feat3d": np.repeat(m[..., None], D, -1),
        "masked": mj.Masked(x, m),
    }[kind]  # fmt: skip


def _full_mask(mask, x: np.ndarray) -> np.ndarray:
    """A valid mask broadcast to all of `x`'s shape (leading axes aligned), or all True."""
    if mask is None:
        return np.ones(np.shape(x), bool)
    mask = np.asarray(mask, bool)
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (np.ndim(x) - mask.ndim)), np.shape(x))


class Call:
    """A drawn call: `x` and mask kinds, how they are passed, and what is bad about them.

    `valid(x_kind, mask_kind)` returns the bad parameter names of the pair ({} if none).
    A valid call gets NaN at every padded position of `x`.
    """

    def __init__(self, x_kind, mask_kind, passing, layout, jit, valid):
        self.jit = jit
        if jit and mask_kind == "list":  # under jit a list of bools becomes a list of tracers
            mask_kind = "ok"
        self.passing = passing if mask_kind != "none" else "args"
        self.bad = set(valid(x_kind, mask_kind))
        if "mask" in self.bad and self.passing == "masked_x":
            self.bad |= {"x"}  # Masked(...) or the layer names `x.mask`, or `mask`
        if self.passing == "masked_x_and_mask":
            self.bad |= {"x", "mask"}
        self.x = _x(x_kind)
        m = MASKS[layout]
        self.mask = _mask(mask_kind, m, self.x)
        if not self.bad:
            self.full = _full_mask(self.mask, self.x)
            if np.issubdtype(self.x.dtype, np.floating):
                self.x = np.where(self.full, self.x, np.nan).astype(self.x.dtype)
            self.mask = _mask(mask_kind, m, self.x)

    def arguments(self):
        if self.passing == "masked_x":
            return (mj.Masked(self.x, self.mask),), {}
        if self.passing == "masked_x_and_mask":
            return (mj.Masked(self.x, MASKS[0]),), {"mask": self.mask}
        return (self.x,), {"mask": self.mask}

    def __call__(self, layer):
        args, kwargs = self.arguments()
        return (_jitted_call if self.jit else _call)(layer, args, kwargs)


def _call(layer, args, kwargs):
    return layer(*args, **kwargs)


_jitted_call = nnx.jit(_call)


def calls(valid, jit=None):
    """Calls drawn half the time from the usual kinds (a float `(B, T, D)` and a bool mask)."""
    return st.builds(
        Call, st.sampled_from(["ok", "ok", "ok", *X_KINDS]),
        st.sampled_from(["ok", "ok", "b1", "none", *MASK_KINDS]),
        st.sampled_from(["args", "args", "masked_x", *PASSING]),
        st.integers(0, len(MASKS) - 1), st.just(False) if jit is None else jit, st.just(valid),
    )  # fmt: skip


def _params(layer) -> dict:
    return {k: getattr(layer, k)[...] for k in ("kernel", "recurrent_kernel", "bias")}


RNN_LAYERS = {  # cell name of the reference, layer; few static configurations (compiles)
    "lstm": ("lstm", BIDIRECTIONAL_PARTS["lstm"]),
    "lstm_rev_last": ("lstm", BIDIRECTIONAL_PARTS["lstm_rev_last"]),
    "gru_rev": ("gru", BIDIRECTIONAL_PARTS["gru_rev"]),
    "simple": ("simple_rnn", _rnn(mnx.SimpleRNN, return_sequences=True)),
}
BIDIRECTIONAL = mnx.Bidirectional(BIDIRECTIONAL_PARTS["lstm"], "concat",
                                  backward_layer=BIDIRECTIONAL_PARTS["lstm_rev"])  # fmt: skip
CELL_RNN = mnx.RNN(nnx.SimpleCell(D, H, rngs=nnx.Rngs(0)), return_sequences=True)


def _rnn_valid(x_kind, mask_kind):
    """Integer `x` is legal: the RNN layers cast it to float, as Keras and Flax do."""
    bad = set() if x_kind in ("ok", "f64", "int") else {"x"}
    return bad | (set() if mask_kind in ("none", "ok", "b1", "list") else {"mask"})


def _assert_real_steps_equal(out, expected, full_mask):
    real = full_mask[:, :, :1]
    assert np.isfinite(np.where(real, out, 0.0)).all(), "NaN or inf at a real step"
    np.testing.assert_allclose(np.where(real, out, 0.0), np.where(real, expected, 0.0),
                               rtol=2e-5, atol=2e-6)  # fmt: skip


def _cell_ref(cell, x, mask):
    """A plain loop over each row's real steps with the Flax cell: `(outputs, final carry)`."""
    out = np.zeros((*mask.shape, H), np.float32)
    carries = []
    for b in range(mask.shape[0]):
        carry = cell.initialize_carry((1, D), nnx.Rngs(0))
        for t in range(mask.shape[1]):
            if mask[b, t]:
                carry, y = cell(carry, jnp.asarray(x[b : b + 1, t], jnp.float32))
                out[b, t] = y[0]
        carries.append(carry)
    return out, jax.tree.map(lambda *rows: np.concatenate(rows), *carries)


@fuzz(30)
@given(which=st.sampled_from([*RNN_LAYERS, "bidirectional", "cell"]), call=calls(_rnn_valid))
def test_recurrent_layer_calls(which, call):
    layer = {"bidirectional": BIDIRECTIONAL, "cell": CELL_RNN}.get(which)
    layer = layer if layer is not None else RNN_LAYERS[which][1]
    out = check_outcome(lambda: call(layer), call.bad)
    if out is None:
        return
    mask = call.full[..., 0]
    x = call.x.astype(np.float32)  # the references see the cast input
    assert isinstance(out, mj.Masked) == (layer.return_sequences and call.passing == "masked_x")
    out = np.asarray(out.data if isinstance(out, mj.Masked) else out)
    if which == "cell":
        _assert_real_steps_equal(out, _cell_ref(layer.cell, x, mask)[0], call.full)
        return
    if which == "bidirectional":
        parts = [rnn_ref("lstm", _params(half), x, mask, reverse=half.reverse,
                         zero_output_for_mask=True)[0]
                 for half in (layer.forward_layer, layer.backward_layer)]  # fmt: skip
        _assert_real_steps_equal(out, np.concatenate(parts, -1), call.full)
        return
    cell, _ = RNN_LAYERS[which]
    outputs, state = rnn_ref(cell, _params(layer), x, mask, reverse=layer.reverse,
                             zero_output_for_mask=layer.zero_output_for_mask)  # fmt: skip
    if layer.return_sequences:
        _assert_real_steps_equal(out, outputs, call.full)
    else:  # the output after each row's last real step: the final h
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, state[0] if cell == "lstm" else state, rtol=2e-5,
                                   atol=2e-6)  # fmt: skip


def _np_pool(x, full, kind):
    count = full.sum(axis=1)
    if kind == "mean":
        return np.where(full, x, 0).sum(axis=1) / np.maximum(count, 1)
    return np.where(count > 0, np.where(full, x, -np.inf).max(axis=1), 0.0)


def _np_softmax(x, full):
    top = np.where(full, x, -np.inf).max(axis=1, keepdims=True)
    e = np.where(full, np.exp(np.where(full, x - np.where(np.isfinite(top), top, 0), 0)), 0)
    return e / np.maximum(e.sum(axis=1, keepdims=True), 1e-30)


TIME_LAYERS = {  # name: (layer, numpy reference(x, mask broadcast to x))
    "mean": (mnx.GlobalAveragePooling1D(), lambda x, f: _np_pool(x, f, "mean")),
    "max": (mnx.GlobalMaxPooling1D(), lambda x, f: _np_pool(x, f, "max")),
    "softmax": (mnx.TemporalSoftmax(), _np_softmax),
}


def _time_valid(x_kind, mask_kind):
    bad = {"x"} if x_kind == "int" else set()
    if mask_kind in ("int", "float", "short", "batch3", "masked"):
        bad.add("mask")
    if mask_kind == "feat3d" and x_kind in ("rank2", "wide"):  # a (B, T, D) mask misfits
        bad.add("mask")
    return bad


@fuzz(40)
@given(which=st.sampled_from(list(TIME_LAYERS)), call=calls(_time_valid, jit=st.booleans()))
def test_pooling_and_softmax_calls(which, call):
    layer, reference = TIME_LAYERS[which]
    out = check_outcome(lambda: call(layer), call.bad)
    if out is None:
        return
    assert isinstance(out, mj.Masked) == (which == "softmax" and call.passing == "masked_x")
    out = np.asarray(out.data if isinstance(out, mj.Masked) else out, np.float64)
    assert np.isfinite(out).all(), "NaN or inf in a pooled or softmax output"
    expected = reference(np.asarray(call.x, np.float64), call.full)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def _split_valid(x_kind, mask_kind):
    return set() if mask_kind in ("none", "ok", "b1", "list", "row") else {"mask"}


@fuzz(30)
@given(sections=st.sampled_from([1, 3, [1], [0, 3], [2, 2], 2, [4]]), call=calls(_split_valid))
def test_temporal_split_calls(sections, call):
    if sections in (2, [4]):  # 2 equal parts of T=3, a position past T
        call.bad = call.bad | {"indices_or_sections"}
    split = mnx.TemporalSplit(sections)
    parts = check_outcome(lambda: call(split), call.bad)
    if parts is None:
        return
    masks = np.split(call.full.reshape(B, T, -1)[..., 0], sections, axis=1)
    datas = np.split(np.asarray(jnp.asarray(call.x)), sections, axis=1)  # float64 -> JAX's float32
    assert len(parts) == len(datas)
    for part, data, mask in zip(parts, datas, masks, strict=True):
        assert isinstance(part, mj.Masked) == (call.passing == "masked_x")
        np.testing.assert_array_equal(part.data if isinstance(part, mj.Masked) else part, data)
        if isinstance(part, mj.Masked):
            np.testing.assert_array_equal(part.mask, mask)
    if call.passing == "args" and call.mask is not None:
        for got, mask in zip(split.compute_mask(call.x, call.mask), masks, strict=True):
            np.testing.assert_array_equal(got, mask)


SECOND = {  # the second input of TemporalConcat: (shape, valid)
    "ok": ((B, 2, D), True), "batch": ((3, 2, D), False), "features": ((B, 2, D + 1), False),
    "rank1": ((B,), False),
}
CONCAT_MASKS = {  # the masks of the two inputs, and the parameter they make bad
    "none": (None, None), "first": ((0, None), None), "both": ((0, 1), None),
    "broadcast": (("b1", None), None), "array": ("array", "mask"), "count": ((0,), "mask"),
    "int": (("int", None), "mask"), "short": (("short", None), "mask"),
}


@fuzz(30)
@given(second=st.sampled_from(list(SECOND)), masks=st.sampled_from(list(CONCAT_MASKS)),
       layout=st.integers(0, 2), jit=st.booleans())  # fmt: skip
def test_temporal_concat_calls(second, masks, layout, jit):
    m = MASKS[layout]
    shape, shape_ok = SECOND[second]
    x1 = np.where(m[..., None], _x("ok"), np.nan).astype(np.float32)
    x2 = np.ones(shape, np.float32)
    spec, bad_name = CONCAT_MASKS[masks]
    pieces = {0: m, 1: np.array([[True, False], [False, False]]), "b1": m[:, :1],
              "int": m.astype(int), "short": m[:, :2], None: None}  # fmt: skip
    mask = m if spec == "array" else None if spec is None else tuple(pieces[s] for s in spec)
    bad = (set() if shape_ok else {"xs"}) | ({bad_name} if bad_name else set())
    cat = mnx.TemporalConcat()
    out = check_outcome(lambda: (_jitted_call if jit else _call)(cat, ((x1, x2),),
                                                                  {"mask": mask}), bad)
    if out is None:
        return
    np.testing.assert_array_equal(out, np.concatenate([x1, x2], axis=1))
    got = cat.compute_mask((x1, x2), mask)
    if mask is None:
        assert got is None
        return
    first = np.broadcast_to(m if spec[0] == 0 else m[:, :1], (B, T))
    second_mask = np.ones((B, 2), bool) if spec[1] is None else pieces[spec[1]]
    np.testing.assert_array_equal(got, np.concatenate([first, second_mask], axis=1))


EMBEDDINGS = {
    z: mnx.Embedding(5, D, mask_zero=z, pad_id=-1, rngs=nnx.Rngs(0)) for z in (False, True)
}
IDS = {  # ids at real steps, ids at padded steps
    "ok": (3, 0), "oob_high": (5, 1), "oob_negative": (-2, 1), "float": (3.0, 0.0),
    "bool": (True, False), "huge": (2**33, 0), "pad_oob": (3, -1),
}


@fuzz(30)
@given(ids=st.sampled_from(list(IDS)), mask_zero=st.booleans(), jit=st.booleans(),
       masked=st.booleans(), layout=st.integers(0, 2))  # fmt: skip
def test_embedding_calls(ids, mask_zero, jit, masked, layout):
    m = MASKS[layout]
    values = np.where(m, *IDS[ids])
    if jit and ids == "huge":
        values = np.where(m, 7, 0)  # a host int64 past int32 is JAX's to convert: eager only
    emb = EMBEDDINGS[mask_zero]
    in_table = (values >= 0) & (values < 5)
    allowed = in_table | (mask_zero & (values == -1))
    if ids in ("float", "bool"):
        bad = {"ids"}
    else:
        bad = {"ids"} if not jit and not allowed.all() else set()
    arg = mj.Masked(values, m) if masked else values
    out = check_outcome(lambda: (_jitted_call if jit else _call)(emb, (arg,), {}), bad)
    if out is None:
        return
    table = np.asarray(emb.embedding[...])
    expected = np.where(in_table[..., None], table[np.clip(values, 0, 4)], 0.0)
    np.testing.assert_array_equal(out.data if masked else out, expected)
    if masked:
        np.testing.assert_array_equal(out.mask, m & (values != -1) if mask_zero else m)


@fuzz(25)
@given(mask_value=st.sampled_from([0.0, -1.0]), layout=st.integers(0, 2), masked=st.booleans(),
       x_kind=st.sampled_from(["ok", "rank2", "int"]))  # fmt: skip
def test_masking_calls(mask_value, layout, masked, x_kind):
    m = MASKS[layout]
    x = _x(x_kind)
    if x.ndim == 3:
        x = np.where(m[..., None], x, np.asarray(mask_value, x.dtype))
    layer = mnx.Masking(mask_value)
    out = check_outcome(lambda: layer(mj.Masked(x, m) if masked else x),
                        {"x"} if x_kind == "rank2" else set())  # fmt: skip
    if out is None:
        return
    real = np.any(x != mask_value, axis=-1)
    np.testing.assert_array_equal(out.data if masked else out, np.where(real[..., None], x, 0))
    if masked:
        np.testing.assert_array_equal(out.mask, real)
    np.testing.assert_array_equal(layer.compute_mask(x), real)


# --------------------------------------------------------------------------- new layers


def _sequence_valid(x_kind, mask_kind):
    """Conv1D and attention: (B, T, D) x (integers cast), a (B, T) mask or one broadcast to it."""
    bad = set() if x_kind in ("ok", "f64", "int") else {"x"}
    return bad | (set() if mask_kind in ("none", "ok", "b1", "list", "row") else {"mask"})


def _filled(x, full):
    return np.where(full, x, 0.0).astype(np.float64)


ATTENTION = {  # name: layer; one static configuration each (compiles)
    "self": mnx.MultiHeadAttention(2, D, 4, H, rngs=nnx.Rngs(0)),
    "causal": mnx.MultiHeadAttention(2, D, 4, H, causal=True, rngs=nnx.Rngs(1)),
    "cross": mnx.MultiHeadAttention(2, D, 4, H, in_kv_features=D + 1, rngs=nnx.Rngs(2)),
}
KV_MASKS = {"none": None, "ok": MASKS[1], "b1": MASKS[1][:, :1], "int": MASKS[1].astype(int),
            "short": MASKS[1][:, :2]}  # fmt: skip


def _attention_ref(layer, x, q_real, kv, kv_real):
    """A plain loop: each real query over its allowed real keys; zeros where none."""
    a = layer.attention
    p = {n: (np.asarray(getattr(a, n).kernel[...], np.float64),
             np.asarray(getattr(a, n).bias[...], np.float64))
         for n in ("query", "key", "value", "out")}  # fmt: skip
    q, k, v = (np.einsum("btd,dnh->btnh", z, p[n][0]) + p[n][1]
               for z, n in ((x, "query"), (kv, "key"), (kv, "value")))  # fmt: skip
    out = np.zeros((*x.shape[:2], p["out"][1].shape[0]))
    for b, t in np.ndindex(*x.shape[:2]):
        keys = [s for s in range(kv.shape[1]) if kv_real[b, s] and (s <= t or not layer.causal)]
        if not q_real[b, t] or not keys:
            continue
        logits = np.einsum("nh,snh->ns", q[b, t], k[b, keys]) / np.sqrt(q.shape[-1])
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        out[b, t] = np.einsum("nhf,nh->f", p["out"][0], np.einsum("ns,snh->nh", weights,
                                                                  v[b, keys])) + p["out"][1]
    return out


@fuzz(30)
@given(which=st.sampled_from(list(ATTENTION)), call=calls(_sequence_valid, jit=st.booleans()),
       kv_mask=st.sampled_from(list(KV_MASKS)), kv_as_masked=st.booleans())  # fmt: skip
def test_attention_calls(which, call, kv_mask, kv_as_masked):
    layer = ATTENTION[which]
    kv_real, kv = np.ones((B, T), bool), None
    if which == "cross":
        if kv_mask in ("int", "short"):
            call.bad = call.bad | {"kv_mask"}
        else:
            kv_real = _full_mask(KV_MASKS[kv_mask], np.ones((B, T)))
        kv = np.where(kv_real[..., None], np.random.default_rng(1).normal(size=(B, T, D + 1)),
                      np.nan).astype(np.float32)  # fmt: skip

    def attend():
        args, kwargs = call.arguments()
        if kv is None:
            pass
        elif kv_as_masked and KV_MASKS[kv_mask] is not None and kv_mask not in ("int", "short"):
            args = (*args, mj.Masked(kv, KV_MASKS[kv_mask]))
        else:
            args, kwargs = (*args, kv), {**kwargs, "kv_mask": KV_MASKS[kv_mask]}
        return (_jitted_call if call.jit else _call)(layer, args, kwargs)

    out = check_outcome(attend, call.bad)
    if out is None:
        return
    assert isinstance(out, mj.Masked) == (call.passing == "masked_x")
    if isinstance(out, mj.Masked):
        np.testing.assert_array_equal(out.mask, call.full[..., 0])
        out = out.data
    q_real = call.full[..., 0]
    x = _filled(call.x, call.full)
    kv_in = x if which != "cross" else _filled(kv, kv_real[..., None])
    expected = _attention_ref(layer, x, q_real, kv_in, q_real if which != "cross" else kv_real)
    assert np.isfinite(out).all(), "NaN padding reached an attention output"
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5)


CONVS = {  # one static configuration each (compiles)
    "valid": mnx.Conv1D(D, H, 2, rngs=nnx.Rngs(0)),
    "same_strided": mnx.Conv1D(D, H, 2, strides=2, padding="same", rngs=nnx.Rngs(1)),
    "causal_dilated": mnx.Conv1D(D, H, 2, padding="causal", dilation=2, rngs=nnx.Rngs(2)),
}


def _conv_ref(layer, x, real):
    """Zero-filled `x` convolved by a loop over windows, and the output mask the window rule
    gives (valid: every step read is real; same/causal: the step at `t * strides`)."""
    k, s, d = layer.kernel_size, layer.strides, layer.dilation
    span = d * (k - 1)
    steps = x.shape[1]
    if layer.padding == "valid":
        left, n_out = 0, (steps - span - 1) // s + 1
    elif layer.padding == "causal":
        left, n_out = span, (steps - 1) // s + 1
    else:
        n_out = -(-steps // s)
        left = max((n_out - 1) * s + span + 1 - steps, 0) // 2
    padded = np.pad(x, ((0, 0), (left, span + steps), (0, 0)))
    kernel = np.asarray(layer.kernel[...], np.float64)
    y = np.stack([sum(padded[:, o * s + j * d] @ kernel[j] for j in range(k))
                  for o in range(n_out)], axis=1) + np.asarray(layer.bias[...])  # fmt: skip
    if layer.padding == "valid":
        mask = np.stack([real[:, o * s : o * s + span + 1 : d].all(1) for o in range(n_out)], 1)
    else:
        mask = real[:, ::s]
    return y, mask


@fuzz(30)
@given(which=st.sampled_from(list(CONVS)), call=calls(_sequence_valid, jit=st.booleans()))
def test_conv1d_calls(which, call):
    layer = CONVS[which]
    out = check_outcome(lambda: call(layer), call.bad)
    if out is None:
        return
    expected, expected_mask = _conv_ref(layer, _filled(call.x, call.full), call.full[..., 0])
    assert isinstance(out, mj.Masked) == (call.passing == "masked_x")
    if isinstance(out, mj.Masked):
        np.testing.assert_array_equal(out.mask, expected_mask)
        out = out.data
    elif call.mask is not None:
        np.testing.assert_array_equal(layer.compute_mask(call.x, call.mask), expected_mask)
    assert np.isfinite(out).all(), "NaN padding reached a convolution output"
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5)


def _norm_valid(x_kind, mask_kind):
    """BatchNorm: any (B, ..., D) x; a mask covering its leading axes (a per-feature one too)."""
    bad = {"x"} if x_kind in ("rank2", "rank4", "wide") else set()
    if mask_kind in ("int", "float", "short", "batch3", "masked"):
        bad.add("mask")
    if mask_kind == "feat3d" and x_kind == "rank2":
        bad.add("mask")
    return bad


BATCH_NORM = mnx.BatchNorm(D, momentum=0.9, rngs=nnx.Rngs(0))


@fuzz(30)
@given(call=calls(_norm_valid, jit=st.booleans()), running=st.booleans())
def test_batch_norm_calls(call, running):
    """Training (batch statistics of the real steps, moving averages updated) or evaluation."""
    layer = BATCH_NORM
    layer.eval() if running else layer.train()
    before = [np.asarray(v[...], np.float64) for v in (layer.moving_mean, layer.moving_variance)]
    out = check_outcome(lambda: call(layer), call.bad)
    if out is None:
        return
    full, x = call.full, _filled(call.x, call.full)
    count = full.sum(axis=(0, 1))
    mean = x.sum(axis=(0, 1)) / np.maximum(count, 1)
    var = (np.where(full, x - mean, 0.0) ** 2).sum(axis=(0, 1)) / np.maximum(count, 1)
    if running:
        mean, var = before
        after = before
    else:
        after = [0.9 * old + 0.1 * new for old, new in zip(before, (mean, var), strict=True)]
    expected = np.where(full, (x - mean) / np.sqrt(var + 1e-3), 0.0)  # gamma 1, beta 0
    assert isinstance(out, mj.Masked) == (call.passing == "masked_x")
    out = out.data if isinstance(out, mj.Masked) else out
    assert np.isfinite(out).all(), "NaN padding reached a normalised output"
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5)
    for stat, value in zip((layer.moving_mean, layer.moving_variance), after, strict=True):
        np.testing.assert_allclose(stat[...], value, rtol=2e-5, atol=1e-6)


STATEFUL = {  # name: (reference cell, layer); the kept state is a RecurrentState
    "gru": ("gru", _rnn(mnx.GRU, return_sequences=True, stateful=True)),
    "lstm_last": ("lstm", _rnn(mnx.LSTM, stateful=True)),
    "cell": ("cell", mnx.RNN(nnx.SimpleCell(D, H, rngs=nnx.Rngs(0)), return_sequences=True,
                             stateful=True)),
}  # fmt: skip


@fuzz(15)
@given(which=st.sampled_from(list(STATEFUL)), layouts=st.tuples(*[st.integers(0, 2)] * 2),
       x_kind=st.sampled_from(["ok", "ok", "int"]), masked=st.booleans(), jit=st.booleans(),
       batch=st.sampled_from([B, B, B, 1]))  # fmt: skip
def test_stateful_calls(which, layouts, x_kind, masked, jit, batch):
    """Two calls of a stateful layer on the halves of sequences equal one on the whole; the
    `RecurrentState` holds the final state; another batch size raises naming `x`."""
    cell, layer = STATEFUL[which]
    layer.reset_state()
    halves = []
    for i, layout in enumerate(layouts):
        m = MASKS[layout]
        x = _x(x_kind) + (i if x_kind == "int" else 0)
        halves.append((np.where(m[..., None], x, np.nan) if x_kind == "ok" else x, m))
    run = _jitted_call if jit else _call
    first = run(layer, (mj.Masked(*halves[0]) if masked else halves[0][0],),
                {} if masked else {"mask": halves[0][1]})  # fmt: skip
    assert first is not None and layer.states.get_value() is not None
    if batch != B:  # eager only: a new batch size compiles a new program
        x1 = halves[1][0][:batch].astype(np.float32)
        check_outcome(lambda: layer(x1, mask=halves[1][1][:batch]), {"x"})
        return
    second = run(layer, (mj.Masked(*halves[1]) if masked else halves[1][0],),
                 {} if masked else {"mask": halves[1][1]})  # fmt: skip
    second = second.data if isinstance(second, mj.Masked) else second
    x = np.concatenate([h[0] for h in halves], axis=1).astype(np.float32)
    mask = np.concatenate([h[1] for h in halves], axis=1)
    if cell == "cell":
        outputs, state = _cell_ref(layer.cell, x, mask)
    else:
        outputs, state = rnn_ref(cell, _params(layer), x, mask)
    kept = nnx.state(layer, mnx.RecurrentState)
    for got, want in zip(jax.tree.leaves(kept), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    full = np.broadcast_to(halves[1][1][..., None], (B, T, H))
    if layer.return_sequences:
        _assert_real_steps_equal(np.asarray(second), outputs[:, T:], full)
    else:
        np.testing.assert_allclose(second, state[0], rtol=2e-5, atol=2e-6)
    layer.reset_state()
    assert layer.states.get_value() is None


DROPOUT = _rnn(mnx.GRU, return_sequences=True, dropout=0.5, recurrent_dropout=0.5)


@fuzz(10)
@given(layout=st.integers(0, 2), training=st.booleans(), jit=st.booleans())
def test_dropout_calls(layout, training, jit):
    """In evaluation the dropout layer is the reference without dropout; in training it
    drops units (another result) and NaN padding still never reaches a real step."""
    m = MASKS[layout]
    x = np.where(m[..., None], _x("ok"), np.nan)
    DROPOUT.train() if training else DROPOUT.eval()
    out = np.asarray((_jitted_call if jit else _call)(DROPOUT, (x,), {"mask": m}))
    full = np.broadcast_to(m[..., None], (B, T, H))
    expected = rnn_ref("gru", _params(DROPOUT), x.astype(np.float32), m)[0]
    if not training:
        _assert_real_steps_equal(out, expected, full)
        return
    assert np.isfinite(out[full]).all(), "NaN or inf at a real step"
    assert not np.allclose(out[full], expected[full]), "dropout dropped nothing in training"


# --------------------------------------------------------------------------- Sequential


class Opaque(nnx.Module):
    """A module that says nothing about masks."""

    def __call__(self, x):
        return x + 1.0


#: name: (layer, what it does to a live mask): "pass", "end", "raise" (undeclared), "consume"
#: (takes mask=, passes it on), "pool" (takes mask=, ends it)
STEPWISE = {
    "linear": (nnx.Linear(D, D, rngs=nnx.Rngs(0)), "pass"),
    "relu": (jax.nn.relu, "pass"),
    "opaque": (Opaque(), "raise"),
    "pass_opaque": (mnx.PassMask(Opaque()), "pass"),
    "drop_opaque": (mnx.DropMask(Opaque()), "end"),
}
SEQUENCE_ONLY = {
    "rnn": (mnx.SimpleRNN(D, D, return_sequences=True, rngs=nnx.Rngs(2)), "consume"),
    "softmax": (mnx.TemporalSoftmax(), "consume"),
}
CHAIN = {**STEPWISE, **SEQUENCE_ONLY, "mean": (mnx.GlobalAveragePooling1D(), "pool")}
chains = st.builds(
    lambda head, pool, tail: head + pool + tail,
    st.lists(st.sampled_from([*STEPWISE, *SEQUENCE_ONLY]), min_size=1, max_size=3),
    st.sampled_from([[], ["mean"]]),
    st.lists(st.sampled_from(list(STEPWISE)), max_size=2),
)


@fuzz(40)
@given(names=chains, layout=st.integers(0, 2), masked=st.booleans(),
       has_mask=st.sampled_from([True, True, False]),
       entry=st.sampled_from(["sequential", "call_with_mask"]))  # fmt: skip
def test_sequential_and_call_with_mask(names, layout, masked, has_mask, entry):
    m = MASKS[layout] if has_mask else None
    x = _x("ok") if m is None else np.where(m[..., None], _x("ok"), np.nan).astype(np.float32)
    names = names[:1] if entry == "call_with_mask" else names
    # the expected run, layer by layer from the table: an independent statement of the rule
    y, mask, bad, dropped = x, m, set(), False
    for name in names:
        layer, effect = CHAIN[name]
        if effect == "raise" and mask is not None:
            bad = {"layers" if entry == "sequential" else "layer"}
            break
        y = layer(y, mask=mask) if effect in ("consume", "pool") else layer(y)
        dropped |= effect == "end" and mask is not None
        mask = None if effect in ("end", "pool") else mask
    inputs = ((mj.Masked(x, m),), {}) if masked and m is not None else ((x,), {"mask": m})
    if entry == "sequential":
        model = mnx.Sequential(*(CHAIN[n][0] for n in names))
        out = check_outcome(lambda: model(*inputs[0], **inputs[1]), bad)
    else:
        out = check_outcome(lambda: mnx.call_with_mask(CHAIN[names[0]][0], *inputs[0],
                                                       **inputs[1]), bad)  # fmt: skip
    if out is None:
        return
    if entry == "call_with_mask":
        out, out_mask = out
        assert (out_mask is None) == (mask is None)
    elif masked and m is not None:
        assert isinstance(out, mj.Masked) == (mask is not None)  # an array once the mask ends
        out = out.data if isinstance(out, mj.Masked) else out
    out, y = np.asarray(out), np.asarray(y)
    if mask is not None:  # compare, and require finite values, at the real steps
        full = _full_mask(mask, y)
        out, y = np.where(full, out, 0), np.where(full, y, 0)
    if not dropped:  # the mask was never dropped on purpose: no NaN from the padding
        assert np.isfinite(out).all() or m is None, "NaN padding reached a real output"
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- coverage

FUZZED = {
    "SimpleRNN": test_rnn_constructors, "LSTM": test_rnn_constructors,
    "GRU": test_rnn_constructors, "RNN": test_cell_rnn_and_wrapper_constructors,
    "PassMask": test_sequential_and_call_with_mask, "DropMask": test_sequential_and_call_with_mask,
    "Bidirectional": test_bidirectional_constructor, "Embedding": test_embedding_calls,
    "Masking": test_masking_calls, "GlobalAveragePooling1D": test_pooling_and_softmax_calls,
    "GlobalMaxPooling1D": test_pooling_and_softmax_calls,
    "TemporalSoftmax": test_pooling_and_softmax_calls, "TemporalSplit": test_temporal_split_calls,
    "TemporalConcat": test_temporal_concat_calls, "Sequential": test_sequential_and_call_with_mask,
    "call_with_mask": test_sequential_and_call_with_mask,
    "MultiHeadAttention": test_attention_calls, "Conv1D": test_conv1d_calls,
    "BatchNorm": test_batch_norm_calls, "RecurrentState": test_stateful_calls,
}
NOT_FUZZED = {  # public names that are not layers, with where they are checked instead
    "POSITIONWISE_MODULES": "a tuple of Flax classes, exercised through the Sequential fuzz",
    "load_keras_weights": "needs Keras (a slow import); its errors are in test_errors_nnx.py",
}


def test_every_public_name_is_fuzzed():
    missing = set(mnx.__all__) - set(FUZZED) - set(NOT_FUZZED)
    assert not missing, f"add a fuzz case to tests/test_fuzz_nnx.py for {sorted(missing)}"
