"""Live search output at O(1) cost per trial: `ReportWriter` (the files) and `SearchLog` (files + progress lines).

The files and their format are those of `nasnet_keras.search.reports`; this
module only decides when each is written: one appended ``trials.csv`` row per
ended trial, ``best_genotype.json`` when the best changes, ``rewards.png`` at
most every ``plot_interval_s`` seconds and at the end, and with it the best
genotype's cell diagrams ``best_normal.png`` / ``best_reduction.png``
(`nasnet_keras.visualize`) when the best changed since they were drawn.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Optional, Sequence

from nasnet_keras.search.progress import ProgressPrinter
from nasnet_keras.visualize import plot_genotype
from nasnet_keras.search.reports import (BEST_GENOTYPE_JSON, ENDED_STATUSES, REWARDS_PNG, TRIALS_CSV, TrialRecord,
                                         append_trials_csv, best_record, is_better, latest_records, plot_rewards,
                                         read_trials_csv, record_from_trial, sibling_records, write_best_genotype,
                                         write_trials_csv)

__all__ = ["BEST_CELLS_PREFIX", "ReportWriter", "SearchLog"]

#: The best genotype's cells are drawn as ``<prefix>normal.png`` and ``<prefix>reduction.png``.
BEST_CELLS_PREFIX = "best_"


class ReportWriter:
    """Keeps a project's reports current as trials end, at O(1) cost per trial (plus a bounded redraw).

    Args:
        project_dir: the search's project directory (created if missing).
        direction: ``"max"`` (default) or ``"min"``: which reward is better.
        plot_interval_s: `add` redraws ``rewards.png`` only when at least this
            many seconds (default 5.0) passed since the last draw; `start` and
            `close` always draw. 0 draws on every `add`.
        clock: seconds as a float, monotonic (default `time.monotonic`).

    Use::

        writer = ReportWriter(project_dir, direction="max")
        writer.start(records)   # trials ended before (resume), in end order; [] for a new search
        writer.add(record)      # once per ended trial
        writer.close()          # the final plot

    Trials that ended twice (same ``trial_id``, e.g. re-run after a crash)
    get a second CSV row; `records`, `best` and `num_ended` count the latest
    one only, as `read_trials_csv` does.

    Attributes:
        draw_count: how many times ``rewards.png`` was drawn.
    """

    def __init__(self, project_dir: str, direction: str = "max", plot_interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        if direction not in ("max", "min"):
            raise ValueError(f"direction must be 'max' or 'min'; got {direction!r}.")
        if plot_interval_s < 0:
            raise ValueError(f"plot_interval_s must be >= 0; got {plot_interval_s}.")
        self.project_dir = project_dir
        self.direction = direction
        self.plot_interval_s = float(plot_interval_s)
        self.clock = clock
        self.draw_count = 0
        self._latest: Dict[str, TrialRecord] = {}
        self._best: Optional[TrialRecord] = None
        self._last_draw: Optional[float] = None
        self._cells_drawn_for: Optional[TrialRecord] = None
        self._started = False

    def path(self, name: str) -> str:
        """``project_dir/name``, e.g. ``writer.path(TRIALS_CSV)``."""
        return os.path.join(self.project_dir, name)

    @property
    def records(self) -> List[TrialRecord]:
        """Ended records, the latest per trial id, in end order (a copy; O(n))."""
        return list(self._latest.values())

    @property
    def num_ended(self) -> int:
        """How many distinct trials have ended (O(1))."""
        return len(self._latest)

    @property
    def best(self) -> Optional[TrialRecord]:
        """The best COMPLETED record (ties: the earliest to end), or ``None``."""
        return self._best

    def start(self, records: Sequence[TrialRecord] = ()) -> None:
        """Starts (or restarts) the reports from the trials that already ended: O(n), once.

        Args:
            records: ended trials (COMPLETED / FAILED) in end order, e.g.
                ``collect_records(oracle, ended_only=True)`` on resume, or
                ``read_trials_csv(path, latest_only=False)``; empty for a new
                search. Records with another status (e.g. the RUNNING rows of
                a trials.csv written before reports were incremental) are left out.

        Rewrites ``trials.csv`` from the ended ``records``, writes
        ``best_genotype.json`` if one completed, and draws ``rewards.png``.
        """
        records = [r for r in records if r.status in ENDED_STATUSES]
        os.makedirs(self.project_dir, exist_ok=True)
        write_trials_csv(records, self.path(TRIALS_CSV))
        self._latest = {r.trial_id: r for r in latest_records(records)}
        self._best = best_record(self._latest.values(), self.direction)
        self._started = True
        self._write_best()
        self.draw()

    def add(self, record: TrialRecord) -> None:
        """Reports one ended trial: appends its CSV row; rewrites the best genotype if it changed;
        redraws the plot if `plot_interval_s` passed since the last draw.

        Raises:
            ValueError: ``record.status`` is not COMPLETED or FAILED.
            RuntimeError: `start` was not called.
        """
        if not self._started:
            raise RuntimeError("Call ReportWriter.start(records) before add() (it writes the CSV header).")
        if record.status not in ENDED_STATUSES:
            raise ValueError(f"Trial {record.trial_id} has status {record.status}; ReportWriter.add takes ended "
                             f"trials only ({' / '.join(ENDED_STATUSES)}).")
        append_trials_csv(record, self.path(TRIALS_CSV))
        self._latest.pop(record.trial_id, None)
        self._latest[record.trial_id] = record  # moves a re-ended trial to the end
        old_best = self._best
        if old_best is not None and old_best.trial_id == record.trial_id:
            # The best trial ended again: its new result may be worse (rare, O(n)).
            self._best = best_record(self._latest.values(), self.direction)
        elif record.status == "COMPLETED" and record.reward is not None and (
                old_best is None or is_better(record.reward, old_best.reward, self.direction)):
            self._best = record
        if self._best is not old_best:
            self._write_best()
        if self.clock() - self._last_draw >= self.plot_interval_s:
            self.draw()

    def _write_best(self) -> None:
        if self._best is not None and self._best.genotype is not None:
            write_best_genotype(self._best, self.path(BEST_GENOTYPE_JSON))

    def draw(self) -> None:
        """Redraws ``rewards.png`` now (this project's records, then its siblings', read from their CSVs), and the
        best genotype's cells if the best changed since they were last drawn."""
        series: Dict[str, Sequence[TrialRecord]] = {
            os.path.basename(os.path.abspath(self.project_dir)): self.records}
        series.update(sibling_records(self.project_dir, genotypes=False))
        plot_rewards(series, self.path(REWARDS_PNG), self.direction)
        if self._best is not None and self._best.genotype is not None and self._best is not self._cells_drawn_for:
            plot_genotype(self._best.genotype, self.project_dir, prefix=BEST_CELLS_PREFIX)
            self._cells_drawn_for = self._best
        self.draw_count += 1
        self._last_draw = self.clock()

    def close(self) -> None:
        """Draws the final ``rewards.png`` (the CSV and best genotype are already current)."""
        if self._started:
            self.draw()


