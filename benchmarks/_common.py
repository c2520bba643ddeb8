"""Helpers shared by the benchmark scripts: machine description, interleaved
timing with medians, and Markdown tables."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Sequence


def machine_info() -> Dict[str, str]:
    """CPU model, logical cores, Python, TensorFlow and Keras versions."""
    import keras
    import tensorflow as tf

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "gpu": ", ".join(g.name for g in gpus) or "none",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load average (1 min) at start": f"{os.getloadavg()[0]:.2f}",
    }


def time_call(fn: Callable[[], object]) -> float:
    """Seconds taken by one call of `fn`, which must block until its result
    is ready (e.g. return after `.numpy()`)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rounds_for(call_seconds: float, repeats: int, budget_s: float, max_rounds: int = 200) -> int:
    """Timed calls per function: enough to fill `budget_s`, at least
    `repeats`, at most `max_rounds` (but never fewer than `repeats`)."""
    by_budget = int(budget_s / max(call_seconds, 1e-6))
    return max(repeats, min(max_rounds, by_budget))


def interleaved_samples(fns: Dict[str, Callable[[], object]], rounds: int) -> Dict[str, List[float]]:
    """Times every function once per round, alternating between them and
    reversing the order every other round (a, b, b, a, a, b, ...), so that
    load changes on a shared machine hit all of them alike.

    Returns the seconds of each call, per function name.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1; got {rounds}.")
    names = list(fns)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            samples[name].append(time_call(fns[name]))
    return samples


def median(values: Sequence[float]) -> float:
    """The median of `values`."""
    return statistics.median(values)


def spread(values: Sequence[float]) -> float:
    """Interquartile range / median of timing samples: a noise gauge
    (0.05 = the middle half of the calls lie within 5% of each other)."""
    m = statistics.median(values)
    if len(values) < 4 or not m:
        return (max(values) - min(values)) / m if m else float("nan")
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / m


def paired_ratio(slow: Sequence[float], fast: Sequence[float], seed: int = 0, resamples: int = 2000):
    """Median of the per-round ratios `slow[i] / fast[i]` of interleaved
    samples, with a bootstrap 95% confidence interval.

    Pairing calls made back to back cancels most slow load drift on a
    shared machine. Returns `(median, low, high)`.
    """
    import numpy as np

    if len(slow) != len(fast) or not slow:
        raise ValueError(f"need two equally long, non-empty sample lists; got {len(slow)} and {len(fast)}.")
    ratios = np.asarray(slow, dtype=float) / np.asarray(fast, dtype=float)
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(ratios, size=(resamples, len(ratios)), replace=True), axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(np.median(ratios)), float(low), float(high)


def verdict(low: float, high: float, goal: float, higher_is_better: bool = True) -> str:
    """Where a 95% confidence interval `[low, high]` lies against `goal`:
    `"better"`, `"worse"` or `"equal within noise"` (the interval holds it)."""
    if not higher_is_better:
        low, high, goal = -high, -low, -goal
    return "better" if low > goal else ("worse" if high < goal else "equal within noise")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table with a header row and one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
