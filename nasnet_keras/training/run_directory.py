"""The files of one transfer-training run, and the rule for re-using a directory.

Layout of ``--directory`` (written by the chief; other workers keep only
their checkpoint under ``workers/<task>/``)::

    config.json          the resolved configuration (written first)
    history.csv          one row per epoch (Keras CSVLogger)
    logs/                TensorBoard: loss, accuracy, top-5, learning rate, drop-path keep prob
    checkpoint/          latest.weights.h5 + state.json, removed when the run completes
    model.keras          the trained inference network (no auxiliary head)
    model.weights.h5     its weights (NASNet(genotype=..., weights=path) loads them)
    metrics.json         final top-1 / top-5, params, mult-adds, wall time, images/s

Re-using a directory: the same command resumes from ``checkpoint/``; a
command whose configuration differs (genotype, preset, model, data or any
recipe value) is refused and nothing in the directory is touched.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

__all__ = ["RunDirectory", "RunMismatchError", "atomic_write", "config_differences"]

#: Parts of config.json that must match to resume (the rest -- versions, machine, wall time -- may change).
IDENTITY_KEYS = ("genotype", "model", "recipe", "data")


class RunMismatchError(ValueError):
    """The directory holds a run with another configuration."""


def atomic_write(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file, so that a kill never leaves half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def config_differences(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> List[str]:
    """``"key: old -> new"`` for every value of `IDENTITY_KEYS` (nested) that differs."""
    out = []
    keys = IDENTITY_KEYS if not prefix else sorted(set(old) | set(new))
    for key in keys:
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, prefix=name + ".")
        elif a != b:
            out.append(f"{name}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


class RunDirectory:
    """Paths of a run, for the chief (``worker=None``) or a non-chief worker (its task name).

    Args:
        root: the ``--directory``.
        worker: None for the process that writes outputs; e.g.
            ``"worker_1"`` for another worker (its files go to
            ``root/workers/worker_1``).
    """

    def __init__(self, root: str, worker: Optional[str] = None):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.is_chief = worker is None
        self.own = self.root if worker is None else os.path.join(self.root, "workers", worker)

    def path(self, name: str) -> str:
        """A file of the run (in the chief's directory)."""
        return os.path.join(self.root, name)

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.own, "checkpoint")

    @property
    def logs_dir(self) -> str:
        return os.path.join(self.root, "logs")

    def read_config(self) -> Optional[Dict[str, Any]]:
        path = self.path("config.json")
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise RunMismatchError(f"{path} cannot be read ({err}); it is not a run of this program. Use another "
                                   "--directory.") from None

    def claim(self, config: Dict[str, Any]) -> bool:
        """Starts or resumes the run described by ``config``.

        Writes ``config.json`` for a new run (chief only). Returns True when
        a run with the same configuration was found (a resume).

        Raises:
            RunMismatchError: the directory holds another run, or files that
                are not a run's; nothing is changed.
        """
        old = self.read_config()
        if old is None:
            if os.path.isdir(self.root) and os.listdir(self.root) and self.is_chief:
                entries = sorted(os.listdir(self.root))
                if set(entries) - {"workers", "logs", "checkpoint"}:
                    raise RunMismatchError(
                        f"--directory {self.root} is not empty ({', '.join(entries[:5])}"
                        f"{', ...' if len(entries) > 5 else ''}) and holds no training run. Use a new directory.")
            os.makedirs(self.own, exist_ok=True)
            if self.is_chief:
                atomic_write(self.path("config.json"), json.dumps(config, indent=1, sort_keys=True) + "\n")
            return False
        differences = config_differences(old, config)
        if differences:
            raise RunMismatchError(
                f"--directory {self.root} holds a run with another configuration:\n  " + "\n  ".join(differences)
                + "\nThe old run is kept as it is. Use another --directory for this one, or repeat the old "
                "command to resume it.")
        os.makedirs(self.own, exist_ok=True)
        return True

    def write_json(self, name: str, data: Dict[str, Any]) -> str:
        path = self.path(name)
        atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        return path

    def finished(self) -> bool:
        """The run completed (``metrics.json`` of a training run exists and no checkpoint is pending)."""
        path = self.path("metrics.json")
        if not os.path.exists(path):
            return False
        with open(path) as f:
            return json.load(f).get("mode") == "train"
