"""Search reports: per-trial progress lines, ``trials.csv``, ``best_genotype.json``, ``rewards.png``.

`CellSearchTuner` refreshes three files in its project directory after every
trial (so they are current while a search runs, and final at its end):

* ``trials.csv`` -- one row per trial, in start order, with the columns
  `CSV_COLUMNS`: ``trial_id``, ``status`` (COMPLETED / FAILED / RUNNING /
  INVALID), ``reward`` (the objective, e.g. validation accuracy; empty unless
  COMPLETED), ``params``, ``mult_adds``, ``seconds``, ``genotype`` (the
  genotype as JSON, `Genotype.from_json` reads it) and ``message`` (why a
  trial failed).
* ``best_genotype.json`` -- the best COMPLETED trial's genotype
  (`Genotype.to_json`); absent until a trial completes.
* ``rewards.png`` -- reward per trial and the running best. Every search
  whose project lives in the same parent directory (``--directory``) is
  drawn on the same axes, one colour per project: the CLI names projects
  after their oracle (``rl``, ``random``), so running both oracles with the
  same ``--directory`` compares them on one plot. At the end of a run the CLI
  also writes ``<--directory>/rewards.png`` with every project in it.

Plots use matplotlib's object API with the Agg canvas (no display, and the
global pyplot backend is left alone).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import sys
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, TextIO

from nasnet_keras import genotypes as gt
from nasnet_keras.search import space as space_lib

__all__ = [
    "CSV_COLUMNS",
    "TRIALS_CSV",
    "BEST_GENOTYPE_JSON",
    "REWARDS_PNG",
    "TrialRecord",
    "ProgressPrinter",
    "best_record",
    "collect_records",
    "directory_records",
    "failure_reason",
    "plot_rewards",
    "read_trials_csv",
    "short_genotype",
    "sibling_records",
    "write_best_genotype",
    "write_reports",
    "write_trials_csv",
]

TRIALS_CSV = "trials.csv"
BEST_GENOTYPE_JSON = "best_genotype.json"
REWARDS_PNG = "rewards.png"
CSV_COLUMNS = ("trial_id", "status", "reward", "params", "mult_adds", "seconds", "genotype", "message")

_ENDED = ("COMPLETED", "FAILED")

# Two- or three-letter codes for `short_genotype`.
_OP_CODES = {
    "identity": "id", "conv_1x3_3x1": "c13", "conv_1x7_7x1": "c17", "dil_conv_3x3": "d3",
    "avg_pool_3x3": "a3", "max_pool_3x3": "m3", "max_pool_5x5": "m5", "max_pool_7x7": "m7",
    "conv_1x1": "c1", "conv_3x3": "c3", "sep_conv_3x3": "s3", "sep_conv_5x5": "s5", "sep_conv_7x7": "s7",
}


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial of a search, as written to ``trials.csv``.

    Attributes:
        trial_id: Keras Tuner's trial id (e.g. ``"07"``).
        status: ``"COMPLETED"``, ``"FAILED"``, ``"RUNNING"``, ``"INVALID"``...
        reward: the objective value of a COMPLETED trial, else ``None``.
        params, mult_adds: child size and batch-1 cost, ``None`` if unknown.
        seconds: wall time of the trial (build + train + evaluate).
        genotype: the trial's `Genotype` (``None`` if it could not be decoded).
        message: one-line reason of a failed trial, else ``""``.
    """

    trial_id: str
    status: str
    reward: Optional[float] = None
    params: Optional[int] = None
    mult_adds: Optional[int] = None
    seconds: Optional[float] = None
    genotype: Optional[gt.Genotype] = None
    message: str = ""


# ---------------------------------------------------------------- formatting
def short_genotype(genotype: gt.Genotype) -> str:
    """A compact one-line genotype, e.g. ``"N 0s3+1id 1m3|0c1 R 0m5+1s7 ..."``.

    Each block is ``<input0><op0><+ or |><input1><op1>`` (``+`` add,
    ``|`` concat); op codes: id identity, c13 / c17 1xk-kx1 conv, d3 dilated
    conv, a3 avg pool, m3 / m5 / m7 max pool, c1 / c3 conv, s3 / s5 / s7
    separable conv.
    """
    def cell(c: gt.Cell) -> str:
        return " ".join(
            f"{b.inputs[0]}{_OP_CODES.get(b.ops[0], b.ops[0])}{'+' if b.combine == 'add' else '|'}"
            f"{b.inputs[1]}{_OP_CODES.get(b.ops[1], b.ops[1])}" for b in c.blocks)
    return f"N {cell(genotype.normal)} R {cell(genotype.reduction)}"


