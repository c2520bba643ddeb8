"""Image-classification data for training child networks during the cell search.

`load_dataset` returns a `SearchData`: a batched training `tf.data.Dataset`
(optionally augmented), a batched *reward* (validation) dataset whose accuracy
is the controller's reward, and the metadata a child model needs.

The sources -- ``"digits"`` (the default, `DEFAULT_DATASET`: the UCI 8x8
handwritten digits that ship with the package, upscaled to 32x32 RGB), a
tensorflow-datasets name, or a directory with one sub-folder of images per
class -- and how each splits off its reward set are in
`nasnet_keras.search.data_sources`. This module turns a
source into the batched pipelines.

Preprocessing: images become float32 in [-1, 1] (``x / 127.5 - 1`` for uint8
pixels; digits arrive already scaled); labels are int32. Decoded uint8 images
are cached before scaling (4x less memory). Training augmentation (paper
Sec. 4: pad 32x32 CIFAR images to 40x40, random 32x32 crop, random horizontal
flip): pad ``size // 8`` pixels on each side (4 for 32x32, giving 40x40) with
the value of a black pixel (-1), randomly crop back to the original size, and
randomly flip left-right unless flipping is disabled (it is off by default
for digits, whose mirror images are not digits). The augmentation is
`nasnet_keras.training.preprocessing.cifar_train`, which full-scale training
shares.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional, Sequence, Tuple, Union

import tensorflow as tf

from nasnet_keras.search.checks import check_positive, check_seed, is_int
from nasnet_keras.search.data_sources import (DEFAULT_HOLDOUT_FRACTION, DIGITS_HOLDOUT, IMAGE_EXTENSIONS,
                                              PAPER_DATASET, PAPER_HOLDOUT, DatasetNotPreparedError,
                                              digits_source, directory_source)
from nasnet_keras.search.tfds_source import tfds_source
from nasnet_keras.training.preprocessing import cifar_train, to_signed

__all__ = [
    "DEFAULT_DATASET",
    "PAPER_DATASET",
    "PAPER_HOLDOUT",
    "DIGITS_HOLDOUT",
    "DEFAULT_HOLDOUT_FRACTION",
    "IMAGE_EXTENSIONS",
    "DatasetNotPreparedError",
    "SearchData",
    "load_dataset",
    "resolve_search_data",
]

#: Dataset used when none is named: offline, real, small (see
#: `nasnet_keras.search.data_sources`).
DEFAULT_DATASET = "digits"

_MAX_SHUFFLE_BUFFER = 16384
#: Batches prefetched and map calls in parallel: fixed, as tf.data autotuning is off (`_without_autotune`).
_PREFETCH_BATCHES = 2
_PARALLEL_CALLS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

ImageSize = Union[int, Tuple[int, int]]


def resolve_search_data(data, data_options=None):
    """The data a search trains children on, and how a child process can load it again.

    Args:
        data: a `SearchData`, a dataset name or directory for `load_dataset`,
            or ``None`` (its default, ``"digits"``).
        data_options: keyword arguments for `load_dataset` (only with a name or ``None``).

    Returns:
        ``(SearchData, load_dataset kwargs or None)`` (``None`` for a given `SearchData`).

    Raises:
        ValueError: ``data`` of another type, or ``data_options`` with a `SearchData`.
    """
    if isinstance(data, SearchData):
        if data_options is not None:
            raise ValueError("data_options only apply when data is a dataset name or None, not a SearchData.")
        return data, None
    if not (data is None or isinstance(data, (str, os.PathLike))):
        raise ValueError(f"data must be a SearchData, a dataset name / directory, or None; "
                         f"got {type(data).__name__}.")
    kwargs = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in dict(data_options or {}).items()}
    if data is not None:
        kwargs["name_or_path"] = os.fspath(data)
    return load_dataset(**kwargs), kwargs


@dataclasses.dataclass(frozen=True)
class SearchData:
    """Data for one child-training run of the search.

    Attributes:
        name: The source: ``"digits"``, the tfds name as given, or the
            absolute path of the image directory.
        train: Batched ``(images, labels)`` dataset, shuffled (and augmented
            when requested) anew on every iteration; images float32
            ``(batch, H, W, C)`` in [-1, 1], labels int32 ``(batch,)``.
            One iteration is one epoch; it is not repeated.
        validation: The reward set, batched like ``train`` but never
            shuffled or augmented; the same examples in the same order on
            every iteration.
        num_classes: Number of classes; labels are in ``[0, num_classes)``.
        input_shape: ``(H, W, C)`` of one image.
        num_train: Examples in one epoch of ``train``.
        num_val: Examples in ``validation``.
        batch_size: Batch size of both datasets (the last batch may be smaller).
        class_names: Class names in label order.
    """

    name: str
    train: tf.data.Dataset
    validation: tf.data.Dataset
    num_classes: int
    input_shape: Tuple[int, int, int]
    num_train: int
    num_val: int
    batch_size: int
    class_names: Tuple[str, ...]

    @property
    def steps_per_epoch(self) -> int:
        """Number of training batches in one epoch (last one may be partial)."""
        return math.ceil(self.num_train / self.batch_size)

    @property
    def validation_steps(self) -> int:
        """Number of reward-set batches."""
        return math.ceil(self.num_val / self.batch_size)


def load_dataset(
    name_or_path: Union[str, os.PathLike] = DEFAULT_DATASET,
    *,
    holdout: Union[int, float, None] = None,
    image_size: Optional[ImageSize] = None,
    batch_size: int = 64,
    seed: Optional[int] = 0,
    augment: bool = True,
    flip: Optional[bool] = None,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    max_train_examples: Optional[int] = None,
    download: bool = False,
) -> SearchData:
    """Loads a dataset for child training and splits off the reward set.

    Args:
        name_or_path: ``"digits"`` (default), a tensorflow-datasets name, or
            the path of a directory with one sub-folder of images per class.
            A ``pathlib.Path`` is always treated as a directory; a string is
            a directory when one exists at that path, else a tfds name.
        holdout: Size of the reward (validation) set, taken from the *end* of
            the training data. An int is a number of examples; a float in
            (0, 1) is a fraction of the training data (rounded, at least 1).
            ``None`` picks the default: 5,000 for ``"cifar10"`` (paper),
            297 for ``"digits"``, 10% otherwise.
        image_size: Output height/width, an int (square) or ``(h, w)``.
            ``None`` keeps the native size: 32 for digits, the dataset's
            fixed size for tfds (required when its images vary in size), the
            size of the first image (in sorted order) for a directory.
        batch_size: Examples per batch, for both datasets.
        seed: Seed of the shuffle order and the augmentation; the same seed
            gives the same batches. ``None`` gives non-reproducible runs.
            The train/reward split never depends on it.
        augment: Apply pad / random crop (and flip) to the training images.
        flip: Random left-right flip as part of the augmentation. ``None``
            means the per-source default: off for digits, on otherwise.
        data_dir: tensorflow-datasets data directory (tfds sources only);
            ``None`` uses tfds's default (``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``).
        max_train_examples: Keep only the first this-many training examples
            (after the reward set is split off) -- for quick searches.
        download: For tfds sources only: download and prepare the dataset
            when it is not prepared yet (needs the network). When False
            (default) a missing dataset raises `DatasetNotPreparedError`.

    Returns:
        A `SearchData`.

    Raises:
        ValueError: bad arguments, an unknown tfds name (with close matches),
            a tfds dataset that is not image classification, or a directory
            with no images / fewer than two classes.
        DatasetNotPreparedError: the tfds dataset is not prepared locally.
    """
    check_positive("batch_size", batch_size)
    if max_train_examples is not None:
        check_positive("max_train_examples", max_train_examples)
    check_seed("seed", seed)
    size = _normalize_image_size(image_size)

    if isinstance(name_or_path, os.PathLike):
        source = directory_source(os.fspath(name_or_path), holdout, size)
    elif not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(
            "name_or_path must be a dataset name (e.g. 'digits', 'cifar10') or a "
            f"directory path, got {name_or_path!r}."
        )
    elif name_or_path == "digits":
        source = digits_source(holdout, size)
    elif os.path.isdir(os.path.expanduser(name_or_path)):
        source = directory_source(name_or_path, holdout, size)
    elif os.path.exists(os.path.expanduser(name_or_path)):
        raise ValueError(
            f"{name_or_path!r} is a file, not a directory; pass a directory with one "
            "sub-folder of images per class, or a dataset name such as 'digits'."
        )
    else:
        source = tfds_source(name_or_path, holdout, size, data_dir, download, max_train_examples)

    train_ds, num_train = source.train, source.num_train
    if max_train_examples is not None and num_train > max_train_examples:
        # (tfds sources already sliced their split; this only trims the rest.)
        train_ds, num_train = train_ds.take(max_train_examples), int(max_train_examples)

    if flip is None:
        flip = source.default_flip
    return SearchData(
        name=source.name,
        train=_train_pipeline(
            train_ds, num_train, batch_size, seed, augment, bool(flip), source.needs_cache
        ),
        validation=_eval_pipeline(source.validation, batch_size, source.needs_cache),
        num_classes=source.num_classes,
        input_shape=source.input_shape,
        num_train=num_train,
        num_val=source.num_val,
        batch_size=int(batch_size),
        class_names=source.class_names,
    )


def _normalize_image_size(image_size: Optional[ImageSize]) -> Optional[Tuple[int, int]]:
    if image_size is None:
        return None
    if is_int(image_size):
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, Sequence) and len(image_size) == 2 and all(is_int(s) for s in image_size):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(f"image_size must be None, an int or an (h, w) pair, got {image_size!r}.")
    if min(size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}.")
    return size


# --------------------------------------------------------------------------
# Pipelines.


def _to_float(image, label):
    return to_signed(image), label


def _without_autotune(ds):
    """Fixed prefetching instead of tf.data's autotuning. With autotuning, `fit` on a quick child (47 steps)
    often returned seconds after its last step (on_train_end -> return: 4.2 / 0 / 2.9 / 2.3 / 0 / 0 s over six
    children: the iterator's teardown); without it 0 s for ten children, the steps as fast (measured, TF 2.21,
    2 cores)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(_PREFETCH_BATCHES).with_options(options)


def _train_pipeline(ds, num_train, batch_size, seed, augment, flip, cache):
    if cache:
        ds = ds.cache()  # decoded uint8, before scaling: 4x less memory
    ds = ds.shuffle(min(num_train, _MAX_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_to_float, num_parallel_calls=_PARALLEL_CALLS, deterministic=True)
    if augment:
        # One random int64 pair per element, a new stream every epoch but the
        # same streams for the same seed: reproducible, stateless augmentation.
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, randoms)).map(
            lambda pair, s: (cifar_train(pair[0], s, flip=flip), pair[1]),
            num_parallel_calls=_PARALLEL_CALLS,
            deterministic=True,
        )
    return _without_autotune(ds.batch(batch_size))


def _eval_pipeline(ds, batch_size, cache):
    if cache:
        ds = ds.cache()
    ds = ds.map(_to_float, num_parallel_calls=_PARALLEL_CALLS, deterministic=True)
    return _without_autotune(ds.batch(batch_size))
