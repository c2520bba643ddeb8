"""Transfer training under tf.distribute: two MultiWorkerMirroredStrategy workers on 127.0.0.1, and
MirroredStrategy over two logical CPU devices compared step for step with one device."""

import json
import subprocess
import sys
import textwrap

import h5py
import pytest
import numpy as np

from _cli import ROOT, subprocess_env
from _genotypes import one_block_genotype
from nasnet_keras.search.local_workers import free_port

pytestmark = pytest.mark.xdist_group("processes")

# One block per cell: the smallest network the recipe builds (tracing dominates these tests).
ONE_BLOCK = one_block_genotype().to_dict()


def _arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_two_workers_train_to_completion_with_identical_weights(tmp_path):
    """Two `python -m search.train` processes with TF_CONFIG (one cluster, free ports): collective training on
    CPU, each worker ends with the same weights; the chief writes the outputs (~60 s: two TensorFlow processes)."""
    (tmp_path / "g.json").write_text(json.dumps(ONE_BLOCK))
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [sys.executable, "-m", "search.train", f"--genotype={tmp_path / 'g.json'}", "--num_cells=1",
            "--filters=4", "--epochs=2", "--batch_size=16", "--max_train_examples=128", "--learning_rate=0.05",
            f"--directory={tmp_path / 'run'}"]
    procs = []
    for index in range(2):
        env = {**subprocess_env(), "TF_CONFIG": json.dumps({"cluster": cluster,
                                                            "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in procs:
            proc.kill()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    assert "(2 replica(s), 2 worker(s))" in outputs[0]
    assert "Worker worker_1 done; the chief writes the outputs." in outputs[1]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 2 * (128 // 32)                   # global batch 2 x 16, equal batches
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["global_batch"] == 32 and config["environment"]["workers"] == 2
    chief = _arrays(tmp_path / "run" / "model.weights.h5")
    worker = _arrays(tmp_path / "run" / "workers" / "worker_1" / "model.weights.h5")
    assert chief.keys() == worker.keys() and len(chief) > 20
    for name in chief:
        np.testing.assert_array_equal(chief[name], worker[name], err_msg=name)


# Logical CPU devices must exist before TensorFlow initialises, hence a fresh interpreter.
_MIRRORED = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from nasnet_keras.genotypes import Genotype
    from nasnet_keras.layers import ScheduledDropPath
    from nasnet_keras.training import resolve_recipe, TransferTrainer
    from nasnet_keras.training.data import load_training_data
    from nasnet_keras.training.run_directory import RunDirectory

    genotype = Genotype.from_dict(json.loads(os.environ["GENOTYPE"]))
    recipe = resolve_recipe("cifar", dict(num_cells=1, filters=8, epochs=1, learning_rate=0.1))
    data = load_training_data("digits", batch_size=16, max_train_examples=48)
    # Every global batch is 8 images twice: each replica of two sees the same 8, so BatchNorm's batch
    # statistics per replica equal those of the whole batch on one device.
    x, y = next(iter(data.validation.unbatch().batch(8)))
    x, y = tf.concat([x, x], 0), tf.concat([y, y], 0)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat(3)

    def trained(strategy, weights, steps):
        trainer = TransferTrainer(genotype, recipe, data, RunDirectory(os.environ["RUN_DIR"]), strategy=strategy)
        with trainer.strategy.scope():
            model = trainer.build_training_model()
            trainer.compile(model)
        model.set_weights(weights)
        model.fit(trainer._targets(model, batches.take(steps)), epochs=1, verbose=0)
        return model, trainer

    def statistics(model):
        return [np.asarray(w.numpy()) for w in model.weights if w.path.endswith(("moving_mean", "moving_variance"))]

    def state(model):
        bn = statistics(model)
        counters = sorted({int(l.step.numpy()) for l in model.layers if isinstance(l, ScheduledDropPath)})
        return ([np.asarray(w.numpy()) for w in model.trainable_weights], bn,
                counters, int(model.optimizer.iterations.numpy()), len(model.outputs))

    keras.utils.set_random_seed(0)
    start = TransferTrainer(genotype, recipe, data, RunDirectory(os.environ["RUN_DIR"])).build_training_model()
    initial = start.get_weights()            # the same initial weights for both runs
    one, _ = trained(None, initial, 1)
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two, two_trainer = trained(mirrored_strategy, initial, 1)
    w1, bn1, c1, i1, outs = state(one)
    w2, bn2, c2, i2, _ = state(two)
    result = {"replicas": mirrored_strategy.num_replicas_in_sync, "outputs": outs, "counters": [c1, c2],
              "iterations": [i1, i2], "bn_layers": len(bn1) // 2,
              "bn_max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(bn1, bn2)),
              "bn_moved": max(float(np.max(np.abs(a - b))) for a, b in zip(bn1, statistics(start))),
              # how far apart the two runs' weights are, relative to the largest move the step made
              "weight_relative_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2))
              / max(float(np.max(np.abs(a - c))) for a, c in zip(w1, [w.numpy() for w in start.trainable_weights]))}
    # 3 more steps of the same model (its traced training step is reused: no third model to trace)
    two.fit(two_trainer._targets(two, batches.take(3)), epochs=1, verbose=0)
    result["counters_after_3_more"] = state(two)[2]
    print("RESULT " + json.dumps(result))
""")


def test_mirrored_over_two_cpus_matches_one_device(tmp_path):
    """One step of the cifar recipe (aux head, drop path, L2, clipping) on 1 device and on 2 logical CPU replicas
    from the same weights: the same weights, BatchNorm statistics and drop-path step counters (~50 s: a fresh
    TensorFlow, two models traced, one of them under a strategy)."""
    out = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**subprocess_env(), "GENOTYPE": json.dumps(ONE_BLOCK), "RUN_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2 and result["outputs"] == 2          # predictions + aux_predictions
    assert result["iterations"] == [1, 1] and result["counters"] == [[1], [1]]
    assert result["bn_layers"] > 5 and result["bn_moved"] > 1e-3       # the statistics did move in that step
    assert result["bn_max_diff"] < 1e-5, result
    # Float sums in another order (depthwise-conv filter gradients over 8 + 8 images vs 16) leave the weights
    # 0.4% of the step's largest move apart (measured); clipping each replica's half-gradient (Keras' own
    # behaviour) left them 84% apart, and counting the L2 / aux loss per replica would too.
    assert result["weight_relative_diff"] < 0.02, result
    assert result["counters_after_3_more"] == [4]                    # one count per step, not per replica
