"""Search report files: ``trials.csv``, ``best_genotype.json``, ``rewards.png``.

Three files in a search's project directory, kept current as trials end by
`nasnet_keras.search.report_writer.ReportWriter`:

* ``trials.csv`` -- one row per ended trial (COMPLETED or FAILED), appended
  in END order, with the columns `CSV_COLUMNS`: ``trial_id``, ``status``,
  ``reward`` (the objective, e.g. validation accuracy; empty unless
  COMPLETED), ``params``, ``mult_adds``, ``seconds``, ``genotype`` (the
  genotype as JSON, `Genotype.from_json` reads it) and ``message`` (why a
  trial failed). A trial that ends twice (re-run after a crash) has two rows;
  the later row is the one that counts (`read_trials_csv` keeps it).
* ``best_genotype.json`` -- the best COMPLETED trial's genotype
  (`Genotype.to_json`, named ``searched_trial_<id>``); absent until a trial
  completes.
* ``rewards.png`` -- reward per ended trial and the running best, with every
  search in the same parent directory (e.g. ``rl`` and ``random`` side by
  side) on the same axes; matplotlib's object API with the Agg canvas (the
  global pyplot backend is left alone).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from nasnet_keras import genotypes as gt
from nasnet_keras.search import space as space_lib
from nasnet_keras.search.progress import failure_reason

__all__ = [
    "BEST_GENOTYPE_JSON", "CSV_COLUMNS", "append_trials_csv", "is_better", "ENDED_STATUSES", "REWARDS_PNG", "TRIALS_CSV",
    "TrialRecord", "best_record", "collect_records", "directory_records", "latest_records", "plot_rewards",
    "read_trials_csv", "record_from_trial", "sibling_records", "write_best_genotype",
    "write_trials_csv",
]

TRIALS_CSV = "trials.csv"
BEST_GENOTYPE_JSON = "best_genotype.json"
REWARDS_PNG = "rewards.png"
CSV_COLUMNS = ("trial_id", "status", "reward", "params", "mult_adds", "seconds", "genotype", "message")
# Statuses of a trial that has ended for good (an INVALID trial may still be retried).
ENDED_STATUSES = ("COMPLETED", "FAILED")


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


# ---------------------------------------------------------------- records from an oracle
def _as_int(value) -> Optional[int]:
    return None if value is None else int(round(float(value)))


def record_from_trial(trial, space: Optional[space_lib.SearchSpace] = None,
                      report: Optional[Mapping[str, Any]] = None) -> TrialRecord:
    """The `TrialRecord` of one Keras Tuner trial (O(1): call it once per ended trial).

    Args:
        trial: a `keras_tuner.engine.trial.Trial` over the cell decisions.
        space: the `SearchSpace` to decode its genotype with (default the paper's).
        report: the trial's failure report, if any (``{"reason": str,
            "record": {"params", "mult_adds", "seconds"}}``, see
            `nasnet_keras.search.trial_wire`): what was measured before a
            failure, which the trial's metrics do not hold.
    """
    report = report or {}
    measured = report.get("record", {})
    try:
        genotype = space_lib.genotype_from_hyperparameters(trial.hyperparameters, space)
    except ValueError:
        genotype = None
    status = str(trial.status)
    reward = trial.score if status == "COMPLETED" and trial.score is not None else None

    def pick(name):
        value = trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None
        return measured.get(name) if value is None else value

    message = ""
    if status in ("FAILED", "INVALID"):
        message = report.get("reason") or failure_reason(trial.message)
    seconds = pick("seconds")
    return TrialRecord(trial_id=str(trial.trial_id), status=status, reward=None if reward is None else float(reward),
                       params=_as_int(pick("params")), mult_adds=_as_int(pick("mult_adds")),
                       seconds=None if seconds is None else float(seconds), genotype=genotype, message=message)


def collect_records(oracle, space: Optional[space_lib.SearchSpace] = None, ended_only: bool = False
                    ) -> List[TrialRecord]:
    """A `TrialRecord` per trial the oracle knows: a one-off full rebuild, O(n).

    Args:
        oracle: a `keras_tuner.Oracle` over the cell decisions.
        space: the `SearchSpace` to decode genotypes with (default the
            oracle's ``space`` attribute, else the paper's).
        ended_only: ``False`` (default): every trial, in start order (the
            oracle's ``start_order``, then the rest by id). ``True``: only
            COMPLETED / FAILED trials, in end order (the oracle's
            ``end_order``, then the rest by id) -- what `ReportWriter.start` takes.
    """
    space = space or getattr(oracle, "space", None)
    order = [str(t) for t in getattr(oracle, "end_order" if ended_only else "start_order", None) or []]
    order = [t for t in dict.fromkeys(order) if t in oracle.trials]
    known = set(order)
    order += sorted(t for t in oracle.trials if t not in known)
    return [record_from_trial(oracle.trials[t], space) for t in order
            if not ended_only or str(oracle.trials[t].status) in ENDED_STATUSES]


def latest_records(records: Iterable[TrialRecord]) -> List[TrialRecord]:
    """One record per trial id: its LAST one, ordered by where that last one stands.

    E.g. rows ``[a(1), b, a(2)]`` (trial ``a`` ended twice) give ``[b, a(2)]``.
    """
    latest: Dict[str, TrialRecord] = {}
    for r in records:
        latest.pop(r.trial_id, None)
        latest[r.trial_id] = r
    return list(latest.values())


def best_record(records: Iterable[TrialRecord], direction: str = "max") -> Optional[TrialRecord]:
    """The COMPLETED record with the best reward, or ``None``; ties go to the earliest.

    Args:
        records: records in any order (pass `latest_records` of rows with repeated ids).
        direction: ``"max"`` (default, e.g. accuracy) or ``"min"`` (e.g. a loss).
    """
    done = [r for r in records if r.status == "COMPLETED" and r.reward is not None]
    if not done:
        return None
    return (max if direction == "max" else min)(done, key=lambda r: r.reward)


def is_better(a: float, b: float, direction: str) -> bool:
    """Whether reward ``a`` is strictly better than ``b``."""
    return a > b if direction == "max" else a < b


# ---------------------------------------------------------------- files
def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _csv_row(r: TrialRecord) -> list:
    return [r.trial_id, r.status, "" if r.reward is None else repr(r.reward),
            "" if r.params is None else r.params, "" if r.mult_adds is None else r.mult_adds,
            "" if r.seconds is None else f"{r.seconds:.3f}",
            "" if r.genotype is None else r.genotype.to_json(), r.message]


def write_trials_csv(records: Sequence[TrialRecord], path: str) -> None:
    """Writes a header and one row per record, in the given order, to ``path`` (atomically)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(r) for r in records)
    _atomic_write(path, buf.getvalue())


