"""Keras Tuner oracles over the NASNet cell search space.

* `NASNetRLOracle` -- the paper's search (Sec. 3, Appendix A): an LSTM controller
  (`PPOController`) samples the 2 x 5B cell decisions, child results come back
  through `update_trial` / `end_trial`, and the controller is trained with
  PPO on batches of 20 rewards.
* `RandomCellOracle` -- random search over the same space (the paper's
  baseline, Sec. 4.4): every decision uniform.

Both plug into any `keras_tuner.Tuner` (including distributed tuning, where the
chief holds the oracle) and sample only the cell decisions of
`nasnet_keras.search.space`; other hyperparameters a hypermodel declares take
their default values.

Resuming. Everything an oracle needs to continue is saved in the project
directory with Keras Tuner's own `oracle.json` (the controller's weights and
Adam moments go to a side file ``controller_weights_<n>.npz``, rewritten
only after an update). Re-running the same tuner command with
``overwrite=False`` continues the exact same sequence of architectures,
whatever point the previous process was killed at:

* a trial that was running is re-run (Keras Tuner's retry queue) with the
  architecture it had; its sample's log-prob was saved with it;
* a trial that had ended but whose end was not fully recorded is not re-run,
  and its reward is fed to the controller on reload;
* a trial file written just before a crash but unknown to the saved oracle
  state is dropped, and its trial id is reused.

Resuming with a different search space (or controller size) raises
`ValueError` naming the setting; nothing in the project is deleted.

Rewards (`NASNetRLOracle`): a COMPLETED trial gives its objective value
(negated when the objective is minimised). A FAILED trial (crashed after its
retries, see `max_retries_per_trial`) gives `failed_reward` (default 0.0, the
worst accuracy), or is left out of the batch when `failed_reward=None`. An
INVALID trial waiting for a retry gives nothing yet.

Duplicates. Keras Tuner's own oracles refuse values they have tried before.
Here, when the controller samples an architecture that already has a result
(the mean reward of its COMPLETED trials, or `failed_reward` if it only
failed), that reward is given to the controller at once as a sample of the
batch -- no child is trained -- and the controller samples again. A duplicate
of a trial still running is dropped and resampled. After
`max_duplicate_resamples` duplicates in a row (the controller has converged)
the duplicate is run as a new trial (re-measuring it), so the search never
stalls. `RandomCellOracle` resamples duplicates too and stops the search
(status STOPPED) when it cannot find a new architecture in that many tries.
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
from nasnet_keras.search.controller import PPOController

_STATE_KEY = "nasnet_cell_search"
_STATE_FORMAT = 1
_WEIGHTS_PREFIX = "controller_weights_"
_RUNNING = trial_module.TrialStatus.RUNNING
_COMPLETED = trial_module.TrialStatus.COMPLETED
_FAILED = trial_module.TrialStatus.FAILED
_STOPPED = trial_module.TrialStatus.STOPPED


def default_objective() -> keras_tuner.Objective:
    """The paper's reward: child validation accuracy, maximised."""
    return keras_tuner.Objective("val_accuracy", "max")


class _CellOracle(keras_tuner.Oracle):
    """Shared logic: the space as hyperparameters, resume bookkeeping, genotype decoding."""

    def __init__(self, objective, max_trials, space, seed, max_duplicate_resamples, max_retries_per_trial,
                 max_consecutive_failed_trials, kwargs):
        if "hyperparameters" in kwargs:
            raise ValueError("The cell decisions come from `space` (a nasnet_keras.search.SearchSpace); "
                             "do not pass `hyperparameters`. Other hyperparameters your hypermodel declares "
                             "take their default values.")
        if space is None:
            space = space_lib.SearchSpace()
        elif isinstance(space, dict):
            space = space_lib.SearchSpace.from_dict(space)
        elif not isinstance(space, space_lib.SearchSpace):
            raise ValueError(f"space must be a nasnet_keras.search.SearchSpace or its dict form; "
                             f"got {type(space).__name__}.")
        if seed is None:
            seed = random.randint(1, 2 ** 31 - 1)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int or None; got {seed!r}.")
        if isinstance(max_duplicate_resamples, bool) or not isinstance(max_duplicate_resamples, int) \
                or max_duplicate_resamples < 0:
            raise ValueError(f"max_duplicate_resamples must be an int >= 0; got {max_duplicate_resamples!r}.")
        super().__init__(objective=default_objective() if objective is None else objective,
                         max_trials=max_trials, hyperparameters=space_lib.build_hyperparameters(space),
                         seed=int(seed), max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials, **kwargs)
        self.space = space
        self.cell_seed = int(seed)
        self.max_duplicate_resamples = max_duplicate_resamples
        self._num_choices = space_lib.num_choices(space)
        # architecture key -> trial ids that ran it, in creation order.
        self._arch_trials: Dict[str, List[str]] = {}
        self.stats = {"duplicates_reused": 0, "duplicates_dropped": 0, "duplicate_trials": 0}

    # ----------------------------------------------------------- helpers
    def genotype(self, trial) -> genotypes.Genotype:
        """The `Genotype` of a trial (a `Trial`, its id, or its `HyperParameters`)."""
        if isinstance(trial, str):
            trial = self.trials[trial]
        hp = trial.hyperparameters if hasattr(trial, "hyperparameters") else trial
        return space_lib.genotype_from_hyperparameters(hp, self.space)

    def _indices_of(self, trial) -> List[int]:
        return space_lib.values_to_indices(trial.hyperparameters.values, self.space)

    def _register(self, trial_id: str, indices) -> None:
        self._arch_trials.setdefault(space_lib.architecture_key(indices), []).append(trial_id)

    def _rebuild_arch_index(self) -> None:
        self._arch_trials = {}
        for tid in self.start_order:
            if tid in self.trials:
                self._register(tid, self._indices_of(self.trials[tid]))

    def _extra_state(self) -> Dict[str, Any]:
        raise NotImplementedError

    def _restore_extra(self, extra: Dict[str, Any]) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------- state
    def get_state(self):
        state = super().get_state()
        extra = {"format": _STATE_FORMAT, "oracle": type(self).__name__, "space": self.space.to_dict(),
                 "seed": self.cell_seed, "stats": dict(self.stats)}
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
        self.stats = dict(extra["stats"])
        self._restore_extra(extra)
        self._rebuild_arch_index()

    def _restore_extra_checks(self, extra) -> None:
        """Raises before anything is restored if `extra` cannot be restored."""

    def reload(self):
        super().reload()
        # Trial files written just before a crash, unknown to the saved state:
        # forget them so their trial ids are reused by the same samples.
        for tid in [t for t in self.trials if t not in self.start_order]:
            del self.trials[tid]
        # Trials that had ended but were still listed as ongoing are not re-run.
        ended = set(self.end_order)
        self._retry_queue = [t for t in self._retry_queue if t not in ended]


