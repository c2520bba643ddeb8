"""The search's child trainer: slim-style L2 weight decay, and training under MirroredStrategy."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from nasnet_keras.search import ChildTrainer, load_dataset  # noqa: E402

from _genotypes import decay_genotype  # noqa: E402

GENOTYPE = decay_genotype()    # every kind of weight the decay must take or leave
CHILD = dict(epochs=1, num_cells=1, filters=4, learning_rate=0.05, momentum=0.9, drop_path_keep_prob=1.0)


def _trainer(weight_decay):
    data = load_dataset("digits", batch_size=32, max_train_examples=64, seed=0)
    return ChildTrainer(data, weight_decay=weight_decay, **CHILD)


def _first_batch(dataset):
    x, y = next(iter(dataset))
    return x.numpy(), y.numpy()


def _cross_entropy(probabilities, labels):
    """Mean sparse categorical cross-entropy of softmax outputs, in float64 numpy."""
    p = np.clip(probabilities.astype("float64"), 1e-7, 1 - 1e-7)
    return float(np.mean(-np.log(p[np.arange(len(labels)), labels])))


def test_l2_decay_is_half_weight_decay_times_squared_kernels():
    weight_decay = 0.01
    trainer = _trainer(weight_decay)
    model = trainer.build(GENOTYPE)
    trainer.compile(model)

    # Exactly the multi-dimensional weights (conv / separable / dense kernels) carry the regularizer;
    # 1-D ones (BatchNorm gamma and beta, biases) do not.
    decayed = [v for v in model.trainable_weights if v.regularizer is not None]
    kept = [v for v in model.trainable_weights if v.regularizer is None]
    assert {v.path.split("/")[-1] for v in decayed} == {"kernel", "depthwise_kernel", "pointwise_kernel"}
    assert {v.path.split("/")[-1] for v in kept} >= {"gamma", "beta", "bias"}
    assert all(len(v.shape) >= 2 for v in decayed) and all(len(v.shape) == 1 for v in kept)
    assert not any(v.regularizer is not None for v in model.non_trainable_weights)   # BN moving statistics

    penalty = weight_decay / 2 * sum(float(np.sum(np.square(keras.ops.convert_to_numpy(v).astype("float64"))))
                                     for v in model.trainable_weights if len(v.shape) >= 2)
    assert penalty > 0.05          # large enough that leaving it out fails the checks below
    losses = [float(keras.ops.convert_to_numpy(l)) for l in model.losses]
    assert len(losses) == len(decayed)
    assert sum(losses) == pytest.approx(penalty, rel=1e-5)

    x, y = _first_batch(trainer.data.validation)
    y_pred = model(x, training=False)
    data_loss = _cross_entropy(keras.ops.convert_to_numpy(y_pred), y)
    total = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    assert total == pytest.approx(data_loss + penalty, abs=2e-5)
    computed = float(keras.ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred)))
    assert computed == pytest.approx(data_loss + penalty, abs=2e-5)


def test_zero_weight_decay_adds_no_penalty():
    trainer = _trainer(0.0)
    model = trainer.build(GENOTYPE)
    trainer.compile(model)
    assert all(v.regularizer is None for v in model.weights)
    assert list(model.losses) == []
    x, y = _first_batch(trainer.data.validation)
    y_pred = model(x, training=False)
    data_loss = _cross_entropy(keras.ops.convert_to_numpy(y_pred), y)
    computed = float(keras.ops.convert_to_numpy(model.compute_loss(x=x, y=y, y_pred=y_pred)))
    assert computed == pytest.approx(data_loss, abs=2e-5)


def test_eager_score_matches_keras_evaluate_on_the_reward_set():
    """`ChildTrainer.score` (eager, batches of 256) reports what `model.evaluate` does: top-1 accuracy
    and cross-entropy plus the L2 penalty, over every reward image (297, so the last batch is partial)."""
    trainer = _trainer(0.01)
    model = trainer.build(GENOTYPE)
    trainer.compile(model)
    model.fit(trainer.data.train, epochs=1, verbose=0, shuffle=False)   # BN statistics and weights away from their init
    expected = model.evaluate(trainer.data.validation, verbose=0, return_dict=True)
    ticks = []
    got = trainer.score(model, clock=_Ticks(ticks))
    assert trainer.data.num_val == 297 and ticks == [0, 1]
    assert got["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-7)
    assert got["loss"] == pytest.approx(expected["loss"], abs=1e-5)
    assert sum(float(keras.ops.convert_to_numpy(l)) for l in model.losses) > 0.05   # the penalty is counted


def test_children_of_a_few_steps_train_eagerly_and_the_rest_traced():
    few = _trainer(0.0)                                              # 64 images, batch 32, 1 epoch: 2 steps
    longer = ChildTrainer(load_dataset("digits", batch_size=32, seed=0), weight_decay=0.0, **CHILD)   # 47 steps
    assert few.data.steps_per_epoch == 2 and longer.data.steps_per_epoch == 47
    assert few.trains_eagerly and not longer.trains_eagerly
    for trainer, eager in ((few, True), (longer, False)):
        model = trainer.build(GENOTYPE)
        trainer.compile(model)
        assert model.run_eagerly is eager
    one_device = ChildTrainer(few.data, weight_decay=0.0, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"),
                              **CHILD)
    assert not one_device.trains_eagerly                               # under a strategy: traced as before


class _Ticks(keras.callbacks.Callback):
    def __init__(self, ticks):
        super().__init__()
        self.ticks = ticks

    def on_test_batch_end(self, batch, logs=None):
        self.ticks.append(batch)


@pytest.mark.xdist_group("mirrored")          # conftest's mirrored_checks runs once for its three tests
def test_mirrored_strategy_over_two_cpu_replicas_trains_a_child(mirrored_checks):
    # tests/_mirrored_checks.py's child_training: 4 epochs of 8 steps on 128 digits, 8 images per replica.
    result = mirrored_checks["child_training"]
    assert result["replicas"] == 2
    assert result["variable_copies"] == [2]            # every weight is mirrored on both devices
    assert math.isfinite(result["loss"]) and math.isfinite(result["val_loss"])
    losses = result["epoch_losses"]
    assert len(losses) == 4 and losses[-1] == pytest.approx(result["loss"])
    assert losses[-1] < 0.9 * losses[0], result         # measured: a 26% drop (2.58 -> 1.92)
    assert result["accuracy"] > 0.25, result   # measured 0.39 (AMD EPYC), 0.47 (Intel Xeon); chance is 0.1
