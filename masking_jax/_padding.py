"""Host-side padding of ragged sequences, and lengths <-> mask conversion.

Two padders with different defaults, on purpose: `pad_sequences` is a drop-in for
`keras.utils.pad_sequences` and pads and truncates at the START ("pre"), as Keras
does; `pad_masked`, which also returns the mask, pads and truncates at the END
("post"), the layout most JAX code (and `lengths_to_mask`) assumes. Pass
`padding=` and `truncating=` to either to choose.

Shape legend: B sequences (the batch once padded), T padded length.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_bool_mask, check_choice, check_int, check_lossless_cast
from ._masks import Masked

PADDING_SIDES = ("pre", "post")


def _as_sequences(sequences: Any) -> list[np.ndarray]:
    """Turns a list of sequences (lists, tuples or arrays) into a list of numpy arrays."""
    if isinstance(sequences, str | bytes) or not hasattr(sequences, "__len__"):
        raise TypeError(
            "`sequences` must be a list of sequences (lists or arrays, one per example); "
            f"got {type(sequences).__name__}."
        )
    out = []
    for i, seq in enumerate(sequences):
        if isinstance(seq, str | bytes) or not hasattr(seq, "__len__"):
            raise ValueError(
                f"`sequences[{i}]` must be a sequence (a list or an array of steps); "
                f"got {type(seq).__name__} {seq!r}."
            )
        try:
            array = np.asarray(seq) if len(seq) else np.zeros((0,))
        except ValueError as err:  # numpy's "inhomogeneous shape" for ragged steps
            raise ValueError(
                f"`sequences[{i}]` must be rectangular: all its steps must share one shape; "
                f"numpy says: {err}"
            ) from err
        except TypeError:  # a 0-d array: it has __len__ but no length
            array = np.asarray(seq)
        if array.ndim == 0:  # a dict, a set, a scalar array
            raise ValueError(
                f"`sequences[{i}]` must be a sequence (a list or an array of steps); got "
                f"{type(seq).__name__}."
            )
        out.append(array)
    return out


def _step_shape(arrays: list[np.ndarray]) -> tuple[int, ...]:
    """The shape of one step, shared by every non-empty sequence (ragged ones raise)."""
    shapes = {a.shape[1:] for a in arrays if len(a)}
    if len(shapes) > 1:
        raise ValueError(
            "`sequences` must share the shape of one step (the trailing dims); "
            f"got step shapes {sorted(shapes)}."
        )
    return shapes.pop() if shapes else ()


def _output_dtype(dtype: Any) -> np.dtype:
    try:
        return np.dtype(dtype)
    except TypeError as err:
        raise TypeError(
            f"`dtype` must be a numpy dtype, e.g. 'int32'; got {dtype!r} ({err})."
        ) from None


def pad_sequences(
    sequences: Sequence[Any],
    maxlen: int | None = None,
    dtype: Any = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0.0,
) -> np.ndarray:
    """Pads ragged sequences to one length, with the output of `keras.utils.pad_sequences`.

    Like Keras, it pads and truncates at the START by default (`padding="pre"`,
    `truncating="pre"`), and `dtype` defaults to int32. `pad_masked` pads at the
    END by default and also returns the mask: pass `padding="post"` here for the
    same layout.

    Args:
      sequences: B sequences, each a list or an array of shape `(T_i, ...)`; the
        trailing (step) shape must be shared. Empty sequences are allowed.
      maxlen: the padded length T; `None` takes the longest sequence.
      dtype: the output dtype (Keras' default is int32: pass a float dtype for features).
      padding: "pre" (default, as in Keras) pads at the start, "post" at the end.
      truncating: "pre" (default) drops steps from the start of longer sequences,
        "post" from the end.
      value: the padding value, a scalar.

    Returns:
      A numpy array of shape `(B, T, ...)`.

    Values that `dtype` cannot hold raise instead of wrapping: an id of 2**40 for
    int32 raises `OverflowError` as in Keras (here it is also a `ValueError`, for
    numpy arrays too, which Keras wraps silently). Unlike Keras, a bad
    `padding`/`truncating` string, a negative `maxlen`, ragged step shapes, and
    floats that an integer `dtype` would truncate raise `ValueError` naming the
    argument; `maxlen=0` gives shape `(B, 0)`.

    Examples:
      >>> pad_sequences([[1, 2, 3], [4]])  # "pre", as in Keras
      array([[1, 2, 3],
             [0, 0, 4]], dtype=int32)
      >>> pad_sequences([[1, 2, 3], [4]], padding="post")
      array([[1, 2, 3],
             [4, 0, 0]], dtype=int32)
    """
    check_choice(padding, "padding", PADDING_SIDES)
    check_choice(truncating, "truncating", PADDING_SIDES)
    arrays = _as_sequences(sequences)
    lengths = [len(a) for a in arrays]
    maxlen = max(lengths, default=0) if maxlen is None else check_int(maxlen, "maxlen")
    dtype = _output_dtype(dtype)
    value_array = np.asarray(value)
    if value_array.ndim:
        raise ValueError(f"`value` must be a scalar; got shape {value_array.shape}.")
    if np.issubdtype(dtype, np.number) and not np.issubdtype(value_array.dtype, np.number):
        raise ValueError(f"`value` must be a number for dtype {dtype}; got {value!r}.")
    check_lossless_cast(value_array, dtype, "value", f"`dtype` is {dtype}")
    out = np.full((len(arrays), maxlen, *_step_shape(arrays)), value, dtype=dtype)
    for i, seq in enumerate(arrays):
        kept = seq[max(len(seq) - maxlen, 0) :] if truncating == "pre" else seq[:maxlen]
        if not len(kept):
            continue
        check_lossless_cast(kept, dtype, f"sequences[{i}]", f"`dtype` is {dtype}")
        if padding == "post":
            out[i, : len(kept)] = kept
        else:
            out[i, maxlen - len(kept) :] = kept
    return out


def bucket_length(length: int, bucket: int | str | None) -> int:
    """Rounds a padded length up so that a jitted model sees few distinct shapes.

    Args:
      length: the length to round, >= 0.
      bucket: `None` keeps `length`; an int N rounds up to a multiple of N;
        "pow2" rounds up to the next power of two (0 stays 0).

    Examples:
      >>> bucket_length(13, 8), bucket_length(13, "pow2"), bucket_length(13, None)
      (16, 16, 13)
    """
    length = check_int(length, "length")
    if bucket is None:
        return length
    if bucket == "pow2":
        return 0 if length == 0 else 1 << (length - 1).bit_length()  # exact, unlike log2
    if isinstance(bucket, str):
        raise ValueError(f"`bucket` must be None, a positive int or 'pow2'; got {bucket!r}.")
    bucket = check_int(bucket, "bucket", minimum=1)
    return -(-length // bucket) * bucket


def pad_masked(
    sequences: Sequence[Any],
    maxlen: int | None = None,
    *,
    dtype: Any = None,
    padding: str = "post",
    truncating: str = "post",
    value: Any = 0,
    bucket: int | str | None = None,
) -> tuple[Masked, np.ndarray]:
    """Pads ragged sequences and returns them with their mask and lengths.

    It pads and truncates at the END by default (`padding="post"`), unlike
    `pad_sequences`, which follows Keras and pads at the start.

    Args:
      sequences: B sequences, each a list or an array of shape `(T_i, ...)`.
      maxlen: the padded length before bucketing; `None` takes the longest sequence.
        Longer sequences are truncated.
      dtype: the data dtype; `None` infers it from the sequences as JAX would store it
        (Python floats become float32, ints int32, unless `jax_enable_x64` is on).
        Values it cannot hold (ids beyond int32, floats beyond float32) raise
        `ValueError` (also an `OverflowError`) rather than wrap.
      padding: "post" (default; `pad_sequences` defaults to "pre") or "pre".
      truncating: "post" (default; `pad_sequences` defaults to "pre") or "pre".
      value: the padding value.
      bucket: round the padded length T up (see `bucket_length`): `None`, an int N
        (a multiple of N) or "pow2".

    Returns:
      `(Masked(data (B, T, ...), mask (B, T)), lengths (B,) int32)`, as numpy arrays;
      mask is True at real steps, False at padding.

    Examples:
      >>> batch, lengths = pad_masked([[1.0, 2.0, 3.0], [4.0]], bucket=4)
      >>> batch.data
      array([[1., 2., 3., 0.],
             [4., 0., 0., 0.]], dtype=float32)
      >>> batch.mask
      array([[ True,  True,  True, False],
             [ True, False, False, False]])
      >>> lengths
      array([3, 1], dtype=int32)
    """
    arrays = _as_sequences(sequences)
    if dtype is None:
        non_empty = [a for a in arrays if len(a)]
        inferred = np.result_type(*non_empty) if non_empty else np.float32
        dtype = jax.dtypes.canonicalize_dtype(inferred)  # float64 -> float32 unless x64 is on
    dtype = _output_dtype(dtype)
    longest = max((len(a) for a in arrays), default=0)
    maxlen = longest if maxlen is None else check_int(maxlen, "maxlen")
    lengths = np.minimum([len(a) for a in arrays], maxlen).astype(np.int32)
    padded_len = bucket_length(maxlen, bucket)
    data = pad_sequences(arrays, maxlen, dtype, padding, truncating, value)
    pad_width = [(0, 0)] * data.ndim
    pad_width[1] = (0, padded_len - maxlen) if padding == "post" else (padded_len - maxlen, 0)
    data = np.pad(data, pad_width, constant_values=np.asarray(value, dtype))
    mask = np.asarray(lengths_to_mask(lengths, padded_len, padding=padding))
    return Masked(data, mask), lengths


def lengths_to_mask(lengths: Any, maxlen: int, padding: str = "post") -> jax.Array:
    """Builds a boolean mask (True = real step) from sequence lengths.

    Args:
      lengths: integer lengths of shape `(B,)` (any leading shape works).
      maxlen: the padded length T, a static int below 2**31.
      padding: "post" puts the real steps first, "pre" puts them last.

    Returns:
      A bool array of shape `lengths.shape + (T,)`.

    Lengths are checked against `[0, maxlen]` when they are concrete (numpy, lists,
    eager arrays). Under `jax.jit` they cannot be, and they saturate: a negative
    length gives an all-False row and a length above `maxlen` (of any integer dtype,
    however large) an all-True row.

    Examples:
      >>> lengths_to_mask([2, 0, 3], 3)
      Array([[ True,  True, False],
             [False, False, False],
             [ True,  True,  True]], dtype=bool)
    """
    return lengths_mask(lengths, maxlen, padding)


def lengths_mask(
    lengths: Any, maxlen: int, padding: str = "post", name: str = "lengths"
) -> jax.Array:
    """`lengths_to_mask`, its errors naming the lengths `name` (a layer's `seq_lengths`).

    Examples:
      >>> lengths_mask([1], 2, name="seq_lengths")
      Array([[ True, False]], dtype=bool)
    """
    maxlen = check_int(maxlen, "maxlen", maximum=np.iinfo(np.int32).max)
    check_choice(padding, "padding", PADDING_SIDES)
    if not isinstance(lengths, jax.Array):
        try:
            lengths = np.asarray(lengths)
        except ValueError as err:  # ragged lists
            raise TypeError(f"`{name}` must be an integer array; numpy says: {err}") from None
    if lengths.size and not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integers; got dtype {lengths.dtype}.")
    if not isinstance(lengths, jax.core.Tracer):
        concrete = np.asarray(lengths)
        if concrete.size and (concrete.min() < 0 or concrete.max() > maxlen):
            raise ValueError(
                f"`{name}` must lie in [0, maxlen={maxlen}]; got values from {concrete.min()} "
                f"to {concrete.max()}."
            )
    elif lengths.size and np.iinfo(lengths.dtype).max > maxlen:  # saturate in their own dtype
        lengths = jnp.clip(lengths, 0, maxlen)
    lengths = jnp.asarray(lengths, jnp.int32)[..., None]
    steps = jnp.arange(maxlen).reshape((1,) * (lengths.ndim - 1) + (maxlen,))
    return steps < lengths if padding == "post" else steps >= maxlen - lengths


def mask_to_lengths(mask: Any) -> jax.Array:
    """Counts the real steps of each row: int32 of shape `(B,)` for a `(B, T)` mask.

    It counts along the last axis, so any leading shape works (the inverse of
    `lengths_to_mask`).

    For a gappy mask this is the number of real steps, not the index of the last one.

    Examples:
      >>> mask_to_lengths(lengths_to_mask([2, 0, 3], 3))
      Array([2, 0, 3], dtype=int32)
    """
    mask = as_bool_mask(mask)
    if mask.ndim < 1:
        raise ValueError(f"`mask` must have a time axis, shape (B, T); got shape {mask.shape}.")
    return jnp.sum(mask, axis=-1, dtype=jnp.int32)
