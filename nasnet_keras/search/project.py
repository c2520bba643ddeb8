"""The files a cell-search project keeps besides Keras Tuner's own, and the checks made on them.

* ``child_config.json`` -- the child-training settings (dataset, sizes,
  epochs, optimizer...). Rewards are only comparable under one setting, so a
  resume with other settings is refused (`check_child_config`), and a
  distributed worker whose settings differ from the chief's is refused too
  (`check_worker_config`; the chief announces its settings through the
  oracle's space, see `nasnet_keras.search.oracles.CHILD_CONFIG_HP`).
* ``best_model.weights.h5`` + ``best_model.json`` -- the weights of the best
  child so far and which trial they belong to (`keep_best_request`,
  `record_kept`, `kept_trial_id`); no other child's weights are kept.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional

__all__ = ["BEST_MODEL_INFO_FILE", "BEST_WEIGHTS_FILE", "CHILD_CONFIG_FILE", "check_child_config",
           "check_worker_config", "keep_best_request", "kept_trial_id", "record_kept"]

CHILD_CONFIG_FILE = "child_config.json"
BEST_WEIGHTS_FILE = "best_model.weights.h5"
BEST_MODEL_INFO_FILE = "best_model.json"


def check_child_config(project_dir: str, config: Mapping[str, Any], overwrite: bool) -> None:
    """Writes ``config`` to a new project, or checks it against the saved one on resume.

    Raises:
        ValueError: the project was created with other settings (naming each
            difference); nothing is changed then.
    """
    path = os.path.join(project_dir, CHILD_CONFIG_FILE)
    if not overwrite and os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        diffs = [f"{k}: saved {saved.get(k)!r}, given {config[k]!r}" for k in config if saved.get(k) != config[k]]
        if diffs:
            raise ValueError(
                f"Cannot resume the project in {project_dir}: it was created with a different child-training "
                f"setup ({'; '.join(diffs)}), so its rewards are not comparable. Nothing was deleted. Use the "
                "saved settings to resume, overwrite=True (--overwrite) to start over, or another project_name "
                "(--project_name).")
        return
    with open(path, "w") as f:
        json.dump(dict(config), f, indent=1)


def check_worker_config(chief: Optional[Mapping[str, Any]], mine: Mapping[str, Any]) -> None:
    """Refuses a worker whose settings differ from the chief's (``chief`` ``None``: nothing announced).

    Raises:
        ValueError: naming every setting that differs.
    """
    if chief is None:
        return
    mine = json.loads(json.dumps(dict(mine)))  # tuples become lists, as in the chief's JSON
    diffs = [f"{k}: chief {chief.get(k)!r}, this worker {mine.get(k)!r}" for k in sorted(set(chief) | set(mine))
             if chief.get(k) != mine.get(k)]
    if diffs:
        raise ValueError("This worker's child-training settings differ from the chief's, so its rewards would not "
                         f"be comparable: {'; '.join(diffs)}. Start the worker with the chief's flags.")


def keep_best_request(project_dir: str, objective) -> Dict[str, Any]:
    """What `ChildTrainer.train(keep_best=...)` needs: the weights path and the best value so far."""
    best = None
    info_path = os.path.join(project_dir, BEST_MODEL_INFO_FILE)
    if os.path.exists(info_path):
        with open(info_path) as f:
            best = json.load(f).get("value")
    return {"path": os.path.join(project_dir, BEST_WEIGHTS_FILE), "best": best, "objective": objective.name,
            "direction": objective.direction}


def record_kept(project_dir: str, trial_id: str, value: float, objective_name: str) -> None:
    """Notes that ``best_model.weights.h5`` now holds ``trial_id``'s child."""
    with open(os.path.join(project_dir, BEST_MODEL_INFO_FILE), "w") as f:
        json.dump({"trial_id": trial_id, "value": value, "objective": objective_name}, f)


def kept_trial_id(project_dir: str) -> Optional[str]:
    """The trial whose weights ``best_model.weights.h5`` holds, or ``None``."""
    info_path = os.path.join(project_dir, BEST_MODEL_INFO_FILE)
    if not os.path.exists(info_path):
        return None
    with open(info_path) as f:
        return json.load(f).get("trial_id")