def failure_reason(message: Optional[str]) -> str:
    """The last line of a Keras Tuner trial message (a traceback), without the module path."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    head, sep, rest = last.partition(": ")
    if sep and " " not in head and "." in head:  # "keras_tuner.src.errors.FailedTrialError: ..."
        last = f"{head.rsplit('.', 1)[-1]}: {rest}"
    return last


def _hms(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


# ---------------------------------------------------------------- records
def _metric(trial, name: str) -> Optional[float]:
    try:
        if trial.metrics.exists(name):
            return trial.metrics.get_last_value(name)
    except Exception:  # pragma: no cover - defensive against odd metric histories
        return None
    return None


def _child_record(project_dir: Optional[str], trial_id: str) -> dict:
    if not project_dir:
        return {}
    path = os.path.join(project_dir, f"trial_{trial_id}", "child.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _as_int(value) -> Optional[int]:
    return None if value is None else int(round(float(value)))


def collect_records(oracle, space: Optional[space_lib.SearchSpace] = None,
                    project_dir: Optional[str] = None,
                    cache: Optional[Dict[str, dict]] = None) -> List[TrialRecord]:
    """One `TrialRecord` per trial the oracle knows, in start order.

    Args:
        oracle: a `keras_tuner.Oracle` over the cell decisions.
        space: the `SearchSpace` to decode genotypes with (default the
            oracle's ``space`` attribute, else the paper's).
        project_dir: where `CellSearchTuner` wrote each trial's
            ``child.json`` (params / mult-adds / seconds of FAILED trials).
        cache: optional ``{trial id: child.json content}``, filled as files
            are read, so each ended trial's file is read once per process.
    """
    space = space or getattr(oracle, "space", None)
    order = [t for t in getattr(oracle, "start_order", []) if t in oracle.trials]
    order += sorted(t for t in oracle.trials if t not in order)
    records = []
    for tid in order:
        trial = oracle.trials[tid]
        child = cache.get(tid) if cache is not None else None
        if child is None:
            child = _child_record(project_dir, tid)
            if cache is not None and child and str(trial.status) in _ENDED:
                cache[tid] = child
        try:
            genotype = space_lib.genotype_from_hyperparameters(trial.hyperparameters, space)
        except ValueError:
            genotype = None
        status = str(trial.status)
        reward = trial.score if status == "COMPLETED" and trial.score is not None else None

        def pick(name):
            value = _metric(trial, name)
            return child.get(name) if value is None else value

        message = ""
        if status in ("FAILED", "INVALID"):
            message = failure_reason(trial.message) or child.get("reason", "")
        records.append(TrialRecord(
            trial_id=str(tid), status=status, reward=None if reward is None else float(reward),
            params=_as_int(pick("params")), mult_adds=_as_int(pick("mult_adds")),
            seconds=None if pick("seconds") is None else float(pick("seconds")),
            genotype=genotype, message=message))
    return records


def best_record(records: Iterable[TrialRecord], direction: str = "max") -> Optional[TrialRecord]:
    """The COMPLETED record with the best reward (``direction`` ``"max"`` or ``"min"``), or ``None``."""
    done = [r for r in records if r.status == "COMPLETED" and r.reward is not None]
    if not done:
        return None
    return (max if direction == "max" else min)(done, key=lambda r: r.reward)


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_trials_csv(records: Sequence[TrialRecord], path: str) -> None:
    """Writes `records` to ``path`` with the columns `CSV_COLUMNS` (atomically)."""
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        writer.writerow([
            r.trial_id, r.status, "" if r.reward is None else repr(r.reward),
            "" if r.params is None else r.params, "" if r.mult_adds is None else r.mult_adds,
            "" if r.seconds is None else f"{r.seconds:.3f}",
            "" if r.genotype is None else r.genotype.to_json(), r.message])
    _atomic_write(path, buf.getvalue())


def read_trials_csv(path: str) -> List[TrialRecord]:
    """Reads a ``trials.csv`` written by `write_trials_csv`.

    Raises:
        ValueError: the file lacks the expected columns.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is not a search trials.csv: missing columns {missing}.")
        out = []
        for row in reader:
            def num(key, kind=float):
                return kind(float(row[key])) if row[key] not in ("", None) else None
            genotype = gt.Genotype.from_json(row["genotype"]) if row["genotype"] else None
            out.append(TrialRecord(row["trial_id"], row["status"], num("reward"), num("params", int),
                                   num("mult_adds", int), num("seconds"), genotype, row["message"] or ""))
    return out


def write_best_genotype(record: TrialRecord, path: str) -> None:
    """Writes the record's genotype as JSON, named ``searched_trial_<id>``."""
    if record.genotype is None:
        raise ValueError(f"Trial {record.trial_id} has no genotype to write.")
    genotype = dataclasses.replace(record.genotype, name=f"searched_trial_{record.trial_id}")
    _atomic_write(path, genotype.to_json(indent=1) + "\n")


def sibling_records(project_dir: str) -> Dict[str, List[TrialRecord]]:
    """``{project name: records}`` of the other searches in ``project_dir``'s parent directory."""
    parent = os.path.dirname(os.path.abspath(project_dir))
    me = os.path.basename(os.path.abspath(project_dir))
    return {name: records for name, records in directory_records(parent).items() if name != me}


