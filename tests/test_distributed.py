"""Distributed cell search: Keras Tuner's chief / worker mode with our oracles, and dead-worker re-queue.

The first tests drive the oracle's API as the chief would see gRPC calls
(trials pass through their protobuf form, as over the wire). The last ones
start a real chief and two workers as subprocesses on 127.0.0.1
(tests/_distributed_worker.py).
"""

import json
import os
import signal
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from keras_tuner.engine.trial import Trial  # noqa: E402

from nasnet_keras.search import fault_tolerance as ft  # noqa: E402
from nasnet_keras.search import space as sp  # noqa: E402
from _cluster import cluster  # noqa: E402
from nasnet_keras.search.oracles import NASNetRLOracle, RandomCellOracle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_distributed_worker.py")
SMALL = sp.SearchSpace(num_blocks=2)


class _Clock:
    """A manual clock for the oracle's worker contacts (seconds)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds


def _oracle(cls, tmp_path, name="p", clock=None, **kwargs):
    kwargs.setdefault("space", SMALL)
    oracle = cls(seed=5, **kwargs)
    oracle._set_project_dir(str(tmp_path), name)
    oracle.verbose = 0
    oracle.idle_poll_s = 0.0
    if clock is not None:
        oracle._now = clock
    return oracle


def _wire(trial):
    """The trial as the other side of Keras Tuner's gRPC sees it."""
    return Trial.from_proto(trial.to_proto())


def _finish(oracle, trial, value, status="COMPLETED"):
    """A worker's end of a trial: report the objective (tagged with the attempt), then end it."""
    oracle.update_trial(trial.trial_id, ft.with_attempt(trial, {"val_accuracy": value}))
    trial = _wire(trial)
    trial.status = status
    oracle.end_trial(trial)


# ------------------------------------------------------------------ oracle API, as the chief sees it
@pytest.mark.parametrize("cls", [NASNetRLOracle, RandomCellOracle])
def test_silent_worker_trial_goes_to_the_asking_worker(tmp_path, cls):
    clock = _Clock()
    oracle = _oracle(cls, tmp_path, clock=clock, max_trials=5, worker_timeout=10)
    lost = _wire(oracle.create_trial("tuner1"))
    clock.advance(9)
    other = _wire(oracle.create_trial("tuner0"))  # tuner1 not silent long enough: a new trial
    assert other.trial_id != lost.trial_id and ft.trial_attempt(other) == 1
    _finish(oracle, other, 0.2)
    clock.advance(2)
    again = _wire(oracle.create_trial("tuner0"))
    assert again.trial_id == lost.trial_id
    assert again.hyperparameters.values == lost.hyperparameters.values
    assert ft.trial_attempt(lost) == 1 and ft.trial_attempt(again) == 2
    assert [(e["trial_id"], e["attempt"], e["from_tuner"], e["to_tuner"], e["silent_s"])
            for e in oracle.requeue_log] == [(lost.trial_id, 2, "tuner1", "tuner0", 11.0)]
    assert oracle.ongoing_trials["tuner0"].trial_id == lost.trial_id and "tuner1" not in oracle.ongoing_trials
    assert "tuner1" not in oracle.tuner_ids

    # The "dead" worker's late reports are ignored (it was only slow: the timeout grows past its run) ...
    with pytest.warns(UserWarning, match="worker_timeout raised from 10 s to 16.5 s"):
        _finish(oracle, lost, 0.9)
    assert oracle.worker_timeout == pytest.approx(16.5)
    stored = oracle.trials[lost.trial_id]
    assert stored.status == "RUNNING" and not stored.metrics.exists("val_accuracy")
    assert oracle.end_order == [other.trial_id]
    # ... the new attempt's are kept.
    _finish(oracle, again, 0.4)
    assert stored.status == "COMPLETED" and stored.score == pytest.approx(0.4)
    assert "re-queued from tuner1 to tuner0 (attempt 2" in stored.message
    assert not stored.metrics.exists(ft.ATTEMPT_METRIC)
    assert oracle.end_order == [other.trial_id, lost.trial_id]
    if cls is NASNetRLOracle:
        assert oracle.controller.num_rewards == 2
        assert [b[2] for b in oracle.controller._batch] == pytest.approx([0.2, 0.4])
    # A second end of the same trial (a duplicate message) changes nothing.
    oracle.end_trial(_wire(again))
    assert oracle.end_order == [other.trial_id, lost.trial_id]
    saved = json.loads((tmp_path / "p" / "oracle.json").read_text())["fault_tolerance"]
    assert saved["attempts"] == {lost.trial_id: 2} and len(saved["requeue_log"]) == 1


