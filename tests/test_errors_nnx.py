"""The error catalogue of `masking_jax.nnx`: each abuse gives a clear error or a defined result.

Continues `test_errors.py` (the core) for the NNX layers: flags and sizes checked at
construction, masks named as the user passed them, a mask that never disappears
unnoticed, `Sequential` refusing multi-output layers, `Bidirectional` halves that must
agree, `TemporalSplit`/`TemporalConcat` shapes, `Embedding` ids out of range, and
`load_keras_weights` naming the layer it cannot load. `test_fuzz_nnx.py` draws many
more combinations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import masking_jax as mj
from masking_jax import nnx as mnx

B, T, D, H = 2, 3, 2, 3
MASK = np.array([[True, True, False], [False, False, False]])  # an empty row too
X = np.where(MASK[..., None], np.ones((B, T, D)), np.nan).astype(np.float32)
RNGS = nnx.Rngs(0)


class Opaque(nnx.Module):
    """A module that says nothing about masks."""

    def __call__(self, x):
        return x


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: mnx.LSTM(D, H, return_sequences="no", rngs=RNGS), TypeError,
         r"`return_sequences` must be a Python bool .* got str 'no'"),
        (lambda: mnx.GRU(D, H, reverse=1, rngs=RNGS), TypeError, "`reverse` must be a Python bool"),
        (lambda: mnx.SimpleRNN(D, H, use_bias=None, rngs=RNGS), TypeError, "`use_bias`"),
        (lambda: mnx.LSTM(D, H, unit_forget_bias="yes", rngs=RNGS), TypeError,
         "`unit_forget_bias`"),
        (lambda: mnx.GRU(D, H, reset_after=0, rngs=RNGS), TypeError, "`reset_after`"),
        (lambda: mnx.LSTM(D, H, use_cudnn="auto", rngs=RNGS), TypeError, "`use_cudnn`"),
        (lambda: mnx.LSTM(2.0, H, rngs=RNGS), TypeError, "`in_features` must be an int"),
        (lambda: mnx.LSTM(0, H, rngs=RNGS), ValueError, "`in_features` must be >= 1; got 0"),
        (lambda: mnx.GRU(D, -3, rngs=RNGS), ValueError, "`hidden_features` must be >= 1"),
        (lambda: mnx.LSTM(D, H, unroll=0, rngs=RNGS), ValueError, "`unroll` must be >= 1"),
        (lambda: mnx.LSTM(D, H, unroll=1.5, rngs=RNGS), TypeError, "`unroll` must be an int"),
        (lambda: mnx.LSTM(D, H, param_dtype=jnp.int32, rngs=RNGS), TypeError,
         "`param_dtype` must be a floating dtype"),
        (lambda: mnx.LSTM(D, H, param_dtype="nope", rngs=RNGS), TypeError, "`param_dtype`"),
        (lambda: mnx.LSTM(D, H, rngs=None), TypeError, r"`rngs` must be an `nnx.Rngs`"),
        (lambda: mnx.RNN(nnx.GRUCell(D, H, rngs=RNGS), unroll=0), ValueError, "`unroll`"),
        (lambda: mnx.RNN(nnx.GRUCell(D, H, rngs=RNGS), rngs=3), TypeError, "`rngs`"),
        (lambda: mnx.RNN(jax.nn.relu), TypeError, "`cell` must be a Flax NNX cell"),
        (lambda: mnx.Embedding(5.0, D, rngs=RNGS), TypeError, "`num_embeddings` must be an int"),
        (lambda: mnx.Embedding(0, D, rngs=RNGS), ValueError, "`num_embeddings` must be >= 1"),
        (lambda: mnx.Embedding(5, D, mask_zero="False", rngs=RNGS), TypeError, "`mask_zero`"),
        (lambda: mnx.Embedding(5, D, pad_id=0.0, rngs=RNGS), TypeError, "`pad_id`"),
        (lambda: mnx.Masking("0"), TypeError, "`mask_value` must be a real number"),
        (lambda: mnx.Masking(np.nan), ValueError, "`mask_value` must not be NaN"),
        (lambda: mnx.GlobalAveragePooling1D(keepdims="no"), TypeError, "`keepdims`"),
        (lambda: mnx.TemporalSoftmax(axis=1.0), TypeError, "`axis` must be an int"),
        (lambda: mnx.TemporalSplit(0), ValueError, "`indices_or_sections` must be >= 1"),
        (lambda: mnx.TemporalSplit("ab"), TypeError, "`indices_or_sections` must be an int"),
        (lambda: mnx.TemporalSplit([2, 1]), ValueError, "must be non-decreasing"),
        (lambda: mnx.TemporalSplit([1.5]), TypeError, r"`indices_or_sections\[0\]`"),
        (lambda: mnx.PassMask(3), TypeError, "`layer` must be a module or callable"),
        (lambda: mnx.DropMask(None), TypeError, "`layer` must be a module or callable"),
    ],
)  # fmt: skip
def test_options_are_checked_when_the_layer_is_built(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_checked_options_keep_their_python_types():
    layer = mnx.GRU(np.int64(D), H, return_sequences=np.bool_(True), unroll=np.int32(2),
                    param_dtype="float32", rngs=RNGS)  # fmt: skip
    assert type(layer.in_features) is int and type(layer.return_sequences) is bool
    assert layer.unroll == 2 and layer.param_dtype == jnp.float32
    assert mnx.Masking(np.float32(-1.0)).mask_value == -1.0
    assert mnx.TemporalSplit(np.array([1, 2])).indices_or_sections == (1, 2)


# ------------------------------------------------------------------ new layers, RNN options


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: mnx.LSTM(D, H, dropout="0.1", rngs=RNGS), TypeError,
         r"`dropout` must be a Python float in \[0, 1\) .* got str '0.1'"),
        (lambda: mnx.GRU(D, H, recurrent_dropout=1.0, rngs=RNGS), ValueError,
         r"`recurrent_dropout` must be in \[0, 1\) .* got 1.0"),
        (lambda: mnx.SimpleRNN(D, H, dropout=1j, rngs=RNGS), TypeError, "`dropout`"),
        (lambda: mnx.GRU(D, H, stateful="yes", rngs=RNGS), TypeError,
         "`stateful` must be a Python bool"),
        (lambda: mnx.LSTM(D, H, deterministic=1, rngs=RNGS), TypeError, "`deterministic`"),
        (lambda: mnx.RNN(nnx.GRUCell(D, H, rngs=RNGS), dropout=0.5), TypeError,
         "`rngs` is required for dropout"),
        (lambda: mnx.RNN(nnx.GRUCell(D, H, rngs=RNGS), stateful=None), TypeError, "`stateful`"),
        (lambda: mnx.MultiHeadAttention(2.0, D, rngs=RNGS), TypeError,
         "`num_heads` must be an int"),
        (lambda: mnx.MultiHeadAttention(2, 3, rngs=RNGS), ValueError,
         r"`in_features \(the default qkv_features\)` must be a multiple of `num_heads`"),
        (lambda: mnx.MultiHeadAttention(2, D, 3, rngs=RNGS), ValueError,
         "`qkv_features` must be a multiple of `num_heads`.* got 3 for num_heads=2"),
        (lambda: mnx.MultiHeadAttention(2, D, out_features=0, rngs=RNGS), ValueError,
         "`out_features` must be >= 1"),
        (lambda: mnx.MultiHeadAttention(2, D, in_kv_features="3", rngs=RNGS), TypeError,
         "`in_kv_features`"),
        (lambda: mnx.MultiHeadAttention(2, D, causal=jnp.array(True), rngs=RNGS), TypeError,
         "`causal` must be a Python bool"),
        (lambda: mnx.MultiHeadAttention(2, D, dropout_rate="0.1", rngs=RNGS), TypeError,
         "`dropout_rate` must be a Python float"),
        (lambda: mnx.MultiHeadAttention(2, D, use_bias="no", rngs=RNGS), TypeError, "`use_bias`"),
        (lambda: mnx.MultiHeadAttention(2, D, param_dtype=jnp.int8, rngs=RNGS), TypeError,
         "`param_dtype`"),
        (lambda: mnx.MultiHeadAttention(2, D, rngs=0), TypeError, "`rngs` must be an `nnx.Rngs`"),
        (lambda: mnx.BatchNorm(2.0, rngs=RNGS), TypeError, "`num_features` must be an int"),
        (lambda: mnx.BatchNorm(D, momentum="0.9", rngs=RNGS), TypeError,
         r"`momentum` must be a Python float in \[0, 1\]"),
        (lambda: mnx.BatchNorm(D, epsilon=np.nan, rngs=RNGS), ValueError,
         "`epsilon` must be > 0; got nan"),
        (lambda: mnx.BatchNorm(D, use_running_average="yes", rngs=RNGS), TypeError,
         "`use_running_average` must be a Python bool"),
        (lambda: mnx.BatchNorm(D, param_dtype=None, rngs=RNGS), TypeError, "`param_dtype`"),
        (lambda: mnx.BatchNorm(D, rngs=None), TypeError, "`rngs` must be an `nnx.Rngs`"),
        (lambda: mnx.Conv1D(D, H, 2.0, rngs=RNGS), TypeError, "`kernel_size` must be an int"),
        (lambda: mnx.Conv1D(D, H, 2, strides=True, rngs=RNGS), TypeError, "`strides`"),
        (lambda: mnx.Conv1D(D, H, 2, use_bias="no", rngs=RNGS), TypeError, "`use_bias`"),
        (lambda: mnx.Conv1D(D, H, 2, param_dtype="int32", rngs=RNGS), TypeError,
         "`param_dtype`"),
        (lambda: mnx.Conv1D(D, H, 2, rngs=jax.random.key(0)), TypeError, "`rngs`"),
    ],
)  # fmt: skip
def test_new_layers_and_rnn_options_check_what_they_are_built_with(build, error, match):
    with pytest.raises(error, match=match):
        build()


ATTENTION = mnx.MultiHeadAttention(2, D, 4, H, causal=True, rngs=nnx.Rngs(0))
CONV = mnx.Conv1D(D, H, 2, rngs=nnx.Rngs(0))
BATCH_NORM = mnx.BatchNorm(D, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ATTENTION(X, mask=np.ones((B, T, D), bool)), ValueError,
         r"`mask` must be a \(B, T\) mask"),
        (lambda: ATTENTION(X, mask=MASK.astype(int)), TypeError, "`mask` must be a boolean"),
        (lambda: ATTENTION(X, X[:1], mask=MASK), ValueError,
         r"`kv` must have the batch size of `x` \(2\)"),
        (lambda: ATTENTION(X, X, kv_mask=MASK[:, :2]), ValueError,
         r"`kv_mask` of shape \(2, 2\) does not match .* `kv`"),
        (lambda: ATTENTION(X.astype(np.complex64)), TypeError, "`x` must be a real array"),
        (lambda: ATTENTION(X[..., :1]), ValueError, "`x` must have 2 features"),
        (lambda: CONV(X, mask=np.ones((B, T, D), bool)), ValueError,
         r"`mask` must be a \(B, T\) mask"),
        (lambda: CONV(mj.Masked(X, MASK.tolist()), mask=MASK), TypeError,
         "`x` is a Masked, which carries its own mask"),
        (lambda: CONV("x"), TypeError, "`x` must be a numeric array"),
        (lambda: CONV(X[0]), ValueError, r"`x` must be 3-D"),
        (lambda: BATCH_NORM(X, use_running_average="no"), TypeError, "`use_running_average`"),
        (lambda: nnx.jit(lambda m, x, r: m(x, use_running_average=r))(BATCH_NORM, X, True),
         TypeError, "`use_running_average` must be a Python bool"),
        (lambda: BATCH_NORM(X.astype(np.complex64)), TypeError, "`x` must be a real array"),
        (lambda: BATCH_NORM(X, mask=MASK[:, :2]), ValueError, "`mask` of shape"),
    ],
)  # fmt: skip
def test_new_layers_name_the_call_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_broadcast_masks_mean_their_broadcast_in_attention_and_conv1d():
    """A (B, 1) mask once read its length as T=1: causal attention saw no causality and
    Conv1D's output mask had one step."""
    x = np.ones((B, T, D), np.float32)
    rows = np.array([[True], [False]])
    full = np.broadcast_to(rows, (B, T))
    np.testing.assert_array_equal(ATTENTION(x, mask=rows), ATTENTION(x, mask=full))
    np.testing.assert_array_equal(CONV.compute_mask(x, rows), CONV.compute_mask(x, full))
    assert CONV(mj.Masked(x, rows)).mask.shape == (B, T - 1)


