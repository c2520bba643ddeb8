"""Keras Tuner chief / worker processes on 127.0.0.1 for the multi-process tests.

`Cluster(cwd, command)` starts ``command`` (a list: the program and its arguments) once per role with
Keras Tuner's environment (``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP`` = 127.0.0.1,
``KERASTUNER_ORACLE_PORT`` = a free port), each in its own process group with its output in
``cwd/<tuner_id>.<run>.out``; `cluster(...)` kills whatever is left when the block ends.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from _cli import subprocess_env
from nasnet_keras.search.local_workers import free_port


class Cluster:
    """Processes sharing one chief address."""

    def __init__(self, cwd, command):
        self.cwd, self.command, self.port = cwd, [str(c) for c in command], free_port()
        self.procs, self.runs = {}, {}

    def start(self, tuner_id, *extra):
        """Starts (or restarts) ``tuner_id`` ("chief", "tuner0", ...) with ``extra`` arguments appended."""
        env = dict(subprocess_env(), KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(self.port), CUDA_VISIBLE_DEVICES="",
                   no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
        run = self.runs[tuner_id] = self.runs.get(tuner_id, 0) + 1
        with open(os.path.join(self.cwd, f"{tuner_id}.{run}.out"), "w") as out:
            self.procs[tuner_id] = subprocess.Popen(self.command + [str(e) for e in extra], cwd=self.cwd, env=env,
                                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self.procs[tuner_id]

    def output(self, tuner_id, run=None):
        """What the latest (or the given) run of ``tuner_id`` printed."""
        run = run or self.runs[tuner_id]
        with open(os.path.join(self.cwd, f"{tuner_id}.{run}.out"), errors="replace") as f:
            return f.read()

    def all_output(self):
        return "\n".join(f"--- {t}.{r}\n{self.output(t, r)[-3000:]}" for t in self.runs
                         for r in range(1, self.runs[t] + 1))

    def wait(self, tuner_id, timeout):
        """The exit code of ``tuner_id``; fails the test with every process's output after ``timeout`` s."""
        try:
            return self.procs[tuner_id].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{tuner_id} did not finish within {timeout} s\n{self.all_output()}")

    def wait_for(self, what, predicate, timeout):
        """The first true value of ``predicate()``, polled every 0.2 s; fails the test after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}\n{self.all_output()}")

    def kill_all(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@contextlib.contextmanager
def cluster(cwd, command):
    """A `Cluster` whose processes are all killed when the block ends."""
    running = Cluster(cwd, command)
    try:
        yield running
    finally:
        running.kill_all()


def search_command(flags):
    """``python -m search.run`` with ``flags``."""
    return [sys.executable, "-m", "search.run"] + list(flags)
