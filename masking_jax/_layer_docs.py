"""The docstring text that `SimpleRNN`, `LSTM` and `GRU` of `masking_jax.nnx` and of
`masking_jax.linen` share, in one place; imports no flax.

- `CELL_DOCS`: per layer, its summary, the layout of its parameters and its own options.
- `RNN_OPTIONS`: the options every one of these layers has, with their defaults.
- `describe`: options as the lines of a docstring section.

Each API's module writes the rest of the docstring (constructor, call, examples) around
these.

Shape legend: B batch, T time steps, D input features, H hidden units.
"""

import dataclasses
import textwrap

_WIDTH = 88  # of a docstring line, indentation included


@dataclasses.dataclass(frozen=True)
class CellDoc:
    """What one recurrent layer's docstring says in both APIs.

    Attributes:
      summary: the first line.
      parameters: the names, shapes and gate order of its parameters.
      options: its own options, `(name, description)` pairs.
    """

    summary: str
    parameters: str
    options: tuple[tuple[str, str], ...]

    def head(self) -> str:
        """The summary line and the parameters paragraph, indented for a class docstring."""
        return f"{self.summary}\n\n" + textwrap.fill(
            self.parameters, _WIDTH, initial_indent="    ", subsequent_indent="    "
        )


_ACTIVATION = (
    'a Keras name ("tanh", "sigmoid", "hard_sigmoid", "relu", "linear"), a function, or '
    "`None` (linear)."
)
_GATES = (
    ("activation", f"the candidate activation: {_ACTIVATION}"),
    ("recurrent_activation", "the gate activation, named or given as `activation`."),
)

CELL_DOCS = {
    "SimpleRNN": CellDoc(
        "A masked SimpleRNN layer (`keras.layers.SimpleRNN`) over `masking_jax.simple_rnn`.",
        "Parameters: `kernel` (D, H), `recurrent_kernel` (H, H), `bias` (H,).",
        (("activation", _ACTIVATION),),
    ),
    "LSTM": CellDoc(
        "A masked LSTM layer (`keras.layers.LSTM`) over `masking_jax.lstm`.",
        "Parameters: `kernel` (D, 4H), `recurrent_kernel` (H, 4H), `bias` (4H,), gates "
        "i, f, c, o.",
        (
            *_GATES,
            ("unit_forget_bias", "start the forget-gate bias at 1, as Keras does."),
            ("use_cudnn", "run on cuDNN, same results (see `masking_jax.lstm`); CUDA GPU only."),
        ),
    ),
    "GRU": CellDoc(
        "A masked GRU layer (`keras.layers.GRU`) over `masking_jax.gru`.",
        "Parameters: `kernel` (D, 3H), `recurrent_kernel` (H, 3H), gates z, r, h; `bias` "
        "(2, 3H) with `reset_after=True` (Keras 3 default), (3H,) otherwise.",
        (
            *_GATES,
            (
                "reset_after",
                "apply the reset gate after the recurrent matmul (Keras 3 and cuDNN "
                "convention) rather than before.",
            ),
        ),
    ),
}

RNN_OPTIONS = (  # (name, default, description)
    (
        "return_sequences",
        "False",
        "return all outputs `(B, T, H)` (the mask passes on) instead of the output after "
        "the last real step `(B, H)` (the mask ends).",
    ),
    (
        "return_state",
        "False",
        "also return the final state(s), each `(B, H)`, as in Keras: `(y, h)` or, for the "
        "LSTM, `(y, h, c)`.",
    ),
    (
        "reverse",
        "False",
        "consume the steps from last to first; outputs stay aligned with the input "
        "positions (Keras `go_backwards` returns them flipped in time).",
    ),
    (
        "zero_output_for_mask",
        "False",
        "output zeros at padded steps instead of the previous output.",
    ),
    ("use_bias", "True", "whether the layer has `bias`."),
    ("unroll", "False", "`lax.scan` unrolling (`True`, `False` or a number of steps); speed only."),
    ("param_dtype", "jnp.float32", "dtype of the parameters."),
)


def describe(options, *, indent: int = 6, defaults: bool = False) -> str:
    """Docstring lines for `options`, `(name, text)` pairs or `(name, default, text)`
    triples: `name: text`, or `` `name=default`: text `` with `defaults`.

    Examples:
      >>> print(describe([("unroll", "False", "speed only.")], indent=2))
        unroll: speed only.
      >>> print(describe([("unroll", "False", "speed only.")], indent=2, defaults=True))
        `unroll=False`: speed only.
    """
    lines = []
    for option in options:
        label = f"`{option[0]}={option[1]}`" if defaults else option[0]
        lines.append(textwrap.fill(
            f"{label}: {option[-1]}", _WIDTH, initial_indent=" " * indent,
            subsequent_indent=" " * (indent if defaults else indent + 2),
        ))  # fmt: skip
    return "\n".join(lines)