def test_integer_inputs_are_cast_by_every_sequence_layer():
    ids = np.array([[1, 2, 0], [3, 0, 0]])[..., None].repeat(D, -1)
    for layer in (ATTENTION, CONV, BATCH_NORM, mnx.GRU(D, H, rngs=RNGS)):
        np.testing.assert_allclose(layer(ids, mask=MASK), layer(ids.astype(np.float32), mask=MASK),
                                   rtol=1e-6)  # fmt: skip


def test_embedding_names_the_users_mask_and_ids():
    emb = mnx.Embedding(5, D, mask_zero=True, rngs=RNGS)
    with pytest.raises(ValueError, match=r"`mask` of shape \(2, 2, 3\) does not match the "
                                         r"leading axes of `ids` of shape \(2, 3\)"):  # fmt: skip
        emb.compute_mask(np.ones((B, T), int), np.stack([MASK, MASK]))  # one (2, B, T) mask
    with pytest.raises(ValueError, match=r"`mask` is a pytree of 2 masks, so it needs one mask "
                                         r"per leaf of `ids`"):  # fmt: skip
        emb.compute_mask(np.ones((B, T), int), (MASK, MASK))  # a tuple: two masks, one ids


# --------------------------------------------------------------------------- Bidirectional


@pytest.mark.parametrize(
    ("backward", "merge_mode", "match"),
    [
        (dict(in_features=D + 1), "concat", r"differ in `in_features`: layer 2, backward_layer 3"),
        (dict(hidden_features=H + 1), "sum", r"`hidden_features` \(merge_mode='sum'"),
        (dict(return_sequences=True), "concat", "differ in `return_sequences`"),
        (dict(return_state=True), "concat", "differ in `return_state`"),
        (dict(reverse=False), "concat", "opposite of `layer.reverse`"),
    ],
)
def test_bidirectional_halves_must_agree(backward, merge_mode, match):
    options = {"in_features": D, "hidden_features": H, "reverse": True, **backward}
    backward_layer = mnx.LSTM(options.pop("in_features"), options.pop("hidden_features"),
                              rngs=RNGS, **options)  # fmt: skip
    with pytest.raises(ValueError, match=match):
        mnx.Bidirectional(mnx.LSTM(D, H, rngs=RNGS), merge_mode, backward_layer=backward_layer)


