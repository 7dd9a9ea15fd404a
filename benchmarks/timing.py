"""Wall-clock timing: warm up, block until the result is ready, repeat, report min/median.

On a shared machine the load changes while a case runs, so the implementations
of one case are timed round-robin (one call each per round): a burst of load
hits all of them alike, and ratios of medians from the same rounds stay fair.
"""

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

Run = Callable[[], Any]
Block = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of each timed repeat (after warm-up)."""

    times: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def timed_call(run: Run, block: Block) -> tuple[Any, float]:
    """Runs `run()` once, waits for its result with `block`, returns `(result, seconds)`.

    `block` must wait until the result is computed (`jax.block_until_ready` for JAX:
    JAX dispatches asynchronously, so timing without it measures only the dispatch).
    """
    start = time.perf_counter()
    result = run()
    block(result)
    return result, time.perf_counter() - start


def measure(
    runs: dict[str, tuple[Run, Block]], *, repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Times every `(run, block)` of `runs` `repeats` times, round-robin, after `warmup` rounds."""
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1; got {repeats}.")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(warmup + repeats):
        for name, (run, block) in runs.items():
            seconds = timed_call(run, block)[1]
            if round_ >= warmup:
                times[name].append(seconds)
    return {name: Timing(tuple(t)) for name, t in times.items()}
