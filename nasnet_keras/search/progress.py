"""Search progress lines: one printed line per ended trial.

`ProgressPrinter` prints, for each trial that ends::

    [ 3/10] trial 2 COMPLETED reward 0.7500 best 0.7500 | 1.5s, elapsed 0:00:01, ETA 0:00:05 | N 0id+1c1 R 0m3|1c1

(ended / max trials, trial id, status, reward, best reward so far, the
trial's seconds, time since the search (re)started, estimated time left, the
genotype in `short_genotype`'s notation, and the reason of a failed trial).
Each line costs O(1): the caller passes the running state (ended count, best
record), e.g. from `nasnet_keras.search.report_writer.ReportWriter`. The
report files are written by `nasnet_keras.search.reports`.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import sys
import time
from typing import TYPE_CHECKING, Optional, TextIO

from nasnet_keras import genotypes as gt

if TYPE_CHECKING:  # imported lazily at run time: reports imports this module
    from nasnet_keras.search.reports import TrialRecord

__all__ = ["ProgressPrinter", "failure_reason", "format_hms", "keras_tuner_debug", "short_genotype"]

# Two- or three-letter codes for `short_genotype`.
_OP_CODES = {
    "identity": "id", "conv_1x3_3x1": "c13", "conv_1x7_7x1": "c17", "dil_conv_3x3": "d3",
    "avg_pool_3x3": "a3", "max_pool_3x3": "m3", "max_pool_5x5": "m5", "max_pool_7x7": "m7",
    "conv_1x1": "c1", "conv_3x3": "c3", "sep_conv_3x3": "s3", "sep_conv_5x5": "s5", "sep_conv_7x7": "s7",
}


def short_genotype(genotype: gt.Genotype) -> str:
    """A compact one-line genotype, e.g. ``"N 0s3+1id 1m3|0c1 R 0m5+1s7 ..."``.

    Each block is ``<input0><op0><+ or |><input1><op1>`` (``+`` add,
    ``|`` concat); op codes: id identity, c13 / c17 1xk-kx1 conv, d3 dilated
    conv, a3 avg pool, m3 / m5 / m7 max pool, c1 / c3 conv, s3 / s5 / s7
    separable conv (the paper's Sec. 3 op list); unknown ops keep their name.
    """
    def cell(c: gt.Cell) -> str:
        return " ".join(
            f"{b.inputs[0]}{_OP_CODES.get(b.ops[0], b.ops[0])}{'+' if b.combine == 'add' else '|'}"
            f"{b.inputs[1]}{_OP_CODES.get(b.ops[1], b.ops[1])}" for b in c.blocks)
    return f"N {cell(genotype.normal)} R {cell(genotype.reduction)}"


def failure_reason(message: Optional[str]) -> str:
    """The last non-blank line of a Keras Tuner trial message (a traceback), without the module path.

    E.g. ``"...\\nkeras_tuner.src.errors.FailedTrialError: boom"`` gives
    ``"FailedTrialError: boom"``; ``None`` or blank gives ``""``.
    """
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    head, sep, rest = last.partition(": ")
    if sep and " " not in head and "." in head:  # "keras_tuner.src.errors.FailedTrialError: ..."
        last = f"{head.rsplit('.', 1)[-1]}: {rest}"
    return last


def format_hms(seconds: Optional[float]) -> str:
    """``H:MM:SS`` of a duration rounded to the second; ``"?"`` for ``None`` / NaN / inf."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


class ProgressPrinter:
    """Prints one line per ended trial (see the module docstring for its fields).

    Args:
        enabled: print at all (default ``True``); `trial_end` counts trials either way.
        stream: where to print (default ``sys.stdout``, looked up at each print).
        clock: seconds as a float, monotonic (default `time.monotonic`), for
            elapsed time and ETA.
    """

    def __init__(self, enabled: bool = True, stream: Optional[TextIO] = None, clock=time.monotonic):
        self.enabled = enabled
        self.stream = stream
        self.clock = clock
        self.max_trials: Optional[int] = None
        self._start = clock()
        self._done_at_start = 0
        self._ended_here = 0

    def start(self, max_trials: Optional[int], done: int = 0) -> None:
        """Starts the clock.

        Args:
            max_trials: the search's trial budget (``None``: unknown, no ETA).
            done: trials that had ended before (a resumed search); prints a
                "Resuming" line when > 0 and enabled.
        """
        self.max_trials = max_trials
        self._start = self.clock()
        self._done_at_start = int(done)
        self._ended_here = 0
        if self.enabled and done:
            self._print(f"Resuming: {done} trial(s) already ended"
                        + (f" of {max_trials}." if max_trials else "."))

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def format_line(self, record: TrialRecord, ended: int, best: Optional[TrialRecord]) -> str:
        """The progress line of a trial that just ended (O(1)).

        Args:
            record: the ended trial's `TrialRecord`.
            ended: how many trials have ended, this one included (e.g.
                `ReportWriter.num_ended`).
            best: the best COMPLETED record so far, or ``None`` (e.g. `ReportWriter.best`).

        The ETA is the mean time per trial ended since `start` times the
        trials left (``max_trials - ended``).
        """
        total = self.max_trials
        width = len(str(total)) if total else 1
        elapsed = self.clock() - self._start
        remaining = None if total is None else max(0, total - ended)
        eta = None
        if remaining == 0:
            eta = 0.0
        elif remaining is not None and self._ended_here:
            eta = elapsed / self._ended_here * remaining
        reward = f"{record.reward:.4f}" if record.reward is not None else "  -   "
        best_text = f"{best.reward:.4f}" if best is not None and best.reward is not None else "  -   "
        secs = f"{record.seconds:.1f}s" if record.seconds is not None else "?"
        line = (f"[{ended:>{width}}/{total if total else '?'}] trial {record.trial_id} {record.status:<9} "
                f"reward {reward} best {best_text} | {secs}, elapsed {format_hms(elapsed)}, ETA {format_hms(eta)}")
        if record.genotype is not None:
            line += f" | {short_genotype(record.genotype)}"
        if record.message:
            line += f" | {record.message[:160]}"
        return line

    def trial_end(self, record: "TrialRecord", ended: int, best: Optional["TrialRecord"]) -> None:
        """Counts the ended trial and prints its line (when enabled); arguments as `format_line`."""
        self._ended_here += 1
        if self.enabled:
            self._print(self.format_line(record, ended, best))


@contextlib.contextmanager
def keras_tuner_debug(enabled: bool):
    """Sets Keras Tuner's DEBUG flag (it prints every failed trial's traceback) for the ``with`` block."""
    try:
        from keras_tuner.src import config as _kt_config
    except ImportError:  # pragma: no cover - other Keras Tuner layouts
        _kt_config = None
    saved = None if _kt_config is None else _kt_config.DEBUG
    if _kt_config is not None:
        _kt_config.DEBUG = bool(enabled)
    try:
        yield
    finally:
        if _kt_config is not None:
            _kt_config.DEBUG = saved
