"""The main job: a masked bidirectional RNN (or a masked CNN) learns to tell speakers apart.

Trains on the Japanese Vowels data set shipped with the package (ragged speech
feature sequences, 7 to 29 frames of 12 coefficients, 9 speakers) with optax,
then checks that predictions do not depend on how the test set is padded.

It runs in two phases: first it compiles the train step and the forward pass
ahead of time (`.lower(...).compile()`, the seconds shown), then it trains
with a progress bar over the epochs, so the bar's estimate counts training only.
Run `python -m masking_jax.demo --help` for the options. The last line printed
is one JSON object with the results, compile and training seconds apart.
"""

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import masking_jax as mj
from masking_jax import nnx as mnx
from masking_jax.datasets import load_japanese_vowels

RNN_LAYERS = {"lstm": mnx.LSTM, "gru": mnx.GRU}
MODELS = (*sorted(RNN_LAYERS), "conv")
#: --hidden and --learning-rate when not given: tuned per model on the default seed.
DEFAULTS = {
    "gru": {"hidden": 64, "learning_rate": 3e-3},
    "lstm": {"hidden": 64, "learning_rate": 3e-3},
    "conv": {"hidden": 128, "learning_rate": 1e-3},
}
NUM_FEATURES, NUM_CLASSES = 12, 9


def standardize(train: Sequence[np.ndarray], *others: Sequence[np.ndarray]):
    """Scales every channel to zero mean and unit variance, with statistics of real train frames."""
    frames = np.concatenate(train)
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    return [[(s - mean) / std for s in split] for split in (train, *others)]


def build_model(kind: str, hidden: int, seed: int) -> mnx.Sequential:
    """Bidirectional RNN over the real frames -> masked mean over time -> dense logits.

    Called as `model(x (B, T, 12), mask=(B, T))`, it returns logits `(B, 9)`: the
    mask reaches the RNN and the pooling layer through `Sequential`. `kind="conv"`
    builds `build_conv_model` instead.
    """
    rngs = nnx.Rngs(seed)
    if kind == "conv":
        return build_conv_model(hidden, rngs)
    rnn = RNN_LAYERS[kind](NUM_FEATURES, hidden, return_sequences=True, rngs=rngs)
    return mnx.Sequential(
        mnx.Bidirectional(rnn, merge_mode="concat", rngs=rngs),   # (B, T, 2H), mask kept
        mnx.GlobalAveragePooling1D(),                              # (B, 2H), mask ends
        nnx.Linear(2 * hidden, NUM_CLASSES, rngs=rngs),            # (B, 9)
    )


def build_conv_model(channels: int, rngs: nnx.Rngs) -> mnx.Sequential:
    """Two masked convolutions with batch norm over real frames -> masked mean -> dense.

    "same" padding with stride 1 keeps the mask and, padding being zeroed, gives each
    real frame what the unpadded sequence gives it, whatever the layout; `BatchNorm`
    takes its statistics over real frames only. Train it after `model.train()` and
    predict after `model.eval()` (moving statistics).
    """
    layers = []
    for features, kernel_size in ((NUM_FEATURES, 5), (channels, 3)):
        layers += [
            mnx.Conv1D(features, channels, kernel_size, padding="same", rngs=rngs),
            mnx.BatchNorm(channels, momentum=0.9, rngs=rngs),  # (B, T, C), mask kept
            jax.nn.relu,
        ]
    return mnx.Sequential(
        *layers,
        mnx.GlobalAveragePooling1D(),                              # (B, C), mask ends
        nnx.Linear(channels, NUM_CLASSES, rngs=rngs),              # (B, 9)
    )


def describe(kind: str, hidden: int) -> str:
    """The model in words, for the printed results."""
    if kind == "conv":
        return (f"masked Conv1D({hidden}, 5) + BatchNorm + ReLU, Conv1D({hidden}, 3) + "
                "BatchNorm + ReLU + masked mean pool + dense")
    return f"bidirectional {kind.upper()}({hidden}) + masked mean pool + dense"


def predict(model: mnx.Sequential, batch: mj.Masked, batch_size: int, forward=None) -> np.ndarray:
    """Logits `(B, 9)` of a padded batch, computed in slices of `batch_size` rows.

    Every slice has the same shape (the last one wraps around), so one compiled
    forward serves a whole data set of any size with the same padded length.
    `forward(model, x, mask)` is that forward pass: a jitted one by default, or
    one compiled ahead of time for this shape.
    """
    forward = forward or _logits
    count = batch.data.shape[0]
    logits = [
        forward(model, batch.data[index], batch.mask[index])
        for start in range(0, count, batch_size)
        for index in [np.arange(start, start + batch_size) % count]
    ]
    return np.concatenate(logits)[:count]


@nnx.jit
def _logits(model, x, mask):
    return model(x, mask=mask)


def _loss(model, x, mask, labels):
    logits = model(x, mask=mask)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@nnx.jit
def _train_step(model, optimizer, x, mask, labels):
    loss, grads = nnx.value_and_grad(_loss)(model, x, mask, labels)
    optimizer.update(model, grads)
    return loss


def padding_invariant(model: mnx.Sequential, sequences: Sequence[np.ndarray],
                      batch_size: int) -> bool:
    """True when post-, pre- and over-padded (NaN-filled) batches give the same predictions."""
    post, _ = mj.pad_masked(sequences, padding="post")
    pre, _ = mj.pad_masked(sequences, padding="pre")
    longer, _ = mj.pad_masked(sequences, padding="post", bucket=64, value=np.nan)
    results = [predict(model, b, batch_size) for b in (post, pre, longer)]
    return all(np.allclose(results[0], r, atol=1e-5) for r in results[1:]) and all(
        np.array_equal(results[0].argmax(-1), r.argmax(-1)) for r in results[1:]
    )


