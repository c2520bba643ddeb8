"""Transfer training: recipes, optimizers, EMA, checkpoints, run directories, TF_CONFIG and --genotype parsing."""

import json

import keras
import numpy as np
import pytest

from nasnet_keras import NASNET_A, PNASNET_5
from nasnet_keras.training import checkpoint as ckpt
from nasnet_keras.training.distribution import TFConfigError, parse_tf_config
from nasnet_keras.training.genotype_source import GenotypeNotFoundError, load_genotype
from nasnet_keras.training.optimization import (add_weight_decay, build_fit_state, ema_decay_at,
                                                learning_rate_schedule, make_optimizer, swapped_in_average)
from nasnet_keras.training.recipes import PRESETS, check_preset_fits, preset_for_images, resolve_recipe
from nasnet_keras.training.run_directory import RunDirectory, RunMismatchError


# ------------------------------------------------------------------ recipes
def test_presets_carry_the_paper_recipes():
    c, m, l = PRESETS["cifar"], PRESETS["mobile"], PRESETS["large"]
    # Paper App. A.6 / slim cifar_config: 6 @ 768 -> F = 32, SGD 0.9, lr 0.025, batch 32, 600 epochs, ...
    assert (c.num_cells, c.filters, c.stem, c.optimizer, c.momentum, c.learning_rate, c.batch_size) == (
        6, 32, "cifar", "sgd", 0.9, 0.025, 32)
    assert (c.schedule, c.epochs, c.weight_decay, c.aux_weight, c.drop_path_keep_prob, c.clip_norm) == (
        "cosine", 600, 5e-4, 0.4, 0.6, 5.0)
    assert (c.preprocessing, c.dropout, c.label_smoothing, c.ema_decay) == ("cifar", 0.0, 0.0, None)
    # Paper App. A.7 / slim ImageNet configs.
    assert (m.num_cells, m.filters, m.stem_filters, m.image_size, m.batch_size) == (4, 44, 32, 224, 32)
    assert (l.num_cells, l.filters, l.stem_filters, l.image_size, l.batch_size, l.skip_reduction) == (
        6, 168, 96, 331, 16, True)
    for r in (m, l):
        assert (r.optimizer, r.rmsprop_decay, r.momentum, r.epsilon, r.schedule, r.decay_rate, r.decay_epochs) == (
            "rmsprop", 0.9, 0.9, 1.0, "exponential", 0.97, 2.4)
        assert (r.label_smoothing, r.aux_weight, r.dropout, r.clip_norm, r.ema_decay, r.preprocessing) == (
            0.1, 0.4, 0.5, 10.0, 0.9999, "inception")
    assert (m.weight_decay, m.drop_path_keep_prob, l.weight_decay, l.drop_path_keep_prob) == (4e-5, 1.0, 5e-5, 0.7)


def test_learning_rate_scales_linearly_with_the_global_batch_on_imagenet_presets_only():
    assert PRESETS["mobile"].learning_rate_for(32 * 50) == pytest.approx(0.04 * 50)    # the paper's 50 replicas
    assert PRESETS["large"].learning_rate_for(16 * 100) == pytest.approx(0.015 * 100)
    assert PRESETS["mobile"].learning_rate_for(64) == pytest.approx(0.08)
    assert PRESETS["cifar"].learning_rate_for(256) == 0.025


def test_resolve_recipe_overrides_and_refuses_bad_values():
    r = resolve_recipe("cifar", {"epochs": 3, "filters": 8, "learning_rate": None})
    assert (r.epochs, r.filters, r.learning_rate) == (3, 8, 0.025)
    with pytest.raises(ValueError, match="Unknown preset 'huge'"):
        resolve_recipe("huge")
    with pytest.raises(ValueError, match="drop_path_keep_prob must be in"):
        resolve_recipe("cifar", {"drop_path_keep_prob": 0.0})
    with pytest.raises(ValueError, match="Unknown recipe settings: colour"):
        resolve_recipe("cifar", {"colour": 1})


def test_a_preset_that_does_not_fit_the_data_is_refused_naming_the_one_that_does():
    with pytest.raises(ValueError, match="Use --preset=cifar for small images"):
        check_preset_fits("large", (32, 32))
    with pytest.raises(ValueError, match="Use --preset=mobile"):
        check_preset_fits("cifar", None)
    check_preset_fits("mobile", (32, 32), image_size=96)       # upscaling on request is allowed
    assert preset_for_images((32, 32)) == "cifar" and preset_for_images(None) == "mobile"