def test_bidirectional_halves_of_other_sizes_may_concatenate():
    bi = mnx.Bidirectional(mnx.LSTM(D, H, return_sequences=True, rngs=RNGS),
                           backward_layer=mnx.GRU(D, H + 1, return_sequences=True, reverse=True,
                                                  rngs=RNGS))  # fmt: skip
    assert bi(X, mask=MASK).shape == (B, T, 2 * H + 1)


def test_bidirectional_initial_state_must_be_a_pair():
    bi = mnx.Bidirectional(mnx.GRU(D, H, rngs=RNGS), rngs=RNGS)
    h0 = np.zeros((B, H), np.float32)
    with pytest.raises(TypeError, match=r"`initial_state` must be a pair \(forward, backward\) "
                                        r"of initial states; got tuple of length 3"):
        bi(X, mask=MASK, initial_state=(h0, h0, h0))
    with pytest.raises(TypeError, match=r"`initial_state` must be a pair .*; got ndarray"):
        bi(X, mask=MASK, initial_state=h0)


# --------------------------------------------------------------------------- masks as passed


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m(np.ones((B, T), np.int32), mask=MASK.astype(int)), TypeError,
         r"^`mask` must be a boolean array .* `mask.astype\(bool\)`"),
        (lambda m: m(np.ones((B, T), np.int32), mask=MASK[:, :2]), ValueError,
         r"^`mask` of shape \(2, 2\) does not match the leading axes of `x` of shape \(2, 3\)"),
        (lambda m: m(mj.Masked(np.ones((B, T), np.int32), MASK), mask=MASK), TypeError,
         r"`x` is a Masked, which carries its own mask; do not pass `mask`"),
        (lambda m: m(np.ones((B, T), np.int32), mask=mj.Masked(X, MASK)), TypeError,
         r"`mask` is a Masked; .* Pass the Masked itself as `x`"),
    ],
    ids=["int-mask", "short-mask", "masked-and-mask", "masked-as-mask"],
)
def test_model_names_the_mask_the_user_passed(call, error, match):
    """Not `masks[1]` or `the widest mask` (internal names) but the user's `mask` and `x`."""
    model = mnx.Sequential(mnx.Embedding(5, D, mask_zero=True, rngs=RNGS),
                           mnx.LSTM(D, H, rngs=RNGS))  # fmt: skip
    with pytest.raises(error, match=match):
        call(model)