class SearchLog:
    """What a search shows as its trials end (on the chief, or in a single process).

    One progress line per ended trial (`ProgressPrinter`) and, with
    ``write_files``, the report files (`ReportWriter`). It is fed by the
    oracle's ``trial_listeners`` (see `FaultTolerantOracle`), so the chief of
    a distributed search reports live as its workers end trials.

    Args:
        project_dir: the project directory.
        space: the `SearchSpace` to decode genotypes with.
        direction: ``"max"`` or ``"min"``, the objective's direction.
        write_files: keep ``trials.csv``, ``best_genotype.json``, ``rewards.png`` current (default True).
        print_lines: print the progress lines (default True).
    """

    def __init__(self, project_dir: str, space, direction: str = "max", write_files: bool = True,
                 print_lines: bool = True):
        self.project_dir, self.space, self.direction = project_dir, space, direction
        self.printer = ProgressPrinter(enabled=print_lines)
        self.writer = ReportWriter(project_dir, direction) if write_files else None
        self._ended: Dict[str, TrialRecord] = {}  # the tally when no writer keeps one

    def start(self, oracle) -> None:
        """Starts the clock and the files from what ended before: our own ``trials.csv``, plus trials the
        oracle ended after that file was last written (a crash in between)."""
        path = os.path.join(self.project_dir, TRIALS_CSV)
        records = read_trials_csv(path, latest_only=False) if os.path.exists(path) else []
        known = {r.trial_id for r in records}
        records += [record_from_trial(oracle.trials[t], self.space) for t in dict.fromkeys(oracle.end_order)
                    if t not in known and t in oracle.trials]
        self.printer.start(max_trials=oracle.max_trials, done=len({r.trial_id for r in records}))
        if self.writer is not None:
            self.writer.start(records)
        else:
            self._ended = {r.trial_id: r for r in latest_records(records) if r.status in ENDED_STATUSES}

    def trial_ended(self, trial, report: Optional[dict] = None) -> TrialRecord:
        """Records one trial that ended for good; returns its `TrialRecord`."""
        record = record_from_trial(trial, self.space, report)
        if self.writer is not None:
            self.writer.add(record)
            ended, best = self.writer.num_ended, self.writer.best
        else:
            self._ended.pop(record.trial_id, None)
            self._ended[record.trial_id] = record
            ended, best = len(self._ended), best_record(self._ended.values(), self.direction)
        self.printer.trial_end(record, ended, best)
        return record

    @property
    def records(self) -> List[TrialRecord]:
        """The ended trials' records (latest per trial), in end order."""
        return self.writer.records if self.writer is not None else list(self._ended.values())

    def close(self) -> None:
        """Final plot."""
        if self.writer is not None:
            self.writer.close()
