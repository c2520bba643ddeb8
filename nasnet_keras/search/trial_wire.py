"""What a worker and the chief say about a trial beyond Keras Tuner's wire format.

Keras Tuner's gRPC trial message carries hyperparameters, metrics, score and
status, but no message and no attempt number. These helpers add both, and
the worker's heartbeat:

* the attempt number rides as a metric (`ATTEMPT_METRIC`; `trial_attempt`,
  `with_attempt`), so the chief can ignore a superseded attempt's reports;
* a small JSON report -- a failure's reason and what was measured, or the
  reason the search stopped -- rides as a `Fixed` hyperparameter (`REPORT_HP`;
  `attach_report`, `pop_report`), taken off again before Keras Tuner sees
  the hyperparameters;
* `TrialHeartbeat` sends a contact while, and only while, training makes progress.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Dict, List, Optional, Tuple

from nasnet_keras.search.checks import check_positive

__all__ = ["ATTEMPT_METRIC", "REPORT_HP", "TrialHeartbeat", "attach_report", "pop_report", "trial_attempt",
           "with_attempt"]

#: Metric carrying a trial's attempt number to and from workers (see `trial_attempt`).
ATTEMPT_METRIC = "nasnet_trial_attempt"
#: Name of the `Fixed` hyperparameter that carries a trial's report over gRPC (see `attach_report`).
REPORT_HP = "nasnet_trial_report"


def trial_attempt(trial) -> int:
    """The attempt number of a trial handed out by a `FaultTolerantOracle`: 1, or 2, 3, ... once re-queued."""
    if trial.metrics.exists(ATTEMPT_METRIC):
        return int(round(trial.metrics.get_last_value(ATTEMPT_METRIC)))
    return 1


def with_attempt(trial, metrics: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    """``metrics`` (default empty) plus the trial's attempt number, for ``update_trial`` / ``run_trial``.

    The oracle ignores updates tagged with a superseded attempt and removes
    the tag before recording the metrics.
    """
    out = dict(metrics or {})
    out[ATTEMPT_METRIC] = float(trial_attempt(trial))
    return out


def attach_report(trial, report: Dict[str, Any]) -> None:
    """Puts ``report`` (JSON-able dict) on ``trial.hyperparameters`` so it survives Keras Tuner's gRPC."""
    trial.hyperparameters.Fixed(REPORT_HP, json.dumps(report, sort_keys=True, default=str))


def pop_report(hyperparameters) -> Tuple[Any, Optional[Dict[str, Any]]]:
    """``(hyperparameters without the report, report or None)``; the input is not changed."""
    if REPORT_HP not in hyperparameters.values:
        return hyperparameters, None
    report = json.loads(hyperparameters.values[REPORT_HP])
    config = hyperparameters.get_config()
    config["space"] = [s for s in config["space"] if s["config"].get("name") != REPORT_HP]
    config["values"] = {k: v for k, v in config["values"].items() if k != REPORT_HP}
    return type(hyperparameters).from_config(config), report


class TrialHeartbeat:
    """Tells the oracle that a trial makes progress: call `beat` from the training (e.g. per batch).

    At most one ``oracle.update_trial(trial_id, with_attempt(trial))`` (no
    metrics: only the contact is noted) is sent per ``min_interval_s``, from a
    background thread, so a slow or unreachable chief never stalls training.
    A trial whose training stops making progress stops beating, and the chief
    re-queues it after its ``worker_timeout``. Use as a context manager::

        with TrialHeartbeat(self.oracle, trial) as heartbeat:
            model.fit(..., callbacks=[keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda *_: heartbeat.beat())])

    Args:
        oracle: the tuner's oracle (a local oracle or Keras Tuner's gRPC client).
        trial: the running trial.
        min_interval_s: seconds between beats sent (default 10; keep it well
            below the chief's ``worker_timeout``).
    """

    def __init__(self, oracle, trial, min_interval_s: float = 10.0):
        self.min_interval_s = check_positive("min_interval_s", min_interval_s, float)
        self.oracle, self.trial = oracle, trial
        self.sent = 0
        self.errors: List[str] = []
        self._pending = threading.Event()
        self._closed = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def beat(self) -> None:
        """Marks progress; the next send happens within ``min_interval_s``."""
        self._pending.set()

    def _run(self) -> None:
        metrics = with_attempt(self.trial)
        while not self._closed.is_set():
            self._pending.wait(timeout=0.5)
            if not self._pending.is_set():
                continue
            self._pending.clear()
            try:
                self.oracle.update_trial(self.trial.trial_id, metrics)
                self.sent += 1
            except (OSError, RuntimeError) as err:  # chief unreachable (see ChiefUnreachableError): next beat retries
                self.errors.append(f"{type(err).__name__}: {err}")
            self._closed.wait(self.min_interval_s)

    def __enter__(self):
        self._closed.clear()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.trial.trial_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._closed.set()
        self._pending.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        return False