# ------------------------------------------------------------------ optimization
def test_learning_rate_schedules():
    cosine = learning_rate_schedule("cosine", 0.025, 100)
    assert float(cosine(0)) == pytest.approx(0.025)
    assert float(cosine(50)) == pytest.approx(0.0125, rel=1e-5)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-8)
    staircase = learning_rate_schedule("exponential", 1.0, 1000, steps_per_epoch=10)   # decays every 24 steps
    assert [float(staircase(s)) for s in (0, 23, 24, 48)] == pytest.approx([1.0, 1.0, 0.97, 0.97 ** 2])


def test_weight_decay_goes_on_kernels_only():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization(),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    assert add_weight_decay(model, 4e-5) == 2          # conv kernel + dense kernel, not BN / biases
    x = np.ones((1, 4, 4, 3), "float32")
    model(x)
    kernels = [v for v in model.trainable_weights if v.path.endswith("kernel")]
    expected = sum(4e-5 / 2 * float(np.sum(np.square(keras.ops.convert_to_numpy(v)))) for v in kernels)
    assert float(sum(keras.ops.convert_to_numpy(l) for l in model.losses)) == pytest.approx(expected, rel=1e-5)


def test_ema_follows_the_slim_schedule():
    # tf.train.ExponentialMovingAverage(0.9999, num_updates=step), as slim's train_image_classifier uses it.
    assert ema_decay_at(0, 0.9999) == 0.0
    assert ema_decay_at(1, 0.9999) == pytest.approx(2 / 11)
    assert ema_decay_at(10 ** 6, 0.9999) == 0.9999
    variable = keras.Variable(np.array([1.0, -2.0], "float32"))
    optimizer = make_optimizer("sgd", 0.1, momentum=0.0, ema_decay=0.9999)
    optimizer.build([variable])
    w, average = np.array([1.0, -2.0]), None
    for step, grad in enumerate([np.array([1.0, 0.5]), np.array([-2.0, 1.0]), np.array([0.5, 0.5])]):
        optimizer.apply([keras.ops.convert_to_tensor(grad.astype("float32"))], [variable])
        w = w - 0.1 * grad
        decay = 0.0 if step == 0 else min(0.9999, (1 + step) / (10 + step))
        average = w.copy() if average is None else decay * average + (1 - decay) * w
    assert keras.ops.convert_to_numpy(optimizer.moving_averages()[0]) == pytest.approx(average, rel=1e-6)
    assert keras.ops.convert_to_numpy(variable) == pytest.approx(w, rel=1e-6)   # training weights untouched


def test_the_average_is_swapped_in_for_a_block_and_out_after():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=make_optimizer("rmsprop", 0.01, ema_decay=0.9), loss="mse")
    model.fit(np.ones((8, 2), "float32"), np.zeros((8, 1), "float32"), epochs=3, verbose=0)
    trained = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    averages = [keras.ops.convert_to_numpy(a) for a in model.optimizer.moving_averages()]
    assert not np.allclose(trained[0], averages[0])             # fit did not replace the weights by the average
    with swapped_in_average(model) as swapped:
        assert swapped
        inside = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(inside, averages))
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(after, trained))


class _TraceCounter(keras.Model):
    """Two outputs (a compiled loss tracker each), a metric, Adam: state Keras creates in the first step."""

    def __init__(self):
        super().__init__(name="trace_counter")
        self.dense = keras.layers.Dense(3)
        self.traces = 0

    def call(self, x):
        y = self.dense(x)
        return y, y

    def train_step(self, data):
        self.traces += 1       # Python runs once per trace of the training step
        return super().train_step(data)


@pytest.mark.parametrize("prebuilt, traces", [(False, 2), (True, 1)])
def test_build_fit_state_spares_fit_a_second_trace(prebuilt, traces):
    import tensorflow as tf

    model = _TraceCounter()
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy"] * 2, metrics=[["accuracy"], []])
    data = tf.data.Dataset.from_tensor_slices((np.ones((8, 2), "float32"), (np.zeros(8), np.zeros(8)))).batch(4)
    model(np.ones((1, 2), "float32"))
    if prebuilt:
        assert build_fit_state(model, data.element_spec)
        assert model.optimizer.built and len(model.optimizer.variables) > 1     # slots exist before fit
    history = model.fit(data, epochs=2, verbose=0, shuffle=False)
    assert model.traces == traces
    assert len(history.history["loss"]) == 2


