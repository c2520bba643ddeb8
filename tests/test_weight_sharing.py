"""The weight-sharing search: shared network == stand-alone child, gradients, tracing, the loop, the CLI."""

import json
import math
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from nasnet_keras import NASNet, model_cost
from nasnet_keras.genotypes import Genotype
from nasnet_keras.search import reports
from nasnet_keras.search.data import load_dataset
from nasnet_keras.search.space import SearchSpace, decisions
from nasnet_keras.search.weight_sharing import SharedNASNet, check_shareable_space
from nasnet_keras.search.weight_sharing.config import WeightSharingConfig
from nasnet_keras.search.weight_sharing.search_loop import STATE_FILE, WeightSharingSearch
from search import run as search_run
from tests._cli import ROOT, subprocess_env

SPACE = SearchSpace(num_blocks=2, ops=("sep_conv_3x3", "identity", "max_pool_3x3", "avg_pool_3x3", "conv_1x1"),
                    combines=("add",))
SHAPE, CLASSES = (32, 32, 3), 5
# N = 2 makes every second-input case happen: projected, factorized, and passed through unprojected.
SIZE = dict(num_cells=2, filters=4)


# The tests of the `shared` network share one test process (xdist group), so that it is built once.
SHARED_NETWORK = pytest.mark.xdist_group("shared_network")


@pytest.fixture(scope="module")
def shared():
    return SharedNASNet(SPACE, input_shape=SHAPE, classes=CLASSES, **SIZE)


def _architectures(count, seed):
    rng = np.random.default_rng(seed)
    return [[int(rng.integers(d.num_choices)) for d in decisions(SPACE)] for _ in range(count)]


def _child(shared_net, arch):
    child = NASNet(shared_net.genotype(arch), stem="cifar", input_shape=SHAPE, classes=CLASSES, **SIZE)
    shared_net.copy_to_child(arch, child)
    return child


@SHARED_NETWORK
def test_shared_network_equals_the_standalone_child_and_its_cost(shared):
    images = tf.constant(np.random.default_rng(0).normal(size=(4, *SHAPE)).astype("float32"))
    modes = set()
    for arch in _architectures(6, seed=1):
        child = _child(shared, arch)
        ours = shared.forward(images, arch)[0].numpy()
        theirs = child(images, training=True).numpy()   # the shared network normalises with batch statistics
        np.testing.assert_allclose(ours, theirs, atol=2e-5)
        cost = model_cost(child)
        assert shared.child_cost(arch) == (cost.params, cost.mult_adds)
        modes.update(route.second_input for route in shared.routes(arch) if route.live and 1 in route.reads)
    assert {"same", "layer", "unread"} <= modes      # the cases the comparison covered


@SHARED_NETWORK
def test_gradients_reach_only_the_chosen_ops_and_equal_the_childs(shared):
    rng = np.random.default_rng(2)
    images = tf.constant(rng.normal(size=(4, *SHAPE)).astype("float32"))
    labels = tf.constant(rng.integers(CLASSES, size=4).astype("int32"))
    arch = _architectures(1, seed=3)[0]
    chosen = shared.chosen_layers(arch)
    chosen_ids = {id(w) for _, layer, _ in chosen for w in layer.trainable_weights}
    with tf.GradientTape() as tape:
        probs, _ = shared.forward(images, arch)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probs))
    grads = tape.gradient(loss, shared.trainable_weights)
    unchosen = [(w.path, g) for w, g in zip(shared.trainable_weights, grads) if id(w) not in chosen_ids]
    assert len(unchosen) > len(chosen_ids)          # most of the shared weights are other ops
    assert all(g is None for _, g in unchosen)
    by_id = {id(w): g for w, g in zip(shared.trainable_weights, grads)}
    child = _child(shared, arch)
    with tf.GradientTape(persistent=True) as tape:
        child_loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, child(images, training=True)))
    assert float(child_loss) == pytest.approx(float(loss), rel=1e-5)
    for name, layer, rows in chosen:
        target = child.get_layer(name)
        for w, cw, cg in zip(layer.trainable_weights, target.trainable_weights,
                             tape.gradient(child_loss, target.trainable_weights)):
            g = by_id[id(w)].numpy()
            if rows is not None and g.ndim >= 2 and g.shape[-2] != cw.shape[-2]:
                unread = np.delete(g, rows, axis=-2)
                assert not np.any(unread), w.path    # the zero channels of read states get no gradient
                g = np.take(g, rows, axis=-2)
            np.testing.assert_allclose(g, cg.numpy(), atol=1e-6 + 1e-3 * np.abs(cg.numpy()).max(), err_msg=w.path)


@SHARED_NETWORK
def test_every_piece_is_traced_once_whatever_the_architecture_or_batch(shared):
    for arch, batch in zip(_architectures(8, seed=4), (3, 5, 3, 7, 2, 3, 4, 6)):
        shared.forward(tf.zeros((batch, *SHAPE)), arch)
    counts = shared.tracing_counts
    assert len(counts) > 20 and set(counts.values()) == {1}


def test_a_concat_space_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="only the 'add' combine.*--combines=add"):
        check_shareable_space(SearchSpace(num_blocks=2, combines=("add", "concat")))
    with pytest.raises(ValueError, match="only the 'add' combine"):
        SharedNASNet(SearchSpace(num_blocks=2), input_shape=SHAPE, classes=CLASSES, **SIZE)


