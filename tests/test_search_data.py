"""Tests for nasnet_keras.search.data (child-training data for the search)."""

import os
import pathlib
import hashlib
import socket

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from nasnet_keras.search import data_sources
from nasnet_keras.search.data import (
    DEFAULT_DATASET,
    DIGITS_HOLDOUT,
    DatasetNotPreparedError,
    SearchData,
    load_dataset,
)


class NasnetKerasTestTinyImages(tfds.core.GeneratorBasedBuilder):
    """A real (locally generated) tfds image-classification dataset: 60 train, 10 test."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(16, 16, 3)),
                    "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(60), "test": self._generate_examples(10)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(n)
        for i in range(n):
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            yield i, {"image": image, "label": i % 3}


TINY_TFDS = NasnetKerasTestTinyImages.name


@pytest.fixture
def no_network(monkeypatch):
    """Makes any attempt to open a network connection fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("the data loader tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _all(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


# ----------------------------------------------------------------- digits


def test_default_is_digits_and_loads_offline(no_network):
    assert DEFAULT_DATASET == "digits"
    d = load_dataset(batch_size=100)
    assert isinstance(d, SearchData)
    assert d.name == "digits"
    assert d.num_classes == 10
    assert d.input_shape == (32, 32, 3)
    assert d.num_train == 1797 - DIGITS_HOLDOUT == 1500
    assert d.num_val == DIGITS_HOLDOUT
    assert d.steps_per_epoch == 15 and d.validation_steps == 3
    assert d.class_names == tuple("0123456789")


def _packaged_digits():
    """digits.npz read directly (not through the loader): uint8 images (1797, 8, 8) and labels."""
    with np.load(os.path.join(os.path.dirname(data_sources.__file__), "digits.npz")) as stored:
        return stored["images"], stored["labels"]


def test_the_packaged_digits_are_scikit_learns_uci_digits():
    images, labels = _packaged_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and labels.shape == (1797,)
    assert images.max() == 16
    # The first image and the class counts as scikit-learn's documentation of load_digits prints them.
    np.testing.assert_array_equal(images[0], [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0],
                                              [0, 3, 15, 2, 0, 11, 8, 0], [0, 4, 12, 0, 0, 8, 8, 0],
                                              [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
                                              [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]])
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # Every byte, as scikit-learn 1.9.1's load_digits() returns them (images and target as uint8).
    assert hashlib.sha256(images.tobytes()).hexdigest() == (
        "8f26b2bd9d135c256808f68f14fdabddde6d9c7f869ae419704b051f0f14b3b3")
    assert hashlib.sha256(labels.tobytes()).hexdigest() == (
        "8ba4f891220f5e4c9c819638d1602d74b83618f167043c6da52a2a247841ddf0")


def test_digits_shapes_dtypes_ranges_and_sizes():
    d = load_dataset("digits", batch_size=128, augment=False)
    x, y = next(iter(d.train))
    assert x.shape == (128, 32, 32, 3) and x.dtype == tf.float32
    assert y.shape == (128,) and y.dtype == tf.int32
    xs, ys = _all(d.train)
    assert xs.shape == (1500, 32, 32, 3)
    assert xs.min() >= -1.0 and xs.max() <= 1.0
    # Background is -1 (intensity 0) and strokes reach +1 (intensity 16).
    assert xs.min() == -1.0 and xs.max() > 0.9
    # Grey replicated into three identical channels.
    np.testing.assert_array_equal(xs[..., 0], xs[..., 1])
    np.testing.assert_array_equal(xs[..., 0], xs[..., 2])
    assert set(ys.tolist()) == set(range(10))
    xv, yv = _all(d.validation)
    assert xv.shape == (DIGITS_HOLDOUT, 32, 32, 3)


def test_digits_reward_set_is_last_examples_and_fixed():
    stored_images, target = _packaged_digits()
    for seed in (0, 7):
        d = load_dataset("digits", seed=seed, batch_size=64)
        _, yv = _all(d.validation)
        np.testing.assert_array_equal(yv, target[-DIGITS_HOLDOUT:])
        _, yt = _all(d.train)
        # Training set is exactly the rest (as a multiset of labels).
        np.testing.assert_array_equal(np.sort(yt), np.sort(target[:-DIGITS_HOLDOUT]))
    # Native 8x8 size: the reward images are the stored images, rescaled.
    d8 = load_dataset("digits", image_size=8, batch_size=500)
    xv, _ = _all(d8.validation)
    expected = stored_images[-DIGITS_HOLDOUT:] / 8.0 - 1.0
    np.testing.assert_allclose(xv[..., 0], expected, atol=1e-6)


def test_holdout_count_and_fraction_and_max_train():
    d = load_dataset("digits", holdout=97, batch_size=50)
    assert (d.num_train, d.num_val) == (1700, 97)
    assert sum(len(y) for _, y in d.validation) == 97
    d = load_dataset("digits", holdout=0.5, batch_size=50)
    assert d.num_val == round(0.5 * 1797) and d.num_train == 1797 - d.num_val
    d = load_dataset("digits", max_train_examples=100, batch_size=32)
    assert d.num_train == 100 and d.num_val == DIGITS_HOLDOUT
    assert sum(len(y) for _, y in d.train) == 100


@pytest.mark.parametrize("holdout", [0, 1797, 5000, 1.0, 0.0, -3, "10", True])
def test_bad_holdout_raises(holdout):
    with pytest.raises(ValueError, match="holdout"):
        load_dataset("digits", holdout=holdout)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"image_size": (32,)}, "image_size"),
        ({"image_size": -4}, "image_size"),
        ({"max_train_examples": 0}, "max_train_examples"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)


