"""Chief / worker fault matrix, end to end: `python -m search.run` processes on 127.0.0.1 (chief + 2 workers).

Each test starts real processes with Keras Tuner's environment (``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``), injects a fault from outside -- SIGSTOP of a child
process (a hang: alive, no progress), SIGKILL of a child or of the chief, flags that differ, a learning
rate that makes every child diverge -- and checks what the chief wrote and what every process printed.
Workers print ``tuner0: trial 03 (attempt 1) training in process 1234`` when a child starts training,
which is how the tests find the child to hang or kill.

These tests are slow by nature (each starts 3-4 TensorFlow processes plus their child processes on a
2-core machine, and a hang is only detected after --trial_timeout); each says why in its docstring.
"""

import contextlib
import json
import os
import re
import signal
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402
import pytest  # noqa: E402

from _cluster import Cluster, search_command  # noqa: E402

pytestmark = pytest.mark.xdist_group("processes")

# Tiny children: 1 block per cell, 4 filters, 64 training images, 1 epoch.
TINY = ["--epochs=1", "--num_cells=1", "--filters=4", "--num_blocks=1", "--max_train_examples=64",
        "--batch_size=32", "--controller_batch_size=2", "--directory=out", "--seed=3", "--verbose=1"]
TRAINING = re.compile(r"(tuner\d+): trial (\d+) \(attempt (\d+)\) training in process (\d+)")


class _SearchCluster(Cluster):
    """`python -m search.run` processes; `trainings` reads which child each worker started."""

    def trainings(self):
        """``[(tuner id, trial id, attempt, pid)]`` in the order the workers printed them."""
        found = []
        for tuner_id in self.runs:
            if tuner_id != "chief":
                found += [m.groups() for m in TRAINING.finditer(self.output(tuner_id))]
        return [(t, trial, int(a), int(p)) for t, trial, a, p in found]


@contextlib.contextmanager
def _cluster(cwd, flags):
    running = _SearchCluster(cwd, search_command(flags))
    try:
        yield running
    finally:
        running.kill_all()


def _project(cwd):
    project = cwd / "out" / "rl"
    state = json.loads((project / "oracle.json").read_text())
    trials = {}
    for name in os.listdir(project):
        if name.startswith("trial_"):
            t = json.loads((project / name / "trial.json").read_text())
            trials[t["trial_id"]] = t
    return state, trials


def _csv_rows(cwd):
    import csv

    with open(cwd / "out" / "rl" / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _assert_exit(cluster, tuner_id, code, timeout):
    got = cluster.wait(tuner_id, timeout)
    assert got == code, f"{tuner_id} exited with {got}, expected {code}:\n{cluster.all_output()}"


@pytest.mark.slow
def test_hung_child_is_killed_and_failed_crashed_child_rerun(tmp_path):
    """(b) a child that hangs past --trial_timeout is killed, re-run once, then FAILED with the reason;
    (c) a child killed by SIGKILL is reported as a crash and re-run in a fresh process. Over 60 s: the
    hang is detected only after --trial_timeout, twice, while three TensorFlow processes share 2 cores.
    20 s is several times a healthy tiny child's longest silence (its start-up, importing TensorFlow, has
    its own 300 s bound)."""
    flags = TINY + ["--max_trials=3", "--trial_timeout=20", "--worker_timeout=300", "--max_retries_per_trial=1",
                    "--trials_per_worker=1"]  # one child process per trial: a pid names one trial
    with _cluster(tmp_path, flags) as cluster:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            cluster.start(tuner_id)
        hung_tuner, hung, _, pid = cluster.wait_for("a child to train", lambda: cluster.trainings()[:1], 240)[0]
        os.kill(pid, signal.SIGSTOP)  # alive, but no progress
        stopped = [pid]

        def crash_target():
            return next(((t, trial, p) for t, trial, _, p in cluster.trainings() if trial != hung), None)
        _, crashed, crash_pid = cluster.wait_for("a second trial to train", crash_target, 240)
        os.kill(crash_pid, signal.SIGKILL)

        def hung_again():  # the re-run may land on either worker: find it by its new pid
            return next((p for _, trial, _, p in cluster.trainings() if trial == hung and p != pid), None)
        os.kill(cluster.wait_for("the hung trial's re-run", hung_again, 240), signal.SIGSTOP)
        for tuner_id in ("tuner0", "tuner1", "chief"):
            _assert_exit(cluster, tuner_id, 0, 300)
        stopped.append(hung_again())
    state, trials = _project(tmp_path)
    assert len(trials) == 3 and sorted(state["end_order"]) == sorted(trials)
    assert trials[hung]["status"] == "FAILED" and state["run_times"][hung] == 2
    assert "ChildHungError: The child made no progress for 20 s" in trials[hung]["message"]
    assert trials[crashed]["status"] == "COMPLETED" and state["run_times"][crashed] == 2
    assert all(t["status"] == "COMPLETED" for tid, t in trials.items() if tid != hung)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in stopped)
    crash_line = [ln for t in ("tuner0", "tuner1") for ln in cluster.output(t).splitlines()
                  if f"trial {crashed} (attempt 1) INVALID" in ln]
    assert crash_line and "ChildCrashedError" in crash_line[0] and "SIGKILL" in crash_line[0]
    reruns = {p for _, trial, _, p in cluster.trainings() if trial == crashed}
    assert len(reruns) == 2 and crash_pid in reruns  # the re-run had a fresh child process
    rows = {r["trial_id"]: r for r in _csv_rows(tmp_path)}  # the chief's live report
    assert set(rows) == set(trials) and rows[hung]["status"] == "FAILED"
    assert "no progress for 20 s" in rows[hung]["message"]
    assert "Traceback" not in cluster.all_output()


