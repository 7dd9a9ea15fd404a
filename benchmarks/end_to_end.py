"""The real job end to end: masking_jax against Keras 3 on Japanese Vowels, cold caches.

The same model in both, written the way each library's users write it:
Masking -> Bidirectional(LSTM(64), return_sequences) -> GlobalAveragePooling1D ->
Dense(9), AdamW(3e-3, weight decay 1e-4), batch 32, 40 epochs, no per-epoch
evaluation. Keras trains with `model.fit` (JAX backend); masking_jax with a plain
`nnx.jit` train step over `masking_jax.nnx` layers (the demo's model). Each library
runs in its own fresh Python process, so nothing is compiled before the clock starts.

It prints, per library: training wall seconds (from the first step, its compile
included, to the last step's result), the first step's seconds (mostly compiling),
the steady steps' seconds, the test accuracy, and the ratio of training times.

    python benchmarks/end_to_end.py                 # both, 3 fresh processes each
    python benchmarks/end_to_end.py --repeats 1 --epochs 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HIDDEN, NUM_FEATURES, NUM_CLASSES = 64, 12, 9
LIBRARIES = ("masking_jax", "keras")


def _data() -> tuple[np.ndarray, ...]:
    """Standardized, post-padded train and test sets: x (B, 29, 12) float32, labels (B,)."""
    import masking_jax as mj
    from masking_jax.datasets import load_japanese_vowels
    from masking_jax.demo import standardize

    (train_seqs, train_labels), (test_seqs, test_labels) = (
        load_japanese_vowels(split) for split in ("train", "test"))
    train_seqs, test_seqs = standardize(train_seqs, test_seqs)
    maxlen = max(len(s) for s in (*train_seqs, *test_seqs))
    padded = [mj.pad_sequences(seqs, maxlen=maxlen, dtype="float32", padding="post")
              for seqs in (train_seqs, test_seqs)]
    return padded[0], train_labels, padded[1], test_labels


def run_masking_jax(epochs: int, batch_size: int, seed: int) -> dict:
    """Trains the demo's model with a plain `nnx.jit` step; returns times and test accuracy."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from masking_jax.demo import build_model

    x_train, y_train, x_test, y_test = _data()
    mask_train, mask_test = np.any(x_train != 0, -1), np.any(x_test != 0, -1)
    model = build_model("lstm", HIDDEN, seed)
    optimizer = nnx.Optimizer(model, optax.adamw(3e-3, weight_decay=1e-4), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, mask, labels):
        def loss_fn(model):
            logits = model(x, mask=mask)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-len(y_train) // batch_size)
    step_ends = []
    start = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(y_train))
        for i in range(steps_per_epoch):
            # fixed-size batches (the last one wraps around): one compiled shape
            index = np.take(order, np.arange(i * batch_size, (i + 1) * batch_size), mode="wrap")
            loss = train_step(model, optimizer, x_train[index], mask_train[index],
                              y_train[index])
            if not step_ends:
                jax.block_until_ready(loss)
            step_ends.append(time.perf_counter())
    jax.block_until_ready(loss)
    end = time.perf_counter()
    predict = nnx.jit(lambda model, x, mask: jnp.argmax(model(x, mask=mask), -1))
    accuracy = float(np.mean(np.asarray(predict(model, x_test, mask_test)) == y_test))
    return _timings(start, step_ends[0], end, len(step_ends), accuracy)


def run_keras(epochs: int, batch_size: int, seed: int) -> dict:
    """Trains the same model with `keras.Model.fit` on the JAX backend."""
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    x_train, y_train, x_test, y_test = _data()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((x_train.shape[1], NUM_FEATURES)),
        keras.layers.Masking(mask_value=0.0),
        keras.layers.Bidirectional(keras.layers.LSTM(HIDDEN, return_sequences=True)),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(NUM_CLASSES),
    ])
    model.compile(optimizer=keras.optimizers.AdamW(3e-3, weight_decay=1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class StepClock(keras.callbacks.Callback):
        """Records when each train step's result is back (Keras syncs the loss per batch)."""

        def __init__(self):
            super().__init__()
            self.step_ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.step_ends.append(time.perf_counter())

    clock = StepClock()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True,
              verbose=0, callbacks=[clock])
    end = time.perf_counter()
    predicted = model.predict(x_test, batch_size=len(x_test), verbose=0).argmax(-1)
    accuracy = float(np.mean(predicted == y_test))
    return _timings(start, clock.step_ends[0], end, len(clock.step_ends), accuracy)


def _timings(start: float, first_end: float, end: float, steps: int, accuracy: float) -> dict:
    return {
        "train_seconds": end - start,
        "first_step_seconds": first_end - start,
        "steady_step_ms": 1e3 * (end - first_end) / max(steps - 1, 1),
        "steps": steps,
        "test_accuracy": accuracy,
    }


def fresh_process(library: str, args: argparse.Namespace) -> dict:
    """Runs one library's training in a new Python process; returns its JSON result."""
    command = [sys.executable, __file__, "--child", library, "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{library} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict[str, list[dict]]) -> str:
    """Markdown table of medians over the fresh processes, with the time ratio to Keras."""
    rows = ["| library | train s (1st step incl.) | 1st step s | steady step ms | "
            "test accuracy | time / Keras' |", "|---|---|---|---|---|---|"]

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    keras_time = median(results["keras"], "train_seconds") if "keras" in results else None
    for library, runs in results.items():
        seconds = median(runs, "train_seconds")
        ratio = f"{seconds / keras_time:.2f}x" if keras_time else "-"
        accuracies = ", ".join(f"{r['test_accuracy']:.3f}" for r in runs)
        rows.append(f"| {library} | {seconds:.2f} | {median(runs, 'first_step_seconds'):.2f} | "
                    f"{median(runs, 'steady_step_ms'):.2f} | {accuracies} | {ratio} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh processes per library, alternating (default 3)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        runner = run_masking_jax if args.child == "masking_jax" else run_keras
        print(json.dumps(runner(args.epochs, args.batch_size, args.seed)))
        return
    libraries = [name for name in args.libraries.split(",") if name]
    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown:
        parser.error(f"--libraries takes {', '.join(LIBRARIES)}; got {', '.join(unknown)}")
    results: dict[str, list[dict]] = {name: [] for name in libraries}
    for _ in range(args.repeats):  # alternate, so load bursts hit both alike
        for name in libraries:
            results[name].append(fresh_process(name, args))
            print(name, json.dumps(results[name][-1]), flush=True)
    print(f"\nJapanese Vowels, BiLSTM({HIDDEN}), {args.epochs} epochs, batch {args.batch_size}, "
          f"median of {args.repeats} fresh processes:\n")
    print(table(results))


if __name__ == "__main__":
    main()
