"""Parity with keras.applications through the published-weights path, served over HTTP."""

import hashlib
import os

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from nasnet_keras import NASNET_A, NASNet, weights as weights_lib
from nasnet_keras.applications import NASNetLarge, NASNetMobile

from _http import serve_directory

REFERENCE = {"mobile": (keras.applications.NASNetMobile, 224), "large": (keras.applications.NASNetLarge, 331)}


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def _randomize_batchnorm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])


def _write_published_file(preset, include_top, directory):
    """Writes keras.applications' random-weight model as a legacy .h5 under its published file name;
    returns (reference model, path)."""
    ctor, size = REFERENCE[preset]
    kwargs = {} if include_top else dict(pooling="avg")
    ref = ctor(weights=None, include_top=include_top, input_shape=(size, size, 3), **kwargs)
    _randomize_batchnorm(ref)
    fname, _ = weights_lib.PUBLISHED_WEIGHTS[(preset, include_top)]
    path = os.path.join(directory, fname)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    return ref, path


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A served directory, a fresh Keras cache, and a hook to register a file's md5."""
    served = tmp_path / "mirror"
    served.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def register(preset, include_top, path):
        fname, _ = weights_lib.PUBLISHED_WEIGHTS[(preset, include_top)]
        monkeypatch.setitem(weights_lib.PUBLISHED_WEIGHTS, (preset, include_top), (fname, _md5(path)))

    with serve_directory(served) as url:
        yield served, url, register


def _check_parity(preset, include_top, mirror, use_env, monkeypatch):
    served, url, register = mirror
    ref, path = _write_published_file(preset, include_top, served)
    register(preset, include_top, path)
    app = NASNetMobile if preset == "mobile" else NASNetLarge
    kwargs = {} if include_top else dict(pooling="avg")
    if use_env:
        monkeypatch.setenv(weights_lib.BASE_URL_ENV, url)
        ours = app(weights="imagenet", include_top=include_top, **kwargs)
    else:
        ours = app(weights="imagenet", include_top=include_top, weights_base_url=url, **kwargs)
    size = REFERENCE[preset][1]
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    expected = ref.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-4
    assert ours.count_params() == ref.count_params()
    cached = os.path.join(os.environ["KERAS_HOME"], "models", os.path.basename(path))
    assert os.path.exists(cached) and _md5(cached) == _md5(path)
    return ours, x, expected


@pytest.mark.parametrize("include_top", [True, False])
def test_mobile_parity_over_http(include_top, mirror, monkeypatch):
    ours, x, expected = _check_parity("mobile", include_top, mirror, use_env=not include_top,
                                      monkeypatch=monkeypatch)
    if include_top:
        assert ours.count_params() == 5_326_716
    else:
        # The same cached file loads into a model with unknown spatial size, and at another size.
        free = NASNetMobile(weights="imagenet", include_top=False, pooling="avg", input_shape=(None, None, 3),
                            weights_base_url="http://127.0.0.1:9/unused/")
        np.testing.assert_allclose(free.predict(x, verbose=0), expected, atol=1e-4)
        assert free.predict(np.zeros((1, 32, 47, 3)), verbose=0).shape == (1, 1056)


@pytest.mark.slow
@pytest.mark.parametrize("include_top", [True, False])
def test_large_parity_over_http(include_top, mirror, monkeypatch):
    ours, _, _ = _check_parity("large", include_top, mirror, use_env=False, monkeypatch=monkeypatch)
    if include_top:
        assert ours.count_params() == 88_949_818


def test_md5_mismatch_is_an_error_and_leaves_no_file(mirror):
    served, url, _ = mirror
    _, path = _write_published_file("mobile", False, served)
    with pytest.raises(ValueError, match="1ed92395b5b598bdda52abe5c0dbfd63") as info:
        NASNetMobile(weights="imagenet", include_top=False, weights_base_url=url)
    cached = os.path.join(os.environ["KERAS_HOME"], "models", os.path.basename(path))
    assert cached in str(info.value)
    assert not os.path.exists(cached)


def test_no_network_error_names_url_md5_and_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    url = "http://127.0.0.1:9/nasnet/"          # discard port: connection refused
    with pytest.raises(ValueError) as info:
        NASNetMobile(weights="imagenet", weights_base_url=url)
    message = str(info.value)
    assert url + "NASNet-mobile.h5" in message
    assert "020fb642bf7360b370c678b08e0adf61" in message
    assert os.path.join(str(tmp_path), "models", "NASNet-mobile.h5") in message


def test_default_url_is_the_published_one(monkeypatch):
    monkeypatch.delenv(weights_lib.BASE_URL_ENV, raising=False)
    url, fname, md5 = weights_lib.published_weights_url("large", False)
    assert url == "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/NASNet-large-no-top.h5"
    assert md5 == "d81d89dc07e6e56530c4e77faddd61b5"


def test_weights_file_of_another_architecture_names_the_layer(tmp_path):
    ref = keras.applications.NASNetMobile(weights=None, include_top=False, input_shape=(224, 224, 3))
    path = str(tmp_path / "mobile-no-top.h5")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)
    with pytest.raises(ValueError, match="layer 'predictions' needs 'predictions'"):
        NASNetMobile(weights=path, include_top=True)
    with pytest.raises(ValueError, match=r"layer 'stem_conv1' expects shapes \[\(3, 3, 3, 96\)\]"):
        NASNet(NASNET_A, num_cells=4, penultimate_filters=1056, include_top=False, weights=path)


def test_weights_files_saved_by_this_package(tmp_path):
    a = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), classes=3)
    x = np.random.rand(2, 32, 32, 3).astype("float32")
    expected = a.predict(x, verbose=0)
    new = tmp_path / "a.weights.h5"
    a.save_weights(str(new))
    legacy = str(tmp_path / "a.h5")
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, a)
    for path in (str(new), legacy):
        b = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), classes=3, weights=path)
        np.testing.assert_allclose(b.predict(x, verbose=0), expected, atol=1e-6)


def test_missing_weights_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        NASNetMobile(weights=str(tmp_path / "nope.h5"))