def test_same_seed_same_batches_other_seed_other_order():
    a = load_dataset("digits", seed=3, batch_size=64)
    b = load_dataset("digits", seed=3, batch_size=64)
    c = load_dataset("digits", seed=4, batch_size=64)
    xa, ya = next(iter(a.train))
    xb, yb = next(iter(b.train))
    xc, yc = next(iter(c.train))
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(xa, xb)  # augmentation is reproducible too
    assert not np.array_equal(ya, yc)


def test_train_reshuffles_every_epoch_validation_does_not():
    d = load_dataset("digits", seed=0, batch_size=1500, augment=False)
    _, y1 = next(iter(d.train))
    _, y2 = next(iter(d.train))
    assert not np.array_equal(y1, y2)
    np.testing.assert_array_equal(np.sort(y1), np.sort(y2))
    v1 = _all(d.validation)[0]
    v2 = _all(d.validation)[0]
    np.testing.assert_array_equal(v1, v2)


def test_augmentation_keeps_shape_and_range_and_changes_pixels():
    plain = load_dataset("digits", seed=5, batch_size=256, augment=False)
    aug = load_dataset("digits", seed=5, batch_size=256, augment=True)
    xp, yp = next(iter(plain.train))
    xa, ya = next(iter(aug.train))
    np.testing.assert_array_equal(yp, ya)  # same examples, same order
    assert xa.shape == xp.shape == (256, 32, 32, 3)
    assert float(tf.reduce_min(xa)) >= -1.0 and float(tf.reduce_max(xa)) <= 1.0
    changed = np.any(np.abs(xa.numpy() - xp.numpy()) > 1e-6, axis=(1, 2, 3))
    # Crops are uniform over 9x9 offsets, so almost every image moves.
    assert changed.mean() > 0.8
    # Each augmented image is a shifted copy: its pixels match the plain
    # image's pixels on the overlapping window for some offset within +-4.
    xp_np, xa_np = xp.numpy()[:8], xa.numpy()[:8]
    for p, q in zip(xp_np, xa_np):
        padded = np.pad(p, ((4, 4), (4, 4), (0, 0)), constant_values=-1.0)
        assert any(
            np.array_equal(padded[i : i + 32, j : j + 32], q)
            for i in range(9)
            for j in range(9)
        )


def test_flip_default_off_for_digits_and_can_be_enabled():
    # With flips on and no crop shift, some images equal mirrored originals.
    plain = load_dataset("digits", seed=1, batch_size=512, augment=False)
    flipped = load_dataset("digits", seed=1, batch_size=512, flip=True)
    xp = next(iter(plain.train))[0].numpy()
    xf = next(iter(flipped.train))[0].numpy()

    def is_shift_of(ref, img):
        padded = np.pad(ref, ((4, 4), (4, 4), (0, 0)), constant_values=-1.0)
        return any(
            np.array_equal(padded[i : i + 32, j : j + 32], img) for i in range(9) for j in range(9)
        )

    mirrored = [
        not is_shift_of(p, q) and is_shift_of(p[:, ::-1], q) for p, q in zip(xp[:64], xf[:64])
    ]
    assert 10 < sum(mirrored) < 54
    default = load_dataset("digits", seed=1, batch_size=512)
    xd = next(iter(default.train))[0].numpy()
    assert all(is_shift_of(p, q) for p, q in zip(xp[:64], xd[:64]))


def test_repeated_calls_reuse_cached_arrays():
    data_sources._digits_arrays.cache_clear()
    for _ in range(3):
        load_dataset("digits")
    info = data_sources._digits_arrays.cache_info()
    assert info.misses == 1 and info.hits == 2


# -------------------------------------------------------------- directory


def _write_images(root, counts, size=(20, 24), ext="png"):
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        folder = root / cls
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i:03d}.{ext}")


def test_directory_source(tmp_path):
    _write_images(tmp_path, {"cat": 12, "dog": 8, "eel": 10})
    d = load_dataset(tmp_path, holdout=6, batch_size=4, augment=False)
    assert d.name == str(tmp_path.resolve())
    assert d.class_names == ("cat", "dog", "eel") and d.num_classes == 3
    assert d.input_shape == (20, 24, 3)  # native size of the first image
    assert (d.num_train, d.num_val) == (24, 6)
    xt, yt = _all(d.train)
    xv, yv = _all(d.validation)
    assert xt.shape == (24, 20, 24, 3) and xv.shape == (6, 20, 24, 3)
    assert xt.dtype == np.float32 and xt.min() >= -1 and xt.max() <= 1
    assert np.bincount(np.concatenate([yt, yv]), minlength=3).tolist() == [12, 8, 10]
    # Pixels are the files' pixels scaled by x / 127.5 - 1.
    originals = {
        np.asarray(Image.open(p)).astype(np.float32).tobytes()
        for p in tmp_path.glob("*/*.png")
    }
    for img in xv:
        restored = np.round((img + 1.0) * 127.5).astype(np.float32)
        assert restored.tobytes() in originals


