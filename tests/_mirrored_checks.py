"""MirroredStrategy over two logical CPU devices: the three checks that need it, in one fresh interpreter.

Logical devices must be set before TensorFlow initialises, which the test processes have long done, hence a
subprocess; one for all three checks (the search's child trainer, weight-sharing training, the transfer recipe)
instead of one each spares two TensorFlow starts and imports of the package (~10 s of CPU).

    python tests/_mirrored_checks.py RUN_DIR

prints one ``RESULT {"check": name, ...}`` line per check (``{"check": name, "error": traceback}`` when it
raised): each test in tests/test_child_training.py, tests/test_weight_sharing.py and
tests/test_training_distributed.py reads its own line (conftest's `mirrored_checks` fixture) and asserts on it.
"""

import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from _genotypes import decay_genotype, one_block_genotype  # noqa: E402

# One strategy for the three checks: with a second MirroredStrategy over the same devices in this process, its
# first all-reduce failed ("Shape mismatch in the collective instance 100", TF 2.21).
STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def child_training():
    """The search's `ChildTrainer` under a strategy: 128 digits without augmentation, 4 epochs of 8 steps of 16
    (8 per replica). These tiny children learn on the training set within that, but their held-out accuracy
    still lags near chance (BatchNorm statistics), with or without a strategy, so the learning signal is the
    training loss and accuracy."""
    from nasnet_keras.search import ChildTrainer, load_dataset

    data = load_dataset("digits", batch_size=16, max_train_examples=128, seed=0, augment=False)
    trainer = ChildTrainer(data, epochs=4, num_cells=1, filters=8, learning_rate=0.1, momentum=0.9,
                           weight_decay=5e-4, drop_path_keep_prob=1.0, strategy=STRATEGY)
    epoch_losses, copies = [], set()

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            copies.update(len(STRATEGY.experimental_local_results(v.value)) for v in self.model.weights)

        def on_epoch_end(self, epoch, logs=None):
            epoch_losses.append(float(logs["loss"]))

    metrics = trainer.train(decay_genotype(), seed=0, callbacks=[Record()])
    return {"replicas": STRATEGY.num_replicas_in_sync, "variable_copies": sorted(copies),
            "epoch_losses": epoch_losses, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}


def weight_sharing():
    """Two epochs of the shared network's training step on random architectures, replicas compared."""
    from nasnet_keras.search.data import load_dataset
    from nasnet_keras.search.space import SearchSpace, decisions
    from nasnet_keras.search.weight_sharing.config import WeightSharingConfig
    from nasnet_keras.search.weight_sharing.shared_trainer import SharedTrainer

    space = SearchSpace(num_blocks=2, ops=("sep_conv_3x3", "identity", "max_pool_3x3"), combines=("add",))
    data = load_dataset("digits", batch_size=32, max_train_examples=64, seed=0, augment=False)
    trainer = SharedTrainer(data, space, WeightSharingConfig(num_cells=1, filters=4, reward_batch_size=64),
                            strategy=STRATEGY)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(2):
        total = count = 0.0
        for batch in trainer.train_set:
            arch = [int(rng.integers(d.num_choices)) for d in decisions(space)]
            loss, _, n = trainer.train_step(batch, arch)
            total, count = total + loss, count + n
        losses.append(total / count)
    same = all(np.array_equal(*[c.numpy() for c in STRATEGY.experimental_local_results(v.value)])
               for v in trainer.model.weights)
    return {"replicas": STRATEGY.num_replicas_in_sync, "same": same, "losses": losses,
            "traces": max(trainer.tracing_counts.values())}


def transfer(run_dir):
    """One step of the cifar recipe on one device and on two replicas from the same weights, then 3 more steps
    of the mirrored model (its traced training step reused: no third model to trace)."""
    from nasnet_keras.layers import ScheduledDropPath
    from nasnet_keras.training import TransferTrainer, resolve_recipe
    from nasnet_keras.training.data import load_training_data
    from nasnet_keras.training.run_directory import RunDirectory

    genotype = one_block_genotype()
    recipe = resolve_recipe("cifar", dict(num_cells=1, filters=8, epochs=1, learning_rate=0.1))
    data = load_training_data("digits", batch_size=16, max_train_examples=48)
    # Every global batch is 8 images twice: each replica of two sees the same 8, so BatchNorm's batch
    # statistics per replica equal those of the whole batch on one device.
    x, y = next(iter(data.validation.unbatch().batch(8)))
    x, y = tf.concat([x, x], 0), tf.concat([y, y], 0)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat(3)

    def trained(strategy, weights, steps):
        trainer = TransferTrainer(genotype, recipe, data, RunDirectory(run_dir), strategy=strategy)
        with trainer.strategy.scope():
            model = trainer.build_training_model()
            trainer.compile(model)
        model.set_weights(weights)
        model.fit(trainer._targets(model, batches.take(steps)), epochs=1, verbose=0)
        return model, trainer

    def statistics(model):
        return [np.asarray(w.numpy()) for w in model.weights if w.path.endswith(("moving_mean", "moving_variance"))]

    def state(model):
        counters = sorted({int(layer.step.numpy()) for layer in model.layers if isinstance(layer, ScheduledDropPath)})
        return ([np.asarray(w.numpy()) for w in model.trainable_weights], statistics(model),
                counters, int(model.optimizer.iterations.numpy()), len(model.outputs))

    keras.utils.set_random_seed(0)
    start = TransferTrainer(genotype, recipe, data, RunDirectory(run_dir)).build_training_model()
    initial = start.get_weights()            # the same initial weights for both runs
    one, _ = trained(None, initial, 1)
    two, two_trainer = trained(STRATEGY, initial, 1)
    w1, bn1, c1, i1, outs = state(one)
    w2, bn2, c2, i2, _ = state(two)
    start_weights = [w.numpy() for w in start.trainable_weights]
    result = {"replicas": STRATEGY.num_replicas_in_sync, "outputs": outs, "counters": [c1, c2],
              "iterations": [i1, i2], "bn_layers": len(bn1) // 2,
              "bn_max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(bn1, bn2)),
              "bn_moved": max(float(np.max(np.abs(a - b))) for a, b in zip(bn1, statistics(start))),
              # how far apart the two runs' weights are, relative to the largest move the step made
              "weight_relative_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2))
              / max(float(np.max(np.abs(a - c))) for a, c in zip(w1, start_weights))}
    two.fit(two_trainer._targets(two, batches.take(3)), epochs=1, verbose=0)
    result["counters_after_3_more"] = state(two)[2]
    return result


def main(run_dir):
    os.makedirs(os.path.join(run_dir, "transfer"), exist_ok=True)
    checks = {"child_training": child_training, "weight_sharing": weight_sharing,
              "transfer": lambda: transfer(os.path.join(run_dir, "transfer"))}
    for name, check in checks.items():
        try:
            result = check()
        except Exception:  # noqa: BLE001 -- reported to that check's test, and the other checks still run
            result = {"error": traceback.format_exc()}
        print("RESULT " + json.dumps({"check": name, **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