def directory_records(directory: str) -> Dict[str, List[TrialRecord]]:
    """``{project name: records}`` of every search project (sub-folder with a ``trials.csv``) in ``directory``."""
    out = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for name in names:
        path = os.path.join(directory, name, TRIALS_CSV)
        if os.path.isfile(path):
            try:
                out[name] = read_trials_csv(path)
            except (OSError, ValueError):
                continue  # a foreign or half-written file: leave it out
    return out


def plot_rewards(series: Mapping[str, Sequence[TrialRecord]], path: str, direction: str = "max",
                 ylabel: str = "reward (validation accuracy)") -> None:
    """Draws reward per trial (dots) and the running best (line) of each search into a PNG.

    Args:
        series: ``{label: records in start order}``; each label gets a colour.
            FAILED trials are drawn as crosses on the x axis.
        path: the PNG file to write.
        direction: ``"max"`` or ``"min"``, for the running best.
        ylabel: y-axis label.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    better = max if direction == "max" else min
    for i, (label, records) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        xs, ys, bx, by, fx = [], [], [], [], []
        best = None
        for n, r in enumerate(records, start=1):
            if r.status == "COMPLETED" and r.reward is not None:
                xs.append(n)
                ys.append(r.reward)
                best = r.reward if best is None else better(best, r.reward)
            elif r.status == "FAILED":
                fx.append(n)
            if best is not None:
                bx.append(n)
                by.append(best)
        ax.scatter(xs, ys, s=14, color=colour, alpha=0.5, label=f"{label}: reward")
        if bx:
            ax.step(bx, by, where="post", color=colour, linewidth=2, label=f"{label}: best so far")
        if fx:
            ax.scatter(fx, [0.0] * len(fx), marker="x", color=colour, label=f"{label}: failed")
    ax.set_xlabel("trial")
    ax.set_ylabel(ylabel)
    ax.set_title("Cell search rewards")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def write_reports(records: Sequence[TrialRecord], project_dir: str, direction: str = "max") -> None:
    """Writes ``trials.csv``, ``best_genotype.json`` (if a trial completed) and ``rewards.png``.

    ``rewards.png`` also shows every sibling project (see the module docstring).
    """
    os.makedirs(project_dir, exist_ok=True)
    write_trials_csv(records, os.path.join(project_dir, TRIALS_CSV))
    best = best_record(records, direction)
    if best is not None and best.genotype is not None:
        write_best_genotype(best, os.path.join(project_dir, BEST_GENOTYPE_JSON))
    series = {os.path.basename(os.path.abspath(project_dir)): list(records)}
    series.update(sibling_records(project_dir))
    plot_rewards(series, os.path.join(project_dir, REWARDS_PNG), direction)


# ---------------------------------------------------------------- progress lines
class ProgressPrinter:
    """Prints one line per ended trial: ``n/N``, status, reward, best so far, time, ETA, genotype.

    Args:
        enabled: print at all.
        stream: where to print (default ``sys.stdout``).
    """

    def __init__(self, enabled: bool = True, stream: Optional[TextIO] = None):
        self.enabled = enabled
        self.stream = stream
        self.max_trials: Optional[int] = None
        self._start = time.monotonic()
        self._done_at_start = 0
        self._ended_here = 0

    def start(self, max_trials: Optional[int], done: int = 0) -> None:
        """Starts the clock; ``done`` trials had ended before (a resumed search)."""
        self.max_trials = max_trials
        self._start = time.monotonic()
        self._done_at_start = int(done)
        self._ended_here = 0
        if self.enabled and done:
            self._print(f"Resuming: {done} trial(s) already ended"
                        + (f" of {max_trials}." if max_trials else "."))

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def format_line(self, trial_id: str, records: Sequence[TrialRecord], direction: str = "max") -> str:
        """The progress line for the trial that just ended."""
        ended = sum(r.status in _ENDED for r in records)
        total = self.max_trials
        width = len(str(total)) if total else 1
        record = next((r for r in records if r.trial_id == str(trial_id)), None)
        best = best_record(records, direction)
        elapsed = time.monotonic() - self._start
        eta = None
        remaining = None if total is None else max(0, total - ended)
        if remaining == 0:
            eta = 0.0
        elif remaining is not None and self._ended_here:
            eta = elapsed / self._ended_here * remaining
        status = record.status if record else "?"
        reward = f"{record.reward:.4f}" if record and record.reward is not None else "  -   "
        best_text = f"{best.reward:.4f}" if best else "  -   "
        secs = f"{record.seconds:.1f}s" if record and record.seconds is not None else "?"
        line = (f"[{ended:>{width}}/{total if total else '?'}] trial {trial_id} {status:<9} reward {reward} "
                f"best {best_text} | {secs}, elapsed {_hms(elapsed)}, ETA {_hms(eta)}")
        if record and record.genotype is not None:
            line += f" | {short_genotype(record.genotype)}"
        if record and record.message:
            line += f" | {record.message[:160]}"
        return line

    def trial_end(self, trial_id: str, records: Sequence[TrialRecord], direction: str = "max") -> None:
        """Counts the trial and prints its line (when enabled)."""
        self._ended_here += 1
        if self.enabled:
            self._print(self.format_line(trial_id, records, direction))
