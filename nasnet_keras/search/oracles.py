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

Distributed search (Keras Tuner's chief / worker mode). The chief process
(``KERASTUNER_TUNER_ID=chief``) holds the oracle and serves it over gRPC; it
alone writes ``oracle.json`` and the controller weights. Workers
(``tuner0``, ``tuner1``, ...) only call ``create_trial`` / ``update_trial`` /
``end_trial``. Keras Tuner loses the trial of a worker that dies (and can
leave the chief waiting forever); these oracles add:

* Dead-worker re-queue. The oracle notes when the worker running a trial last
  contacted it (``create_trial``, ``update_trial``; `TrialHeartbeat` sends
  such contacts while a trial trains). When a worker asks for a trial and
  another worker's running trial has been silent for more than
  ``worker_timeout`` seconds, the asking worker gets that same trial (same
  trial id, same architecture) instead of a new sample: a new *attempt*.
  Each re-queue is printed and recorded in `requeue_log` (saved with the
  oracle) and in the trial's ``message``. The attempt number travels with
  the trial handed out (metric `ATTEMPT_METRIC` of the trial's metrics,
  see `trial_attempt`); an ``end_trial`` from an older attempt is ignored,
  and so is an ``update_trial`` whose metrics carry an older attempt
  (`with_attempt`; updates without it cannot be told apart and are kept).
  A superseded attempt that reports after all shows that its worker was
  alive, only silent: ``worker_timeout`` is then raised to 1.5 x that run's
  length (with a warning), so children longer than the timeout are not
  re-queued again and again when a tuner sends no heartbeats.
* No early stop. A worker asking for a trial when none is left to start
  while other workers still run trials gets status IDLE (it asks again after
  `idle_poll_s`) instead of STOPPED, so it can still take over a trial whose
  worker dies (or one Keras Tuner sends for a retry).
* A worker restarted with the same tuner id gets its own unfinished trial
  back (Keras Tuner's behaviour), as long as that trial was not re-queued.
* Workers that stop contacting the chief for ``worker_timeout`` seconds while
  running nothing are forgotten, so the chief exits once the search is done.
* Too many failed trials in a row (``max_consecutive_failed_trials``): the
  ending trial is still recorded and saved, the error reaches its worker (as
  in a single-process search), and every later ``create_trial`` answers
  STOPPED, so the other workers and then the chief finish.
* Chief restart (``overwrite=False``): the trials that were running stay
  assigned to their workers (their silence counted from the restart), so a
  worker that survived the restart reports its trial normally; a dead one's
  trial is re-queued after ``worker_timeout``. Attempts and the re-queue log
  are restored. (A plain, single-process resume keeps Keras Tuner's rule:
  interrupted trials are re-run first.)
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import threading
import time
import warnings
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import keras_tuner
from keras_tuner.engine import trial as trial_module

from nasnet_keras import genotypes
from nasnet_keras.search import space as space_lib
from nasnet_keras.search.controller import PAPER_DEFAULTS, PPOController

_STATE_KEY = "nasnet_cell_search"
_STATE_FORMAT = 1
_WEIGHTS_PREFIX = "controller_weights_"
_RUNNING = trial_module.TrialStatus.RUNNING
_COMPLETED = trial_module.TrialStatus.COMPLETED
_FAILED = trial_module.TrialStatus.FAILED
_STOPPED = trial_module.TrialStatus.STOPPED
_IDLE = trial_module.TrialStatus.IDLE

#: Name of the metric that carries a trial's attempt number to workers (see `trial_attempt`).
ATTEMPT_METRIC = "nasnet_trial_attempt"


def default_objective() -> keras_tuner.Objective:
    """The paper's reward: child validation accuracy, maximised."""
    return keras_tuner.Objective("val_accuracy", "max")


def _serves_workers() -> bool:
    """True in the chief process of Keras Tuner's distributed mode (it serves the oracle to workers)."""
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and "chief" in os.environ.get("KERASTUNER_TUNER_ID", ""))


def trial_attempt(trial) -> int:
    """The attempt number of a trial handed out by these oracles: 1, or 2, 3, ... once re-queued.

    Args:
        trial: the `keras_tuner.engine.trial.Trial` a worker got from `create_trial`.
    """
    metrics = trial.metrics
    if metrics.exists(ATTEMPT_METRIC):
        return int(round(metrics.get_last_value(ATTEMPT_METRIC)))
    return 1


def with_attempt(trial, metrics: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """`metrics` (a dict, default empty) plus the trial's attempt number, for `update_trial`.

    A tuner that reports through ``oracle.update_trial(trial.trial_id,
    with_attempt(trial, metrics))`` (or returns ``with_attempt(trial, metrics)``
    from ``run_trial``) lets the oracle ignore the updates of a run that was
    re-queued away from a silent worker. The extra entry is removed before the
    metrics are recorded.
    """
    out = dict(metrics or {})
    out[ATTEMPT_METRIC] = float(trial_attempt(trial))
    return out


class TrialHeartbeat:
    """Context manager that tells the oracle, from a background thread, that a trial is still running.

    Every ``interval_s`` seconds it calls ``oracle.update_trial(trial_id,
    with_attempt(trial))`` -- no metrics, so nothing is recorded; the
    cell-search oracles only note the contact (see ``worker_timeout``). Use it
    around a trial's training on a worker, where long silences (graph tracing,
    long epochs) would otherwise make the chief re-queue a live trial::

        with TrialHeartbeat(self.oracle, trial, interval_s=30):
            history = model.fit(...)

    Works with a local oracle and with Keras Tuner's `OracleClient` (gRPC).
    Errors of a call (chief unreachable) are ignored; the next beat retries.

    Args:
        oracle: the tuner's oracle (``tuner.oracle``).
        trial: the running `Trial`.
        interval_s: seconds between beats (default 30; keep it well below the
            chief oracle's ``worker_timeout``, default 600).
    """

    def __init__(self, oracle, trial, interval_s: float = 30.0):
        if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) \
                or not math.isfinite(interval_s) or interval_s <= 0:
            raise ValueError(f"interval_s must be a positive number of seconds; got {interval_s!r}.")
        self.oracle = oracle
        self.trial = trial
        self.interval_s = float(interval_s)
        self.beats = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _run(self):
        metrics = with_attempt(self.trial)
        while not self._stop.wait(self.interval_s):
            try:
                self.oracle.update_trial(self.trial.trial_id, metrics)
                self.beats += 1
            except Exception:  # noqa: BLE001 -- a missed beat must never kill the trial
                pass

    def __enter__(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.trial.trial_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        return False


class _CellOracle(keras_tuner.Oracle):
    """Shared logic: the space as hyperparameters, resume bookkeeping, genotype decoding,
    and the distributed-search bookkeeping (dead-worker re-queue, see the module docstring)."""

    #: Seconds an IDLE answer is held back (the worker asks again right after it), so
    #: waiting workers poll the chief about 10 times a second instead of in a busy loop.
    idle_poll_s = 0.1
    #: Clock of the worker contacts (seconds; replaceable in tests).
    _now = staticmethod(time.monotonic)

    def __init__(self, objective, max_trials, space, seed, max_duplicate_resamples, max_retries_per_trial,
                 max_consecutive_failed_trials, worker_timeout, kwargs):
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
        if worker_timeout is not None and (isinstance(worker_timeout, bool)
                                           or not isinstance(worker_timeout, (int, float))
                                           or not math.isfinite(worker_timeout) or worker_timeout <= 0):
            raise ValueError(f"worker_timeout must be a positive number of seconds, or None to never re-queue "
                             f"the trial of a silent worker; got {worker_timeout!r}.")
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
        self.worker_timeout = None if worker_timeout is None else float(worker_timeout)
        # Distributed bookkeeping. Saved: attempts and the re-queue log. Not saved
        # (monotonic clock; restarted on reload): the last contacts.
        self._attempts: Dict[str, int] = {}
        self.requeue_log: List[Dict[str, Any]] = []
        self._trial_contact: Dict[str, float] = {}
        self._tuner_contact: Dict[str, float] = {}
        self._restored_ongoing: Dict[str, Any] = {}
        self._stop_message: Optional[str] = None
        # (trial id, attempt) -> when it was handed out (same clock as the contacts).
        self._handed_out: Dict[Tuple[str, int], float] = {}

    # ----------------------------------------------------------- workers
    @property
    def tuner_ids(self):
        """Ids of the workers taking part (Keras Tuner's set; the chief exits when it is empty).

        Workers that run nothing and have been silent longer than
        ``worker_timeout`` are dropped from it when it is read.
        """
        ids = self._tuner_id_set
        timeout = getattr(self, "worker_timeout", None)
        if timeout is not None and ids:
            now = self._now()
            busy = set(self.ongoing_trials)
            contact = self._tuner_contact
            for tid in [t for t in ids if t not in busy and now - contact.setdefault(t, now) > timeout]:
                ids.discard(tid)
        return ids

    @tuner_ids.setter
    def tuner_ids(self, value):
        self._tuner_id_set = value

    def _owner_of(self, trial_id: str) -> Optional[str]:
        for tuner_id, trial in self.ongoing_trials.items():
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    def _touch(self, trial_id: str, now: float) -> None:
        owner = self._owner_of(trial_id)
        if owner is not None:
            self._trial_contact[trial_id] = now
            self._tuner_contact[owner] = now

    def _handout(self, trial):
        """The trial as given to a worker: a copy carrying the attempt number once re-queued."""
        attempt = self._attempts.get(trial.trial_id, 1)
        if attempt <= 1:
            return trial
        out = trial_module.Trial(trial.hyperparameters, trial_id=trial.trial_id, status=trial.status,
                                 message=trial.message)
        out.metrics = type(trial.metrics).from_config(trial.metrics.get_config())
        out.metrics.update(ATTEMPT_METRIC, attempt)
        out.score, out.best_step = trial.score, trial.best_step
        return out

    def _silent_trial(self, asking: str, now: float) -> Optional[Tuple[str, Any]]:
        """(owner, trial) of the longest-silent running trial of another worker past `worker_timeout`."""
        if self.worker_timeout is None:
            return None
        found = None
        for owner, trial in self.ongoing_trials.items():
            if owner == asking:
                continue
            last = self._trial_contact.setdefault(trial.trial_id, now)
            if now - last > self.worker_timeout and (found is None or last < found[0]):
                found = (last, owner, trial)
        return None if found is None else found[1:]

    def _requeue(self, owner: str, trial, tuner_id: str, now: float):
        tid = trial.trial_id
        silent = now - self._trial_contact[tid]
        attempt = self._attempts.get(tid, 1) + 1
        self._attempts[tid] = attempt
        del self.ongoing_trials[owner]
        self.tuner_ids.discard(owner)
        self.tuner_ids.add(tuner_id)
        self.ongoing_trials[tuner_id] = trial
        trial.status = _RUNNING
        trial.metrics = type(trial.metrics)()  # what the lost run reported is dropped
        self._trial_contact[tid] = now
        self._handed_out[(tid, attempt)] = now
        event = {"trial_id": tid, "attempt": attempt, "from_tuner": owner, "to_tuner": tuner_id,
                 "silent_s": round(silent, 3), "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.requeue_log.append(event)
        print(f"Trial {tid} re-queued: {owner} was silent for {silent:.1f} s (worker_timeout="
              f"{self.worker_timeout:g} s); {tuner_id} runs it again (attempt {attempt}).", flush=True)
        self._save_trial(trial)
        self.save()
        self._display.on_trial_begin(trial)
        return self._handout(trial)

    def create_trial(self, tuner_id):
        """Keras Tuner's `create_trial`, plus dead-worker re-queue and IDLE instead of an early STOP.

        See the module docstring ("Distributed search"). An IDLE answer
        returns after `idle_poll_s` seconds, outside the oracle's lock.
        """
        trial = self._create_trial_locked(tuner_id)
        if trial.status == _IDLE:
            time.sleep(self.idle_poll_s)
        return trial

    @keras_tuner.synchronized
    def _create_trial_locked(self, tuner_id):
        now = self._now()
        self._tuner_contact[tuner_id] = now
        if self._stop_message is not None:  # too many failed trials: the search is over
            self.tuner_ids.discard(tuner_id)
            return trial_module.Trial(self.get_space(), status=_STOPPED, message=self._stop_message)
        own = self.ongoing_trials.get(tuner_id)
        if own is not None:  # a restarted worker: its own unfinished trial (as Keras Tuner does)
            self._trial_contact[own.trial_id] = now
            self.tuner_ids.add(tuner_id)
            return self._handout(own)
        silent = self._silent_trial(tuner_id, now)
        if silent is not None:
            return self._requeue(silent[0], silent[1], tuner_id, now)
        trial = super().create_trial(tuner_id)
        if trial.status == _RUNNING:
            self._trial_contact[trial.trial_id] = now
            self._handed_out.setdefault((trial.trial_id, self._attempts.get(trial.trial_id, 1)), now)
            return self._handout(trial)
        if trial.status == _STOPPED and self.ongoing_trials:
            # Other workers still run trials; one may die (re-queue) or need a retry.
            self.tuner_ids.add(tuner_id)
            return trial_module.Trial(self.get_space(), status=_IDLE)
        return trial

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        """Keras Tuner's `update_trial`; also notes the contact (see `TrialHeartbeat`).

        Metrics holding only `ATTEMPT_METRIC` (or nothing) are a heartbeat:
        nothing is recorded. Updates of a trial that is not running, or whose
        `ATTEMPT_METRIC` names an older attempt, are ignored.
        """
        trial = self.trials[trial_id]
        metrics = dict(metrics)
        attempt = metrics.pop(ATTEMPT_METRIC, None)
        if self._owner_of(trial_id) is None or (
                attempt is not None and int(round(attempt)) != self._attempts.get(trial_id, 1)):
            return trial
        self._touch(trial_id, self._now())
        if not metrics:
            return trial
        return super().update_trial(trial_id, metrics, step=step)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        """Keras Tuner's `end_trial`, ignoring reports of superseded attempts (see the module docstring)."""
        tid = trial.trial_id
        expected = self._attempts.get(tid, 1)
        owner = self._owner_of(tid)
        got = trial_attempt(trial)
        if owner is None or got != expected:
            print(f"Ignoring end_trial({tid}, {trial.status}) of attempt {got}: the trial "
                  + ("is not running." if owner is None else f"is on attempt {expected}, run by {owner}."),
                  flush=True)
            self._late_report(tid, got)
            return None
        self._tuner_contact[owner] = self._now()
        self._trial_contact.pop(tid, None)
        self._handed_out.pop((tid, expected), None)  # superseded attempts' stay: they may report late
        if expected > 1:
            note = "; ".join(f"re-queued from {e['from_tuner']} to {e['to_tuner']} (attempt {e['attempt']}, "
                             f"silent {e['silent_s']:g} s)" for e in self.requeue_log if e["trial_id"] == tid)
            trial.message = note if not trial.message else f"{trial.message}\n{note}"
        try:
            super().end_trial(trial)
        except RuntimeError as err:
            if not (self.end_order and self.end_order[-1] == tid):
                raise
            # Keras Tuner's max_consecutive_failed_trials stop, raised before the trial was
            # recorded: record it, stop handing out trials, and let the error reach the worker.
            self._save_trial(self.trials[tid])
            self.ongoing_trials.pop(owner, None)
            self.tuner_ids.discard(owner)
            self._stop_message = str(err)
            self._trial_ended(self.trials[tid])
            self.save()
            raise
        self._trial_ended(self.trials[tid])

    def _late_report(self, trial_id: str, attempt: int) -> None:
        """A re-queued attempt reported after all: its worker was alive but silent longer than
        `worker_timeout`. Raise the timeout above that run's length, so that slow children are not
        re-queued over and over (a tuner without `TrialHeartbeat` on long children)."""
        start = self._handed_out.pop((trial_id, attempt), None)
        if start is None or self.worker_timeout is None:
            return
        ran = self._now() - start
        if ran > self.worker_timeout:
            new = 1.5 * ran
            warnings.warn(f"Trial {trial_id}: attempt {attempt} reported after {ran:.0f} s without the chief "
                          f"hearing from it, so its worker was alive: worker_timeout raised from "
                          f"{self.worker_timeout:g} s to {new:g} s. Send heartbeats (TrialHeartbeat) from "
                          "the tuner, or pass a larger worker_timeout.", stacklevel=3)
            self.worker_timeout = new

    def _trial_ended(self, trial) -> None:
        """Hook run after an accepted `end_trial` (Keras Tuner has saved the trial and the oracle)."""

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
                 "seed": self.cell_seed, "stats": dict(self.stats),
                 "workers": {"attempts": dict(self._attempts), "requeue_log": list(self.requeue_log)}}
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
        self._restored_ongoing = dict(self.ongoing_trials)
        workers = extra.get("workers", {})
        self._attempts = {str(k): int(v) for k, v in workers.get("attempts", {}).items()}
        self.requeue_log = [dict(e) for e in workers.get("requeue_log", [])]
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
        if _serves_workers():
            # A restarted chief: running trials stay with their workers, which
            # may have survived; a dead worker's trial is re-queued later.
            now = self._now()
            for tuner_id, trial in self._restored_ongoing.items():
                tid = trial.trial_id
                if tid in self._retry_queue and tid in self.trials:
                    self._retry_queue.remove(tid)
                    self.ongoing_trials[tuner_id] = self.trials[tid]
                    self._trial_contact[tid] = now
                    self._tuner_contact[tuner_id] = now
                    self.tuner_ids.add(tuner_id)
        self._restored_ongoing = {}


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
        worker_timeout: distributed search: seconds a running trial's worker
            may stay silent before its trial is given to another worker
            (default 600; must exceed the longest silence of a live worker --
            use `TrialHeartbeat` on workers); `None` never re-queues.
        **kwargs: other `keras_tuner.Oracle` arguments (`allow_new_entries`,
            `tune_new_entries`); not `hyperparameters`.

    Attributes:
        controller: the `PPOController`.
        space: the `SearchSpace`.
        stats: counts of reused / dropped duplicates and duplicate trials.
        requeue_log: one dict per re-queued trial (``trial_id``, ``attempt``,
            ``from_tuner``, ``to_tuner``, ``silent_s``, ``time``).
    """

    def __init__(self, objective=None, max_trials=None, space=None, seed=None, lstm_units=PAPER_DEFAULTS["units"],
                 learning_rate=PAPER_DEFAULTS["learning_rate"], entropy_weight=PAPER_DEFAULTS["entropy_weight"],
                 baseline_decay=PAPER_DEFAULTS["baseline_decay"], batch_size=PAPER_DEFAULTS["batch_size"],
                 ppo_clip=0.2,
                 ppo_epochs=4, failed_reward=0.0, max_duplicate_resamples=20, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, worker_timeout=600.0, **kwargs):
        super().__init__(objective, max_trials, space, seed, max_duplicate_resamples, max_retries_per_trial,
                         max_consecutive_failed_trials, worker_timeout, kwargs)
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
        worker_timeout: seconds before a silent worker's trial is re-queued
            (default 600; `None` never), as in `NASNetRLOracle`.
    """

    def __init__(self, objective=None, max_trials=None, space=None, seed=None, max_duplicate_resamples=20,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, worker_timeout=600.0, **kwargs):
        super().__init__(objective, max_trials, space, seed, max_duplicate_resamples, max_retries_per_trial,
                         max_consecutive_failed_trials, worker_timeout, kwargs)
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
