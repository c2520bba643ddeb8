"""Parity with keras.applications through the published-weights path, served over HTTP."""

import hashlib
import inspect
import os
import re

import keras
import numpy as np
import pytest

from nasnet_keras import NASNET_A, NASNet, builder, model_cost, weights as weights_lib
from nasnet_keras.applications import NASNetLarge, NASNetMobile

from _http import serve_directory
from _published import randomize_batchnorm, write_legacy_h5

# One test process for the module: its reference models (keras.applications' NASNetMobile / NASNetLarge with
# their published-layout files) are module fixtures, which pytest-xdist would otherwise build in every process
# that runs one of its tests.
pytestmark = pytest.mark.xdist_group("test_weights")
REFERENCE = {"mobile": (keras.applications.NASNetMobile, 224), "large": (keras.applications.NASNetLarge, 331)}


def _md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


class Published:
    """keras.applications' model of a preset, random weights and BatchNorm statistics, and its files in the
    published layout under the published names: with its top, and without (the same weights less the
    `predictions` layer), each written on first use. Built once per module."""

    def __init__(self, preset, directory, batch):
        ctor, size = REFERENCE[preset]
        # Seeded here: a module fixture is built before the per-test seeding of conftest, so its random weights
        # would otherwise depend on which tests this process ran before it (one unexplained failure of the
        # no-top parity in six suite runs on 2026-12-05 could not be reproduced for that reason).
        keras.utils.set_random_seed(0)
        self.ref = ctor(weights=None, include_top=True, input_shape=(size, size, 3))
        randomize_batchnorm(self.ref)
        self.preset, self.directory = preset, str(directory)
        self.x = np.random.default_rng(1).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
        self._files = {}

    def file(self, include_top):
        """(path, md5, expected output for self.x, parameter count) of the file with or without the top."""
        if include_top not in self._files:
            # Without the top, keras.applications' model (pooling="avg") is this one up to the classifier's input.
            model = self.ref if include_top else keras.Model(self.ref.input, self.ref.get_layer("predictions").input)
            fname, _ = weights_lib.PUBLISHED_WEIGHTS[(self.preset, include_top)]
            path = os.path.join(self.directory, fname)
            write_legacy_h5(self.ref, path, skip=() if include_top else ("predictions",))
            self._files[include_top] = (path, _md5(path), _numpy(model(self.x, training=False)),
                                        model.count_params())
        return self._files[include_top]


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


@pytest.fixture(scope="module")
def published_mobile(tmp_path_factory):
    return Published("mobile", tmp_path_factory.mktemp("published_mobile"), batch=2)