def test_restarted_worker_gets_its_own_trial_and_heartbeats_keep_a_trial(tmp_path):
    clock = _Clock()
    oracle = _oracle(NASNetRLOracle, tmp_path, clock=clock, max_trials=5, worker_timeout=10)
    first = _wire(oracle.create_trial("tuner1"))
    # tuner1 restarts (same tuner id) before its trial was re-queued: it gets the same trial back.
    clock.advance(9)
    back = _wire(oracle.create_trial("tuner1"))
    assert back.trial_id == first.trial_id and ft.trial_attempt(back) == 1
    # Beats sent while the trial makes progress keep it from being re-queued ...
    with ft.TrialHeartbeat(oracle, back, min_interval_s=0.01) as beat:
        clock.advance(30)
        beat.beat()
        deadline = time.monotonic() + 30
        while beat.sent < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        other = _wire(oracle.create_trial("tuner0"))
        # ... and without progress (no `beat()` calls) nothing is sent, however long the trial runs.
        sent = beat.sent
        time.sleep(0.3)
        assert beat.sent == sent
    assert other.trial_id != first.trial_id and oracle.requeue_log == []
    _finish(oracle, back, 0.5)
    assert oracle.trials[first.trial_id].status == "COMPLETED" and oracle.trials[first.trial_id].message is None
    # Without heartbeats, the silent trial goes to the next worker that asks.
    clock.advance(11)
    assert _wire(oracle.create_trial("tuner1")).trial_id == other.trial_id
    with pytest.raises(ValueError, match="min_interval_s must be a finite number > 0"):
        ft.TrialHeartbeat(oracle, back, min_interval_s=0)
    for bad in (0, -1.0, float("inf"), "10"):
        with pytest.raises(ValueError, match="worker_timeout"):
            NASNetRLOracle(worker_timeout=bad)


def test_worker_waits_while_others_run_then_stops(tmp_path):
    clock = _Clock()
    oracle = _oracle(RandomCellOracle, tmp_path, clock=clock, max_trials=2, worker_timeout=10)
    a = _wire(oracle.create_trial("tuner0"))
    b = _wire(oracle.create_trial("tuner1"))
    _finish(oracle, a, 0.1)
    # No trial left to start, but tuner1 is still running: tuner0 waits (Keras Tuner would stop it).
    idle = oracle.create_trial("tuner0")
    assert idle.status == "IDLE" and {"tuner0", "tuner1"} <= oracle.tuner_ids
    clock.advance(11)  # tuner1 died silently: tuner0 takes its trial over
    took = _wire(oracle.create_trial("tuner0"))
    assert took.trial_id == b.trial_id and ft.trial_attempt(took) == 2
    _finish(oracle, took, 0.3)
    stop = oracle.create_trial("tuner0")
    assert stop.status == "STOPPED"
    assert sorted(oracle.end_order) == sorted([a.trial_id, b.trial_id])
    assert all(t.status == "COMPLETED" for t in oracle.trials.values())
    # The chief exits when no trial runs and no worker is left: tuner0 got STOPPED, tuner1 was dropped.
    assert oracle.ongoing_trials == {} and oracle.tuner_ids == set()


def test_silent_idle_worker_is_forgotten(tmp_path):
    clock = _Clock()
    oracle = _oracle(RandomCellOracle, tmp_path, clock=clock, max_trials=3, worker_timeout=10)
    _finish(oracle, _wire(oracle.create_trial("tuner1")), 0.1)  # then tuner1 dies between trials
    running = _wire(oracle.create_trial("tuner0"))
    clock.advance(9)
    assert oracle.tuner_ids == {"tuner0", "tuner1"}
    clock.advance(2)
    assert oracle.tuner_ids == {"tuner0"}  # tuner0 runs a trial: kept however long it is silent
    assert oracle.ongoing_trials["tuner0"].trial_id == running.trial_id