def save_curves(history: dict[str, list[float]], path: pathlib.Path) -> None:
    """Writes the training curves (loss, train and test accuracy per epoch) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot(history["loss"])
    loss_ax.set(xlabel="epoch", ylabel="train loss", yscale="log")
    acc_ax.plot(history["train_accuracy"], label="train")
    acc_ax.plot(history["test_accuracy"], label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy")
    acc_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compile_steps(model, optimizer, batch: mj.Masked, labels: np.ndarray, batch_size: int):
    """The train step and the forward pass, compiled ahead of time for `batch_size` rows.

    Returns `(train_step, forward, seconds)`: the two are called like `_train_step` and
    `_logits`; every batch of the run has this shape, so training compiles nothing.
    """
    start = time.perf_counter()
    index = np.arange(batch_size) % len(labels)
    x, mask = batch.data[index], batch.mask[index]
    model.train()  # the modes are static: BatchNorm's batch statistics in training,
    train_step = _train_step.lower(model, optimizer, x, mask, labels[index]).compile()
    model.eval()  # its moving statistics when predicting
    forward = _logits.lower(model, x, mask).compile()
    return train_step, forward, time.perf_counter() - start


def train(args: argparse.Namespace) -> dict:
    """Compiles, then trains the model; returns the results that the demo prints."""
    train_seqs, train_labels = load_japanese_vowels("train")
    test_seqs, test_labels = load_japanese_vowels("test")
    train_seqs, test_seqs = standardize(train_seqs, test_seqs)
    # one padded length for both sets (32), so one compiled forward serves both
    maxlen = mj.bucket_length(max(len(s) for s in (*train_seqs, *test_seqs)), 8)
    train_batch, _ = mj.pad_masked(train_seqs, maxlen)  # (270, 32, 12) and its mask
    test_batch, _ = mj.pad_masked(test_seqs, maxlen)    # (370, 32, 12)

    model = build_model(args.model, args.hidden, args.seed)
    optimizer = nnx.Optimizer(model, optax.adamw(args.learning_rate, weight_decay=1e-4),
                              wrt=nnx.Param)

    if not args.quiet:
        print("compiling the train step and the forward pass...", end=" ", file=sys.stderr,
              flush=True)
    train_step, forward, compile_seconds = compile_steps(
        model, optimizer, train_batch, train_labels, args.batch_size)
    if not args.quiet:
        print(f"{compile_seconds:.1f} s", file=sys.stderr, flush=True)

    def accuracy(batch, labels):
        logits = predict(model, batch, args.batch_size, forward)
        return float(np.mean(logits.argmax(-1) == labels))

    rng = np.random.default_rng(args.seed)
    history = {"loss": [], "train_accuracy": [], "test_accuracy": []}
    num_batches = -(-len(train_labels) // args.batch_size)
    progress = tqdm(total=args.epochs, desc="training", unit="epoch", disable=args.quiet)
    start = time.perf_counter()
    for _ in range(args.epochs):
        model.train()  # batch statistics (BatchNorm); no effect on the RNN models
        order = rng.permutation(len(train_labels))
        losses = []
        for i in range(num_batches):
            # Fixed-size batches (the last one wraps around) keep one compiled shape.
            index = np.take(order, np.arange(i * args.batch_size, (i + 1) * args.batch_size),
                            mode="wrap")
            losses.append(train_step(model, optimizer, train_batch.data[index],
                                     train_batch.mask[index], train_labels[index]))
        history["loss"].append(float(np.mean(losses)))
        model.eval()  # moving statistics: a prediction depends on its own sequence only
        history["train_accuracy"].append(accuracy(train_batch, train_labels))
        history["test_accuracy"].append(accuracy(test_batch, test_labels))
        progress.update(1)
        progress.set_postfix(loss=f"{history['loss'][-1]:.4f}",
                             train_acc=f"{history['train_accuracy'][-1]:.3f}",
                             test_acc=f"{history['test_accuracy'][-1]:.3f}")
    train_seconds = time.perf_counter() - start
    progress.close()

    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_curves(history, out_dir / "training_curves.png")
    return {
        "model": describe(args.model, args.hidden),
        "test_accuracy": round(history["test_accuracy"][-1], 4),
        "train_accuracy": round(history["train_accuracy"][-1], 4),
        "final_loss": round(history["loss"][-1], 5),
        "compile_seconds": round(compile_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "epochs": args.epochs,
        "seed": args.seed,
        "learning_rate": args.learning_rate,
        "padding_invariant": padding_invariant(model, test_seqs, args.batch_size),
        "curves_png": str(out_dir / "training_curves.png"),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m masking_jax.demo",
        description="Train a masked bidirectional RNN (or a masked CNN) on Japanese Vowels "
        "(9 speakers, ragged 12-channel sequences) with optax; print test accuracy, training "
        "time and a padding-invariance check, as JSON on the last line.",
    )
    parser.add_argument("--epochs", type=int, default=40, help="passes over the 270 training "
                        "utterances (default: 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed for init and shuffling "
                        "(default: 0)")
    parser.add_argument("--model", choices=MODELS, default="lstm",
                        help="a bidirectional LSTM or GRU, or conv: two masked Conv1D + "
                        "BatchNorm layers (default: lstm)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden units per direction, "
                        "or conv channels (default: 64 for the RNNs, 128 for conv)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="AdamW learning rate (default: 3e-3 for the RNNs, 1e-3 for conv)")
    parser.add_argument("--out", default="demo_out", help="folder for the training-curve PNG "
                        "(default: demo_out)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name, value in DEFAULTS[args.model].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("epochs", "hidden", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    results = train(parse_args(argv))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