# ------------------------------------------------------------------ checkpoints and run directories
def test_resume_plan_finishes_the_interrupted_epoch_first():
    assert ckpt.resume_plan(0, 10, 3) == (0, 10)
    assert ckpt.resume_plan(13, 10, 3) == (1, 7)
    assert ckpt.resume_plan(20, 10, 3) == (2, 10)
    assert ckpt.resume_plan(30, 10, 3) == (3, 0)


def test_truncate_history_drops_the_epochs_that_will_run_again(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,2.0\n1,1.5\n2,1.2\n")
    ckpt.truncate_history(str(path), 2)
    assert path.read_text() == "epoch,loss\n0,2.0\n1,1.5\n"


def test_run_directory_refuses_another_configuration_and_keeps_the_old_run(tmp_path):
    config = {"genotype": {"name": "a"}, "model": {"num_cells": 1}, "recipe": {"epochs": 3}, "data": {"d": 1},
              "environment": {"tensorflow": "2.21"}}
    run = RunDirectory(str(tmp_path / "run"))
    assert run.claim(config) is False
    before = (tmp_path / "run" / "config.json").read_text()
    assert run.claim({**config, "environment": {"tensorflow": "2.22"}}) is True     # versions may change
    with pytest.raises(RunMismatchError, match=r"recipe.epochs: 3 -> 4"):
        run.claim({**config, "recipe": {"epochs": 4}})
    with pytest.raises(RunMismatchError, match=r"genotype.name: \"a\" -> \"b\""):
        run.claim({**config, "genotype": {"name": "b"}})
    assert (tmp_path / "run" / "config.json").read_text() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunMismatchError, match="is not empty"):
        RunDirectory(str(tmp_path / "other")).claim(config)


# ------------------------------------------------------------------ TF_CONFIG
def test_tf_config_parsing():
    cluster = {"worker": ["127.0.0.1:1000", "127.0.0.1:1001"]}
    role = parse_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})})
    assert (role.task_type, role.task_index, role.num_workers, role.is_chief) == ("worker", 1, 2, False)
    chief = parse_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})})
    assert chief.is_chief
    assert parse_tf_config({}) is None
    single = {"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}}
    assert parse_tf_config({"TF_CONFIG": json.dumps(single)}) is None


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "no 'cluster'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', "no 'task'"),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}', "'b' in cluster"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "out of range"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}', "not in the cluster"),
])
def test_malformed_tf_config_is_explained(text, problem):
    with pytest.raises(TFConfigError, match=problem) as info:
        parse_tf_config({"TF_CONFIG": text})
    assert "TF_CONFIG is malformed" in str(info.value) and "Expected e.g." in str(info.value)


# ------------------------------------------------------------------ --genotype
def test_genotype_sources(tmp_path):
    assert load_genotype("nasnet_a")[0] == NASNET_A and load_genotype("PNASNET_5")[0] == PNASNET_5
    path = tmp_path / "g.json"
    path.write_text(NASNET_A.to_json())
    genotype, source = load_genotype(str(path))
    assert genotype.normal == NASNET_A.normal and source == str(path)
    project = tmp_path / "search" / "rl"
    project.mkdir(parents=True)
    with pytest.raises(GenotypeNotFoundError, match="no best_genotype.json: no trial of it has finished"):
        load_genotype(str(project))
    with pytest.raises(GenotypeNotFoundError, match=r"holds search projects: rl"):
        (project / "best_genotype.json").write_text(PNASNET_5.to_json())
        load_genotype(str(tmp_path / "search"))
    assert load_genotype(str(project))[0].normal == PNASNET_5.normal
    with pytest.raises(GenotypeNotFoundError, match="Did you mean nasnet_a"):
        load_genotype("nasnet-a")
    path.write_text('{"normal": {"blocks": [[0, "conv_9x9", 1, "identity", "add"]]}}')
    with pytest.raises(ValueError, match="is not a valid genotype"):
        load_genotype(str(path))


def test_saved_weights_of_the_mobile_recipe_load_into_nasnet_mobile(tmp_path):
    """The inference network a mobile-preset run saves is NASNetMobile's layout (here with 10 classes)."""
    from nasnet_keras import NASNET_A
    from nasnet_keras.applications import NASNetMobile
    from nasnet_keras.training import inference_network

    network = inference_network(NASNET_A, PRESETS["mobile"], (224, 224, 3), 10)
    network.save_weights(tmp_path / "model.weights.h5")
    loaded = NASNetMobile(weights=str(tmp_path / "model.weights.h5"), classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    # Called eagerly: one batch, so tracing two predict functions would cost more than it checks.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)),
                               keras.ops.convert_to_numpy(network(x, training=False)), atol=1e-6)
