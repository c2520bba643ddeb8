"""`LocalWorkers`: train several children at once on one machine, as Keras Tuner's chief / worker mode.

A child network of the quick search keeps about 1.2 of 2 CPU cores busy (graph
execution of thousands of small ops), so one child at a time leaves the
machine partly idle. `LocalWorkers` starts N worker processes of the same
command on 127.0.0.1 next to this process, which becomes the chief: the same
fault-tolerant path as a multi-machine search (`FaultTolerantOracle`,
`ChiefClient`).

Each worker's output goes to ``<log_dir>/<project>_<tuner id>.log``; a worker
exits when this process dies (so a re-run of the same command does not meet
old workers), and `all_exited` lets the chief stop serving when every worker
is gone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

__all__ = ["LocalWorkers", "PARENT_ENV", "exit_with_parent", "free_port"]

#: Environment variable naming the chief's process id in a local worker (see `exit_with_parent`).
PARENT_ENV = "NASNET_SEARCH_PARENT_PID"
_ROLE_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_with_parent() -> None:
    """In a local worker: a daemon thread ends this process when the chief that started it is gone."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != int(parent):
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


class LocalWorkers:
    """Context manager: this process becomes the chief (Keras Tuner's environment) and `start` runs N local
    worker processes of ``argv`` (module args) on 127.0.0.1.

    Args:
        argv: the command's arguments after ``python -m <module>`` (the same
            flags as this process's; the caller drops chief-only ones).
        num_workers: how many workers (children trained at once).
        log_dir: where each worker's output goes.
        project: the project name (prefix of the log files).
        module: the module the workers run (default ``search.run``).
    """

    def __init__(self, argv: Sequence[str], num_workers: int, log_dir: str, project: str,
                 module: str = "search.run"):
        self.argv, self.num_workers, self.log_dir, self.project, self.module = \
            list(argv), int(num_workers), log_dir, project, module
        self.procs: Dict[str, subprocess.Popen] = {}
        self._saved_env: Dict[str, Optional[str]] = {}

    def log_path(self, tuner_id: str) -> str:
        """The log file of worker ``tuner_id``."""
        return os.path.join(self.log_dir, f"{self.project}_{tuner_id}.log")

    def __enter__(self) -> "LocalWorkers":
        port = str(free_port())
        self._saved_env = {k: os.environ.get(k) for k in _ROLE_ENV}
        os.environ.update(KERASTUNER_TUNER_ID="chief", KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=port)
        return self

    def start(self) -> None:
        """Starts the workers (call it once the chief's tuner is built, so bad flags fail first)."""
        os.makedirs(self.log_dir, exist_ok=True)
        for i in range(self.num_workers):
            tuner_id = f"tuner{i}"
            env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, **{PARENT_ENV: str(os.getpid())})
            # TensorFlow's thread pools stay at their defaults: with oneDNN (child_process) and one intra-op
            # thread, TF 2.21 corrupts its heap on these children (measured: "corrupted size vs. prev_size").
            with open(self.log_path(tuner_id), "w") as log:
                self.procs[tuner_id] = subprocess.Popen([sys.executable, "-m", self.module] + self.argv, env=env,
                                                        stdout=log, stderr=subprocess.STDOUT,
                                                        stdin=subprocess.DEVNULL)

    def all_exited(self) -> bool:
        """True when no worker process is running any more."""
        return all(p.poll() is not None for p in self.procs.values())

    def failures(self) -> List[str]:
        """``"tuner0 exited with code 1: <last line>"`` for each worker that ended with an error."""
        out = []
        for tuner_id, proc in self.procs.items():
            if proc.poll() not in (None, 0):
                try:
                    with open(self.log_path(tuner_id), errors="replace") as f:
                        lines = [ln.strip() for ln in f if ln.strip()]
                except OSError as err:
                    lines = [f"(log unreadable: {err})"]
                errors = [ln for ln in lines if ln.startswith("error: ")]
                out.append(f"{tuner_id} exited with code {proc.returncode}: "
                           f"{(errors or lines or ['(no output)'])[-1]} (log: {self.log_path(tuner_id)})")
        return out

    def __exit__(self, exc_type, exc, tb) -> None:
        # After a clean search they end on their own (the chief said STOPPED); after an error, at once.
        deadline = time.monotonic() + (30.0 if exc_type is None else 0.0)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
