"""Files of a weight-sharing search besides the shared ``trials.csv`` / ``best_genotype.json`` formats.

* ``history.csv`` -- one row per epoch, columns `HISTORY_COLUMNS`: shared
  network loss and training accuracy (of the architectures sampled for the
  steps), mean and best controller-phase reward, learning rate, seconds.
* ``rewards.png`` -- left: per epoch, the mean controller-phase reward
  (shared-weight accuracy on reward minibatches) and the shared network's
  training accuracy; right: the final architectures' shared-weight accuracy
  on the whole reward set, in scoring order, with the running best.

``trials.csv`` and ``best_genotype.json`` are `nasnet_keras.search.reports`'
formats (one row per architecture scored in the final selection).
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any, Dict, List, Sequence

import numpy as np

from nasnet_keras.search.reports import TrialRecord
from nasnet_keras.training.run_directory import atomic_write

__all__ = ["HISTORY_COLUMNS", "HISTORY_CSV", "SearchDiverged", "plot_search", "read_history", "write_history"]

HISTORY_CSV = "history.csv"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "controller_reward", "controller_rewards", "best_reward",
                   "learning_rate", "train_seconds", "seconds")


class SearchDiverged(RuntimeError):
    """The shared weights became NaN / infinite; the last good checkpoint is kept."""


def write_history(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """Writes the per-epoch rows (dicts with `HISTORY_COLUMNS`) to ``path`` atomically."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HISTORY_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in HISTORY_COLUMNS])
    atomic_write(path, out.getvalue())


def read_history(path: str) -> List[Dict[str, Any]]:
    """Inverse of `write_history` (numbers as floats, ``epoch`` as int, empty cells as ``None``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (None if v == "" else int(v) if k in ("epoch", "controller_rewards") else float(v))
             for k, v in row.items()} for row in rows]


def plot_search(history: Sequence[Dict[str, Any]], records: Sequence[TrialRecord], path: str, label: str) -> None:
    """Draws ``rewards.png`` (see the module docstring) atomically; matplotlib's Agg canvas, no pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    epochs = np.array([r["epoch"] for r in history], dtype=float)
    reward = np.array([np.nan if r["controller_reward"] is None else r["controller_reward"] for r in history])
    if len(epochs):
        left.plot(epochs, reward, marker="o", markersize=3, label=f"{label}: mean controller reward")
        left.plot(epochs, [r["accuracy"] for r in history], marker=".", label="shared network: training accuracy")
    left.set_xlabel("epoch")
    left.set_ylabel("accuracy (shared weights)")
    left.set_title("Shared-weight training")
    scores = np.array([r.reward for r in records if r.reward is not None], dtype=float)
    if len(scores):
        x = np.arange(1, len(scores) + 1)
        right.plot(x, scores, linestyle="none", marker="o", markersize=3, alpha=0.5, label="reward-set accuracy")
        right.plot(x, np.fmax.accumulate(scores), linewidth=2, label="best so far")
    right.set_xlabel("sampled architecture")
    right.set_title(f"Final selection ({len(scores)} architectures)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize="small")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.2)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