def test_layers_name_the_mask_and_x():
    lstm = mnx.LSTM(D, H, rngs=RNGS)
    with pytest.raises(TypeError, match=r"^`mask` must be a boolean array"):
        lstm(X, mask=MASK.astype(np.float32))
    masked = mj.Masked(X, MASK)
    with pytest.raises(AttributeError, match="immutable"):  # checked once, when built
        masked.mask = MASK.astype(int)
    with pytest.raises(ValueError, match=r"`x` has D=3 features .* in_features=2"):
        lstm(np.ones((B, T, 3), np.float32), mask=MASK)
    with pytest.raises(ValueError, match=r"`x` has D=3 features .* GRUCell .* in_features=2"):
        mnx.RNN(nnx.GRUCell(D, H, rngs=RNGS))(np.ones((B, T, 3), np.float32))
    with pytest.raises(TypeError, match=r"^`mask` must be a boolean array"):
        mnx.Embedding(5, D, mask_zero=True, rngs=RNGS).compute_mask(np.ones((B, T), int), 1)


# --------------------------------------------------------------------------- the mask rule


def test_a_mask_reaching_an_undeclared_module_raises_with_the_fix():
    conv = nnx.Conv(D, D, 2, rngs=RNGS)
    model = mnx.Sequential(mnx.LSTM(D, D, return_sequences=True, rngs=RNGS), conv,
                           mnx.GlobalAveragePooling1D())  # fmt: skip
    with pytest.raises(TypeError, match=r"`layers\[1\]` \(Conv\) got a mask .*PassMask.*DropMask"):
        model(X, mask=MASK)
    with pytest.raises(TypeError, match=r"`layers\[1\]` \(Conv\)"):
        model.compute_mask(X, MASK)
    assert model(np.ones((B, T, D), np.float32)).shape == (B, D)  # no mask, nothing lost