def test_too_many_failures_stop_every_worker(tmp_path, monkeypatch):
    """On a chief, the failure that reaches the limit is recorded, the lock is released (Keras Tuner's own
    `synchronized` leaves it held when end_trial raises, and `exit_chief` then blocks forever), and every
    worker gets STOPPED with the reason."""
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    oracle = _oracle(NASNetRLOracle, tmp_path, max_trials=10, max_consecutive_failed_trials=2, batch_size=5)
    a, b, c = (_wire(oracle.create_trial(f"tuner{i}")) for i in range(3))
    for t, why in ((a, "ChildTrainingFailed: loss became nan"), (b, "ChildHungError: no progress")):
        t.status = "FAILED"
        ft.attach_report(t, {"reason": why, "record": {"params": 7}})
    oracle.end_trial(a)
    oracle.end_trial(_wire(b))  # no exception: on a chief it would reach tuner1 as a raw gRPC error
    assert oracle.stop_reason.startswith("the last 2 trials all failed (max_consecutive_failed_trials=2)")
    assert f"trial {b.trial_id}: ChildHungError: no progress" in oracle.stop_reason
    saved = json.loads((tmp_path / "p" / "oracle.json").read_text())
    assert saved["end_order"] == [a.trial_id, b.trial_id] and list(saved["ongoing_trials"]) == ["tuner2"]
    on_disk = json.loads((tmp_path / "p" / f"trial_{b.trial_id}" / "trial.json").read_text())
    assert on_disk["status"] == "FAILED" and on_disk["message"] == "ChildHungError: no progress"
    assert ft.REPORT_HP not in on_disk["hyperparameters"]["values"]
    assert oracle.controller.num_rewards == 2
    # The lock is free for Keras Tuner's chief loop, which runs in another thread than the gRPC calls.
    from keras_tuner.src.distribute import oracle_chief

    done = []
    thread = threading.Thread(target=lambda: done.append(oracle_chief.exit_chief(oracle)))
    thread.start()
    thread.join(timeout=10)
    assert done == [False]  # answered (tuner2 still runs a trial), not blocked
    stopped = _wire(oracle.create_trial("tuner0"))
    assert stopped.status == "STOPPED"
    _, report = ft.pop_report(stopped.hyperparameters)
    assert report == {"stop_reason": oracle.stop_reason}
    _finish(oracle, c, 0.5)  # the last running trial still ends normally
    assert oracle.trials[c.trial_id].status == "COMPLETED" and oracle.ongoing_trials == {}
    assert oracle.create_trial("tuner2").status == "STOPPED"  # tuner2 asks for its next trial
    assert oracle.tuner_ids == set() and oracle_chief.exit_chief(oracle)  # the chief can exit
    # In one process (no chief), the limit still raises, as in Keras Tuner, and the lock is released.
    monkeypatch.delenv("KERASTUNER_ORACLE_IP")
    single = _oracle(RandomCellOracle, tmp_path, name="q", max_trials=10, max_consecutive_failed_trials=1)
    t = single.create_trial("tuner0")
    t.status = "FAILED"
    with pytest.raises(RuntimeError, match="the last 1 trials all failed"):
        single.end_trial(t)
    thread = threading.Thread(target=lambda: done.append(single.create_trial("other").status))
    thread.start()
    thread.join(timeout=10)
    assert done[-1] == "STOPPED"


def test_fault_tolerance_mixin_works_on_keras_tuners_random_search(tmp_path):
    """The mixin on Keras Tuner's own RandomSearchOracle: a dead worker's trial is not lost."""
    import keras_tuner

    class SafeRandomSearch(ft.FaultTolerantOracle, keras_tuner.oracles.RandomSearchOracle):
        pass

    hp = keras_tuner.HyperParameters()
    hp.Int("units", 1, 1000)
    clock = _Clock()
    oracle = SafeRandomSearch(objective=keras_tuner.Objective("score", "max"), max_trials=3, hyperparameters=hp,
                              seed=1, worker_timeout=10)
    oracle._set_project_dir(str(tmp_path), "kt")
    oracle._now, oracle.idle_poll_s = clock, 0.0
    lost = _wire(oracle.create_trial("tuner1"))
    clock.advance(11)  # tuner1 died
    again = _wire(oracle.create_trial("tuner0"))
    assert again.trial_id == lost.trial_id and again.hyperparameters.values == lost.hyperparameters.values
    oracle.update_trial(again.trial_id, ft.with_attempt(again, {"score": 1.0}))
    again.status = "COMPLETED"
    oracle.end_trial(again)
    assert oracle.trials[lost.trial_id].status == "COMPLETED" and oracle.trials[lost.trial_id].score == 1.0
    assert [e["from_tuner"] for e in oracle.requeue_log] == ["tuner1"]


