"""Checkpoints that let a SIGKILLed training run resume exactly where it stopped.

`StepCheckpoint` writes the whole training state -- model weights, the
optimizer's slots, step counter and weight averages, and every
ScheduledDropPath step counter -- with ``model.save_weights`` at the end of
every epoch and every ``every_steps`` optimizer steps, into a temporary file
that then replaces ``checkpoint/latest.weights.h5`` (a kill mid-write leaves
the previous checkpoint intact).

`restore` loads it and returns the global step, from which `resume_plan`
derives where training goes on: a checkpoint taken mid-epoch finishes the
rest of that epoch, then the remaining epochs. The learning rate and the
drop-path keep probability are functions of the restored step counters, so
they continue exactly as in an uninterrupted run. (Keras'
`BackupAndRestore` restarts a mid-epoch checkpoint at the start of its epoch,
which would train more steps than planned.)
"""

from __future__ import annotations

import csv
import json
import os
from typing import Optional, Tuple

import keras
import numpy as np

from nasnet_keras.training.run_directory import atomic_write

__all__ = ["CHECKPOINT_FILE", "StepCheckpoint", "restore", "resume_plan", "truncate_history"]

CHECKPOINT_FILE = "latest.weights.h5"
STATE_FILE = "state.json"


class StepCheckpoint(keras.callbacks.Callback):
    """Saves the training state at every epoch end and every ``every_steps`` steps, never a diverged one.

    A batch whose loss is NaN / infinite, or trainable weights that are no longer finite at a save, stop
    training without saving: the last checkpoint stays the last good state, and `diverged_at` holds the
    optimizer step where it was seen (None while training is sound).

    Args:
        directory: folder of the checkpoint (created if needed).
        every_steps: also save after this many optimizer steps (``None``:
            at epoch ends only).
    """

    def __init__(self, directory: str, every_steps: Optional[int] = None):
        super().__init__()
        self.directory = directory
        self.every_steps = int(every_steps) if every_steps else None
        self._since = 0
        self.saves = 0
        self.diverged_at: Optional[int] = None

    @property
    def path(self) -> str:
        return os.path.join(self.directory, CHECKPOINT_FILE)

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def _stop(self) -> None:
        self.diverged_at = self._step()
        self.model.stop_training = True

    def save(self) -> None:
        """Writes the state now (atomically), unless the weights are no longer finite."""
        if self.diverged_at is not None:
            return
        if not all(np.isfinite(w).all() for w in self.model.get_weights()):
            self._stop()
            return
        os.makedirs(self.directory, exist_ok=True)
        tmp = os.path.join(self.directory, "tmp_" + CHECKPOINT_FILE)
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.path)
        atomic_write(os.path.join(self.directory, STATE_FILE), json.dumps({"global_step": self._step()}))
        self._since = 0
        self.saves += 1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(np.asarray(loss, dtype="float64")).all():
            self._stop()
            return
        self._since += 1
        if self.every_steps and self._since >= self.every_steps:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()


def restore(model: keras.Model, directory: str) -> int:
    """Loads the checkpoint in ``directory`` into a compiled ``model``; returns its global step (0: none).

    Raises:
        ValueError: the checkpoint does not fit the model (it was written by
            another configuration); the message names the file.
    """
    path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.exists(path):
        return 0
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except ValueError as err:
        raise ValueError(f"The checkpoint {path} does not fit this model ({err}). It was written by another "
                         "configuration; use another --directory (the old run is left as it is).") from None
    return int(model.optimizer.iterations.numpy())


def resume_plan(global_step: int, steps_per_epoch: int, epochs: int) -> Tuple[int, int]:
    """``(epoch, steps left in that epoch)`` to continue from ``global_step``.

    ``(epochs, 0)`` means the run is complete.
    """
    epoch, done = divmod(int(global_step), int(steps_per_epoch))
    if epoch >= epochs:
        return epochs, 0
    return epoch, steps_per_epoch - done


def truncate_history(path: str, first_epoch: int) -> None:
    """Drops ``history.csv`` rows (Keras `CSVLogger`, 0-based ``epoch`` column) of epochs >= ``first_epoch``,
    so that epochs re-run after a resume appear once."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return
    column = rows[0].index("epoch")
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[column])) < first_epoch]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(kept)
    os.replace(tmp, path)
