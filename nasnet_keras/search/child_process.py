"""`ChildProcess`: trains children in a recycled subprocess, with a no-progress timeout and crash detection.

Why a subprocess: TensorFlow keeps every traced training graph alive, so a
process that trains many different models grows by tens of MB per model
(keras-team/keras#17458, TF 2.16 - 2.21 at least). The subprocess loads the
dataset once, trains ``trials_per_child`` children and is then replaced, so
the search process stays flat.

Why not `concurrent.futures.ProcessPoolExecutor` (``max_tasks_per_child``
does the recycling): it has no channel for progress while a task runs, and
cannot kill one hung task without reaching into private attributes. Here a
small JSON-lines protocol over the child's stdin / stdout does all three:

* parent -> child: one configuration line (`load_dataset` and `ChildTrainer`
  arguments, strategy name), then one request per child
  ``{"genotype", "seed", "keep_best"}``;
* child -> parent: ``{"event": "ready"}``, then per request any number of
  ``{"event": "progress", "phase", "step"}`` (from `ChildTrainer`'s
  ``on_progress``, i.e. from training itself) and one
  ``{"event": "result", "status": "ok" | "failed" | "error", ...}``.

Faults, each raised as an error that Keras Tuner turns into an INVALID trial
(re-run ``max_retries_per_trial`` times, then FAILED with the reason):

* `ChildHungError`: no message for ``trial_timeout`` seconds (a child stuck in
  a collective, a data loader, a deadlock): the child is killed (SIGKILL).
  The timeout covers the longest silent stretch of a healthy child, which is
  graph tracing before the first step. A fresh process's start-up (importing
  TensorFlow, loading the dataset) is not training: it may take up to
  ``max(trial_timeout, STARTUP_TIMEOUT_S)`` seconds.
* `ChildCrashedError`: the child exited (a segfault, the out-of-memory killer,
  an ``os._exit``) with the signal or exit code and its log's last lines.

The next request starts a fresh child. Everything the child prints goes to
the log file named by the caller (``worker_<tuner id>.log`` in the project);
a child whose parent died exits by itself.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from typing import Any, Callable, Dict, List, Optional

import nasnet_keras

__all__ = ["ISOLATIONS", "STARTUP_TIMEOUT_S", "ChildCrashedError", "ChildHungError", "ChildProcess",
           "ChildProcessFault", "choose_isolation", "limit_parent_gpu_memory"]

#: Where children train: a recycled subprocess, or the search process itself.
ISOLATIONS = ("process", "none")

#: Seconds a fresh child process may take to start (imports, dataset) when ``trial_timeout`` is shorter.
STARTUP_TIMEOUT_S = 300.0

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nasnet_keras.__file__)))

# What the child runs. Keras imports matplotlib.pyplot at start-up whenever matplotlib is installed (~0.8 s of
# CPU, measured 5.8 -> 5.05 s for the child's imports); a child only trains and never draws, so matplotlib is
# hidden from it (Keras treats it as not installed) before anything imports Keras.
_CHILD_COMMAND = ("import sys; sys.modules['matplotlib'] = None; "
                  "from nasnet_keras.search.child_process import child_main; child_main()")


class ChildProcessFault(RuntimeError):
    """The child-training subprocess hung or died; the trial may be re-run."""


class ChildHungError(ChildProcessFault):
    """The child made no progress for ``trial_timeout`` seconds and was killed."""


class ChildCrashedError(ChildProcessFault):
    """The child process exited in the middle of a request (crash, out-of-memory kill, ...)."""


def describe_exit(code: Optional[int]) -> str:
    """``"killed by SIGKILL"`` / ``"exited with code 3"`` for a `subprocess` return code."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (also what the kernel's out-of-memory killer sends)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


