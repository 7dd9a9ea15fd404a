"""The benchmark cases and the data of one problem (params, x, mask).

Shape legend: B batch, T time steps, D input features, H hidden units.
Lengths are drawn uniformly in `[min_len, max_len]` (default `[T/4, T]`); the
mask is True at real steps, False at padding (the masking_jax polarity).
Layouts:

- `post`: real steps first, padding after (what Flax `seq_lengths`, PyTorch
  packing and cuDNN take natively);
- `pre`: the same lengths, padding first (the `keras.utils.pad_sequences` default);
- `gappy`: the post-padded mask with 30% of its real steps turned into holes.
"""

import dataclasses

import jax
import numpy as np

import masking_jax as mj

CELLS = ("lstm", "gru", "simple_rnn")
MODES = ("fwd", "fwd_bwd")
_INIT = {
    "lstm": mj.init_lstm_params,
    "gru": mj.init_gru_params,
    "simple_rnn": mj.init_simple_rnn_params,
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark configuration; `cells` and `modes` limit what runs on it."""

    name: str
    batch: int
    steps: int
    features: int
    hidden: int
    layout: str = "post"
    min_len: int | None = None
    max_len: int | None = None
    holes: float = 0.0
    cells: tuple[str, ...] = CELLS
    modes: tuple[str, ...] = MODES
    gpu_only: bool = False
    about: str = ""

    @property
    def size(self) -> str:
        return f"B={self.batch} T={self.steps} D={self.features} H={self.hidden}"


@dataclasses.dataclass(frozen=True)
class Problem:
    """The data one cell runs on: OUR params (Keras 3 layout), x `(B, T, D)`, mask `(B, T)`."""

    cell: str
    params: dict[str, np.ndarray]
    x: np.ndarray
    mask: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Real steps per row, int32 `(B,)`."""
        return self.mask.sum(axis=1).astype(np.int32)

    @property
    def post_padded(self) -> bool:
        """Whether every row's real steps come first (what `seq_lengths` can express)."""
        steps = np.arange(self.mask.shape[1])
        return bool(np.array_equal(self.mask, steps[None, :] < self.lengths[:, None]))

    @property
    def hidden(self) -> int:
        return self.params["recurrent_kernel"].shape[0]


def make_mask(case: Case, rng: np.random.Generator) -> np.ndarray:
    """The case's bool `(B, T)` mask, True = real step."""
    t = case.steps
    lo = case.min_len if case.min_len is not None else t // 4
    hi = case.max_len if case.max_len is not None else t
    lengths = rng.integers(lo, hi + 1, size=case.batch)
    lengths[0] = hi  # the longest row is always there: no case gets free steps at the end
    steps = np.arange(t)
    if case.layout == "pre":
        return steps[None, :] >= t - lengths[:, None]
    mask = steps[None, :] < lengths[:, None]
    if case.layout == "gappy":
        mask &= rng.random(mask.shape) >= case.holes
        mask[:, 0] = True  # no empty row: PyTorch packing rejects zero lengths
        mask[0, hi // 2] = False  # at least one hole, whatever the draw
    elif case.layout != "post":
        raise ValueError(f"`layout` must be 'post', 'pre' or 'gappy'; got {case.layout!r}.")
    return mask


def make_problem(case: Case, cell: str, seed: int = 0) -> Problem:
    """Keras-default params (biases made random so their conversion is checked) and data.

    Padded steps of x hold zeros, as `pad_sequences` leaves them.
    """
    rng = np.random.default_rng(seed)
    params = _INIT[cell](jax.random.key(seed), case.features, case.hidden)
    params = {k: np.asarray(v) for k, v in params.items()}
    params["bias"] = (params["bias"] + 0.1 * rng.standard_normal(params["bias"].shape)).astype(
        np.float32
    )
    mask = make_mask(case, rng)
    x = rng.standard_normal((case.batch, case.steps, case.features)).astype(np.float32)
    x[~mask] = 0.0
    return Problem(cell, params, x, mask)


def _standard(name: str, b: int, t: int, d: int, h: int, **kw) -> list[Case]:
    """The standard size with the same lengths post-padded, pre-padded and gappy."""
    return [
        Case(name, b, t, d, h, about="lengths U[T/4, T], post-padded", **kw),
        Case(f"{name}_pre", b, t, d, h, layout="pre", about="same lengths, pre-padded", **kw),
        Case(
            f"{name}_gappy",
            b,
            t,
            d,
            h,
            layout="gappy",
            holes=0.3,
            about="post-padded mask with 30% holes among the real steps",
            **kw,
        ),
    ]


def _inference(b: int) -> Case:
    return Case(f"infer_b{b}", b, 200, 128, 256, modes=("fwd",), about="small-batch inference")


def _deepbench() -> list[Case]:
    return [
        Case(
            f"deepbench_h{h}_b{b}_t{t}",
            b,
            t,
            h,
            h,
            min_len=t,
            cells=("lstm",),
            gpu_only=True,
            about="DeepBench LSTM size, D=H, full-length rows",
        )
        for h in (512, 1024)
        for b in (16, 64)
        for t in (25, 150)
    ]


def suite(quick: bool) -> list[Case]:
    """The cases of the full suite, or of `--quick` (a few minutes on 2 CPU cores).

    `--quick` runs every layout at a reduced size (B=32, T=100, D=64, H=128), the
    real standard size for LSTM only, and B=1 inference.
    """
    maxlen = "padded to a global maxlen: every row far shorter than T"
    if quick:
        return [
            *_standard("quick", 32, 100, 64, 128),
            Case("quick_global_maxlen", 32, 256, 64, 128, min_len=25, max_len=100, about=maxlen),
            Case("standard", 64, 200, 128, 256, cells=("lstm",), about="the real standard size"),
            _inference(1),
            *_deepbench(),
        ]
    return [
        *_standard("standard", 64, 200, 128, 256),
        Case("global_maxlen", 64, 512, 128, 256, min_len=50, max_len=200, about=maxlen),
        _inference(1),
        _inference(4),
        *_deepbench(),
    ]
