"""`python -m search.train` end to end: the whole loop from a search, resume after SIGKILL, evaluation only,
and bad input (each refused with one clear line, nothing lost)."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from _cli import subprocess_env
from nasnet_keras import NASNet
from nasnet_keras.genotypes import Genotype
from search import train

pytestmark = pytest.mark.xdist_group("tiny_search")

# The search's best cell (1 block per cell) at N = 1, F = 8 on the 1,500 digits training images, 3 epochs of 47
# steps with the cifar preset (drop path, aux head, cosine decay, clipping); lr 0.1 instead of 0.025 so that a
# 3-epoch run learns.
MODEL_FLAGS = ["--num_cells=1", "--filters=8", "--epochs=3", "--learning_rate=0.1", "--seed=0"]
STEPS = 3 * 47


def _train(args, cwd, timeout=400):
    return subprocess.run([sys.executable, "-m", "search.train"] + list(args), cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


def _history(directory):
    with open(os.path.join(directory, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tiny_search):
    """One run on the tiny search's output, SIGKILLed mid-epoch after a step checkpoint and resumed with the
    same command (~100 s: two TensorFlow starts, tracing twice, 141 steps). Every test below reads this run:
    the resumed run must be indistinguishable from an uninterrupted one."""
    cwd, searched = tiny_search
    assert searched.returncode == 0, searched.stderr[-3000:]
    project = cwd / "out" / "rl"
    args = [f"--genotype={project}", "--directory=trained", "--checkpoint_every_steps=20"] + MODEL_FLAGS
    proc = subprocess.Popen([sys.executable, "-m", "search.train"] + args, cwd=cwd, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = cwd / "trained" / "checkpoint" / "state.json"
    deadline, killed_at = time.monotonic() + 300, 0
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists():
            killed_at = json.loads(state.read_text())["global_step"]
            if killed_at >= 60:                  # into the second epoch, after a mid-epoch checkpoint
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    result = _train(args, cwd)
    return cwd, project, cwd / "trained", result, killed_at


def test_the_whole_loop_from_search_to_a_reloadable_model(trained):
    cwd, project, run_dir, result, _ = trained
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for name in ("config.json", "history.csv", "model.keras", "model.weights.h5", "metrics.json"):
        assert (run_dir / name).exists(), name
    assert any(name.startswith("events.out.tfevents") for _, _, files in os.walk(run_dir / "logs") for name in files)
    assert not (run_dir / "checkpoint").exists()               # dropped once the run completed
    config = json.loads((run_dir / "config.json").read_text())
    best = Genotype.from_json((project / "best_genotype.json").read_text())
    assert Genotype.from_dict(config["genotype"]).normal == best.normal
    assert config["recipe"]["name"] == "cifar" and config["recipe"]["epochs"] == 3
    assert "epoch 3/3" in result.stdout and "ETA" in result.stdout and "Recipe: " in result.stdout

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == STEPS
    # Chance on the 10 digit classes is 0.1. The tiny search's best cell (1 block) depends on the machine's
    # float results, and 3 epochs with drop path leave a wide spread: 0.60 on a 2-core Intel Xeon (2026-12-05),
    # so 0.3 (3x chance) rather than a threshold that the next machine might miss.
    assert metrics["val_top1"] > 0.3, metrics
    assert metrics["params"] > 0 and metrics["mult_adds"] > 0 and metrics["images_per_second"] > 0
    history = _history(run_dir)
    assert [int(r["epoch"]) for r in history] == [0, 1, 2]
    keep = [float(r["drop_path_keep_prob"]) for r in history]
    assert keep[0] > keep[1] > keep[2]                          # ramped over the run

    # The saved model reloads without custom_objects and predicts like the builder loading the weights file.
    from nasnet_keras.training.data import load_training_data

    data = load_training_data("digits", batch_size=64)
    images = np.concatenate([x for x, _ in data.validation.as_numpy_iterator()])
    labels = np.concatenate([y for _, y in data.validation.as_numpy_iterator()])
    reloaded = keras.models.load_model(run_dir / "model.keras")
    built = NASNet(best, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), classes=10,
                   weights=str(run_dir / "model.weights.h5"))
    a, b = (keras.ops.convert_to_numpy(m(images, training=False)) for m in (reloaded, built))   # eager: once
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert float(np.mean(np.argmax(a, -1) == labels)) == pytest.approx(metrics["val_top1"], abs=1e-6)


def test_eval_only_reproduces_the_runs_validation_accuracy(trained):
    cwd, project, run_dir, _, _ = trained
    result = _train([f"--genotype={project}", f"--directory={run_dir}", "--eval_only",
                     f"--weights={run_dir / 'model.weights.h5'}"] + MODEL_FLAGS, cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((run_dir / "eval_metrics.json").read_text())   # the run's metrics.json is kept
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["mode"] == "train" and evaluated["mode"] == "eval"
    assert evaluated["val_top1"] == pytest.approx(metrics["val_top1"], abs=1e-6)
    assert evaluated["num_val"] == 297


def test_a_sigkilled_run_resumes_to_the_steps_and_schedule_of_an_uninterrupted_one(trained):
    cwd, project, run_dir, result, killed_at = trained
    assert 60 <= killed_at < STEPS, f"no mid-run checkpoint seen (last step {killed_at})"
    assert killed_at % 47                                          # a step checkpoint, mid-epoch
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Resuming from step {killed_at} of {STEPS}" in result.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == STEPS
    history = _history(run_dir)
    assert [int(r["epoch"]) for r in history] == [0, 1, 2]           # the re-run epoch appears once
    # An uninterrupted run logs, after epoch e, the values at step 47 (e + 1): cosine decay from 0.1 over the
    # 141 steps, and the drop-path keep probability ramped linearly in the step (to 0.6 times a depth factor).
    lr = [0.1 * 0.5 * (1 + math.cos(math.pi * 47 * (e + 1) / STEPS)) for e in range(3)]
    assert [float(r["learning_rate"]) for r in history] == pytest.approx(lr, abs=1e-6)
    keep = [float(r["drop_path_keep_prob"]) for r in history]
    assert keep[-1] <= 1 - 0.4 / 5 + 1e-6                            # drop path ramped to its final value
    assert keep == pytest.approx([1 - (1 - keep[-1]) * (e + 1) / 3 for e in range(3)], abs=1e-6)
    weights = keras.models.load_model(run_dir / "model.keras").get_weights()
    assert all(np.isfinite(w).all() for w in weights)


def test_a_completed_run_is_not_trained_again(trained, capsys):
    cwd, project, run_dir, _, _ = trained
    before = (run_dir / "metrics.json").read_text()
    code = train.cli(["nasnet-train", f"--genotype={project}", f"--directory={run_dir}"] + MODEL_FLAGS)
    assert code == 0
    assert "already complete" in capsys.readouterr().out
    assert (run_dir / "metrics.json").read_text() == before


def test_a_directory_with_another_run_is_refused_and_kept(trained, capsys):
    cwd, project, run_dir, _, _ = trained
    before = {name: (run_dir / name).read_bytes() for name in ("config.json", "metrics.json", "model.weights.h5")}
    code = train.cli(["nasnet-train", "--genotype=pnasnet_5", f"--directory={run_dir}"] + MODEL_FLAGS)
    err = capsys.readouterr().err
    assert code == 1 and "holds a run with another configuration" in err and "genotype." in err
    assert "Traceback" not in err
    assert {name: (run_dir / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("flags, message", [
    (["--genotype=nasnet-b"], "not a published genotype"),
    (["--genotype={tmp}/missing.json"], "not a published genotype (nasnet_a, pnasnet_5), not a file"),
    (["--genotype={tmp}/bad.json"], "is not a valid genotype"),
    (["--genotype={tmp}/empty_search"], "no best_genotype.json: no trial of it has finished"),
    (["--preset=large"], "Use --preset=cifar for small images"),
    (["--eval_only"], "--eval_only needs --weights"),
    (["--eval_only", "--weights={tmp}/none.weights.h5"], "no such file"),
    (["--weights=imagenet"], "--weights is for --eval_only"),
    (["--epochs=0"], "epochs must be >= 1"),
    (["--dataset=no_such_dataset_xyz"], "Unknown dataset"),
])
def test_bad_input_is_one_clear_error_line(flags, message, tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"normal": 3}')
    (tmp_path / "empty_search").mkdir()
    code = train.cli(["nasnet-train", f"--directory={tmp_path / 'run'}"]
                     + [f.format(tmp=tmp_path) for f in flags])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "config.json").exists()     # nothing was started


def test_malformed_tf_config_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    code = train.cli(["nasnet-train", f"--directory={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 1 and "TF_CONFIG is malformed" in err and "'127.0.0.1' in cluster['worker']" in err


def test_help_lists_the_recipe_flags(capsys):
    assert train.cli(["nasnet-train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--preset", "--genotype", "--eval_only", "--checkpoint_every_steps", "--distribution", "--cutout"):
        assert flag in out
    assert "TensorFlow backend only" in out


def test_mixed_precision_trains_with_float32_scores(trained, tmp_path):
    """--mixed_precision=mixed_bfloat16 (CPUs have bfloat16): losses and top-5 see float32 scores (~25 s)."""
    cwd, project, _, _, _ = trained
    result = _train([f"--genotype={project}", f"--directory={tmp_path / 'mp'}", "--num_cells=1", "--filters=8",
                     "--epochs=1", "--max_train_examples=128", "--mixed_precision=mixed_bfloat16"], cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = json.loads((tmp_path / "mp" / "config.json").read_text())
    assert config["environment"]["mixed_precision"] == "mixed_bfloat16"
    metrics = json.loads((tmp_path / "mp" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["val_top5"] is not None


def test_a_diverging_run_stops_with_its_last_good_checkpoint(trained, tmp_path):
    """lr 1e6 makes the loss NaN within a few steps: the run stops at once with one error line that says what to
    do, and the checkpoint it keeps holds finite weights only (~25 s)."""
    cwd, project, _, _, _ = trained
    run = tmp_path / "nan"
    result = _train([f"--genotype={project}", f"--directory={run}", "--num_cells=1", "--filters=8", "--epochs=3",
                     "--max_train_examples=128", "--learning_rate=1e6", "--clip_norm=0",
                     "--checkpoint_every_steps=1"], cwd)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "error: Training diverged" in result.stderr and "new --directory with a lower --learning_rate" in \
        result.stderr and "Traceback" not in result.stderr
    assert not (run / "metrics.json").exists() and not (run / "model.keras").exists()
    assert "epoch 3/3" not in result.stdout                        # stopped, not trained to the end
    checkpoint = run / "checkpoint" / "latest.weights.h5"
    if checkpoint.exists():
        import h5py

        with h5py.File(checkpoint, "r") as f:
            arrays = []
            f.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
        assert arrays and all(np.isfinite(a).all() for a in arrays if np.issubdtype(np.asarray(a).dtype,
                                                                                   np.floating))
