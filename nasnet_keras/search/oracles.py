"""Keras Tuner oracles over the NASNet cell search space.

* `NASNetRLOracle` -- the paper's search (Sec. 3, Appendix A): an LSTM controller (`PPOController`) samples the
  2 x 5B cell decisions; child rewards come back through ``end_trial`` and train it with PPO on batches of 20.
* `RandomCellOracle` -- the paper's random-search baseline (Sec. 4.4): Keras Tuner's own `RandomSearchOracle`.

Both are `FaultTolerantOracle`s (chief / worker mode survives dead, hung and failing workers; see
`nasnet_keras.search.fault_tolerance`) and sample only the cell decisions of `nasnet_keras.search.space`.

Resuming. All state is in Keras Tuner's ``oracle.json`` (the controller's weights and Adam moments in a side file
``controller_weights_<n>.npz``, rewritten after an update). The same command with ``overwrite=False`` continues
the exact same sequence wherever the previous process was killed: a running trial is re-run (Keras Tuner's retry
queue); a trial that ended but whose end was not fully recorded is not re-run and its reward reaches the
controller on reload; a trial file unknown to the saved state is dropped and its id reused. Resuming with another
search space (or controller size) raises `ValueError` naming the setting; nothing is deleted.

Rewards (`NASNetRLOracle`): a COMPLETED trial gives its objective value (negated when minimised); a FAILED one
`failed_reward` (default 0.0, the worst accuracy), or nothing with ``failed_reward=None``.

Duplicates. An architecture that already has a result gives that reward to the controller at once (no child is
trained) and it samples again; a duplicate of a running trial is resampled. After ``max_duplicate_resamples``
duplicates in a row the duplicate runs as a new trial, so the search never stalls. `RandomCellOracle` resamples
(Keras Tuner's collision limit) and stops the search when it finds no new architecture.

Chief / worker agreement. The chief's tuner sets ``oracle.child_config`` (the child-training settings);
`get_space` hands it to workers as a `Fixed` hyperparameter (`CHILD_CONFIG_HP`) so that a worker started with
other settings can refuse to run.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import keras_tuner
from keras_tuner.engine import trial as trial_module

from nasnet_keras import genotypes
from nasnet_keras.search import space as space_lib
from nasnet_keras.search.checks import check_positive, check_seed
from nasnet_keras.search.controller import LATER_OPTIONS, PAPER_DEFAULTS, PPOController
from nasnet_keras.search.fault_tolerance import REPORT_HP, FaultTolerantOracle

__all__ = ["CHILD_CONFIG_HP", "NASNetRLOracle", "RandomCellOracle", "default_objective"]

_STATE_KEY = "nasnet_cell_search"
_STATE_FORMAT = 2
_WEIGHTS_PREFIX = "controller_weights_"
_RUNNING = trial_module.TrialStatus.RUNNING
_COMPLETED = trial_module.TrialStatus.COMPLETED
_FAILED = trial_module.TrialStatus.FAILED
#: `Fixed` hyperparameter through which the chief tells workers its child-training settings (JSON).
CHILD_CONFIG_HP = "nasnet_child_config"


def default_objective() -> keras_tuner.Objective:
    """The paper's reward: child validation accuracy, maximised."""
    return keras_tuner.Objective("val_accuracy", "max")


def _as_space(space) -> space_lib.SearchSpace:
    if space is None:
        return space_lib.SearchSpace()
    if isinstance(space, dict):
        return space_lib.SearchSpace.from_dict(space)
    if isinstance(space, space_lib.SearchSpace):
        return space
    raise ValueError(f"space must be a nasnet_keras.search.SearchSpace or its dict form; got {type(space).__name__}.")


