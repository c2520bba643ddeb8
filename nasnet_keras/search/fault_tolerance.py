"""`FaultTolerantOracle`: Keras Tuner's chief / worker mode that survives dead, hung and failing workers.

A mixin for *any* `keras_tuner.Oracle` (put it first among the bases)::

    class SafeRandomSearch(FaultTolerantOracle, keras_tuner.oracles.RandomSearchOracle):
        pass

    oracle = SafeRandomSearch(objective="val_accuracy", max_trials=50, worker_timeout=600)

What it adds to Keras Tuner (1.4):

* **Dead-worker re-queue.** The oracle notes when the worker running a trial
  last contacted it (``create_trial``, ``update_trial``; `TrialHeartbeat`
  sends contacts while a trial makes progress). When a worker asks for a trial
  and another worker's running trial has been silent for more than
  ``worker_timeout`` seconds, the asking worker gets that same trial (same id,
  same hyperparameters): a new *attempt*. The attempt number travels with the
  trial handed out (metric `ATTEMPT_METRIC`, see `trial_attempt` /
  `with_attempt`); reports of superseded attempts are ignored. Each re-queue is
  printed and kept in `requeue_log` (saved with the oracle) and in the trial's
  message. A superseded attempt that reports after all shows that its worker
  was alive, only silent: ``worker_timeout`` is raised to 1.5 x that run.
* **No early stop.** A worker asking for a trial when none is left while others
  still run trials gets IDLE (asks again after `idle_poll_s`) instead of
  STOPPED, so it can take over a dead worker's trial or a retry.
* **Too many failed trials.** Keras Tuner raises from inside ``end_trial``
  while holding the oracle's lock (its ``synchronized`` has no
  ``try``/``finally``): on a chief the gRPC thread leaves the lock held and
  ``exit_chief`` blocks forever, and the worker gets a raw gRPC traceback.
  Here every public method releases the lock whatever happens
  (`synchronized_safely`); the ending trial is recorded and saved; every later
  ``create_trial`` answers STOPPED carrying the reason (`stop_reason`), so all
  workers and then the chief finish, and each can print that one reason. In a
  single process ``end_trial`` still raises Keras Tuner's ``RuntimeError``
  after recording, as Keras Tuner does.
* **Reasons reach the chief.** Keras Tuner's wire format has no trial message,
  so a worker's failure reason is lost on the chief. `attach_report` puts a
  small JSON report (reason, measured record) on the trial's hyperparameters
  as a `Fixed` entry before ``end_trial``; the chief takes it off again
  (`end_trial`) before Keras Tuner sees the hyperparameters, sets the trial's
  message and hands the record to the ``trial_listeners``.
* **Chief restart** (``overwrite=False``): trials that were running stay with
  their workers (silence counted from the restart), so a worker that survived
  reports normally; a dead one's trial is re-queued after ``worker_timeout``.
  A plain single-process resume keeps Keras Tuner's rule: interrupted trials
  are re-run first.
"""

from __future__ import annotations

import functools
import threading
import time
import warnings
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

import keras_tuner
from keras_tuner.engine import trial as trial_module
# Keras Tuner's per-oracle lock table: sharing it keeps our methods and Keras Tuner's own `synchronized`
# ones (e.g. `exit_chief`) mutually exclusive. Not in its public API, hence the `src` path.
from keras_tuner.src.engine import oracle as kt_oracle

from nasnet_keras.search.checks import check_optional_seconds
from nasnet_keras.search.progress import failure_reason
from nasnet_keras.search.roles import serves_workers
from nasnet_keras.search.trial_wire import (ATTEMPT_METRIC, REPORT_HP, TrialHeartbeat, attach_report, pop_report,
                                            trial_attempt, with_attempt)

# The wire names are re-exported from trial_wire.
__all__ = ["ATTEMPT_METRIC", "REPORT_HP", "FaultTolerantOracle", "TooManyFailedTrialsError", "TrialHeartbeat",
           "attach_report", "pop_report", "synchronized_safely", "trial_attempt", "with_attempt"]


class TooManyFailedTrialsError(RuntimeError):
    """The search stopped because too many child trials failed in a row (the oracle's ``stop_reason``).

    Attributes:
        reason: the oracle's stop reason (limit and last failure).
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


_RUNNING = trial_module.TrialStatus.RUNNING
_FAILED = trial_module.TrialStatus.FAILED
_STOPPED = trial_module.TrialStatus.STOPPED
_IDLE = trial_module.TrialStatus.IDLE

_STATE_KEY = "fault_tolerance"


def synchronized_safely(func):
    """Keras Tuner's ``synchronized`` (same per-oracle lock), releasing the lock even when ``func`` raises."""
    @functools.wraps(func)
    def wrapped(oracle, *args, **kwargs):
        me = threading.current_thread().name
        if kt_oracle.THREADS[oracle] == me:  # re-entrant call from this thread
            return func(oracle, *args, **kwargs)
        with kt_oracle.LOCKS[oracle]:
            kt_oracle.THREADS[oracle] = me
            try:
                return func(oracle, *args, **kwargs)
            finally:
                kt_oracle.THREADS[oracle] = None
    return wrapped