def test_the_controller_learns_a_synthetic_reward_on_the_shared_loop(tmp_path):
    # ~30 s: 140 architectures scored through the real loop (each a shared-network forward pass) are what it
    # takes the controller to learn visibly (measured per epoch: 0.26, 0.61, then 0.63 in a third); a shorter
    # loop would test the controller, not its wiring.
    # Reward: the fraction of op decisions that pick sep_conv_3x3 (uniform sampling scores 1/5 on average).
    op_positions = [i for i, d in enumerate(decisions(SPACE)) if d.field in ("op0", "op1")]
    target = SPACE.ops.index("sep_conv_3x3")

    def reward(arch, accuracy):
        return float(np.mean([arch[i] == target for i in op_positions]))

    data = load_dataset("digits", batch_size=32, max_train_examples=32, seed=0, augment=False)
    # ENAS' tanh squashing (op logits within +-0.44) caps any op's probability at 0.375 of 5: off here, so that
    # learning shows; a larger controller learning rate than ENAS' for a short test.
    config = WeightSharingConfig(num_cells=1, filters=4, epochs=2, batch_size=32, controller_steps=14,
                                 controller_batch_size=5, reward_batch_size=32, controller_learning_rate=0.01,
                                 controller_tanh_constant=None, final_architectures=2, restart_epochs=3)
    search = WeightSharingSearch(data, SPACE, config, oracle="enas", project_dir=str(tmp_path), verbose=0,
                                 reward_fn=reward)
    history = search.run()["records"] and search.state["history"]
    first, last = history[0]["controller_reward"], history[-1]["controller_reward"]
    print("controller rewards per epoch", [round(h["controller_reward"], 3) for h in history])
    assert first < 0.4 and last > 0.5, [h["controller_reward"] for h in history]


# ---------------------------------------------------------------------------------------------- the CLI
TINY = ["--oracle=enas", "--num_blocks=2", "--ops=sep_conv_3x3,identity,max_pool_3x3", "--filters=4",
        "--max_train_examples=64", "--controller_steps=2", "--controller_batch_size=2", "--reward_batch_size=64",
        "--final_architectures=4"]


def _run(args, directory, timeout=300):
    return subprocess.run([sys.executable, "-m", "search.run", *TINY, f"--directory={directory}", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=subprocess_env())


def test_cli_search_is_killed_and_resumed_then_refuses_other_settings(tmp_path, capsys):
    # ~55 s: two processes (the killed run, the resumed run), each starting TensorFlow and the network.
    directory = tmp_path / "runs"
    project = directory / "enas"
    command = [sys.executable, "-m", "search.run", *TINY, f"--directory={directory}", "--epochs=4"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env=subprocess_env())
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = project / STATE_FILE
        if state.exists() and json.loads(state.read_text())["epochs_done"] >= 1:
            break
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = json.loads((project / STATE_FILE).read_text())["epochs_done"]
    assert 1 <= killed_at < 4

    out = _run(["--epochs=4"], directory)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"after epoch {killed_at}/4" in out.stdout
    history = (project / "history.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in history] == [1, 2, 3, 4]
    records = reports.read_trials_csv(str(project / reports.TRIALS_CSV))
    assert len(records) == 4 and all(r.params > 0 and r.mult_adds > 0 and r.reward is not None for r in records)
    assert len({r.genotype for r in records}) == 4          # distinct samples
    best = Genotype.from_json((project / reports.BEST_GENOTYPE_JSON).read_text())
    assert best.normal.blocks == max(records, key=lambda r: r.reward).genotype.normal.blocks
    assert (project / reports.REWARDS_PNG).stat().st_size > 1000

    # Resuming with other settings is refused, in this process (`cli`, the command line's code path: a third
    # subprocess would spend ~10 s importing TensorFlow for one line).
    before = {p.name: p.read_bytes() for p in project.iterdir()}
    code = search_run.cli(["nasnet-search", *TINY, f"--directory={directory}", "--epochs=4", "--filters=8"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Cannot resume" in err and "filters" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in project.iterdir()} == before


@pytest.mark.parametrize("flags, message", [
    (["--combines=add,concat"], "only the 'add' combine"),
    (["--ops=conv_9x9"], "unknown names ['conv_9x9']"),
    (["--final_architectures=0"], "final_architectures"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, flags, message, capsys):
    # In this process (`search.run.cli`, the command line's code path): a subprocess would spend ~8 s of CPU
    # importing TensorFlow to print one line.
    code = search_run.cli(["nasnet-search", *TINY, f"--directory={tmp_path}", *flags])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "enas").exists()


@pytest.mark.xdist_group("mirrored")          # conftest's mirrored_checks runs once for its three tests
def test_shared_training_under_mirrored_strategy_keeps_replicas_equal(mirrored_checks):
    # tests/_mirrored_checks.py's weight_sharing: 2 epochs of random architectures, every piece traced per replica.
    result = mirrored_checks["weight_sharing"]
    assert result["replicas"] == 2 and result["same"], result
    assert all(math.isfinite(l) for l in result["losses"])
    assert result["traces"] <= 2, result             # once per replica at most, never per architecture
