"""Tests for nasnet_keras.training.preprocessing and nasnet_keras.training.data."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from nasnet_keras.search import data_sources
from nasnet_keras.training import preprocessing as pre
from nasnet_keras.training.data import TrainingData, load_training_data


def _seed(i):
    return tf.constant([i, 1000 + i], tf.int64)


def _all(ds):
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in ds))
    return np.concatenate(xs), np.concatenate(ys)


def _signed(pixels):
    return pixels.astype(np.float32) / 127.5 - 1.0


def _bilinear(image, out_h, out_w):
    """Independent bilinear resize (half-pixel centres, no antialias) of an (H, W, C) array."""

    def axis(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, n_in - 1), (src - low)

    y0, y1, fy = axis(image.shape[0], out_h)
    x0, x1, fx = axis(image.shape[1], out_w)
    fy, fx = fy[:, None, None], fx[None, :, None]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _windows(padded, h, w):
    return [padded[i:i + h, j:j + w] for i in range(padded.shape[0] - h + 1) for j in range(padded.shape[1] - w + 1)]


# ------------------------------------------------------------ preprocessing


def test_cifar_train_is_a_shifted_copy_of_the_padded_image_and_flips():
    image = np.random.default_rng(0).uniform(-0.9, 0.9, (32, 32, 3)).astype(np.float32)
    windows = _windows(np.pad(image, ((4, 4), (4, 4), (0, 0)), constant_values=-1.0), 32, 32)
    assert len(windows) == 81  # 40x40 padded, 9x9 crop offsets
    offsets, mirrored = set(), 0
    for i in range(40):
        plain = pre.cifar_train(tf.constant(image), _seed(i), flip=False).numpy()
        assert plain.shape == (32, 32, 3) and plain.dtype == np.float32
        offsets.add(next(k for k, win in enumerate(windows) if np.array_equal(win, plain)))
        flipped = pre.cifar_train(tf.constant(image), _seed(i), flip=True).numpy()
        if not np.array_equal(flipped, plain):  # the same crop, mirrored
            np.testing.assert_array_equal(flipped, plain[:, ::-1])
            mirrored += 1
    assert len(offsets) > 15 and 8 <= mirrored <= 32
    # uint8 input is scaled to [-1, 1] first.
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = pre.cifar_train(tf.constant(pixels), _seed(3), flip=False).numpy()
    padded = np.pad(_signed(pixels), ((2, 2), (2, 2), (0, 0)), constant_values=-1.0)
    assert any(np.array_equal(win, out) for win in _windows(padded, 16, 16))


@pytest.mark.parametrize("size", [8, 5])
def test_cutout_zeroes_one_square_and_nothing_else(size):
    image = tf.constant(np.random.default_rng(2).uniform(0.1, 1.0, (32, 32, 3)).astype(np.float32))
    interior = 0
    for i in range(30):
        plain = pre.cifar_train(image, _seed(i), flip=True).numpy()
        cut = pre.cifar_train(image, _seed(i), flip=True, cutout=size).numpy()
        changed = np.any(cut != plain, axis=-1)
        assert np.all(cut[changed] == 0.0)  # the square is set to 0 in all channels
        np.testing.assert_array_equal(cut[~changed], plain[~changed])
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        # One axis-aligned rectangle, clipped at the border (plain has no exact zeros).
        assert changed.sum() == len(rows) * len(cols)
        assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
        assert np.array_equal(cols, np.arange(cols[0], cols[-1] + 1))
        assert size - size // 2 <= min(len(rows), len(cols)) and max(len(rows), len(cols)) <= size
        assert len(rows) == size or rows[0] == 0 or rows[-1] == 31
        interior += (len(rows), len(cols)) == (size, size)
    assert interior >= 10  # centres are uniform: most squares lie inside


def test_inception_train_any_size_to_square():
    pixels = np.random.default_rng(3).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    out = pre.inception_train(tf.constant(pixels), _seed(0), 24, flip=True)
    assert out.shape == (24, 24, 3) and out.dtype == tf.float32
    assert -1.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0
    # Shape unknown until run time (tf.data of varying sizes): still a static output shape.
    fn = tf.function(lambda x, s: pre.inception_train(x, s, 24, flip=False),
                     input_signature=[tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((2,), tf.int64)])
    assert fn.get_concrete_function().structured_outputs.shape == (24, 24, 3)
    # It is the random crop, resized bilinearly (float [-1, 1] input, e.g. digits, works the same).
    signed = tf.constant(_signed(pixels))
    crop = pre.distorted_bounding_box_crop(signed, _seed(5)).numpy()
    np.testing.assert_allclose(fn(tf.constant(pixels), _seed(5)), _bilinear(crop, 24, 24), atol=1e-5)
    np.testing.assert_allclose(pre.inception_train(signed, _seed(5), 24, flip=False), fn(pixels, _seed(5)),
                               atol=1e-6)


def test_inception_crop_windows_area_and_aspect():
    h, w = 60, 90
    coords = np.stack([*np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), np.zeros((h, w), int)], -1)
    fractions = []
    for i in range(200):
        crop = pre.distorted_bounding_box_crop(tf.constant(coords, tf.int32), _seed(i)).numpy()
        ch, cw = crop.shape[:2]
        # A contiguous window of the image.
        np.testing.assert_array_equal(crop[..., 0], coords[crop[0, 0, 0]:crop[0, 0, 0] + ch, :cw, 0])
        np.testing.assert_array_equal(crop[..., 1], coords[:ch, crop[0, 0, 1]:crop[0, 0, 1] + cw, 1])
        fractions.append(ch * cw / (h * w))
        if fractions[-1] < 1:
            assert 0.75 - 0.1 <= cw / ch <= 1.33 + 0.1
    fractions = np.array(fractions)
    assert fractions.min() >= pre.INCEPTION_AREA_RANGE[0] and fractions.max() <= 1.0
    assert np.mean(fractions < 1.0) > 0.8 and fractions.min() < 0.3


def test_central_crop_eval_matches_independent_crop_and_resize():
    pixels = np.random.default_rng(4).integers(0, 256, (40, 24, 3), dtype=np.uint8)
    assert pre.EVAL_CENTRAL_FRACTION == 0.875
    top, left = int((40 - 40 * 0.875) / 2), int((24 - 24 * 0.875) / 2)  # 2, 1
    crop = _signed(pixels)[top:40 - top, left:24 - left]
    assert crop.shape == (36, 22, 3)
    for size in (16, 30):
        out = pre.central_crop_eval(tf.constant(pixels), size)
        assert out.shape == (size, size, 3) and out.dtype == tf.float32
        np.testing.assert_allclose(out, _bilinear(crop, size, size), atol=1e-5)


# --------------------------------------------------------------------- digits


def test_digits_cifar_pipeline_and_validation_is_last_297():
    d = load_training_data(batch_size=100)
    assert isinstance(d, TrainingData) and d.name == "digits"
    assert (d.num_train, d.num_val, d.num_classes) == (1500, 297, 10)
    assert d.input_shape == (32, 32, 3) and d.native_size == (32, 32)
    assert d.validation_source == "last 297 of 'digits'"
    assert (d.steps_per_epoch, d.validation_steps) == (15, 3)
    x, y = next(iter(d.train))
    assert x.shape == (100, 32, 32, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
    xv, yv = _all(d.validation)
    with np.load(os.path.join(os.path.dirname(data_sources.__file__), "digits.npz")) as stored:
        np.testing.assert_array_equal(yv, stored["labels"][-297:])
    np.testing.assert_array_equal(xv, data_sources._digits_arrays((32, 32))[0][-297:])  # scaled only


def test_digits_inception_pipeline():
    d = load_training_data("digits", preprocessing="inception", image_size=24, batch_size=64, flip=True)
    assert d.input_shape == (24, 24, 3) and d.native_size == (32, 32)
    x, y = next(iter(d.train))
    assert x.shape == (64, 24, 24, 3) and y.shape == (64,)
    assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
    xv, yv = _all(d.validation)
    assert xv.shape == (297, 24, 24, 3)
    digits = data_sources._digits_arrays((32, 32))[0]
    np.testing.assert_allclose(xv[0], pre.central_crop_eval(tf.constant(digits[1500]), 24), atol=1e-6)


def test_same_seed_same_batches_and_epochs_differ():
    def first_batches(**kwargs):
        d = load_training_data("digits", batch_size=128, seed=kwargs.pop("seed", 3), flip=True, **kwargs)
        return [next(iter(d.train)) for _ in range(2)]  # two epochs of the same dataset

    for kwargs in ({"cutout": 8}, {"preprocessing": "inception", "image_size": 20}):
        (xa1, ya1), (xa2, ya2) = first_batches(**kwargs)
        (xb1, yb1), _ = first_batches(**kwargs)
        np.testing.assert_array_equal(xa1, xb1)
        np.testing.assert_array_equal(ya1, yb1)
        assert not np.array_equal(ya1, ya2) and not np.array_equal(xa1, xa2)
        (xc1, _), _ = first_batches(seed=4, **kwargs)
        assert not np.array_equal(xa1, xc1)


# ---------------------------------------------------------------- directories


def _write_png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(pixels))


def _pixels(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_directory_with_train_and_val_folders_of_varying_sizes(tmp_path):
    rng = np.random.default_rng(5)
    for cls in ("ant", "bee"):
        for i in range(6):
            _write_png(tmp_path / "train" / cls / f"{i}.png", _pixels(rng, *((20, 30) if i % 2 else (28, 16))))
    val = {}
    for cls, n in (("ant", 2), ("bee", 3)):
        for i in range(n):
            val[(cls, i)] = _pixels(rng, 18 + i, 26)
            _write_png(tmp_path / "val" / cls / f"{i}.png", val[(cls, i)])
    (tmp_path / "test").mkdir()  # val/ comes first
    d = load_training_data(tmp_path, preprocessing="inception", image_size=16, batch_size=4)
    assert d.validation_source == "directory 'val/'" and d.native_size is None
    assert (d.num_train, d.num_val, d.class_names) == (12, 5, ("ant", "bee"))
    x, y = next(iter(d.train))
    assert x.shape == (4, 16, 16, 3) and sum(len(y) for _, y in d.train) == 12
    xv, yv = _all(d.validation)
    expected = {key: pre.central_crop_eval(tf.constant(p), 16).numpy() for key, p in val.items()}
    found = [next(k for k, e in expected.items() if np.allclose(e, img, atol=1e-6)) for img in xv]
    assert sorted(found) == sorted(expected)
    assert [("ant", "bee")[label] for label in yv] == [cls for cls, _ in found]
    # Mixed sizes need an explicit size for the cifar pipeline.
    with pytest.raises(ValueError, match="varying size.*image_size"):
        load_training_data(tmp_path)
    d = load_training_data(tmp_path, image_size=12, batch_size=12)
    assert next(iter(d.train))[0].shape == (12, 12, 12, 3) and _all(d.validation)[0].shape == (5, 12, 12, 3)
    # A validation class the training set lacks is refused.
    _write_png(tmp_path / "val" / "cat" / "0.png", _pixels(rng, 8, 8))
    with pytest.raises(ValueError, match="cat"):
        load_training_data(tmp_path, image_size=12)


def test_flat_directory_holds_out_the_fraction(tmp_path):
    rng = np.random.default_rng(6)
    for cls in ("a", "b"):
        for i in range(10):
            _write_png(tmp_path / cls / f"{i}.png", _pixels(rng, 12, 12))
    d = load_training_data(str(tmp_path), validation_fraction=0.2, batch_size=5, drop_remainder=True, seed=1)
    assert (d.num_train, d.num_val, d.native_size, d.input_shape) == (16, 4, (12, 12), (12, 12, 3))
    assert d.validation_source == "20% held out of the training images (4 images)"
    _, _, files, labels = data_sources.class_folder_files(str(tmp_path))
    xv, yv = _all(d.validation)
    held_out = np.stack([tf.io.decode_png(tf.io.read_file(f)).numpy() for f in files[-4:]])
    np.testing.assert_array_equal(xv, _signed(held_out))
    np.testing.assert_array_equal(yv, labels[-4:])
    batches = list(d.train)
    assert d.steps_per_epoch == len(batches) == 3 and all(len(y) == 5 for _, y in batches)
    # Training pixels are crops of the 16 other images (flip is on by default for directories).
    crops = set()
    for f in files[:-4]:
        padded = np.pad(_signed(tf.io.decode_png(tf.io.read_file(f)).numpy()), ((1, 1), (1, 1), (0, 0)),
                        constant_values=-1.0)
        crops.update(win.tobytes() for win in _windows(padded, 12, 12))
    for image in batches[0][0].numpy():
        assert image.tobytes() in crops or image[:, ::-1].tobytes() in crops


# ------------------------------------------------------------------------ tfds


class NasnetKerasTrainingVaryingImages(tfds.core.GeneratorBasedBuilder):
    """A locally generated tfds dataset of varying-size images: 12 train, 4 validation."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=["x", "y"])}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12), "validation": self._generate_examples(4)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(n)
        for i in range(n):
            yield i, {"image": _pixels(rng, 10 + i, 14), "label": i % 2}


