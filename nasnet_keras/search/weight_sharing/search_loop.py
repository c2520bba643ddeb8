"""The weight-sharing search: ENAS' alternating loop, checkpointed every epoch, then the final selection.

`WeightSharingSearch.run()` does, per epoch (Pham et al. 2018, Sec. 2.2):

1. one pass over the training data, each step training the architecture the
   sampler draws for that minibatch;
2. every ``controller_every`` epochs, ``controller_steps x
   controller_batch_size`` architectures, each scored on one reward minibatch
   with the shared weights and fed to the sampler (the controller learns from
   it; uniform sampling ignores it);
3. a checkpoint: shared weights + optimizer (``checkpoint-<epoch>.npz``), then
   ``search_state.json`` (epoch, sampler state with its RNG, history) naming
   it -- written through a temporary file, so a SIGKILL at any moment leaves a
   consistent pair and the same command resumes after the last finished epoch.

Then ``final_architectures`` distinct architectures are sampled (saved in the
state, so a resumed run scores the same ones), each scored on the whole
reward set; rows are appended to ``trials.csv`` as they are scored (a resumed
run skips the scored ones), and ``best_genotype.json`` (drawn as ``best_normal.png`` / ``best_reduction.png``),
``history.csv`` and ``rewards.png`` are written (`outputs`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from nasnet_keras.search import progress, reports
from nasnet_keras.search import space as space_lib
from nasnet_keras.search.data import SearchData
from nasnet_keras.search.report_writer import BEST_CELLS_PREFIX
from nasnet_keras.search.weight_sharing import outputs
from nasnet_keras.search.weight_sharing.config import WeightSharingConfig
from nasnet_keras.search.weight_sharing.samplers import make_sampler
from nasnet_keras.search.weight_sharing.shared_trainer import SharedTrainer
from nasnet_keras.training.run_directory import atomic_write
from nasnet_keras.visualize import plot_genotype

__all__ = ["CONFIG_FILE", "STATE_FILE", "WeightSharingSearch"]

CONFIG_FILE = "weight_sharing_config.json"
STATE_FILE = "search_state.json"
#: Draws allowed per wanted architecture when sampling distinct final architectures.
_MAX_DRAWS_PER_ARCHITECTURE = 20


class WeightSharingSearch:
    """One weight-sharing search run in ``project_dir`` (created, or resumed when it holds one).

    Args:
        data: the `SearchData` (training set and reward set).
        space: the `SearchSpace` (``combines == ("add",)``).
        config: the `WeightSharingConfig`.
        oracle: ``"enas"`` (controller) or ``"enas_random"`` (uniform).
        project_dir: where checkpoints and outputs go.
        seed: seeds Keras (initial weights), the sampler and the reward minibatch order.
        identity: extra settings that must match on resume (e.g. the dataset name).
        strategy: a `tf.distribute.Strategy` or ``None`` (the current one).
        verbose: 0 silent, 1 one line per epoch and a summary.
        reward_fn: ``f(architecture indices, shared-weight accuracy) -> reward``
            for the controller (default: the accuracy); for experiments and tests.

    Raises:
        ValueError: ``project_dir`` holds a search with other settings
            (nothing is changed), or the space / config is invalid.
    """

    def __init__(self, data: SearchData, space: space_lib.SearchSpace, config: WeightSharingConfig, *,
                 oracle: str, project_dir: str, seed: int = 0, identity: Optional[Dict[str, Any]] = None,
                 strategy=None, verbose: int = 1,
                 reward_fn: Optional[Callable[[Sequence[int], float], float]] = None):
        import keras

        self.data, self.space, self.config, self.oracle = data, space, config, oracle
        self.project_dir, self.seed, self.verbose = project_dir, int(seed), int(verbose)
        self.reward_fn = reward_fn
        self.identity = dict(oracle=oracle, seed=self.seed, space=space.to_dict(), config=config.to_dict(),
                             **(identity or {}))
        self._check_project()
        keras.utils.set_random_seed(self.seed)
        self.sampler = make_sampler(oracle, space, config, self.seed)
        self.trainer = SharedTrainer(data, space, config, strategy=strategy, seed=self.seed)
        self.state: Dict[str, Any] = {"epochs_done": 0, "checkpoint": None, "history": [], "final": None}
        self._restore()

    # ------------------------------------------------------------------ project files
    def _path(self, name: str) -> str:
        return os.path.join(self.project_dir, name)

    def _check_project(self) -> None:
        path = self._path(CONFIG_FILE)
        mine = json.loads(json.dumps(self.identity))
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            diffs = [f"{k}: saved {saved.get(k)!r}, given {mine.get(k)!r}" for k in sorted(set(saved) | set(mine))
                     if saved.get(k) != mine.get(k)]
            if diffs:
                raise ValueError(
                    f"Cannot resume the weight-sharing search in {self.project_dir}: it was started with other "
                    f"settings ({'; '.join(diffs)}). Nothing was deleted.")
            return
        os.makedirs(self.project_dir, exist_ok=True)
        atomic_write(path, json.dumps(mine, indent=1) + "\n")

    def _restore(self) -> None:
        path = self._path(STATE_FILE)
        if not os.path.exists(path):
            return
        with open(path) as f:
            self.state = json.load(f)
        self.sampler.set_state(self.state["sampler"])
        if self.state["checkpoint"]:
            with np.load(self._path(self.state["checkpoint"])) as arrays:
                self.trainer.set_arrays(dict(arrays))
        if self.verbose:
            print(f"Resuming the search in {self.project_dir} after epoch {self.state['epochs_done']}"
                  f"/{self.config.epochs}.", flush=True)

    def _save(self) -> None:
        epoch = self.state["epochs_done"]
        name = f"checkpoint-{epoch}.npz"
        tmp = self._path(name + ".tmp.npz")
        np.savez(tmp, **self.trainer.get_arrays())
        os.replace(tmp, self._path(name))
        old = self.state["checkpoint"]
        self.state.update(checkpoint=name, sampler=self.sampler.get_state())
        atomic_write(self._path(STATE_FILE), json.dumps(self.state) + "\n")
        if old and old != name and os.path.exists(self._path(old)):
            os.remove(self._path(old))

    # ------------------------------------------------------------------ the loop
    def run(self) -> Dict[str, Any]:
        """Trains (or resumes) and selects; returns ``{"best": TrialRecord, "records": [...], "scored": int}``."""
        cfg = self.config
        while self.state["epochs_done"] < cfg.epochs:
            row = self._epoch(self.state["epochs_done"] + 1)
            if not self.trainer.weights_finite():
                raise outputs.SearchDiverged(
                    f"The shared weights became NaN / infinite in epoch {row['epoch']}; the last checkpoint "
                    f"(epoch {self.state['epochs_done']}) is kept. Lower --learning_rate and start over in a new "
                    "--project_name.")
            self.state["history"].append(row)
            self.state["epochs_done"] = row["epoch"]
            self._save()
            outputs.write_history(self.state["history"], self._path(outputs.HISTORY_CSV))
            if self.verbose:
                print(self._epoch_line(row), flush=True)
        records = self._select()
        outputs.write_history(self.state["history"], self._path(outputs.HISTORY_CSV))
        best = reports.best_record(records)
        if best is not None:
            reports.write_best_genotype(best, self._path(reports.BEST_GENOTYPE_JSON))
            plot_genotype(best.genotype, self.project_dir, prefix=BEST_CELLS_PREFIX)
        outputs.plot_search(self.state["history"], records, self._path(reports.REWARDS_PNG), self.oracle)
        scored = len(records) + sum(r["controller_rewards"] for r in self.state["history"])
        return {"best": best, "records": records, "scored": scored}

    def _epoch(self, epoch: int) -> Dict[str, Any]:
        start = time.perf_counter()
        loss = correct = count = 0.0
        for batch in self.trainer.train_set:
            architecture, _ = self.sampler.sample()
            l, c, n = self.trainer.train_step(batch, architecture)
            loss, correct, count = loss + l, correct + c, count + n
        trained = time.perf_counter()
        rewards: List[float] = []
        if epoch % self.config.controller_every == 0:
            for _ in range(self.config.controller_steps * self.config.controller_batch_size):
                architecture, log_prob = self.sampler.sample()
                accuracy = self.trainer.minibatch_reward(architecture)
                reward = accuracy if self.reward_fn is None else float(self.reward_fn(architecture, accuracy))
                self.sampler.add_reward(architecture, log_prob, reward)
                rewards.append(reward)
        previous_best = max([r["best_reward"] for r in self.state["history"] if r["best_reward"] is not None],
                            default=None)
        best = max(rewards + ([previous_best] if previous_best is not None else []), default=None)
        return {"epoch": epoch, "loss": loss / max(count, 1.0), "accuracy": correct / max(count, 1.0),
                "controller_reward": float(np.mean(rewards)) if rewards else None,
                "controller_rewards": len(rewards), "best_reward": best,
                "learning_rate": self.trainer.learning_rate, "train_seconds": trained - start,
                "seconds": time.perf_counter() - start}

    def _epoch_line(self, row: Dict[str, Any]) -> str:
        done, total = row["epoch"], self.config.epochs
        per_epoch = float(np.median([r["seconds"] for r in self.state["history"]]))
        reward = "-" if row["controller_reward"] is None else f"{row['controller_reward']:.3f}"
        best = "-" if row["best_reward"] is None else f"{row['best_reward']:.3f}"
        return (f"[{self.oracle}] epoch {done}/{total}: loss {row['loss']:.3f}, train acc {row['accuracy']:.3f}, "
                f"mean reward {reward} (best {best}), lr {row['learning_rate']:.4f}, {row['seconds']:.1f} s, "
                f"ETA {progress.format_hms(per_epoch * (total - done))} + selection")

    # ------------------------------------------------------------------ selection
    def _select(self) -> List[reports.TrialRecord]:
        if self.state["final"] is None:
            self.state["final"] = self._distinct_samples(self.config.final_architectures)
            self.state["sampler"] = self.sampler.get_state()
            atomic_write(self._path(STATE_FILE), json.dumps(self.state) + "\n")
        architectures = self.state["final"]
        csv_path = self._path(reports.TRIALS_CSV)
        done = reports.read_trials_csv(csv_path) if os.path.exists(csv_path) else []
        done_ids = {r.trial_id for r in done}
        records = list(done)
        if self.verbose and len(done) < len(architectures):
            print(f"Scoring {len(architectures) - len(done)} sampled architectures on the whole reward set "
                  f"({self.data.num_val} images) with the shared weights...", flush=True)
        started, last_line = time.perf_counter(), time.perf_counter()
        for k, architecture in enumerate(architectures):
            trial_id = f"{k:04d}"
            if trial_id in done_ids:
                continue
            t0 = time.perf_counter()
            accuracy = self.trainer.reward_set_accuracy(architecture)
            params, mult_adds = self.trainer.model.child_cost(architecture)
            record = reports.TrialRecord(trial_id, "COMPLETED", accuracy, params, mult_adds,
                                         time.perf_counter() - t0, self.trainer.model.genotype(architecture))
            reports.append_trials_csv(record, csv_path)
            records.append(record)
            if self.verbose and time.perf_counter() - last_line > 10.0:
                last_line = time.perf_counter()
                best = reports.best_record(records)
                rate = (k + 1 - len(done)) / (last_line - started)
                print(f"  scored {len(records)}/{len(architectures)}, best {best.reward:.3f}, "
                      f"ETA {progress.format_hms((len(architectures) - len(records)) / max(rate, 1e-9))}", flush=True)
        return records

    def _distinct_samples(self, count: int) -> List[List[int]]:
        seen, out = set(), []
        for _ in range(count * _MAX_DRAWS_PER_ARCHITECTURE):
            architecture, _ = self.sampler.sample()
            key = space_lib.architecture_key(architecture)
            if key not in seen:
                seen.add(key)
                out.append([int(a) for a in architecture])
                if len(out) == count:
                    break
        return out
