"""The gRPC link of Keras Tuner's chief / worker mode: `ChiefClient` (worker side) and `serve_oracle` (chief side).

`serve_oracle` runs Keras Tuner's own servicer, and returns within a second
of the search being over (Keras Tuner's loop checks only every 20 s).

`ChiefClient` is a worker's connection to the chief that waits out chief restarts and fails clearly.

Keras Tuner's ``OracleClient`` waits up to an hour for a chief that is gone,
and a call in flight when the chief dies surfaces as a raw
``grpc._channel._InactiveRpcError`` traceback. `ChiefClient` is a drop-in
replacement (`use_chief_client`): every call is retried while the chief is
unreachable (it may be restarting with the same command; its project
resumes), for at most ``timeout_s`` seconds in all, and then raises
`ChiefUnreachableError` with the address and what to do. Any other error the
chief answers becomes a `ChiefError` with the chief's own message.

Retried calls are safe: a repeated ``create_trial`` returns the worker's own
running trial, and a repeated ``end_trial`` is ignored by a
`FaultTolerantOracle` (the trial is no longer running).

A STOPPED trial that carries a reason (`FaultTolerantOracle.stop_reason`,
e.g. too many failed trials) leaves it in `ChiefClient.stop_reason`.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import grpc
from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine import trial as trial_module
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.distribute.oracle_client import OracleClient

from nasnet_keras.search.checks import check_positive
from nasnet_keras.search.trial_wire import pop_report
from nasnet_keras.search.roles import chief_address

__all__ = ["ChiefClient", "ChiefError", "ChiefUnreachableError", "WorkersGoneError", "serve_oracle",
           "use_chief_client"]

_RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class ChiefError(RuntimeError):
    """The chief answered a call with an error (its message is included)."""


class ChiefUnreachableError(ChiefError):
    """The chief did not answer within the client's ``timeout_s``."""


class WorkersGoneError(ChiefError):
    """The chief stopped serving: every worker it was told to wait for is gone, and the search is not over."""


class ChiefClient(OracleClient):
    """Keras Tuner's ``OracleClient`` with bounded retries and clear errors (see the module docstring).

    Args:
        oracle: the worker's local oracle (for ``objective``, ``max_trials``).
        timeout_s: seconds a call may wait for an unreachable chief in all
            (default 600).
        retry_interval_s: pause between attempts after an error (default 1).
    """

    def __init__(self, oracle, timeout_s: float = 600.0, retry_interval_s: float = 1.0):
        super().__init__(oracle)
        self.timeout_s = check_positive("timeout_s", timeout_s, float)
        self.retry_interval_s = check_positive("retry_interval_s", retry_interval_s, float)
        self.stop_reason: Optional[str] = None
        self._service = protos.get_service()

    def _call(self, name: str, method: Callable, request):
        deadline = time.monotonic() + self.timeout_s
        warned = False
        while True:
            remaining = deadline - time.monotonic()
            try:
                return method(request, wait_for_ready=True, timeout=max(remaining, 0.1))
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else None
                if code not in _RETRIED:
                    details = err.details() if hasattr(err, "details") else str(err)
                    raise ChiefError(f"The chief at {chief_address()} answered {name} with an error: "
                                     f"{details}") from None
                if time.monotonic() + self.retry_interval_s >= deadline:
                    raise ChiefUnreachableError(
                        f"The chief at {chief_address()} did not answer {name} for {self.timeout_s:g} s. Start "
                        "(or restart) the chief with the same command -- its project resumes -- and then this "
                        "worker with its own command; raise --chief_timeout to wait longer.") from None
                if not warned:
                    print(f"The chief at {chief_address()} is unreachable ({name}); retrying for up to "
                          f"{self.timeout_s:g} s.", flush=True)
                    warned = True
                time.sleep(self.retry_interval_s)

    def get_space(self):
        response = self._call("get_space", self.stub.GetSpace, self._service.GetSpaceRequest())
        return hp_module.HyperParameters.from_proto(response.hyperparameters)

    def update_space(self, hyperparameters):
        if self.should_report:
            self._call("update_space", self.stub.UpdateSpace,
                       self._service.UpdateSpaceRequest(hyperparameters=hyperparameters.to_proto()))

    def create_trial(self, tuner_id):
        response = self._call("create_trial", self.stub.CreateTrial,
                              self._service.CreateTrialRequest(tuner_id=tuner_id))
        trial = trial_module.Trial.from_proto(response.trial)
        if trial.status == trial_module.TrialStatus.STOPPED:
            trial.hyperparameters, report = pop_report(trial.hyperparameters)
            if report and report.get("stop_reason"):
                self.stop_reason = trial.message = report["stop_reason"]
        return trial

    def update_trial(self, trial_id, metrics, step=0):
        if not self.should_report:
            return trial_module.Trial(self.get_space(), status="RUNNING")
        response = self._call("update_trial", self.stub.UpdateTrial,
                              self._service.UpdateTrialRequest(trial_id=trial_id, metrics=metrics, step=step))
        return trial_module.Trial.from_proto(response.trial)

    def end_trial(self, trial):
        if self.should_report:
            self._call("end_trial", self.stub.EndTrial, self._service.EndTrialRequest(trial=trial.to_proto()))

    def get_trial(self, trial_id):
        response = self._call("get_trial", self.stub.GetTrial, self._service.GetTrialRequest(trial_id=trial_id))
        return trial_module.Trial.from_proto(response.trial)

    def get_best_trials(self, num_trials=1):
        response = self._call("get_best_trials", self.stub.GetBestTrials,
                              self._service.GetBestTrialsRequest(num_trials=num_trials))
        return [trial_module.Trial.from_proto(t) for t in response.trials]


def use_chief_client(tuner, timeout_s: float = 600.0) -> None:
    """On a worker, replaces the tuner's Keras Tuner ``OracleClient`` by a `ChiefClient` (else does nothing)."""
    if isinstance(tuner.oracle, OracleClient) and not isinstance(tuner.oracle, ChiefClient):
        tuner.oracle = ChiefClient(tuner.oracle._oracle, timeout_s=timeout_s)


def serve_oracle(oracle, poll_s: float = 1.0, abandon: Optional[Callable[[], bool]] = None) -> None:
    """Serves ``oracle`` to the workers (Keras Tuner's servicer) until the search is over.

    Over: a worker was told STOPPED and no trial runs and no worker is left
    (Keras Tuner's ``exit_chief``), checked every ``poll_s`` seconds.

    Raises:
        WorkersGoneError: ``abandon()`` returned True first (e.g. every local
            worker process exited).
    """
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            if abandon is not None and abandon():
                raise WorkersGoneError("Every worker exited before the search was over; the project is saved and "
                                       "the same command resumes it.")
            time.sleep(poll_s)
    finally:
        server.stop(grace=5)