def test_tfds_validation_split_and_varying_sizes(tmp_path):
    name = NasnetKerasTrainingVaryingImages.name
    d = load_training_data(name, preprocessing="inception", image_size=8, batch_size=6, data_dir=tmp_path,
                           download=True)
    assert d.validation_source == "tfds split 'validation'" and d.native_size is None
    assert (d.num_train, d.num_val, d.input_shape) == (12, 4, (8, 8, 3))
    assert next(iter(d.train))[0].shape == (6, 8, 8, 3)
    builder = tfds.builder(name, data_dir=tmp_path)
    val = list(tfds.as_numpy(builder.as_dataset(split="validation", shuffle_files=False)))
    xv, yv = _all(d.validation)
    np.testing.assert_array_equal(yv, [ex["label"] for ex in val])
    np.testing.assert_allclose(xv[3], pre.central_crop_eval(tf.constant(val[3]["image"]), 8), atol=1e-6)
    with pytest.raises(ValueError, match="varying size"):
        load_training_data(name, data_dir=tmp_path)


class NasnetKerasTrainingTrainOnly(tfds.core.GeneratorBasedBuilder):
    """A locally generated tfds dataset of 8x8 images with only a train split (20 examples)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3)), "label": tfds.features.ClassLabel(names=["x", "y"])}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(20)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(n)
        for i in range(n):
            yield i, {"image": _pixels(rng, 8, 8), "label": i % 2}


def test_tfds_without_validation_split_holds_out_the_end_of_train(tmp_path):
    name = NasnetKerasTrainingTrainOnly.name
    d = load_training_data(name, validation_fraction=0.25, batch_size=4, data_dir=tmp_path, download=True)
    assert d.validation_source == "last 5 of tfds split 'train'"
    assert (d.num_train, d.num_val, d.native_size, d.input_shape) == (15, 5, (8, 8), (8, 8, 3))
    last = list(tfds.as_numpy(tfds.builder(name, data_dir=tmp_path).as_dataset(split="train[-5:]")))
    xv, yv = _all(d.validation)
    np.testing.assert_array_equal(xv, _signed(np.stack([ex["image"] for ex in last])))
    np.testing.assert_array_equal(yv, [ex["label"] for ex in last])
    assert sum(len(y) for _, y in d.train) == 15


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize("kwargs, match", [
    ({"preprocessing": "imagenet"}, "Unknown preprocessing 'imagenet'.*'cifar'.*'inception'"),
    ({"cutout": -1}, "cutout must be an int >= 0"),
    ({"cutout": 32}, "cutout=32 must be smaller than the 32x32 images"),
    ({"cutout": 12, "image_size": 12}, "cutout=12 must be smaller than the 12x12"),
    ({"preprocessing": "inception"}, "pass image_size"),
    ({"preprocessing": "inception", "image_size": 24, "cutout": 8}, "cutout=0"),
    ({"batch_size": 0}, "batch_size must be an int > 0"),
    ({"batch_size": 2000, "drop_remainder": True}, "smaller batch_size"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"image_size": 0}, "image_size"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_training_data("digits", **kwargs)
