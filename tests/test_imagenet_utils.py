"""Tests for nasnet_keras.applications.imagenet_utils and its class index."""

import importlib.util
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from nasnet_keras.applications import imagenet_utils  # noqa: E402
from nasnet_keras.applications.imagenet_utils import (  # noqa: E402
    decode_predictions,
    imagenet_class_index,
    preprocess_input,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_preprocess_numpy_range_dtype_and_no_in_place_change():
    x = np.array([[[0.0, 127.5, 255.0]]], dtype=np.float64)
    original = x.copy()
    y = preprocess_input(x)
    assert isinstance(y, np.ndarray)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[[-1.0, 0.0, 1.0]]])
    np.testing.assert_array_equal(x, original)  # input untouched

    images = np.random.default_rng(0).integers(0, 256, size=(2, 4, 4, 3), dtype=np.uint8)
    out = preprocess_input(images, data_format="channels_last")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, images.astype(np.float32) / 127.5 - 1.0, rtol=1e-6)

    float32_in = images.astype(np.float32)
    assert preprocess_input(float32_in) is not float32_in


def test_preprocess_tensor_and_list():
    t = tf.constant([[0, 255]], dtype=tf.uint8)
    y = preprocess_input(t)
    assert tf.is_tensor(y)
    assert y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy(), [[-1.0, 1.0]])
    np.testing.assert_allclose(preprocess_input([127.5]), [0.0])


def test_preprocess_bad_args():
    with pytest.raises(ValueError, match="data_format"):
        preprocess_input(np.zeros(3), data_format="NHWC")
    with pytest.raises(TypeError, match="numeric"):
        preprocess_input(np.array(["a", "b"]))


def test_decode_predictions_top_k_order():
    preds = np.zeros((2, 1000), dtype=np.float32)
    preds[0, 0] = 1.0  # one-hot: tench
    preds[1, 1] = 0.6  # goldfish best, then great white shark, then tench
    preds[1, 2] = 0.3
    preds[1, 0] = 0.1
    decoded = decode_predictions(preds, top=3)
    assert len(decoded) == 2
    assert decoded[0][0] == ("n01440764", "tench", 1.0)
    assert [name for _, name, _ in decoded[1]] == ["goldfish", "great_white_shark", "tench"]
    assert decoded[1][0][0] == "n01443537"
    scores = [score for _, _, score in decoded[1]]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(0.6)
    assert len(decode_predictions(preds)[0]) == 5  # default top=5
    assert decode_predictions(tf.constant(preds), top=1)[1][0][1] == "goldfish"


def test_decode_predictions_bad_input():
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        decode_predictions(np.zeros((1000,)))
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        decode_predictions(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="top"):
        decode_predictions(np.zeros((1, 1000)), top=0)
    with pytest.raises(ValueError, match="top"):
        decode_predictions(np.zeros((1, 1000)), top=1001)


def test_class_index_contents():
    index = imagenet_class_index()
    assert sorted(index, key=int) == [str(i) for i in range(1000)]
    assert index["0"] == ["n01440764", "tench"]
    assert index["1"] == ["n01443537", "goldfish"]
    assert index["2"] == ["n01484850", "great_white_shark"]
    wnids = [wnid for wnid, _ in index.values()]
    assert len(set(wnids)) == 1000
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert all(" " not in name for _, name in index.values())
    index["0"][1] = "changed"  # a copy: the package's index is unaffected
    assert imagenet_class_index()["0"][1] == "tench"


def test_class_index_regenerates_from_local_data(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_class_index", os.path.join(ROOT, "tools", "make_class_index.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "index.json"
    assert tool.main(["--output", str(out)]) == 0
    with open(out) as f, open(imagenet_utils._INDEX_PATH) as g:
        assert json.load(f) == json.load(g)