class ChildProcess:
    """A recycled subprocess that trains children (see the module docstring).

    Args:
        config: ``{"data": load_dataset kwargs, "trainer": ChildTrainer
            kwargs, "distribution": strategy name}``.
        trials_per_child: children trained before the process is replaced.
        log_path: file that receives everything the child prints.
        trial_timeout: seconds without progress before the child is killed
            (`ChildHungError`); ``None`` waits forever. A fresh process's
            start-up may take ``max(trial_timeout, STARTUP_TIMEOUT_S)``.
    """

    def __init__(self, config: Dict[str, Any], trials_per_child: int, log_path: str,
                 trial_timeout: Optional[float] = None):
        self.config = config
        self.trials_per_child = int(trials_per_child)
        self.log_path = log_path
        self.trial_timeout = trial_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self._trials = 0
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()

    @property
    def pid(self) -> Optional[int]:
        """Process id of the running child, or ``None``."""
        return None if self.proc is None else self.proc.pid

    # ------------------------------------------------------------ lifecycle
    def _start(self) -> None:
        self.close()
        env = dict(os.environ)
        # The child imports this package from where this process found it.
        env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                               if p and p != _PACKAGE_ROOT])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # oneDNN CPU kernels: ~1.8x faster conv / BatchNorm training steps on the quick child (off by default
        # on AVX2 CPUs; results differ from Eigen's at float round-off). Set it to 0 to opt out.
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", _CHILD_COMMAND],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                         text=True, bufsize=1)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self._lines), daemon=True,
                         name=f"child-{self.proc.pid}-reader").start()
        self._trials = 0
        self.starts += 1
        self._send(self.config)
        startup = None if self.trial_timeout is None else max(self.trial_timeout, STARTUP_TIMEOUT_S)
        reply = self._next_message("start-up", "loading the data", timeout=startup)
        if reply.get("status") == "error":
            self.close()
            raise RuntimeError(f"The child-training process could not start: {reply.get('reason')}\n"
                               f"{reply.get('traceback', '')}")

    @staticmethod
    def _read(stream, lines: "queue.Queue[Optional[str]]") -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _send(self, message: Dict[str, Any]) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child is gone: `_next_message` reports how it ended

    def _next_message(self, phase: str, step: Any, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The child's next message (waiting up to ``timeout``, default ``trial_timeout``); raises
        `ChildHungError` / `ChildCrashedError` on a fault."""
        timeout = self.trial_timeout if timeout is None else timeout
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pid = self.pid
            self.kill()
            raise ChildHungError(
                f"The child made no progress for {timeout:g} s (last progress: {phase}, {step}); its "
                f"process {pid} was killed. If healthy children are this slow (e.g. graph tracing of a large "
                f"child), raise --trial_timeout. Log: {self.log_path}") from None
        if line is None:
            pid = self.pid
            code = self.proc.wait()
            self.proc = None
            raise ChildCrashedError(f"The child-training process {pid} {describe_exit(code)} (last progress: "
                                    f"{phase}, {step}). Last lines of {self.log_path}:\n{self._log_tail()}")
        return json.loads(line)

    def _log_tail(self, lines: int = 12) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as err:
            return f"(log unreadable: {err})"

    def train(self, request: Dict[str, Any], on_progress: Optional[Callable[[str, int], None]] = None
              ) -> Dict[str, Any]:
        """Trains one child; returns its metrics (`ChildTrainer.train`'s, plus ``time_process_start``:
        seconds spent starting a fresh process for it, 0 when an old one served).

        Raises:
            ChildTrainingFailed: the child diverged or is oversized (FAILED, no retry).
            ChildHungError, ChildCrashedError: the process hung or died (a fresh one serves the next request).
            RuntimeError: the child raised an unexpected error (its traceback is in the message).
        """
        from nasnet_keras.search.child import ChildTrainingFailed

        started = time.perf_counter()
        fresh = self.proc is None or self.proc.poll() is not None or self._trials >= self.trials_per_child
        if fresh:
            self._start()
        start_seconds = time.perf_counter() - started if fresh else 0.0  # process start, imports, data loading
        self._trials += 1
        self._send(request)
        phase, step = "start", 0
        while True:
            message = self._next_message(phase, f"step {step}")
            if message.get("event") == "progress":
                phase, step = message["phase"], message["step"]
                if on_progress is not None:
                    on_progress(phase, step)
                continue
            status = message.get("status")
            if status == "ok":
                return dict(message["metrics"], time_process_start=start_seconds)
            if status == "failed":
                raise ChildTrainingFailed(message["reason"], message.get("record"))
            raise RuntimeError(f"Child training raised {message.get('reason')}\n{message.get('traceback', '')}")

    def kill(self) -> None:
        """Kills the child at once (SIGKILL)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self, timeout: float = 60.0) -> None:
        """Asks the child to exit (end of input); kills it after ``timeout`` seconds."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.proc = None


def choose_isolation(isolation: Optional[str], blockers: List[str]) -> str:
    """``"process"`` or ``"none"``: ``isolation`` checked, or (``None``) chosen; ``blockers`` say why a child
    process cannot be used (e.g. "build_child is overridden": the child process runs no subclass code).

    Raises:
        ValueError: an unknown name, or ``"process"`` while something blocks it.
    """
    if isolation is None:
        return "none" if blockers else "process"
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)} or None; got {isolation!r}.")
    if isolation == "process" and blockers:
        raise ValueError("isolation='process' cannot be used because " + "; ".join(blockers) +
                         ". Use isolation='none'.")
    return isolation


def limit_parent_gpu_memory() -> None:
    """Lets the search process grab GPU memory only as needed, so the child process gets the rest."""
    import tensorflow as tf

    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # TensorFlow already initialised the GPUs in this process
        warnings.warn("TensorFlow was initialised on the GPU before CellSearchTuner(isolation='process'), so "
                      "this process may hold GPU memory the child process needs. Create the tuner before "
                      "running TensorFlow ops, or use isolation='none'.", stacklevel=3)


# ---------------------------------------------------------------------- the child side
def _exit_with_parent() -> None:
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def child_main() -> None:
    """The child's loop (run by `ChildProcess` in a fresh interpreter): see the module docstring."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints (TensorFlow, Keras) go to the log, not the protocol
    sys.stdout = sys.stderr
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    lock = threading.Lock()

    def send(message):
        with lock:
            out.write(json.dumps(message) + "\n")
            out.flush()

    try:
        from nasnet_keras import genotypes as gt
        from nasnet_keras.search.child import ChildTrainer, ChildTrainingFailed, resolve_distribution_strategy
        from nasnet_keras.search.data import load_dataset

        config = json.loads(sys.stdin.readline())
        data = load_dataset(**config["data"])
        trainer = ChildTrainer(data, strategy=resolve_distribution_strategy(config["distribution"]),
                               **config["trainer"])
    except Exception as err:  # noqa: BLE001 - every start-up error is reported to the parent, then we exit
        send({"event": "result", "status": "error", "reason": f"{type(err).__name__}: {err}",
              "traceback": traceback.format_exc()})
        return
    send({"event": "ready", "pid": os.getpid()})

    def progress(phase, step):
        send({"event": "progress", "phase": phase, "step": int(step)})

    for line in sys.stdin:
        request = json.loads(line)
        try:
            metrics = trainer.train(gt.Genotype.from_dict(request["genotype"]), seed=request.get("seed"),
                                    keep_best=request.get("keep_best"), on_progress=progress)
            send({"event": "result", "status": "ok", "metrics": metrics})
        except ChildTrainingFailed as err:
            send({"event": "result", "status": "failed", "reason": str(err), "record": err.record})
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it for the trial
            send({"event": "result", "status": "error", "reason": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc()})