class _CellSearchOracle(FaultTolerantOracle):
    """Shared part: the space as hyperparameters, the seed, genotype decoding, saved-state checks, the
    child configuration handed to workers, and dropping trial files written just before a crash."""

    def __init__(self, objective, max_trials, space, seed, max_duplicate_resamples, **kwargs):
        if "hyperparameters" in kwargs:
            raise ValueError("The cell decisions come from `space` (a nasnet_keras.search.SearchSpace); "
                             "do not pass `hyperparameters`. Other hyperparameters your hypermodel declares "
                             "take their default values.")
        space = _as_space(space)
        seed = check_seed("seed", seed)
        if seed is None:
            seed = random.randint(1, 2 ** 31 - 1)
        self.max_duplicate_resamples = check_positive("max_duplicate_resamples", max_duplicate_resamples,
                                                      allow_zero=True)
        kwargs.setdefault("max_retries_per_trial", 1)
        kwargs.setdefault("max_consecutive_failed_trials", 3)
        super().__init__(objective=default_objective() if objective is None else objective, max_trials=max_trials,
                         hyperparameters=space_lib.build_hyperparameters(space), seed=seed, **kwargs)
        self.seed = self._seed_state = seed  # Keras Tuner replaces a seed of 0 by a random one
        self.space = space
        self.cell_seed = seed
        self._num_choices = space_lib.num_choices(space)
        self.child_config: Optional[Dict[str, Any]] = None

    # ----------------------------------------------------------- chief / worker agreement
    def get_space(self):
        """Keras Tuner's ``get_space``, plus the chief's child configuration (`CHILD_CONFIG_HP`) when set."""
        hp = super().get_space()
        if self.child_config is not None:
            hp.Fixed(CHILD_CONFIG_HP, json.dumps(self.child_config, sort_keys=True))
        return hp

    def update_space(self, hyperparameters):
        """Keras Tuner's ``update_space``, ignoring the entries this package uses as a message channel."""
        names = [h.name for h in hyperparameters.space]
        if CHILD_CONFIG_HP in names or REPORT_HP in names:
            config = hyperparameters.get_config()
            config["space"] = [s for s in config["space"] if s["config"].get("name") not in (CHILD_CONFIG_HP, REPORT_HP)]
            config["values"] = {k: v for k, v in config["values"].items() if k not in (CHILD_CONFIG_HP, REPORT_HP)}
            hyperparameters = type(hyperparameters).from_config(config)
        return super().update_space(hyperparameters)

    # ----------------------------------------------------------- helpers
    def genotype(self, trial) -> genotypes.Genotype:
        """The `Genotype` of a trial (a `Trial`, its id, or its `HyperParameters`)."""
        if isinstance(trial, str):
            trial = self.trials[trial]
        hp = trial.hyperparameters if hasattr(trial, "hyperparameters") else trial
        return space_lib.genotype_from_hyperparameters(hp, self.space)

    def _extra_state(self) -> Dict[str, Any]:
        return {}

    def _restore_extra_checks(self, extra: Dict[str, Any]) -> None:
        """Raises before anything is restored if ``extra`` cannot be restored."""

    def _restore_extra(self, extra: Dict[str, Any]) -> None:
        pass

    # ----------------------------------------------------------- state
    def get_state(self):
        state = super().get_state()
        extra = {"format": _STATE_FORMAT, "oracle": type(self).__name__, "space": self.space.to_dict(),
                 "seed": self.cell_seed}
        extra.update(self._extra_state())
        state[_STATE_KEY] = extra
        return state

    def _check_compatible(self, state) -> Dict[str, Any]:
        where = f"the project in {self._project_dir}"
        keep = ("Nothing was deleted. To start a new search instead, pass overwrite=True or another "
                "project_name to the tuner.")
        extra = state.get(_STATE_KEY)
        if extra is None:
            raise ValueError(f"Cannot resume {where} with {type(self).__name__}: it was not written by a "
                             f"nasnet_keras cell-search oracle. {keep}")
        if extra.get("oracle") != type(self).__name__:
            raise ValueError(f"Cannot resume {where} with {type(self).__name__}: it was written by "
                             f"{extra.get('oracle')}. {keep}")
        if extra.get("format") != _STATE_FORMAT:
            raise ValueError(f"Cannot resume {where}: it was written by another version of nasnet_keras (state "
                             f"format {extra.get('format')}, this version reads {_STATE_FORMAT}). {keep}")
        saved, given = space_lib.SearchSpace.from_dict(extra["space"]).to_dict(), self.space.to_dict()
        diffs = [k for k in saved if saved[k] != given[k]]
        if diffs:
            details = "; ".join(f"{k}: saved {saved[k]!r}, given {given[k]!r}" for k in diffs)
            raise ValueError(f"Cannot resume {where}: the search space differs from the saved one ({details}). "
                             f"Pass space=SearchSpace.from_dict({saved!r}) to resume. {keep}")
        return extra

    def set_state(self, state):
        extra = self._check_compatible(state)
        self._restore_extra_checks(extra)
        super().set_state(state)
        self.cell_seed = int(extra["seed"])
        self._restore_extra(extra)

    def reload(self):
        super().reload()
        # Trial files written just before a crash, unknown to the saved state: forget them so their
        # trial ids are reused by the same samples.
        for tid in [t for t in self.trials if t not in self.start_order]:
            del self.trials[tid]


