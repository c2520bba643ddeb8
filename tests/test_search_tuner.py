"""Tests for nasnet_keras.search.tuner (child training) and nasnet_keras.search.progress (reports)."""

import csv
import dataclasses
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from nasnet_keras import NASNet, model_cost  # noqa: E402
from nasnet_keras.genotypes import Genotype  # noqa: E402
from nasnet_keras.search import progress, report_writer, reports  # noqa: E402
from nasnet_keras.search.data import load_dataset  # noqa: E402
from nasnet_keras.search.oracles import NASNetRLOracle, RandomCellOracle  # noqa: E402
from nasnet_keras.search.space import SearchSpace  # noqa: E402
from nasnet_keras.search.child import strategy_kind  # noqa: E402
from nasnet_keras.search.tuner import (CellSearchTuner, ChildTrainingFailed,  # noqa: E402
                                       TooManyFailedTrialsError, resolve_distribution_strategy)

# A tiny space and child: 1 block per cell, 4 cheap ops, N = 1, F = 4, 64 training images.
TINY = SearchSpace(num_blocks=1, ops=("identity", "conv_1x1", "max_pool_3x3", "sep_conv_3x3"))
CHILD = dict(epochs=1, num_cells=1, filters=4, learning_rate=0.05)
DATA_OPTIONS = dict(batch_size=32, max_train_examples=64, seed=0)


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("digits", **DATA_OPTIONS)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tuner_trains_child_and_records_reward_params_mult_adds(tmp_path, tiny_data):
    oracle = RandomCellOracle(max_trials=2, space=TINY, seed=3)
    tuner = CellSearchTuner(oracle, tiny_data, directory=str(tmp_path), project_name="p", seed=0, verbose=0,
                            **CHILD)
    assert tuner.isolation == "none"  # a SearchData object trains in this process
    tuner.search()

    trials = [oracle.trials[t] for t in oracle.start_order]
    assert [t.status for t in trials] == ["COMPLETED", "COMPLETED"]
    for t in trials:
        acc = t.metrics.get_last_value("val_accuracy")
        # The reward is a fraction of the 297 reward images classified right, and it is the trial's score.
        assert acc * tiny_data.num_val == pytest.approx(round(acc * tiny_data.num_val), abs=1e-3)
        assert t.score == acc
        # params / mult-adds are those of the child the zoo's builder makes for this genotype.
        child = NASNet(tuner.genotype_of(t), num_cells=1, filters=4, stem="cifar", input_shape=(32, 32, 3),
                       classes=10)
        cost = model_cost(child)
        assert t.metrics.get_last_value("params") == cost.params
        assert t.metrics.get_last_value("mult_adds") == cost.mult_adds > 0
        assert t.metrics.get_last_value("seconds") > 0

    project = tmp_path / "p"
    rows = _rows(project / "trials.csv")
    assert tuple(rows[0].keys()) == reports.CSV_COLUMNS
    assert [r["trial_id"] for r in rows] == list(oracle.end_order)  # one row appended per ended trial
    assert [float(r["reward"]) for r in rows] == pytest.approx([t.score for t in trials])
    assert [Genotype.from_json(r["genotype"]) for r in rows] == [tuner.genotype_of(t) for t in trials]
    best = max(trials, key=lambda t: t.score)
    saved = Genotype.from_json((project / "best_genotype.json").read_text())
    assert (saved.normal, saved.reduction) == (tuner.genotype_of(best).normal, tuner.genotype_of(best).reduction)
    assert (project / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((project / "child_config.json").read_text())["epochs"] == 1
    # Only the best child's weights are kept, and they reproduce its reward.
    assert not list(project.glob("trial_*/*.h5")) and not list(project.glob("trial_*/checkpoint*"))
    model = tuner.get_best_models(1)[0]
    accuracy = model.evaluate(tiny_data.validation, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(best.score, abs=1e-6)
    other = next(t for t in trials if t is not best)
    with pytest.raises(ValueError, match="only the best child's weights"):
        tuner.load_model(other)


class NaNEveryOtherChild(CellSearchTuner):
    """Every second child gets NaN classifier weights, so its loss is NaN from the first batch."""

    built = 0

    def build_child(self, genotype):
        model = super().build_child(genotype)
        type(self).built += 1
        if self.built % 2 == 0:
            kernel = model.get_layer("predictions").kernel
            kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
        return model


def test_nan_child_is_failed_with_reason_and_search_goes_on(tmp_path, tiny_data):
    NaNEveryOtherChild.built = 0
    oracle = NASNetRLOracle(max_trials=3, space=TINY, seed=2, batch_size=2)
    tuner = NaNEveryOtherChild(oracle, tiny_data, directory=str(tmp_path), project_name="p", verbose=0, **CHILD)
    tuner.search()
    trials = [oracle.trials[t] for t in oracle.start_order]
    assert [t.status for t in trials] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert "loss became nan" in trials[1].message and "ChildTrainingFailed" in trials[1].message
    rows = _rows(tmp_path / "p" / "trials.csv")
    assert [r["status"] for r in rows] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert rows[1]["reward"] == "" and "loss became nan at epoch 1, batch 1" in rows[1]["message"]
    assert int(rows[1]["params"]) > 0  # measured before training diverged
    assert oracle.controller.num_rewards == 3  # failed children still give the controller a reward


def test_all_children_failing_stops_with_clear_error(tmp_path, tiny_data):
    nan_data = dataclasses.replace(tiny_data, train=tiny_data.train.map(lambda x, y: (x * np.nan, y)))
    oracle = RandomCellOracle(max_trials=10, space=TINY, seed=1, max_consecutive_failed_trials=2)
    tuner = CellSearchTuner(oracle, nan_data, directory=str(tmp_path), project_name="p", verbose=0, **CHILD)
    with pytest.raises(TooManyFailedTrialsError) as info:
        tuner.search()
    message = str(info.value)
    assert "the last 2 trials all failed (max_consecutive_failed_trials=2)" in message
    assert "loss became nan" in message and "loss became nan" in info.value.reason
    rows = _rows(tmp_path / "p" / "trials.csv")
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]


def test_resume_with_different_child_setup_is_refused_and_keeps_files(tmp_path, tiny_data):
    kwargs = dict(directory=str(tmp_path), project_name="p", verbose=0)
    CellSearchTuner(RandomCellOracle(max_trials=1, space=TINY), tiny_data, **CHILD, **kwargs)
    before = sorted(os.listdir(tmp_path / "p"))
    with pytest.raises(ValueError, match=r"different child-training setup \(epochs: saved 1, given 3\).*"
                                         r"Nothing was deleted"):
        CellSearchTuner(RandomCellOracle(max_trials=1, space=TINY), tiny_data, **dict(CHILD, epochs=3), **kwargs)
    assert sorted(os.listdir(tmp_path / "p")) == before
    # The same setup resumes; overwrite=True starts over with the new one.
    CellSearchTuner(RandomCellOracle(max_trials=1, space=TINY), tiny_data, **CHILD, **kwargs)
    CellSearchTuner(RandomCellOracle(max_trials=1, space=TINY), tiny_data, overwrite=True, **dict(CHILD, epochs=3),
                    **kwargs)


def test_bad_arguments_are_rejected(tmp_path, tiny_data):
    oracle = RandomCellOracle(max_trials=1, space=TINY)
    common = dict(directory=str(tmp_path), project_name="p")
    with pytest.raises(ValueError, match="epochs must be an int > 0"):
        CellSearchTuner(oracle, tiny_data, epochs=0, **common)
    with pytest.raises(ValueError, match="distribution_strategy must be one of"):
        CellSearchTuner(oracle, tiny_data, distribution_strategy="tpu", **common)
    with pytest.raises(ValueError, match="isolation='process' cannot be used because data is a SearchData"):
        CellSearchTuner(oracle, tiny_data, isolation="process", **common)
    with pytest.raises(ValueError, match="Unknown dataset 'no_such_dataset_xyz'"):
        CellSearchTuner(oracle, "no_such_dataset_xyz", **common)
    assert not (tmp_path / "p").exists()  # nothing was created by the failed constructions


def test_distribution_strategy_names():
    assert resolve_distribution_strategy("default") is None
    assert resolve_distribution_strategy(None) is None
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert resolve_distribution_strategy(one) is one
    # "auto" by the number of visible GPUs, whatever this host has.
    assert [strategy_kind("auto", n) for n in (0, 1, 2, 8)] == ["default", "default", "mirrored", "mirrored"]
    assert [strategy_kind(k, 4) for k in ("mirrored", "one_device", "default")] == ["mirrored", "one_device",
                                                                                      "default"]
    with pytest.raises(ValueError, match="distribution_strategy must be one of auto, mirrored"):
        strategy_kind("tpu", 0)
    assert isinstance(resolve_distribution_strategy("mirrored"), tf.distribute.MirroredStrategy)
    assert isinstance(resolve_distribution_strategy("one_device"), tf.distribute.OneDeviceStrategy)


def test_child_trains_under_mirrored_strategy(tmp_path, tiny_data):
    oracle = RandomCellOracle(max_trials=1, space=TINY, seed=5)
    tuner = CellSearchTuner(oracle, tiny_data, distribution_strategy="mirrored", directory=str(tmp_path),
                            project_name="p", verbose=0, **CHILD)
    assert isinstance(tuner.distribution_strategy, tf.distribute.MirroredStrategy)
    tuner.search()
    trial = oracle.trials[oracle.start_order[0]]
    assert trial.status == "COMPLETED"
    assert trial.score * tiny_data.num_val == pytest.approx(round(trial.score * tiny_data.num_val), abs=1e-3)


def test_child_trainer_reports_failure_record(tiny_data):
    from nasnet_keras.search.child import ChildTrainer

    nan_data = dataclasses.replace(tiny_data, train=tiny_data.train.map(lambda x, y: (x * np.inf, y)))
    trainer = ChildTrainer(nan_data, momentum=0.9, weight_decay=5e-4, drop_path_keep_prob=1.0, **CHILD)
    genotype = Genotype.from_dict({"normal": [[0, "identity", 1, "conv_1x1", "add"]],
                                   "reduction": [[0, "max_pool_3x3", 1, "conv_1x1", "add"]]})
    with pytest.raises(ChildTrainingFailed, match="loss became nan") as info:
        trainer.train(genotype)
    assert info.value.record["params"] > 0 and info.value.record["mult_adds"] > 0
    small = ChildTrainer(tiny_data, momentum=0.9, weight_decay=5e-4, drop_path_keep_prob=1.0, max_model_size=100,
                         **CHILD)
    with pytest.raises(ChildTrainingFailed, match=r"Oversized child: \d+ trainable parameters > max_model_size=100"):
        small.train(genotype)


def _rss_mb(pid=None):
    return psutil.Process(pid).memory_info().rss / 2 ** 20


@pytest.mark.slow
def test_memory_stays_flat_across_trials_with_worker_processes(tmp_path):
    """Children train in a recycled child process: the search process does not grow, the process is replaced.

    About 40 s: 4 children in 2 fresh processes (each imports TensorFlow and loads the data), the fewest that
    show a process replaced after its 2 children and the search process flat over 3 trials."""
    parent, workers, pids = [], [], set()

    class Probe(CellSearchTuner):
        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            parent.append(_rss_mb())
            workers.append(_rss_mb(self.child_pid))
            pids.add(self.child_pid)

    oracle = RandomCellOracle(max_trials=4, space=TINY, seed=4)
    tuner = Probe(oracle, "digits", data_options=DATA_OPTIONS, trials_per_worker=2, directory=str(tmp_path),
                  project_name="p", verbose=0, seed=0, **CHILD)
    assert tuner.isolation == "process"
    tuner.search()
    assert [oracle.trials[t].status for t in oracle.start_order] == ["COMPLETED"] * 4
    assert tuner.child_starts == 2 and len(pids) == 2 and tuner.child_pid is None
    # Trials 2..4 in the search process: flat (TensorFlow's per-model graph leak stays in the worker).
    print("search process RSS MB:", [round(m) for m in parent], "worker RSS MB:", [round(m) for m in workers])
    assert parent[-1] - parent[1] < 60, parent
    # Each child process is dropped after 2 children, so none ever holds more than 2 children's graphs.
    assert max(workers) < min(workers) + 400, workers


def test_child_process_start_up_is_not_held_to_the_trial_timeout(tmp_path):
    """trial_timeout bounds silence while training; a fresh process's start-up (importing TensorFlow, loading
    the data: seconds) has its own bound, so a 1 s trial_timeout does not kill a healthy child as it starts."""
    import time

    from nasnet_keras.search.child_process import ChildProcess
    from nasnet_keras.search.data import resolve_search_data

    _, data_kwargs = resolve_search_data("digits", DATA_OPTIONS)
    trainer = dict(momentum=0.9, weight_decay=5e-4, drop_path_keep_prob=1.0, **CHILD)
    child = ChildProcess({"data": data_kwargs, "trainer": trainer, "distribution": "default"}, 1,
                         str(tmp_path / "child.log"), trial_timeout=1.0)
    started = time.monotonic()
    try:
        child._start()                                  # what `train` does first for a fresh process
        assert time.monotonic() - started > 1.0          # the start-up outlasted trial_timeout ...
        assert child.proc.poll() is None                 # ... and the child is alive and ready
        pid = child.pid
    finally:
        child.close()
    assert not psutil.pid_exists(pid)                    # closed: the child exited (and was reaped)


def test_progress_reports_combine_sibling_projects(tmp_path):
    genotype = Genotype.from_dict({"normal": [[0, "identity", 1, "conv_1x1", "add"]],
                                   "reduction": [[0, "max_pool_3x3", 1, "conv_1x1", "concat"]]})
    rl = [reports.TrialRecord("0", "COMPLETED", 0.5, 10, 20, 1.0, genotype),
          reports.TrialRecord("1", "FAILED", None, 11, 21, 0.5, genotype, "ChildTrainingFailed: nan"),
          reports.TrialRecord("2", "COMPLETED", 0.75, 12, 22, 1.5, genotype)]
    rand = [reports.TrialRecord("0", "COMPLETED", 0.25, 10, 20, 1.0, genotype)]
    report_writer.ReportWriter(str(tmp_path / "random")).start(rand)
    writer = report_writer.ReportWriter(str(tmp_path / "rl"))
    writer.start([])
    printer = progress.ProgressPrinter(enabled=False)
    printer.start(max_trials=10)
    for record in rl:
        writer.add(record)
        printer.trial_end(record, writer.num_ended, writer.best)
    writer.close()
    assert reports.read_trials_csv(str(tmp_path / "rl" / "trials.csv")) == rl == writer.records
    assert list(reports.sibling_records(str(tmp_path / "rl"))) == ["random"]
    assert list(reports.directory_records(str(tmp_path))) == ["random", "rl"]
    best = Genotype.from_json((tmp_path / "rl" / "best_genotype.json").read_text())
    assert best.name == "searched_trial_2" and best.normal == genotype.normal
    assert writer.best == reports.best_record(rl) == rl[2] and reports.best_record(rl, "min").trial_id == "0"
    assert (tmp_path / "rl" / "rewards.png").stat().st_size > 1000
    assert progress.short_genotype(genotype) == "N 0id+1c1 R 0m3|1c1"

    line = printer.format_line(rl[2], writer.num_ended, writer.best)
    assert line.startswith("[ 3/10] trial 2 COMPLETED reward 0.7500 best 0.7500 | 1.5s, elapsed ")
    assert "ETA" in line and line.endswith(" | N 0id+1c1 R 0m3|1c1")
    assert printer.format_line(rl[1], 2, rl[0]).startswith("[ 2/10] trial 1 FAILED    reward   -    best 0.5000 |")
    assert "ChildTrainingFailed: nan" in printer.format_line(rl[1], 2, rl[0])
    assert progress.failure_reason("Traceback...\n  x\nkeras_tuner.src.errors.FailedTrialError: boom\n") == \
        "FailedTrialError: boom"
