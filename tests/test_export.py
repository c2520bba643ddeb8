"""Exports (SavedModel, TFLite float32, TFLite int8) against the Keras model on the built-in digits data."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from nasnet_keras import NASNet
from nasnet_keras.export import export_saved_model, export_tflite, inference_graph, main, tflite_predict
from nasnet_keras.layers import ScheduledDropPath

from _genotypes import one_block_genotype

pytestmark = pytest.mark.xdist_group("digits_nasnet")   # conftest's digits_nasnet trains once


@pytest.fixture(scope="module")
def trained(digits_nasnet):
    """conftest's digits_nasnet (a small NASNet-A with aux head and drop path, trained on digits): the model,
    its held-out images and labels, 100 training images for calibration, its saved `.keras` file."""
    d = digits_nasnet
    return d.model, d.x, d.y, d.calibration, d.path


def test_inference_graph_drops_aux_head_and_drop_path(trained):
    model, x, *_ = trained
    graph = inference_graph(model)
    assert len(graph.outputs) == 1 and not any(isinstance(layer, ScheduledDropPath) for layer in graph.layers)
    assert any(isinstance(layer, ScheduledDropPath) for layer in model.layers)      # the original is untouched
    np.testing.assert_allclose(keras.ops.convert_to_numpy(graph(x[:16], training=False)),
                               keras.ops.convert_to_numpy(model(x[:16], training=False)[0]), atol=1e-6)


@pytest.fixture(scope="module")
def keras_scores(trained):
    """`inference_graph(model)`'s outputs on the held-out images, the reference every export is held to
    (computed once)."""
    model, x, y, *_ = trained
    scores = keras.ops.convert_to_numpy(inference_graph(model)(x, training=False))   # eager: one call
    assert (scores.argmax(1) == y).mean() > 0.5       # learned (chance: 0.1), so agreement below means something
    return scores


@pytest.fixture(scope="module")
def saved_model(trained, tmp_path_factory):
    """The trained model's SavedModel directory (written once: the int8 test converts it)."""
    return export_saved_model(trained[0], str(tmp_path_factory.mktemp("export") / "served"))


def test_saved_model_matches_keras(trained, saved_model, keras_scores):
    x, reference = trained[1], keras_scores
    served = tf.saved_model.load(saved_model)
    assert np.abs(served.serve(tf.constant(x)).numpy() - reference).max() <= 1e-4
    # TFLite float: test_cli_and_tflite_float_match_keras writes it through the CLI (one conversion, not two)


def test_tflite_int8_agrees_with_float(trained, saved_model, keras_scores, tmp_path):
    _, x, y, calibration, _ = trained
    reference = keras_scores.argmax(1)
    # From the SavedModel (the Keras model's own path is the CLI test's): no second SavedModel to write.
    path = export_tflite(saved_model, str(tmp_path / "int8.tflite"), quantize="int8", representative_data=calibration)
    quantized = tflite_predict(path, x).argmax(1)
    assert (quantized == reference).mean() >= 0.9
    assert (quantized == y).mean() > 0.5


def test_int8_file_is_under_a_third_of_float(tmp_path):
    # Weights must fill the files: per-channel scales, zero points and int32 biases grow with the channels, the
    # weights of 1x1 convolutions with their square, so the ratio falls with the width (NASNet-A at F = 32: 34%,
    # F = 64: under 30%; NASNetMobile 30%, README). One-block cells at F = 128 (2.4M weights) make that point with
    # a graph that converts in ~10 s instead of ~35 s.
    model = NASNet(one_block_genotype(), num_cells=1, filters=128, stem="cifar", input_shape=(32, 32, 3), classes=10)
    calibration = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    flat = export_tflite(model, str(tmp_path / "f.tflite"))
    quantized = export_tflite(model, str(tmp_path / "q.tflite"), quantize="int8", representative_data=calibration)
    assert os.path.getsize(quantized) <= 0.3 * os.path.getsize(flat)


def test_unknown_input_size_needs_input_shape(tmp_path):
    model = NASNet(one_block_genotype(), num_cells=1, filters=8, stem="cifar", classes=10)      # (None, None, 3)
    with pytest.raises(ValueError, match=r"TFLite needs a fixed one: pass input_shape=\(height, width, channels\)"):
        export_tflite(model, str(tmp_path / "m.tflite"))
    path = export_tflite(model, str(tmp_path / "m.tflite"), input_shape=(32, 32, 3))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    assert np.abs(tflite_predict(path, x) - model.predict(x, verbose=0)).max() <= 1e-4
    saved = export_saved_model(model, str(tmp_path / "served"))          # a SavedModel keeps the unknown size
    with pytest.raises(ValueError, match=r"unknown size \(-1, -1, 3\); TFLite needs a fixed one"):
        export_tflite(saved, str(tmp_path / "s.tflite"))


def test_int8_without_representative_data_and_existing_outputs_are_refused(trained, tmp_path):
    model = trained[0]
    with pytest.raises(ValueError, match="int8 quantization needs representative_data"):
        export_tflite(model, str(tmp_path / "q.tflite"), quantize="int8")
    existing = tmp_path / "exists.tflite"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        export_tflite(model, str(existing))
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        export_saved_model(model, str(tmp_path))
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="is not a SavedModel directory"):
        export_tflite(str(tmp_path), str(tmp_path / "s.tflite"))
    with pytest.raises(ValueError, match="input_shape applies to a Keras model"):
        export_tflite(str(tmp_path), str(tmp_path / "s.tflite"), input_shape=(32, 32, 3))


def test_cli_and_tflite_float_match_keras(trained, keras_scores, tmp_path, capsys):
    _, x, _, _, keras_path = trained
    out = str(tmp_path / "cli.tflite")
    assert main([f"--model={keras_path}", "--format=tflite", f"--out={out}"]) == 0
    assert np.abs(tflite_predict(out, x, batch_size=8) - keras_scores).max() <= 1e-4     # TFLite float32 = Keras
    assert main([f"--model={keras_path}", "--format=tflite", f"--out={out}"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([f"--model={keras_path}", "--format=tflite_int8", f"--out={tmp_path / 'q.tflite'}"]) == 1
    assert "needs --representative" in capsys.readouterr().err