def append_trials_csv(record: TrialRecord, path: str) -> None:
    """Appends one row (and the header first if ``path`` does not exist), then flushes."""
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(CSV_COLUMNS)
        writer.writerow(_csv_row(record))
        f.flush()


def read_trials_csv(path: str, latest_only: bool = True, genotypes: bool = True) -> List[TrialRecord]:
    """Reads a ``trials.csv`` written by `write_trials_csv` or `ReportWriter`.

    Args:
        path: the file.
        latest_only: ``True`` (default): one record per trial id, its last row
            (a trial that ended twice counts once, with its later result), see
            `latest_records`. ``False``: every row, in file order.
        genotypes: decode the ``genotype`` column (default); ``False`` leaves
            ``genotype=None`` and is much faster (enough for plotting).

    A short last row (a write in progress by another process) is left out.

    Raises:
        ValueError: the file lacks the expected columns, or a row other than
            the last is short.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is not a search trials.csv: missing columns {missing}.")
        rows = list(reader)
    out = []
    for i, row in enumerate(rows):
        if any(row.get(c) is None for c in CSV_COLUMNS):
            if i == len(rows) - 1:
                break
            raise ValueError(f"{path}: row {i + 2} has fewer than {len(CSV_COLUMNS)} columns.")

        def num(key, kind=float):
            return kind(float(row[key])) if row[key] != "" else None
        genotype = gt.Genotype.from_json(row["genotype"]) if genotypes and row["genotype"] else None
        out.append(TrialRecord(row["trial_id"], row["status"], num("reward"), num("params", int),
                               num("mult_adds", int), num("seconds"), genotype, row["message"]))
    return latest_records(out) if latest_only else out


def write_best_genotype(record: TrialRecord, path: str) -> None:
    """Writes the record's genotype as JSON, named ``searched_trial_<id>`` (atomically).

    Raises:
        ValueError: the record has no genotype.
    """
    if record.genotype is None:
        raise ValueError(f"Trial {record.trial_id} has no genotype to write.")
    genotype = dataclasses.replace(record.genotype, name=f"searched_trial_{record.trial_id}")
    _atomic_write(path, genotype.to_json(indent=1) + "\n")


def directory_records(directory: str, genotypes: bool = True, skip: Iterable[str] = ()) -> Dict[str, List[TrialRecord]]:
    """``{project name: records}`` of every search project (sub-folder with a ``trials.csv``) in ``directory``.

    Args:
        directory: the parent directory (the CLI's ``--directory``).
        genotypes: decode genotypes (default), see `read_trials_csv`.
        skip: project names not to read.

    Records are `read_trials_csv`'s (latest row per trial id); projects whose
    file cannot be read or is not a trials.csv are left out.
    """
    out = {}
    try:
        names = sorted(set(os.listdir(directory)) - set(skip))
    except OSError:
        return out
    for name in names:
        path = os.path.join(directory, name, TRIALS_CSV)
        if os.path.isfile(path):
            try:
                out[name] = read_trials_csv(path, genotypes=genotypes)
            except (OSError, ValueError):
                continue  # a foreign or damaged file: leave it out
    return out


def sibling_records(project_dir: str, genotypes: bool = True) -> Dict[str, List[TrialRecord]]:
    """``{project name: records}`` of the other searches in ``project_dir``'s parent (its own file is not read)."""
    project_dir = os.path.abspath(project_dir)
    return directory_records(os.path.dirname(project_dir), genotypes, skip=(os.path.basename(project_dir),))


# ---------------------------------------------------------------- plot
def plot_rewards(series: Mapping[str, Sequence[TrialRecord]], path: str, direction: str = "max",
                 ylabel: str = "reward (validation accuracy)") -> None:
    """Draws reward per trial (dots) and the running best (step line) of each search into a PNG.

    Args:
        series: ``{label: records}``; the x axis is the position in each
            sequence (1-based). Each label gets a colour; FAILED trials are
            crosses on the x axis; other statuses are skipped.
        path: the PNG file to write (atomically).
        direction: ``"max"`` (default) or ``"min"``, for the running best.
        ylabel: y-axis label.

    Cost: points are drawn as markers of one line per series (not a
    per-point collection) and the running best only keeps its change
    points, so 20,000 trials draw in well under a second.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    accumulate = np.fmax.accumulate if direction == "max" else np.fmin.accumulate
    for i, (label, records) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        x = np.arange(1, len(records) + 1)
        done = np.array([r.status == "COMPLETED" and r.reward is not None for r in records], dtype=bool)
        failed = np.array([r.status == "FAILED" for r in records], dtype=bool)
        reward = np.array([r.reward if ok else np.nan for r, ok in zip(records, done)], dtype=float)
        if done.any():
            ax.plot(x[done], reward[done], linestyle="none", marker="o", markersize=3.5, markeredgewidth=0,
                    alpha=0.5, color=colour, label=f"{label}: reward")
            best = accumulate(reward)  # NaN until the first COMPLETED trial (fmax / fmin skip NaN)
            first = int(np.argmax(done))
            change = first + np.flatnonzero(np.r_[True, best[first + 1:] != best[first:-1]])
            bx, by = np.r_[x[change], x[-1]], np.r_[best[change], best[-1]]
            ax.step(bx, by, where="post", color=colour, linewidth=2, zorder=3, label=f"{label}: best so far")
        if failed.any():
            ax.plot(x[failed], np.zeros(int(failed.sum())), linestyle="none", marker="x", color=colour,
                    label=f"{label}: failed")
    ax.set_xlabel("trial (in end order)")
    ax.set_ylabel(ylabel)
    ax.set_title("Cell search rewards")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.11, top=0.93)  # fixed: tight_layout costs ~0.1 s
    tmp = path + ".tmp.png"
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
