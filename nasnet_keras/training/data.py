"""Batched data for full-scale NASNet training (``python -m search.train``).

`load_training_data` returns a `TrainingData`: a training dataset that is
reshuffled and re-augmented on every iteration (one iteration = one epoch),
a fixed-order validation dataset, and the metadata the model needs.

Sources (read with `nasnet_keras.search.data_sources`, the cell search's
loaders, always at their native size):

* ``"digits"``: the packaged UCI handwritten digits at 32x32 (offline); validation = the
  last `DIGITS_HOLDOUT` (297) images, as in the search.
* a tensorflow-datasets name: train = the whole ``train`` split; validation =
  the ``validation`` split, else ``test``, else ``validation_fraction`` held
  out of the end of ``train``.
* a directory: with a ``train/`` sub-folder (of class folders) and one of
  ``validation/``, ``val/``, ``test/``, those; else (a folder of class
  folders, or ``train/`` alone) ``validation_fraction`` is held out with the
  search's fixed, seed-independent split.

Preprocessing (`nasnet_keras.training.preprocessing`):

* ``"cifar"`` (paper Sec. 4 / App. A, CIFAR): images at their native size, or
  resized (bilinear) to ``image_size``; train = pad / random crop / flip /
  cutout; validation = the same images, only scaled to [-1, 1].
* ``"inception"`` (TF-slim ``inception_preprocessing.py``, ImageNet): images
  of any size; train = random Inception crop resized to ``image_size`` and a
  flip; validation = central 87.5% crop resized to ``image_size``.

Decoded uint8 images are cached in memory (before scaling) when the source
decodes files, its images share one size, and the split takes under
`MAX_CACHE_BYTES`; otherwise (e.g. ImageNet) images are decoded every epoch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from nasnet_keras.search.checks import check_positive, check_probability, check_seed
from nasnet_keras.search.data_sources import (DIGITS_HOLDOUT, Source, _resolve_holdout, class_folder_files,
                                              decode_image_file, digits_source)
from nasnet_keras.search.tfds_source import tfds_source
from nasnet_keras.training import preprocessing as pre

__all__ = ["PREPROCESSINGS", "VALIDATION_SPLITS", "VALIDATION_FOLDERS", "MAX_CACHE_BYTES", "TrainingData",
           "load_training_data", "probe_native_size"]

#: Values of ``preprocessing``.
PREPROCESSINGS = ("cifar", "inception")
#: tensorflow-datasets splits used as the validation set, first found wins.
VALIDATION_SPLITS = ("validation", "test")
#: Validation sub-folders of a directory next to ``train/``, first found wins.
VALIDATION_FOLDERS = ("validation", "val", "test")
#: Largest decoded split (bytes of uint8 pixels) cached in memory (~2 GB).
MAX_CACHE_BYTES = 2 * 1024 ** 3

_MAX_SHUFFLE_BUFFER = 16384  # images in memory (cached or digits), as the search
_DECODED_SHUFFLE_BUFFER = 1024  # uncached decoded images of any size: bounded memory


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Data for one training run.

    Attributes:
        name: ``"digits"``, the tfds name as given, or the directory's absolute path.
        train: Batched ``(images, labels)``: float32 ``(B, S, S, C)`` in
            [-1, 1], int32 ``(B,)``. One iteration is one epoch, reshuffled
            and re-augmented each time; the same ``seed`` gives the same batches.
        validation: Batched like ``train`` (the last batch may be smaller),
            fixed order, evaluation preprocessing only.
        num_classes: Labels are in ``[0, num_classes)``.
        input_shape: ``(S, S, C)``, the model input.
        native_size: ``(h, w)`` of the source images, None when they vary in
            size (e.g. imagenet2012). Digits: (32, 32).
        num_train, num_val: Examples per epoch / in ``validation``.
        batch_size: Batch size of both datasets.
        class_names: Class names in label order.
        validation_source: Where the validation examples come from, in words.
        preprocessing: ``"cifar"`` or ``"inception"``.
        drop_remainder: ``train`` drops its last partial batch.
    """

    name: str
    train: tf.data.Dataset
    validation: tf.data.Dataset
    num_classes: int
    input_shape: Tuple[int, int, int]
    native_size: Optional[Tuple[int, int]]
    num_train: int
    num_val: int
    batch_size: int
    class_names: Tuple[str, ...]
    validation_source: str
    preprocessing: str = "cifar"
    drop_remainder: bool = False

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch: ceil(num_train / batch_size), floor with ``drop_remainder``."""
        if self.drop_remainder:
            return self.num_train // self.batch_size
        return math.ceil(self.num_train / self.batch_size)

    @property
    def validation_steps(self) -> int:
        """Validation batches: ceil(num_val / batch_size)."""
        return math.ceil(self.num_val / self.batch_size)


def load_training_data(
    name_or_path: Union[str, os.PathLike] = "digits",
    *,
    preprocessing: str = "cifar",
    image_size: Optional[int] = None,
    batch_size: int = 32,
    seed: Optional[int] = 0,
    cutout: int = 0,
    flip: Optional[bool] = None,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    download: bool = False,
    max_train_examples: Optional[int] = None,
    validation_fraction: float = 0.1,
    drop_remainder: bool = False,
) -> TrainingData:
    """Loads a dataset for full-scale training with the paper's preprocessing.

    Args:
        name_or_path: ``"digits"`` (default), a tensorflow-datasets name, or a
            directory (see the module docstring). A ``pathlib.Path`` is always
            a directory; a string is one when it exists, else a tfds name.
        preprocessing: ``"cifar"`` (default) or ``"inception"``.
        image_size: Side S of the model input. ``"cifar"``: None keeps the
            native size (required for sources of varying size); ``"inception"``:
            required (e.g. 224 or 331).
        batch_size: Examples per batch (default 32).
        seed: Shuffle and augmentation seed (default 0); None: not reproducible.
        cutout: Side of the cutout square, 0 (default) for none; ``"cifar"``
            only, smaller than S (DeVries & Taylor 2017: 16 for 32x32 CIFAR-10).
        flip: Random left-right flips; None: on, except for digits.
        data_dir, download: tensorflow-datasets data directory (None: tfds's
            default) and whether to download an unprepared dataset (default
            False: `DatasetNotPreparedError`).
        max_train_examples: Train on only the first this-many examples.
        validation_fraction: Fraction held out of the training images when
            the source has no validation split / folder (default 0.1).
        drop_remainder: Drop the last partial training batch (default False).

    Returns:
        A `TrainingData`.

    Raises:
        ValueError: a bad argument (the message names it and the fix), an
            unknown tfds name, or an unusable directory.
        DatasetNotPreparedError: the tfds dataset is not prepared locally.
    """
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(f"Unknown preprocessing {preprocessing!r}; use 'cifar' (paper CIFAR: pad, random "
                         "crop, flip, cutout) or 'inception' (TF-slim ImageNet: random crop resized to "
                         "image_size, central crop for validation).")
    batch_size = check_positive("batch_size", batch_size)
    seed = check_seed("seed", seed)
    cutout = check_positive("cutout", cutout, allow_zero=True)
    if image_size is not None:
        image_size = check_positive("image_size", image_size)
    if max_train_examples is not None:
        max_train_examples = check_positive("max_train_examples", max_train_examples)
    validation_fraction = check_probability("validation_fraction", validation_fraction, allow_one=False)
    if preprocessing == "inception":
        if image_size is None:
            raise ValueError("preprocessing='inception' crops every image to image_size x image_size; pass "
                             "image_size (e.g. 224, or 331 for NASNet-A Large).")
        if cutout:
            raise ValueError(f"cutout={cutout} is applied by preprocessing='cifar' only; pass cutout=0 with "
                             "preprocessing='inception'.")

    src, decode = _load_source(name_or_path, data_dir, download, max_train_examples, validation_fraction)
    native, channels = _native_size(src), src.input_shape[2]
    if image_size is None and native is None:
        raise ValueError(f"{src.name!r} has images of varying size and preprocessing='cifar' keeps one size; "
                         "pass image_size=S to resize them (or use preprocessing='inception').")
    size = (image_size, image_size) if image_size is not None else native
    if cutout >= min(size):
        raise ValueError(f"cutout={cutout} must be smaller than the {size[0]}x{size[1]} images; pass a "
                         "smaller cutout (DeVries & Taylor 2017: 16 for 32x32 CIFAR-10) or 0 for none.")
    if drop_remainder and src.num_train < batch_size:
        raise ValueError(f"drop_remainder=True with batch_size={batch_size} > {src.num_train} training "
                         "examples leaves no batch; pass a smaller batch_size.")
    train_fn, eval_fn = _preprocessors(preprocessing, size, native, channels,
                                       src.default_flip if flip is None else bool(flip), cutout)
    return TrainingData(
        name=src.name,
        train=_train_pipeline(src, decode, train_fn, batch_size, seed, drop_remainder),
        validation=_eval_pipeline(src, decode, eval_fn, batch_size),
        num_classes=src.num_classes,
        input_shape=(size[0], size[1], channels),
        native_size=native,
        num_train=src.num_train,
        num_val=src.num_val,
        batch_size=batch_size,
        class_names=src.class_names,
        validation_source=src.validation_source,
        preprocessing=preprocessing,
        drop_remainder=bool(drop_remainder),
    )


def probe_native_size(name_or_path: Union[str, os.PathLike] = "digits", *,
                      data_dir: Optional[Union[str, os.PathLike]] = None,
                      download: bool = False) -> Optional[Tuple[int, int]]:
    """``(h, w)`` of a source's images, None when they vary (e.g. imagenet2012); builds no pipeline.

    Raises:
        As `load_training_data` for an unknown, unusable or unprepared source.
    """
    src, _ = _load_source(name_or_path, data_dir, download, None, 0.1)
    return _native_size(src)


# --------------------------------------------------------------------------
# Sources.


def _load_source(name_or_path, data_dir, download, max_train, fraction) -> Tuple[Source, Optional[Callable]]:
    """The source at its native size, and the map function decoding its elements (None: already decoded)."""
    if isinstance(name_or_path, os.PathLike):
        return _directory(os.fspath(name_or_path), max_train, fraction)
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError("name_or_path must be a dataset name (e.g. 'digits', 'cifar10', 'imagenet2012') or a "
                         f"directory path, got {name_or_path!r}.")
    if name_or_path == "digits":
        source = digits_source(DIGITS_HOLDOUT, None)  # the search's reward set: the last 297
    elif os.path.isdir(os.path.expanduser(name_or_path)):
        return _directory(name_or_path, max_train, fraction)
    elif os.path.exists(os.path.expanduser(name_or_path)):
        raise ValueError(f"{name_or_path!r} is a file, not a directory; pass a directory of class folders "
                         "or a dataset name such as 'digits'.")
    else:  # native size kept: the per-image preprocessing resizes
        source = tfds_source(name_or_path, fraction, None, data_dir, download, max_train,
                             validation_splits=VALIDATION_SPLITS, keep_native=True)
    if max_train is not None and source.num_train > max_train:
        source = dataclasses.replace(source, train=source.train.take(max_train), num_train=max_train)
    return source, None


def _directory(path: str, max_train, fraction) -> Tuple[Source, Callable]:
    """A directory of class folders, or ``train/`` (+ a validation folder) of class folders."""
    root = os.path.abspath(os.path.expanduser(path))
    train_dir, val_name = os.path.join(root, "train"), None
    if os.path.isdir(train_dir) and any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(train_dir)):
        val_name = next((n for n in VALIDATION_FOLDERS if os.path.isdir(os.path.join(root, n))), "")
    else:
        train_dir = root
    _, class_names, files, labels = class_folder_files(train_dir)
    if val_name:
        _, val_classes, val_files, val_labels = class_folder_files(os.path.join(root, val_name))
        unknown = sorted(set(val_classes) - set(class_names))
        if unknown:
            raise ValueError(f"{os.path.join(root, val_name)!r} has class folders {unknown} that "
                             f"{train_dir!r} lacks; validation classes must be training classes.")
        val_labels = np.asarray([class_names.index(n) for n in val_classes], np.int32)[val_labels]
        validation_source = f"directory '{val_name}/'"
    else:  # the search's fixed split: the last examples of class_folder_files' fixed order
        n_val = _resolve_holdout(fraction, len(files), None, f"directory {train_dir!r}")
        files, labels, val_files, val_labels = files[:-n_val], labels[:-n_val], files[-n_val:], labels[-n_val:]
        where = "'train/'" if train_dir != root else "the training images"
        validation_source = f"{fraction:.0%} held out of {where} ({n_val} images)"
    if max_train is not None:
        files, labels = files[:max_train], labels[:max_train]
    h, w = _common_size(np.concatenate([files, val_files])) or (None, None)
    source = Source(name=root, train=tf.data.Dataset.from_tensor_slices((files, labels)),
                    validation=tf.data.Dataset.from_tensor_slices((val_files, val_labels)),
                    num_train=len(files), num_val=len(val_files), num_classes=len(class_names),
                    input_shape=(h, w, 3), class_names=class_names, default_flip=True, needs_cache=True,
                    validation_source=validation_source)
    return source, decode_image_file  # file names: decoded in the pipeline, after shuffling when uncached


def _common_size(files) -> Optional[Tuple[int, int]]:
    """(h, w) shared by all ``files``, None as soon as two differ (reads headers only, via Pillow)."""
    from PIL import Image  # a dependency of matplotlib, which the package requires

    common = None
    for file in files:
        with Image.open(file) as image:
            size = (image.height, image.width)
        if common is None:
            common = size
        elif size != common:
            return None
    return common


# --------------------------------------------------------------------------
# Pipelines.


def _preprocessors(preprocessing, size, native_size, channels, flip, cutout):
    """(train_fn(image, seed), eval_fn(image)) for one image, both -> float32 (S, S, C) in [-1, 1]."""
    if preprocessing == "inception":
        return (lambda image, seed: pre.inception_train(image, seed, size[0], flip=flip),
                lambda image: pre.central_crop_eval(image, size[0]))

    def scaled(image):  # cifar_train needs the static shape
        image = pre.to_signed(image)
        if tuple(size) != native_size:
            image = tf.image.resize(image, size, method="bilinear")
        return tf.ensure_shape(image, (size[0], size[1], channels))

    return (lambda image, seed: pre.cifar_train(scaled(image), seed, flip=flip, cutout=cutout), scaled)


def _native_size(src: Source) -> Optional[Tuple[int, int]]:
    h, w, _ = src.input_shape
    return (h, w) if h and w else None


def _cacheable(src: Source, count: int) -> bool:
    """Decoded uint8 images are cached when they have one size and take < `MAX_CACHE_BYTES`."""
    if not src.needs_cache or _native_size(src) is None:
        return False  # digits are in memory; varying sizes are ImageNet-scale
    return count * math.prod(src.input_shape) < MAX_CACHE_BYTES


def _train_pipeline(src: Source, decode, train_fn, batch_size, seed, drop_remainder):
    ds, n, cache = src.train, src.num_train, _cacheable(src, src.num_train)
    shuffle_files = decode is not None and not cache
    if shuffle_files:  # file names are small: shuffle all of them, then decode
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if decode is not None:
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()  # decoded uint8, before scaling: 4x less memory
    if not shuffle_files:
        buffer = _MAX_SHUFFLE_BUFFER if cache or not src.needs_cache else _DECODED_SHUFFLE_BUFFER
        ds = ds.shuffle(min(n, buffer), seed=seed, reshuffle_each_iteration=True)
    # One random int64 pair per element: new streams every epoch, the same
    # streams for the same seed (reproducible stateless augmentation).
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, randoms)).map(lambda pair, s: (train_fn(pair[0], s), pair[1]),
                                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _eval_pipeline(src: Source, decode, eval_fn, batch_size):
    ds = src.validation
    if decode is not None:
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if _cacheable(src, src.num_val):
        ds = ds.cache()
    ds = ds.map(lambda image, label: (eval_fn(image), label), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