@pytest.mark.slow
def test_chief_killed_and_restarted_search_continues(tmp_path):
    """(d) the chief SIGKILLed mid-search and restarted with the same command: the workers wait and
    reconnect, nothing is lost and the controller state is intact. About a minute: 4 trials (the kill after
    the first 2 end, a controller update on each side) on 3 processes plus a chief restart (TensorFlow import
    and project reload)."""
    flags = TINY + ["--max_trials=4", "--trial_timeout=120", "--worker_timeout=300", "--chief_timeout=120"]
    with _cluster(tmp_path, flags) as cluster:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            cluster.start(tuner_id)
        cluster.wait_for("two trials to end", lambda: len(re.findall(r"\] trial \d+ ", cluster.output("chief"))) >= 2,
                         300)
        cluster.procs["chief"].send_signal(signal.SIGKILL)
        assert cluster.procs["chief"].wait(timeout=30) == -signal.SIGKILL
        time.sleep(3)  # the workers carry on, and wait for the chief when they need it
        cluster.start("chief")
        for tuner_id in ("tuner0", "tuner1", "chief"):
            _assert_exit(cluster, tuner_id, 0, 400)
        assert "Resuming:" in cluster.output("chief", 2)
    state, trials = _project(tmp_path)
    assert len(trials) == 4 and sorted(state["end_order"]) == sorted(trials)
    assert all(t["status"] == "COMPLETED" for t in trials.values())
    controller = state["nasnet_cell_search"]["controller"]
    assert controller["num_rewards"] == 4 + state["nasnet_cell_search"]["stats"]["duplicates_reused"]
    assert controller["num_updates"] == controller["num_rewards"] // 2
    assert sorted(r["trial_id"] for r in _csv_rows(tmp_path)) == sorted(trials)
    assert "Traceback" not in cluster.all_output()


def test_worker_without_chief_gives_up_with_a_clear_message(tmp_path):
    """(d) when the chief does not come back, a worker stops after --chief_timeout with one clear line."""
    with _cluster(tmp_path, TINY + ["--max_trials=2", "--chief_timeout=3"]) as cluster:
        cluster.start("tuner0")
        _assert_exit(cluster, "tuner0", 1, 120)
        out = cluster.output("tuner0")
    assert f"error: The chief at 127.0.0.1:{cluster.port} did not answer get_space for 3 s" in out
    assert "--chief_timeout" in out and "Traceback" not in out


@pytest.mark.slow
def test_all_children_failing_stops_everyone_and_mismatched_worker_is_refused(tmp_path):
    """(e) every child diverges: the chief and both workers exit non-zero with one clear message; (f) a
    worker whose flags differ from the chief's is refused, naming the flags. Over 60 s: 4 search processes
    and 2 child processes, each starting TensorFlow (~8 s of CPU each) on 2 cores."""
    flags = TINY + ["--max_trials=10", "--learning_rate=1e30", "--max_consecutive_failed_trials=2",
                    "--trial_timeout=120", "--worker_timeout=300"]
    with _cluster(tmp_path, flags) as cluster:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            cluster.start(tuner_id)
        cluster.start("tuner2", "--epochs=2", "--filters=8")
        _assert_exit(cluster, "tuner2", 1, 200)
        refused = cluster.output("tuner2")
        for tuner_id in ("tuner0", "tuner1", "chief"):
            _assert_exit(cluster, tuner_id, 1, 300)
        outputs = {t: cluster.output(t) for t in ("chief", "tuner0", "tuner1")}
    assert "differ from the chief's" in refused and "epochs: chief 1, this worker 2" in refused
    assert "filters: chief 4, this worker 8" in refused and "Traceback" not in refused
    for tuner_id, out in outputs.items():
        errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1, (tuner_id, out)
        assert "The search stopped: the last 2 trials all failed" in errors[0] and "loss became nan" in errors[0]
        assert "Traceback" not in out
    state, trials = _project(tmp_path)
    assert [trials[t]["status"] for t in state["end_order"]][-2:] == ["FAILED", "FAILED"]