def test_drop_mask_is_the_explicit_opt_out():
    """`DropMask` keeps Keras 3's behaviour on purpose: the padding then counts as real."""
    opaque = mnx.DropMask(Opaque())
    model = mnx.Sequential(opaque, mnx.GlobalAveragePooling1D())
    x = np.where(MASK[..., None], 1.0, 5.0).astype(np.float32)
    np.testing.assert_allclose(model(x, mask=MASK), x.mean(axis=1), rtol=1e-6)
    assert model.compute_mask(x, MASK) is None
    assert isinstance(model(mj.Masked(x, MASK)), jax.Array)


def test_pass_mask_declares_a_position_wise_module():
    model = mnx.Sequential(mnx.PassMask(Opaque()), mnx.GlobalAveragePooling1D())
    np.testing.assert_array_equal(model(X, mask=MASK), mj.masked_mean(X, MASK))
    out = mnx.PassMask(Opaque())(mj.Masked(X, MASK))
    assert isinstance(out, mj.Masked)
    np.testing.assert_array_equal(out.mask, MASK)


def test_a_layer_that_passes_the_mask_must_keep_its_axes():
    model = mnx.Sequential(mnx.PassMask(lambda v: v.sum(axis=1)), nnx.Linear(D, 1, rngs=RNGS))
    with pytest.raises(ValueError, match=r"`layers\[0\]` \(PassMask\) passes the mask on .*"
                                         r"\(2, 2\) no longer has .* \(2, 3\)"):  # fmt: skip
        model(X, mask=MASK)
    with pytest.raises(ValueError, match=r"`layers\[0\]` \(<lambda>\) passes the mask on"):
        mnx.Sequential(lambda v: v[:, :2])(X, mask=MASK)


def test_a_supports_masking_false_callable_raises():
    def summary(v):
        return v

    summary.supports_masking = False
    with pytest.raises(TypeError, match=r"`layers\[0\]` \(summary\) got a mask"):
        mnx.Sequential(summary)(X, mask=MASK)


# --------------------------------------------------------------------------- Sequential


