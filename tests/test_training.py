"""Training with fit, ScheduledDropPath, and .keras round trips."""

import numpy as np
import pytest

import keras
from nasnet_keras import NASNET_A, NASNet
from nasnet_keras.applications import NASNetCIFAR
from nasnet_keras.layers import ScheduledDropPath, scheduled_keep_prob

from _genotypes import every_op_genotype


def _toy_data(n=64, seed=0):
    """Two learnable classes: bright top half vs bright bottom half, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.3, (n, 32, 32, 3)).astype("float32")
    x[y == 0, :16] += 1.0
    x[y == 1, 16:] += 1.0
    return x, y


@pytest.mark.xdist_group("digits_nasnet")      # shares conftest's digits_nasnet with the export tests
def test_drop_path_and_aux_head_model_trains_in_fit(digits_nasnet):
    d = digits_nasnet
    losses = d.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    accuracy = (keras.ops.convert_to_numpy(d.model(d.x, training=False)[0]).argmax(1) == d.y).mean()
    assert accuracy > 0.5, accuracy                      # held out; chance on the 10 digits is 0.1
    # The schedule advanced once per training step in every drop-path layer, with no callback.
    dps = [l for l in d.model.layers if isinstance(l, ScheduledDropPath)]
    assert dps and {int(l.step.numpy()) for l in dps} == {d.steps}


def test_keep_prob_follows_the_formula():
    # keep = 1 - (cell + 1) / total * min(1, step / steps) * (1 - keep_final)   (TF-slim nets/nasnet/nasnet_utils.py, `_apply_drop_path`)
    layer = ScheduledDropPath(keep_prob=0.6, cell_index=3, total_cells=8, total_steps=1000)
    assert layer.keep_prob_at(0) == pytest.approx(1.0)
    assert layer.keep_prob_at(500) == pytest.approx(1 - 4 / 8 * 0.5 * 0.4)
    assert layer.keep_prob_at(1000) == pytest.approx(1 - 4 / 8 * 0.4)
    assert layer.keep_prob_at(5000) == pytest.approx(1 - 4 / 8 * 0.4)
    last = ScheduledDropPath(keep_prob=0.6, cell_index=7, total_cells=8, total_steps=1000)
    assert last.keep_prob_at(1000) == pytest.approx(0.6)
    assert float(scheduled_keep_prob(keras.ops.convert_to_tensor(500), 7, 8, 1000, 0.6)) == pytest.approx(0.8)


@pytest.mark.parametrize("step, expected_keep", [(0, 1.0), (500, 0.8), (1000, 0.6), (2000, 0.6)])
def test_drop_path_drops_at_the_scheduled_rate(step, expected_keep):
    layer = ScheduledDropPath(keep_prob=0.6, cell_index=1, total_cells=2, total_steps=1000, seed=3)
    x = np.ones((4000, 1, 1, 2), "float32")
    layer.build(x.shape)
    layer.step.assign(step)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    kept = y[:, 0, 0, 0] != 0
    assert kept.mean() == pytest.approx(expected_keep, abs=0.03)
    np.testing.assert_allclose(y[kept], 1.0 / expected_keep, rtol=1e-5)   # survivors rescaled
    assert np.all(y[kept, 0, 0, 0] == y[kept, 0, 0, 1])                   # one mask per example
    assert int(layer.step.numpy()) == step + 1
    # Inference: identity, and the counter does not move.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    assert int(layer.step.numpy()) == step + 1


def test_keep_prob_one_is_a_no_op_in_training():
    layer = ScheduledDropPath(keep_prob=1.0, cell_index=0, total_cells=1)
    x = np.random.rand(8, 2, 2, 3).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=True)), x)


def test_drop_path_bad_arguments():
    with pytest.raises(ValueError, match="total_steps"):
        ScheduledDropPath(keep_prob=0.5, cell_index=0, total_cells=1)
    with pytest.raises(ValueError, match="keep_prob"):
        ScheduledDropPath(keep_prob=0.0, cell_index=0, total_cells=1, total_steps=1)


def _round_trip(model, tmp_path, x):
    expected = model(x, training=False)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)        # no custom_objects: our layers are registered
    got = loaded(x, training=False)
    if isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    else:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(expected), keras.ops.convert_to_numpy(got))
    return loaded


def test_save_and_load_keras_file(tmp_path):
    model = NASNetCIFAR(num_cells=1, penultimate_filters=192, aux_head=True, drop_path_keep_prob=0.6,
                        total_training_steps=100)
    x, _ = _toy_data(16)
    model.compile("sgd", loss=["sparse_categorical_crossentropy"] * 2)
    before = [v.numpy().copy() for v in model.non_trainable_weights if v.path.endswith("moving_mean")]
    for batch in (x[:8], x[8:]):        # two training steps' forward passes: BN statistics and drop-path counters move
        model(batch, training=True)
    after = [v.numpy() for v in model.non_trainable_weights if v.path.endswith("moving_mean")]
    assert before and not all(np.array_equal(a, b) for a, b in zip(before, after))
    loaded = _round_trip(model, tmp_path, x)
    dp = [l for l in loaded.layers if isinstance(l, ScheduledDropPath)][0]
    assert int(dp.step.numpy()) == 2 and dp.keep_prob == 0.6
    moved = [v.numpy() for v in loaded.non_trainable_weights if v.path.endswith("moving_mean")]
    for a, b in zip(after, moved):
        np.testing.assert_array_equal(a, b)
    assert loaded.loss == model.loss


def test_save_and_load_every_op_with_concat_combines(tmp_path):
    model = NASNet(every_op_genotype(), num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), classes=4)
    x, _ = _toy_data(4)
    _round_trip(model, tmp_path, x)


def test_unknown_spatial_size_round_trip(tmp_path):
    model = NASNet(NASNET_A, num_cells=1, filters=8, stem="imagenet", include_top=False, pooling="avg")
    _round_trip(model, tmp_path, np.random.rand(2, 40, 56, 3).astype("float32"))