class NASNetRLOracle(_CellOracle):
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
        max_retries_per_trial, max_consecutive_failed_trials: as in
            `keras_tuner.Oracle`.
        **kwargs: other `keras_tuner.Oracle` arguments (`allow_new_entries`,
            `tune_new_entries`); not `hyperparameters`.

    Attributes:
        controller: the `PPOController`.
        space: the `SearchSpace`.
        stats: counts of reused / dropped duplicates and duplicate trials.
    """

    def __init__(self, objective=None, max_trials=None, space=None, seed=None, lstm_units=100,
                 learning_rate=3.5e-4, entropy_weight=1e-5, baseline_decay=0.95, batch_size=20, ppo_clip=0.2,
                 ppo_epochs=4, failed_reward=0.0, max_duplicate_resamples=20, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, **kwargs):
        super().__init__(objective, max_trials, space, seed, max_duplicate_resamples, max_retries_per_trial,
                         max_consecutive_failed_trials, kwargs)
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

    @keras_tuner.synchronized
    def end_trial(self, trial):
        """Records the trial (Keras Tuner), then feeds its reward to the controller and saves."""
        super().end_trial(trial)
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
                "fed_cursor": self._fed_cursor, "failed_reward": self.failed_reward}

    def _restore_extra_checks(self, extra):
        saved = extra["controller"]["config"]
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

    def reload(self):
        super().reload()
        # Rewards of trials that ended right before a crash.
        self._sync_rewards()


class RandomCellOracle(_CellOracle):
    """Random search over NASNet cells: every decision uniform (paper Sec. 4.4's baseline).

    Args:
        objective: default `Objective("val_accuracy", "max")`.
        max_trials: number of trials; `None` = no limit.
        space: a `SearchSpace` (default: the paper's).
        seed: int seed of the sampler; `None` draws one. Same seed, same sequence.
        max_duplicate_resamples: tries to find an untried architecture before
            the search stops as exhausted (default 20).
        max_retries_per_trial, max_consecutive_failed_trials, **kwargs: as in
            `keras_tuner.Oracle` (not `hyperparameters`).
    """

    def __init__(self, objective=None, max_trials=None, space=None, seed=None, max_duplicate_resamples=20,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, **kwargs):
        super().__init__(objective, max_trials, space, seed, max_duplicate_resamples, max_retries_per_trial,
                         max_consecutive_failed_trials, kwargs)
        self._rng = np.random.default_rng(self.cell_seed)

    def sample(self) -> List[int]:
        """One uniform sample: a class index per decision."""
        return [int(self._rng.integers(n)) for n in self._num_choices]

    def populate_space(self, trial_id):
        """Samples a new, untried architecture uniformly; STOPPED when none is found."""
        for _ in range(self.max_duplicate_resamples + 1):
            indices = self.sample()
            if space_lib.architecture_key(indices) not in self._arch_trials:
                self._register(trial_id, indices)
                return {"status": _RUNNING, "values": space_lib.indices_to_values(indices, self.space)}
            self.stats["duplicates_dropped"] += 1
        return {"status": _STOPPED, "values": None}

    def _extra_state(self):
        # numpy's bit-generator state, with numpy ints made plain ints for JSON.
        return {"rng": json.loads(json.dumps(self._rng.bit_generator.state, default=int))}

    def _restore_extra(self, extra):
        self._rng.bit_generator.state = extra["rng"]