@pytest.mark.parametrize("where", [0, 1])
def test_sequential_refuses_a_layer_returning_states(where):
    lstm = mnx.LSTM(D, D, return_sequences=True, return_state=True, rngs=RNGS)
    layers = [nnx.Linear(D, D, rngs=RNGS)]
    layers.insert(where, lstm)
    with pytest.raises(ValueError, match=rf"`layers\[{where}\]` \(LSTM\) has return_state=True"):
        mnx.Sequential(*layers)
    bi = mnx.Bidirectional(mnx.GRU(D, H, return_state=True, rngs=RNGS), rngs=RNGS)
    with pytest.raises(ValueError, match=r"\(Bidirectional\) has return_state=True"):
        mnx.Sequential(bi)
    model = mnx.Sequential(mnx.LSTM(D, D, return_sequences=True, rngs=RNGS))
    model.layers[0].return_state = True  # changed after the model was built
    with pytest.raises(ValueError, match="return_state=True"):
        model(X, mask=MASK)


def test_masked_in_gives_an_array_out_once_the_mask_ends():
    seq = mnx.Sequential(mnx.LSTM(D, H, return_sequences=True, rngs=RNGS))
    out = seq(mj.Masked(X, MASK))
    assert isinstance(out, mj.Masked) and out.mask.shape == (B, T)
    pooled = mnx.Sequential(*seq.layers, mnx.GlobalMaxPooling1D())(mj.Masked(X, MASK))
    assert isinstance(pooled, jax.Array) and pooled.shape == (B, H)
    last = mnx.LSTM(D, H, rngs=RNGS)(mj.Masked(X, MASK))
    assert isinstance(last, jax.Array)