class RandomCellOracle(_CellSearchOracle, keras_tuner.oracles.RandomSearchOracle):
    """Random search over NASNet cells (the paper's baseline, Sec. 4.4): Keras Tuner's `RandomSearchOracle`.

    Every decision is uniform over its choices; an architecture already tried
    is resampled (up to ``max_duplicate_resamples`` times in a row, then the
    search stops as exhausted). Same seed, same sequence; a resumed search
    continues it exactly (Keras Tuner saves its sampler state).

    Args:
        objective: default `Objective("val_accuracy", "max")`.
        max_trials: number of trials; `None` = no limit.
        space: a `SearchSpace` (default: the paper's).
        seed: int seed of the sampler; `None` draws one.
        max_duplicate_resamples: resamples of an already tried architecture
            before the search stops (default 20).
        **kwargs: as for `NASNetRLOracle` (``max_retries_per_trial``,
            ``max_consecutive_failed_trials``, ``worker_timeout``, ...).
    """

    def __init__(self, objective=None, max_trials=None, space=None, seed=None, max_duplicate_resamples=20,
                 **kwargs):
        super().__init__(objective, max_trials, space, seed, max_duplicate_resamples, **kwargs)
        self._max_collisions = self.max_duplicate_resamples


class NASNetRLOracle(_CellSearchOracle):
    """The paper's reinforcement-learning search over NASNet cells (Sec. 3, Appendix A).

    Each new trial's cell decisions are sampled by a `PPOController` (LSTM,
    paper defaults below); every ended trial's reward goes into the
    controller's batch and a PPO update runs per `batch_size` rewards. See the
    module docstring for rewards of failed trials, duplicates and resuming.

    Args:
        objective: the reward; default `Objective("val_accuracy", "max")`.
            A minimised objective is negated to give the reward.
        max_trials: number of trials (child models) to run; `None` = no limit.
        space: a `SearchSpace` (default: the paper's, B = 5, 13 ops, add/concat).
        seed: int seed of the controller (weights and sampling); `None` draws one.
        lstm_units: controller LSTM units (paper: 100).
        learning_rate: controller Adam learning rate (paper: 0.00035).
        entropy_weight: entropy bonus weight (paper: 1e-5).
        baseline_decay: decay of the reward moving-average baseline (paper: 0.95).
        batch_size: rewards per PPO update (paper: 20).
        ppo_clip: PPO clipping epsilon (0.2).
        ppo_epochs: Adam steps per batch (4).
        failed_reward: reward of a FAILED trial, or `None` to leave it out.
        max_duplicate_resamples: duplicates resampled in a row before one is
            run as a new trial (20, Keras Tuner's collision limit); 0 runs
            every duplicate.
        **kwargs: ``max_retries_per_trial`` (default 1: a crashed or hung
            child runs once more; a diverged one fails at once),
            ``max_consecutive_failed_trials`` (default 3), ``worker_timeout``
            (`FaultTolerantOracle`, default 600 s) and other
            `keras_tuner.Oracle` arguments; not ``hyperparameters``.

    Attributes:
        controller: the `PPOController`.
        space: the `SearchSpace`.
        stats: counts of reused / dropped duplicates and duplicate trials.
        requeue_log, stop_reason: see `FaultTolerantOracle`.
    """

    def __init__(self, objective=None, max_trials=None, space=None, seed=None, lstm_units=PAPER_DEFAULTS["units"],
                 learning_rate=PAPER_DEFAULTS["learning_rate"], entropy_weight=PAPER_DEFAULTS["entropy_weight"],
                 baseline_decay=PAPER_DEFAULTS["baseline_decay"], batch_size=PAPER_DEFAULTS["batch_size"],
                 ppo_clip=0.2, ppo_epochs=4, failed_reward=0.0, max_duplicate_resamples=20, **kwargs):
        super().__init__(objective, max_trials, space, seed, max_duplicate_resamples, **kwargs)
        if failed_reward is not None:
            if isinstance(failed_reward, bool) or not isinstance(failed_reward, (int, float)) \
                    or not math.isfinite(failed_reward):
                raise ValueError(f"failed_reward must be a finite number or None; got {failed_reward!r}.")
            failed_reward = float(failed_reward)
        self.failed_reward = failed_reward
        self.controller = PPOController(self._num_choices, units=lstm_units, learning_rate=learning_rate,
                                        entropy_weight=entropy_weight, baseline_decay=baseline_decay,
                                        batch_size=batch_size, ppo_clip=ppo_clip, ppo_epochs=ppo_epochs,
                                        seed=self.cell_seed)
        # trial id -> (class indices, log-prob at sampling) until its reward is fed.
        self._awaiting: Dict[str, Tuple[List[int], float]] = {}
        # How many entries of `end_order` have been fed to the controller.
        self._fed_cursor = 0
        self._saved_weights_version: Optional[int] = None
        # architecture key -> trial ids that ran it, in creation order.
        self._arch_trials: Dict[str, List[str]] = {}
        self.stats = {"duplicates_reused": 0, "duplicates_dropped": 0, "duplicate_trials": 0}

    def _register(self, trial_id: str, indices) -> None:
        self._arch_trials.setdefault(space_lib.architecture_key(indices), []).append(trial_id)

    def _rebuild_arch_index(self) -> None:
        self._arch_trials = {}
        for tid in self.start_order:
            if tid in self.trials:
                self._register(tid, space_lib.values_to_indices(self.trials[tid].hyperparameters.values, self.space))

    # ----------------------------------------------------------- rewards
    def reward(self, trial) -> Optional[float]:
        """The controller reward of an ended trial, or `None` if it gives none."""
        if trial.status == _COMPLETED and trial.score is not None:
            score = float(trial.score)
            return score if self.objective.direction == "max" else -score
        if trial.status == _FAILED:
            return self.failed_reward
        return None

    def _sync_rewards(self) -> None:
        """Feeds the rewards of trials ended since the last call, in end order."""
        while self._fed_cursor < len(self.end_order):
            tid = self.end_order[self._fed_cursor]
            self._fed_cursor += 1
            sample = self._awaiting.pop(tid, None)
            if sample is None:
                continue
            r = self.reward(self.trials[tid])
            if r is not None:
                self.controller.add_reward(sample[0], sample[1], r)

    def _known_reward(self, key: str, ended: set) -> Optional[float]:
        done = [self.trials[t] for t in self._arch_trials.get(key, []) if t in ended]
        rewards = [self.reward(t) for t in done if t.status == _COMPLETED]
        rewards = [r for r in rewards if r is not None]
        if rewards:
            return math.fsum(rewards) / len(rewards)
        if any(t.status == _FAILED for t in done):
            return self.failed_reward
        return None

    # ----------------------------------------------------------- oracle API
    def populate_space(self, trial_id):
        """Samples a new architecture from the controller (see the module docstring for duplicates)."""
        self._sync_rewards()
        ended = set(self.end_order)
        for attempt in range(self.max_duplicate_resamples + 1):
            indices, logp = self.controller.sample()
            key = space_lib.architecture_key(indices)
            if key not in self._arch_trials:
                break
            if attempt == self.max_duplicate_resamples:
                self.stats["duplicate_trials"] += 1
                break
            known = self._known_reward(key, ended)
            if known is None:
                self.stats["duplicates_dropped"] += 1
            else:
                self.stats["duplicates_reused"] += 1
                self.controller.add_reward(indices, logp, known)
        self._awaiting[trial_id] = (indices, logp)
        self._register(trial_id, indices)
        return {"status": _RUNNING, "values": space_lib.indices_to_values(indices, self.space)}

    def _trial_ended(self, trial):
        """After Keras Tuner recorded an ended trial: feeds its reward to the controller and saves."""
        self._sync_rewards()
        self.save()

    # ----------------------------------------------------------- saving
    def _weights_path(self, version: int) -> str:
        return os.path.join(self._project_dir, f"{_WEIGHTS_PREFIX}{version:06d}.npz")

    def save(self):
        version = self.controller.num_updates
        path = self._weights_path(version)
        fresh = self._saved_weights_version != version or not tf.io.gfile.exists(path)
        if fresh:
            buf = io.BytesIO()
            np.savez(buf, **{k.replace("/", "__"): v for k, v in self.controller.get_weights().items()})
            tmp = path + ".tmp"
            with tf.io.gfile.GFile(tmp, "wb") as f:
                f.write(buf.getvalue())
            tf.io.gfile.rename(tmp, path, overwrite=True)
            self._saved_weights_version = version
        super().save()
        if fresh:  # the saved state now points at `path`; older weight files are stale.
            for old in tf.io.gfile.glob(os.path.join(self._project_dir, _WEIGHTS_PREFIX + "*.npz")):
                if os.path.basename(old) != os.path.basename(path):
                    tf.io.gfile.remove(old)

    def _extra_state(self):
        return {"controller": self.controller.get_state(include_weights=False),
                "weights_file": os.path.basename(self._weights_path(self.controller.num_updates)),
                "awaiting": {tid: [list(ix), lp] for tid, (ix, lp) in self._awaiting.items()},
                "fed_cursor": self._fed_cursor, "failed_reward": self.failed_reward, "stats": dict(self.stats)}

    def _restore_extra_checks(self, extra):
        saved = dict(LATER_OPTIONS, **extra["controller"]["config"])  # older states lack the later options
        mine = self.controller.config()
        if saved["units"] != mine["units"] or saved["embedding_dim"] != mine["embedding_dim"]:
            raise ValueError(f"Cannot resume the project in {self._project_dir}: its controller has "
                             f"lstm_units={saved['units']}, this oracle {mine['units']}. Pass "
                             f"lstm_units={saved['units']} to resume. Nothing was deleted.")
        changed = [f"{k} (saved {saved[k]!r}, now {mine[k]!r})" for k in mine
                   if k not in ("num_choices", "units", "embedding_dim") and saved.get(k) != mine[k]]
        if extra.get("failed_reward") != self.failed_reward:
            changed.append(f"failed_reward (saved {extra.get('failed_reward')!r}, now {self.failed_reward!r})")
        if changed:
            warnings.warn("Resuming the RL search with changed settings: " + ", ".join(changed) +
                          ". The new values are used from here on; the run will not replay the original one.",
                          stacklevel=3)
        path = os.path.join(self._project_dir, extra["weights_file"])
        if not tf.io.gfile.exists(path):
            raise ValueError(f"Cannot resume the project in {self._project_dir}: the controller weights "
                             f"{path} are missing. Nothing was deleted.")

    def _restore_extra(self, extra):
        self.controller.set_state(extra["controller"])
        path = os.path.join(self._project_dir, extra["weights_file"])
        with tf.io.gfile.GFile(path, "rb") as f:
            data = np.load(io.BytesIO(f.read()))
            self.controller.set_weights({k.replace("__", "/"): data[k] for k in data.files})
        self._saved_weights_version = self.controller.num_updates
        self._awaiting = {tid: ([int(a) for a in ix], float(lp)) for tid, (ix, lp) in extra["awaiting"].items()}
        self._fed_cursor = int(extra["fed_cursor"])
        self.stats = dict(extra["stats"])
        self._rebuild_arch_index()

    def reload(self):
        super().reload()
        # Rewards of trials that ended right before a crash.
        self._sync_rewards()


