"""Transfer training under tf.distribute: two MultiWorkerMirroredStrategy workers on 127.0.0.1, and
MirroredStrategy over two logical CPU devices compared step for step with one device."""

import json
import subprocess
import sys

import h5py
import pytest
import numpy as np

from _cli import subprocess_env
from _genotypes import one_block_genotype
from nasnet_keras.search.local_workers import free_port

# One block per cell: the smallest network the recipe builds (tracing dominates these tests).
ONE_BLOCK = one_block_genotype().to_dict()


def _arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.xdist_group("processes")         # with the search's fault tests: never two clusters at once
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


@pytest.mark.xdist_group("mirrored")          # conftest's mirrored_checks runs once for its three tests
def test_mirrored_over_two_cpus_matches_one_device(mirrored_checks):
    """One step of the cifar recipe (aux head, drop path, L2, clipping) on 1 device and on 2 logical CPU replicas
    from the same weights: the same weights, BatchNorm statistics and drop-path step counters
    (tests/_mirrored_checks.py's transfer)."""
    result = mirrored_checks["transfer"]
    assert result["replicas"] == 2 and result["outputs"] == 2          # predictions + aux_predictions
    assert result["iterations"] == [1, 1] and result["counters"] == [[1], [1]]
    assert result["bn_layers"] > 5 and result["bn_moved"] > 1e-3       # the statistics did move in that step
    assert result["bn_max_diff"] < 1e-5, result
    # Float sums in another order (depthwise-conv filter gradients over 8 + 8 images vs 16) leave the weights
    # 0.4% of the step's largest move apart (measured); clipping each replica's half-gradient (Keras' own
    # behaviour) left them 84% apart, and counting the L2 / aux loss per replica would too.
    assert result["weight_relative_diff"] < 0.02, result
    assert result["counters_after_3_more"] == [4]                    # one count per step, not per replica