# --------------------------------------------------------------------------- time layers


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: mnx.TemporalSplit(2)(X), ValueError,
         r"`indices_or_sections`=2 equal parts must divide .* T=3"),
        (lambda: mnx.TemporalSplit([4])(X, mask=MASK), ValueError,
         r"`indices_or_sections` positions must lie in \[0, T=3\]"),
        (lambda: mnx.TemporalSplit(1)(np.ones(3, np.float32)), ValueError,
         r"`x` must have a batch and a time axis"),
        (lambda: mnx.TemporalSplit(1)(X, mask=np.ones((B, T, D), bool)), ValueError,
         r"`mask` must be a \(B, T\) mask"),
        (lambda: mnx.TemporalConcat()((X, np.ones((3, T, D), np.float32))), ValueError,
         r"`xs\[1\]` of shape \(3, 3, 2\) does not fit `xs\[0\]`"),
        (lambda: mnx.TemporalConcat()((X, np.ones((B, T, 4), np.float32))), ValueError,
         r"`xs\[1\]` .* all other axes \(batch, features\) must be equal"),
        (lambda: mnx.TemporalConcat()((X, X), MASK), TypeError,
         r"`mask` must be None or a sequence"),
        (lambda: mnx.TemporalConcat()((X, X), (MASK.astype(int), None)), TypeError,
         r"`mask\[0\]` must be a boolean array"),
        (lambda: mnx.TemporalConcat()((X, X), (MASK[:, :2], None)), ValueError,
         r"`mask\[0\]` of shape \(2, 2\) does not match the leading axes of `xs\[0\]`"),
        (lambda: mnx.TemporalConcat()(()), ValueError, "`xs` must hold at least one input"),
        (lambda: mnx.TemporalSoftmax(axis=3)(X, mask=MASK), ValueError, r"`axis` must be in"),
        (lambda: mnx.TemporalSoftmax()(np.ones((B, T, D), np.int32), mask=MASK), TypeError,
         "`x` must be a floating array"),
        (lambda: mnx.GlobalAveragePooling1D()(np.ones(3, np.float32)), ValueError,
         r"`x` must have a batch and a time axis"),
    ],
)  # fmt: skip
def test_time_layers_check_their_shapes(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_broadcast_masks_split_and_concatenate_as_their_broadcast():
    rows = np.array([[True], [False]])  # (B, 1): row 0 real, row 1 empty
    full = np.broadcast_to(rows, (B, T))
    for part, expected in zip(mnx.TemporalSplit([1])(mj.Masked(X, rows)),
                              np.split(full, [1], axis=1), strict=True):  # fmt: skip
        np.testing.assert_array_equal(part.mask, expected)
    cat = mnx.TemporalConcat()
    np.testing.assert_array_equal(
        cat.compute_mask((X, X[:, :1]), (rows, None)),
        np.concatenate([full, np.ones((B, 1), bool)], axis=1),
    )


# --------------------------------------------------------------------------- Embedding


def test_embedding_ids_out_of_range():
    emb = mnx.Embedding(5, D, rngs=RNGS)
    with pytest.raises(ValueError, match=r"`ids` must lie in \[0, num_embeddings=5\); got 7 "
                                         r"at position \(0, 1\) \(2 such ids\)"):  # fmt: skip
        emb(np.array([[1, 7, -1]]))
    with pytest.raises(ValueError, match="got 8589934592"):  # no silent int32 wrap
        emb(np.array([[2**33]]))
    # under jit the values are unknown: the documented zero vector, no NaN, no wrap
    out = nnx.jit(lambda e, i: e(i))(emb, jnp.array([[1, 7, -1]]))
    np.testing.assert_array_equal(out[0, 0], emb.embedding[1])
    np.testing.assert_array_equal(out[0, 1:], 0.0)
    grads = nnx.jit(nnx.grad(lambda e, i: e(i).sum()))(emb, jnp.array([[1, 7]]))
    np.testing.assert_array_equal(grads.embedding[...][1], 1.0)  # id 7 reads no row
    np.testing.assert_array_equal(grads.embedding[...][4], 0.0)
    # a pad_id outside the table is legal with mask_zero: padding embeds to zeros
    padded = mnx.Embedding(5, D, mask_zero=True, pad_id=-1, rngs=RNGS)
    np.testing.assert_array_equal(padded(np.array([[2, -1]]))[0, 1], 0.0)
    np.testing.assert_array_equal(padded.compute_mask(np.array([[2, -1]])), [[True, False]])
    with pytest.raises(TypeError, match="`ids` must be integer token ids"):
        emb(np.ones((B, T), bool))


# --------------------------------------------------------------------------- load_keras_weights


def test_load_keras_weights_names_the_layer_it_cannot_load():
    keras = pytest.importorskip("keras")
    conv = keras.layers.Conv2D(2, 3, name="my_conv")
    with pytest.raises(TypeError, match=r"got Conv2D 'my_conv', which load_keras_weights does "
                                        "not support"):  # fmt: skip
        mnx.load_keras_weights(nnx.Conv(D, 2, (3, 3), rngs=RNGS), conv)
    dense = keras.layers.Dense(H, name="head")
    with pytest.raises(ValueError, match=r"`keras_layer` \(Dense 'head'\) has no weights yet"):
        mnx.load_keras_weights(nnx.Linear(D, H, rngs=RNGS), dense)
    dense.build((None, D))
    with pytest.raises(TypeError, match=r"`module` must be a Linear .* \(Dense 'head'\); got LSTM"):
        mnx.load_keras_weights(mnx.LSTM(D, H, rngs=RNGS), dense)
    with pytest.raises(ValueError, match=r"has `kernel` of shape \(2, 3\) but `module.kernel`"):
        mnx.load_keras_weights(nnx.Linear(D, H + 1, rngs=RNGS), dense)
    wrapped = mnx.load_keras_weights(mnx.PassMask(nnx.Linear(D, H, rngs=RNGS)), dense)
    np.testing.assert_array_equal(wrapped.layer.kernel[...], np.asarray(dense.kernel.value))
    k_model = keras.Sequential([keras.Input((T, D)), keras.layers.LayerNormalization(name="ln")])
    model = mnx.Sequential(nnx.LayerNorm(D, rngs=RNGS))  # paired, then refused by name
    with pytest.raises(TypeError, match=r"got LayerNormalization 'ln'"):
        mnx.load_keras_weights(model, k_model)


def test_a_pytree_of_masks_must_fit_the_data_leaf_by_leaf():
    x = {"a": np.ones((B, T, D), np.float32), "b": np.ones((B, T, 2), np.float32)}
    masks = {"a": MASK, "b": MASK}
    outputs, mask = mnx.call_with_mask(lambda x: x, x, masks)
    assert jax.tree.structure(outputs) == jax.tree.structure(x) and mask is masks
    wrong_length = {"a": MASK, "b": np.ones((B, T + 1), bool)}
    with pytest.raises(ValueError, match=r"`mask\['b'\]` of shape \(2, 4\) does not match "
                                         r"the leading axes of `x\['b'\]`"):  # fmt: skip
        mnx.call_with_mask(lambda x: x, x, wrong_length)
    with pytest.raises(ValueError, match=r"`mask` is a pytree of 2 masks, so it needs one mask "
                                         r"per leaf of `x`, with its structure"):  # fmt: skip
        mnx.call_with_mask(lambda x: x, x, {"a": MASK, "c": MASK})