class FaultTolerantOracle(keras_tuner.Oracle):
    """Mixin: Keras Tuner's distributed search that survives dead workers and failing trials.

    See the module docstring. Put it before the Keras Tuner oracle among the
    bases. Extra keyword argument:

    Args:
        worker_timeout: seconds a running trial's worker may stay silent
            before its trial is given to another worker (default 600; must
            exceed the longest silence of a live worker: heartbeats come with
            training progress, so include graph tracing); ``None`` never
            re-queues.

    Attributes:
        requeue_log: one dict per re-queue (``trial_id``, ``attempt``,
            ``from_tuner``, ``to_tuner``, ``silent_s``, ``time``).
        stop_reason: why the search stopped early (too many failed trials), or ``None``.
        trial_listeners: callables ``(trial, report or None)`` run after a
            trial ended for good (COMPLETED / FAILED), under the oracle's lock.
    """

    #: Seconds an IDLE answer is held back, so waiting workers poll ~10 times a second.
    idle_poll_s = 0.1
    #: Clock of the worker contacts (seconds; replaceable in tests).
    _now = staticmethod(time.monotonic)

    def __init__(self, *args, worker_timeout: Optional[float] = 600.0, **kwargs):
        self.worker_timeout = check_optional_seconds("worker_timeout", worker_timeout,
                                                     "never re-queue the trial of a silent worker")
        super().__init__(*args, **kwargs)
        self._attempts: Dict[str, int] = {}
        self.requeue_log: List[Dict[str, Any]] = []
        self._trial_contact: Dict[str, float] = {}  # not saved: monotonic clock, restarted on reload
        self._tuner_contact: Dict[str, float] = {}
        self._handed_out: Dict[Tuple[str, int], float] = {}  # (trial id, attempt) -> when
        self._restored_ongoing: Dict[str, Any] = {}
        self.stop_reason: Optional[str] = None
        self.trial_listeners: List[Callable[[Any, Optional[Dict[str, Any]]], None]] = []

    # ----------------------------------------------------------- workers
    @property
    def tuner_ids(self):
        """Workers taking part (the chief exits when empty); idle ones silent past ``worker_timeout`` drop out."""
        ids = self._tuner_id_set
        timeout = getattr(self, "worker_timeout", None)
        if timeout is not None and ids:
            now = self._now()
            busy = set(self.ongoing_trials)
            for tid in [t for t in ids if t not in busy and now - self._tuner_contact.setdefault(t, now) > timeout]:
                ids.discard(tid)
        return ids

    @tuner_ids.setter
    def tuner_ids(self, value):
        self._tuner_id_set = value

    def _owner_of(self, trial_id: str) -> Optional[str]:
        return next((k for k, t in self.ongoing_trials.items() if t.trial_id == trial_id), None)

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

    def _silent_trial(self, asking: str, now: float):
        """(owner, trial) of another worker's running trial silent past ``worker_timeout`` (longest first)."""
        if self.worker_timeout is None:
            return None
        found = None
        for owner, trial in self.ongoing_trials.items():
            last = self._trial_contact.setdefault(trial.trial_id, now)
            if owner != asking and now - last > self.worker_timeout and (found is None or last < found[0]):
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
        self.requeue_log.append({"trial_id": tid, "attempt": attempt, "from_tuner": owner, "to_tuner": tuner_id,
                                 "silent_s": round(silent, 3),
                                 "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        print(f"Trial {tid} re-queued: {owner} was silent for {silent:.1f} s (worker_timeout="
              f"{self.worker_timeout:g} s); {tuner_id} runs it again (attempt {attempt}).", flush=True)
        self._save_trial(trial)
        self.save()
        self._display.on_trial_begin(trial)
        return self._handout(trial)

    def _stopped_trial(self):
        trial = trial_module.Trial(self.get_space(), status=_STOPPED, message=self.stop_reason)
        attach_report(trial, {"stop_reason": self.stop_reason})
        return trial

    # ----------------------------------------------------------- oracle API
    def create_trial(self, tuner_id):
        """Keras Tuner's ``create_trial`` plus re-queue, IDLE instead of an early STOP, and the stop reason.

        An IDLE answer returns after `idle_poll_s` seconds, outside the lock.
        """
        trial = self._create_trial_locked(tuner_id)
        if trial.status == _IDLE:
            time.sleep(self.idle_poll_s)
        return trial

    @synchronized_safely
    def _create_trial_locked(self, tuner_id):
        now = self._now()
        self._tuner_contact[tuner_id] = now
        if self.stop_reason is not None:
            self.tuner_ids.discard(tuner_id)
            return self._stopped_trial()
        own = self.ongoing_trials.get(tuner_id)
        if own is not None:  # a restarted worker gets its own unfinished trial back (as in Keras Tuner)
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
            self.tuner_ids.add(tuner_id)  # others still run trials: one may die or need a retry
            return trial_module.Trial(self.get_space(), status=_IDLE)
        return trial

    @synchronized_safely
    def update_trial(self, trial_id, metrics, step=0):
        """Keras Tuner's ``update_trial``; notes the contact. Metrics of only `ATTEMPT_METRIC` are a heartbeat.

        Updates of a trial that is not running, or tagged with a superseded
        attempt, are ignored.
        """
        trial = self.trials[trial_id]
        metrics = dict(metrics)
        attempt = metrics.pop(ATTEMPT_METRIC, None)
        owner = self._owner_of(trial_id)
        if owner is None or (attempt is not None and int(round(attempt)) != self._attempts.get(trial_id, 1)):
            return trial
        now = self._now()
        self._trial_contact[trial_id] = self._tuner_contact[owner] = now
        if not metrics:
            return trial
        return super().update_trial(trial_id, metrics, step=step)

    @synchronized_safely
    def end_trial(self, trial):
        """Keras Tuner's ``end_trial``: ignores superseded attempts, takes the report off, never leaves the
        lock held, and stops the search (instead of raising on a chief) after too many failures."""
        tid = trial.trial_id
        trial.hyperparameters, report = pop_report(trial.hyperparameters)
        if report and report.get("reason") and not trial.message:
            trial.message = report["reason"]
        expected, owner, got = self._attempts.get(tid, 1), self._owner_of(tid), trial_attempt(trial)
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
        was_stopped = self.stop_reason is not None
        super().end_trial(trial)  # calls _check_consecutive_failures, which records instead of raising
        ended = self.end_order and self.end_order[-1] == tid
        if ended:
            self._trial_ended(self.trials[tid])
            for listener in list(self.trial_listeners):
                listener(self.trials[tid], report)
        if self.stop_reason is not None and not was_stopped:
            self.tuner_ids.discard(owner)  # Keras Tuner's end_trial already dropped its running trial
            if not serves_workers():  # one process: surface it as Keras Tuner does
                raise RuntimeError(self.stop_reason)

    def _check_consecutive_failures(self):
        """Records Keras Tuner's "too many consecutive failures" stop in `stop_reason` instead of raising."""
        reason = self._consecutive_failure_reason()
        if reason is not None and self.stop_reason is None:
            self.stop_reason = reason

    def _consecutive_failure_reason(self) -> Optional[str]:
        limit, run = self.max_consecutive_failed_trials, 0
        for tid in self.end_order:
            trial = self.trials[tid]
            run = run + 1 if trial.status == _FAILED else 0
            if limit and run >= limit:
                return (f"the last {limit} trials all failed (max_consecutive_failed_trials={limit}). "
                        f"Last failure, trial {tid}: {failure_reason(trial.message) or 'no reason given'}")
        return None

    def _late_report(self, trial_id: str, attempt: int) -> None:
        """A superseded attempt reported after all: raise ``worker_timeout`` above that run's length."""
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
        """Hook for subclasses, run after a trial ended for good and Keras Tuner saved it."""

    # ----------------------------------------------------------- state
    def get_state(self):
        state = super().get_state()
        state[_STATE_KEY] = {"attempts": dict(self._attempts), "requeue_log": list(self.requeue_log),
                             "worker_timeout": self.worker_timeout}
        return state

    def set_state(self, state):
        super().set_state(state)
        saved = state.get(_STATE_KEY, {})
        self._attempts = {str(k): int(v) for k, v in saved.get("attempts", {}).items()}
        self.requeue_log = [dict(e) for e in saved.get("requeue_log", [])]
        self._restored_ongoing = dict(self.ongoing_trials)
        # A changed max_consecutive_failed_trials (or overwrite) lifts an old stop.
        self.stop_reason = self._consecutive_failure_reason()

    def reload(self):
        super().reload()
        # Trials that had ended but were still listed as running (a crash inside end_trial) are not re-run.
        ended = set(self.end_order)
        self._retry_queue = [t for t in self._retry_queue if t not in ended]
        if serves_workers():
            # A restarted chief: running trials stay with their workers, which may have survived.
            now = self._now()
            for tuner_id, trial in self._restored_ongoing.items():
                tid = trial.trial_id
                if tid in self._retry_queue and tid in self.trials:
                    self._retry_queue.remove(tid)
                    self.ongoing_trials[tuner_id] = self.trials[tid]
                    self._trial_contact[tid] = self._tuner_contact[tuner_id] = now
                    self.tuner_ids.add(tuner_id)
        self._restored_ongoing = {}