def test_directory_split_is_deterministic_and_resizes(tmp_path):
    _write_images(tmp_path, {"a": 10, "b": 10})
    one = load_dataset(str(tmp_path), seed=0, image_size=16, batch_size=50, augment=False)
    two = load_dataset(str(tmp_path), seed=99, image_size=16, batch_size=50)
    assert one.input_shape == (16, 16, 3)
    np.testing.assert_array_equal(_all(one.validation)[0], _all(two.validation)[0])
    assert one.num_val == 2  # default 10%
    x, _ = next(iter(two.train))
    assert x.shape == (18, 16, 16, 3)


def test_empty_directory_raises(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_dataset(tmp_path)


def test_directory_without_images_raises(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no class sub-folders with images"):
        load_dataset(tmp_path)


def test_loose_images_raise_with_hint(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(ValueError, match="one sub-folder per class"):
        load_dataset(tmp_path)


def test_single_class_directory_raises(tmp_path):
    _write_images(tmp_path, {"only": 5})
    with pytest.raises(ValueError, match="at least two"):
        load_dataset(tmp_path)


def test_missing_directory_path_raises(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_file_instead_of_directory_raises(tmp_path):
    path = tmp_path / "file.png"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a directory"):
        load_dataset(str(path))


# ------------------------------------------------------------------ tfds


def test_unknown_tfds_name_suggests_close_names(no_network, tmp_path):
    with pytest.raises(ValueError, match="cifar10") as info:
        load_dataset("cifar11", data_dir=tmp_path)
    assert "Unknown dataset 'cifar11'" in str(info.value)
    assert not isinstance(info.value, tfds.core.registered.DatasetNotFoundError)


def test_non_image_tfds_dataset_raises(no_network, tmp_path):
    with pytest.raises(ValueError, match="not an image-classification dataset"):
        load_dataset("glue/cola", data_dir=tmp_path)


def test_unprepared_tfds_dataset_raises_without_downloading(no_network, tmp_path):
    with pytest.raises(DatasetNotPreparedError, match="tfds build cifar10") as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value) and "data_dir" in str(info.value)
    # Nothing was downloaded or written.
    assert not any(tmp_path.rglob("*.tfrecord*"))


def test_tfds_source_holdout_is_last_of_train(no_network, tmp_path):
    with pytest.raises(DatasetNotPreparedError):
        load_dataset(TINY_TFDS, data_dir=tmp_path)
    # download=True prepares it (this builder generates its data locally).
    d = load_dataset(TINY_TFDS, data_dir=tmp_path, holdout=12, batch_size=8, download=True)
    assert (d.num_train, d.num_val, d.num_classes) == (48, 12, 3)
    assert d.input_shape == (16, 16, 3) and d.class_names == ("a", "b", "c")
    builder = tfds.builder(TINY_TFDS, data_dir=tmp_path)
    last = list(tfds.as_numpy(builder.as_dataset(split="train[-12:]")))
    xv, yv = _all(d.validation)
    np.testing.assert_array_equal(yv, [ex["label"] for ex in last])
    np.testing.assert_allclose(
        xv, np.stack([ex["image"] for ex in last]).astype(np.float32) / 127.5 - 1.0, atol=1e-6
    )
    xt, yt = _all(d.train)
    assert xt.shape == (48, 16, 16, 3) and yt.dtype == np.int32
    # Options: resize and a cap on training examples, read via split slicing.
    small = load_dataset(
        TINY_TFDS, data_dir=tmp_path, holdout=0.25, image_size=32, max_train_examples=10
    )
    assert (small.num_train, small.num_val, small.input_shape) == (10, 15, (32, 32, 3))
    x, _ = next(iter(small.train))
    assert x.shape == (10, 32, 32, 3)


def test_default_holdouts_paper_preset_and_fraction():
    # Paper Sec. 4: 5,000 of CIFAR-10's 50,000 train images.
    resolve, default = data_sources._resolve_holdout, data_sources._default_holdout
    assert resolve(None, 50000, default("cifar10"), "cifar10") == 5000
    assert resolve(None, 60000, default("mnist"), "mnist") == 6000
    assert resolve(None, 30, default(None), "dir") == 3
    assert resolve(None, 1797, default("digits"), "digits") == 297


def test_invalid_name_type_raises():
    with pytest.raises(ValueError, match="name_or_path"):
        load_dataset(42)
    with pytest.raises(ValueError, match="name_or_path"):
        load_dataset("")


def test_pathlib_path_is_always_a_directory():
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(pathlib.Path("digits-dir-that-does-not-exist"))
    assert not os.path.exists("digits-dir-that-does-not-exist")