def test_chief_restart_keeps_running_trials_and_attempts(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    clock = _Clock()
    kwargs = dict(clock=clock, max_trials=6, worker_timeout=10, batch_size=2)
    first = _oracle(NASNetRLOracle, tmp_path, **kwargs)
    t0 = _wire(first.create_trial("tuner0"))
    t1 = _wire(first.create_trial("tuner1"))
    clock.advance(11)
    first.update_trial(t1.trial_id, ft.with_attempt(t1))  # heartbeat: only tuner0 is silent
    t0b = _wire(first.create_trial("tuner2"))
    assert t0b.trial_id == t0.trial_id and ft.trial_attempt(t0b) == 2
    clock.advance(8)  # the chief process dies here; a new one reloads the project
    chief = _oracle(NASNetRLOracle, tmp_path, **kwargs)
    chief.reload()
    assert {k: t.trial_id for k, t in chief.ongoing_trials.items()} == {"tuner1": t1.trial_id,
                                                                      "tuner2": t0.trial_id}
    assert chief._retry_queue == [] and len(chief.requeue_log) == 1
    clock.advance(9)  # silence counts from the restart
    assert _wire(chief.create_trial("tuner3")).trial_id not in (t0.trial_id, t1.trial_id)
    _finish(chief, t0, 0.9)  # the dead tuner0's attempt: ignored
    assert chief.end_order == []
    _finish(chief, t1, 0.3)  # tuner1 survived the chief restart and reports normally
    _finish(chief, t0b, 0.6)
    assert chief.end_order == [t1.trial_id, t0.trial_id]
    clock.advance(11)  # tuner3 and its trial went silent after the restart: re-queued
    assert _wire(chief.create_trial("tuner1")).trial_id == chief.requeue_log[-1]["trial_id"]
    assert chief.trials[t0.trial_id].score == pytest.approx(0.6)
    assert chief.controller.num_updates == 1 and chief.controller.num_rewards == 2
    # A plain single-process resume keeps Keras Tuner's rule: interrupted trials go to the retry queue.
    t3 = chief.requeue_log[-1]["trial_id"]
    monkeypatch.delenv("KERASTUNER_ORACLE_IP")
    plain = _oracle(NASNetRLOracle, tmp_path, **kwargs)
    plain.reload()
    assert plain.ongoing_trials == {} and plain._retry_queue == [t3]
    again = _wire(plain.create_trial("tuner0"))
    assert again.trial_id == t3 and ft.trial_attempt(again) == 2


# ------------------------------------------------------------------ real chief + workers (subprocesses)
def _cluster(directory, args):
    """Chief / worker processes of tests/_distributed_worker.py (see tests/_cluster.py)."""
    return cluster(directory, [sys.executable, WORKER, "--directory", str(directory)] + [str(a) for a in args])


def _project(directory):
    state = json.loads((directory / "search" / "oracle.json").read_text())
    trials = {}
    for name in os.listdir(directory / "search"):
        if name.startswith("trial_"):
            t = json.loads((directory / "search" / name / "trial.json").read_text())
            trials[t["trial_id"]] = t
    runs = {}
    for tuner_id in ("tuner0", "tuner1"):
        path = directory / "search" / f"runs_{tuner_id}.log"
        runs[tuner_id] = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return state, trials, runs


def _assert_ok(cluster, tuner_id, code):
    assert code == 0, f"{tuner_id} exited with {code}:\n{cluster.output(tuner_id)[-4000:]}"


@pytest.mark.slow
def test_killed_worker_trial_is_requeued_and_finished(tmp_path):
    trials = 6
    args = ["--max-trials", trials, "--batch-size", 3, "--worker-timeout", 3, "--trial-seconds", 0.1]
    hang = tmp_path / "hang.json"
    with _cluster(tmp_path, args) as cluster:
        cluster.start("chief")
        victim = cluster.start("tuner1", "--hang-file", hang)
        deadline = time.monotonic() + 120
        while not hang.exists():
            assert time.monotonic() < deadline and victim.poll() is None, cluster.output("tuner1")[-3000:]
            time.sleep(0.1)
        killed = json.loads(hang.read_text())["trial_id"]
        victim.send_signal(signal.SIGKILL)  # mid-trial
        assert victim.wait(timeout=30) == -signal.SIGKILL
        cluster.start("tuner0")
        for tuner_id in ("tuner0", "chief"):
            _assert_ok(cluster, tuner_id, cluster.wait(tuner_id, timeout=150))
    state, by_id, runs = _project(tmp_path)
    assert len(by_id) == trials and all(t["status"] == "COMPLETED" for t in by_id.values())
    assert by_id[killed]["score"] is not None and "re-queued from tuner1 to tuner0" in by_id[killed]["message"]
    assert runs["tuner1"] == []
    assert sorted(tid for tid, _ in runs["tuner0"]) == sorted(by_id)  # nothing lost, nothing run twice
    assert [killed, "2"] in runs["tuner0"]
    log = state["fault_tolerance"]["requeue_log"]
    assert [(e["trial_id"], e["from_tuner"], e["to_tuner"], e["attempt"]) for e in log] == \
        [(killed, "tuner1", "tuner0", 2)]
    assert log[0]["silent_s"] > 3
    assert state["nasnet_cell_search"]["controller"]["num_updates"] == trials // 3
    assert "re-queued" in cluster.output("chief")