@pytest.fixture(scope="module")
def published_large(tmp_path_factory):
    return Published("large", tmp_path_factory.mktemp("published_large"), batch=1)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A served directory, a fresh Keras cache, and a hook that puts a published file in the served
    directory and registers its md5."""
    served = tmp_path / "mirror"
    served.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def publish(published, include_top):
        path, md5, _, _ = published.file(include_top)
        os.symlink(path, served / os.path.basename(path))
        fname, _ = weights_lib.PUBLISHED_WEIGHTS[(published.preset, include_top)]
        monkeypatch.setitem(weights_lib.PUBLISHED_WEIGHTS, (published.preset, include_top), (fname, md5))
        return path

    with serve_directory(served) as url:
        yield served, url, publish


def _check_parity(published, include_top, mirror, use_env, monkeypatch):
    served, url, publish = mirror
    path = publish(published, include_top)
    app = NASNetMobile if published.preset == "mobile" else NASNetLarge
    kwargs = {} if include_top else dict(pooling="avg")
    if use_env:
        monkeypatch.setenv(weights_lib.BASE_URL_ENV, url)
        ours = app(weights="imagenet", include_top=include_top, **kwargs)
    else:
        ours = app(weights="imagenet", include_top=include_top, weights_base_url=url, **kwargs)
    _, md5, expected, params = published.file(include_top)
    got = _numpy(ours(published.x, training=False))
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-4
    assert ours.count_params() == params
    cached = os.path.join(os.environ["KERAS_HOME"], "models", os.path.basename(path))
    assert os.path.exists(cached) and not os.path.islink(cached) and _md5(cached) == md5
    return ours


@pytest.mark.parametrize("include_top", [True, False])
def test_mobile_parity_over_http(include_top, published_mobile, mirror, monkeypatch):
    ours = _check_parity(published_mobile, include_top, mirror, use_env=not include_top, monkeypatch=monkeypatch)
    if include_top:
        assert ours.count_params() == 5_326_716
    else:
        # The same cached file loads into a model with unknown spatial size, and at another size.
        free = NASNetMobile(weights="imagenet", include_top=False, pooling="avg", input_shape=(None, None, 3),
                            weights_base_url="http://127.0.0.1:9/unused/")
        np.testing.assert_allclose(_numpy(free(published_mobile.x, training=False)), published_mobile.file(False)[2],
                                   atol=1e-4)
        assert _numpy(free(np.zeros((1, 32, 47, 3), "float32"), training=False)).shape == (1, 1056)


def test_slim_training_settings_on_the_published_weights(published_mobile, mirror):
    """dropout / aux_head / drop path (TF-slim's from-scratch settings) are keyword arguments; the default
    is keras.applications' model. With them, the published weights still load and inference is unchanged."""
    served, url, publish = mirror
    publish(published_mobile, True)
    # The defaults build keras.applications' model (the parity tests above compare it output for output).
    defaults = inspect.signature(NASNetMobile).parameters
    assert (defaults["dropout"].default, defaults["aux_head"].default, defaults["drop_path_keep_prob"].default) == (
        0.0, False, 1.0)
    trained = NASNetMobile(weights="imagenet", weights_base_url=url, dropout=0.5, aux_head=True,
                           drop_path_keep_prob=0.7, total_training_steps=250_000)
    assert trained.get_layer("dropout").rate == 0.5
    assert [o.shape for o in trained.outputs] == [(None, 1000), (None, 1000)]
    assert trained.get_layer("aux_predictions").count_params() > 0
    assert [layer for layer in trained.layers if "drop_path" in layer.name]
    main, aux = (_numpy(o) for o in trained(published_mobile.x, training=False))
    assert np.max(np.abs(main - published_mobile.file(True)[2])) <= 1e-4
    assert aux.shape == main.shape


@pytest.mark.slow
def test_large_parity_over_http(published_large, mirror, monkeypatch):
    # The proof that the published NASNetLarge files load (88.9M weights, skip_reduction, stem of 96): one
    # keras.applications reference and one of our models, each built once (the suite's only NASNetLarge). The
    # no-top file takes the same layer-name mapping less the top, which the Mobile no-top parity covers.
    ours = _check_parity(published_large, True, mirror, use_env=False, monkeypatch=monkeypatch)
    assert ours.count_params() == 88_949_818           # keras.applications.NASNetLarge's count
    # Paper Table 2: NASNet-A (6 @ 4032) has 23.8B mult-adds, 88.9M params. Checked here, on the one
    # NASNetLarge the suite builds.
    cost = model_cost(ours)
    assert cost.params == 88_949_818
    assert cost.mult_adds == pytest.approx(23.8e9, rel=0.03), cost


def test_md5_mismatch_is_an_error_and_leaves_no_file(published_mobile, mirror):
    served, url, _ = mirror
    path = published_mobile.file(False)[0]      # a valid file, but not the one whose md5 is published
    os.symlink(path, served / os.path.basename(path))
    with pytest.raises(ValueError, match="1ed92395b5b598bdda52abe5c0dbfd63") as info:
        NASNetMobile(weights="imagenet", include_top=False, weights_base_url=url)
    cached = os.path.join(os.environ["KERAS_HOME"], "models", os.path.basename(path))
    assert cached in str(info.value)
    assert "wrong md5 was removed" in str(info.value)
    assert not os.path.exists(cached)


def test_no_network_error_names_url_md5_and_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    url = "http://127.0.0.1:9/nasnet/"          # discard port: connection refused
    with pytest.raises(ValueError, match="Could not get the ImageNet weights NASNet-mobile.h5") as info:
        NASNetMobile(weights="imagenet", weights_base_url=url)
    message = str(info.value)
    assert url + "NASNet-mobile.h5" in message
    assert "020fb642bf7360b370c678b08e0adf61" in message
    assert os.path.join(str(tmp_path), "models", "NASNet-mobile.h5") in message


def test_weights_are_fetched_before_the_network_is_built(tmp_path, monkeypatch):
    # A failed download is reported before NASNetLarge's tens of seconds of building: no cell may be built first.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_cell(*args, **kwargs):
        raise AssertionError("a cell was built before the weights were fetched")

    monkeypatch.setattr(builder, "_build_cell", no_cell)
    with pytest.raises(ValueError, match="Could not get the ImageNet weights NASNet-large-no-top.h5"):
        NASNetLarge(weights="imagenet", include_top=False, weights_base_url="http://127.0.0.1:9/")


def test_default_url_is_the_published_one(monkeypatch):
    monkeypatch.delenv(weights_lib.BASE_URL_ENV, raising=False)
    url, fname, md5 = weights_lib.published_weights_url("large", False)
    assert url == "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/NASNet-large-no-top.h5"
    assert md5 == "d81d89dc07e6e56530c4e77faddd61b5"


def test_weights_file_of_another_architecture_names_the_layer(published_mobile):
    path = published_mobile.file(False)[0]
    with pytest.raises(ValueError, match="layer 'predictions' needs 'predictions', which the file lacks"):
        NASNetMobile(weights=path, include_top=True)
    with pytest.raises(ValueError, match=r"layer 'stem_conv1' expects shapes \[\(3, 3, 3, 16\)\] but the file "
                                         r"holds \[\(3, 3, 3, 32\)\]"):
        NASNet(NASNET_A, num_cells=1, filters=8, stem_filters=16, include_top=False, input_shape=(32, 32, 3),
               weights=path)


def test_weights_files_saved_by_this_package(tmp_path):
    def build(weights=None):
        return NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), classes=3,
                      weights=weights)

    a = build()
    x = np.random.rand(2, 32, 32, 3).astype("float32")
    expected = _numpy(a(x, training=False))
    paths = [str(tmp_path / "a.weights.h5"), str(tmp_path / "full.h5"), str(tmp_path / "layout.h5")]
    a.save_weights(paths[0])           # Keras 3 weights file
    a.save(paths[1])                   # legacy full-model HDF5: weights under "model_weights"
    write_legacy_h5(a, paths[2])       # the published files' layout, by our layer names
    assert not np.allclose(_numpy(build()(x, training=False)), expected, atol=1e-3)   # a fresh init differs
    for path in paths:
        np.testing.assert_allclose(_numpy(build(path)(x, training=False)), expected, atol=1e-6, err_msg=path)


def test_missing_weights_file(tmp_path):
    path = str(tmp_path / "nope.h5")
    with pytest.raises(ValueError, match=re.escape(f"weights={path!r}: no such file")):
        NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), weights=path)
