"""Image-classification data for training child networks during the cell search.

`load_dataset` returns a `SearchData`: a batched training `tf.data.Dataset`
(optionally augmented), a batched *reward* (validation) dataset whose accuracy
is the controller's reward, and the metadata a child model needs.

Three kinds of source are understood:

* ``"digits"`` (the default, `DEFAULT_DATASET`): scikit-learn's
  ``load_digits``, 1,797 real 8x8 grey-scale handwritten digits that ship
  inside scikit-learn, so a quick search runs with no network and no download.
  Images are upscaled (bilinear, antialiased) to 32x32 -- or ``image_size`` --
  and the grey channel is copied into 3 channels so the images look like small
  RGB photos to a CIFAR-style child network. The last 297 examples are the
  reward set (1,500 train / 297 reward).
* a tensorflow-datasets name (``"cifar10"``, ``"mnist"``, ``"fashion_mnist"``,
  ``"glue/cola"``-style configs, ``"name:version"``...). The dataset needs
  ``image`` and ``label`` features and a ``train`` split, and must already be
  prepared in ``data_dir`` (nothing is downloaded unless ``download=True``).
  ``"cifar10"`` uses the paper's preset: the last 5,000 of the 50,000 training
  images are held out as the reward set (paper Sec. 4 / facts Sec. 5).
* a directory with one sub-folder of images per class (PNG, JPEG, BMP, GIF).

In every case the reward set is the *last* ``holdout`` examples of the
training data (for directories: of a fixed, seed-independent permutation of
the sorted file list), so it does not change between trials or seeds.

Preprocessing: images become float32 in [-1, 1] (``x / 127.5 - 1`` for uint8
pixels, ``x / 8 - 1`` for the 0..16 digit intensities); labels are int32.
Training augmentation (paper Sec. 4, facts Sec. 5: "pad to 40, random 32
crop, flip"): pad ``size // 8`` pixels on each side (4 for 32x32, giving 40x40)
with the value of a black pixel (-1), randomly crop back to the original size,
and randomly flip left-right unless flipping is disabled (it is off by default
for digits, whose mirror images are not digits).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

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
]

#: Dataset used when none is named: offline, real, small (see module doc).
DEFAULT_DATASET = "digits"
#: The dataset the paper searched on.
PAPER_DATASET = "cifar10"
#: Paper Sec. 4 (facts Sec. 5): 5,000 of CIFAR-10's 50,000 training images are
#: held out as the reward's validation set.
PAPER_HOLDOUT = 5000
#: Default reward-set size for "digits": leaves exactly 1,500 training images.
DIGITS_HOLDOUT = 297
#: Default reward-set fraction for every other source (same 10% as the paper).
DEFAULT_HOLDOUT_FRACTION = 0.1
#: File name endings the directory source reads (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

# The directory split uses its own fixed seed so that the reward set is the
# same whatever `seed` a trial uses.
_DIRECTORY_SPLIT_SEED = 1234
_MAX_SHUFFLE_BUFFER = 16384
_DIGITS_NATIVE_SIZE = 8
_DIGITS_DEFAULT_SIZE = 32

ImageSize = Union[int, Tuple[int, int]]


class DatasetNotPreparedError(FileNotFoundError):
    """A tensorflow-datasets dataset is not prepared in the data directory.

    Raised instead of silently downloading; the message says how to prepare it.
    """


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
        ImportError: ``"digits"`` without scikit-learn installed.
    """
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if max_train_examples is not None and (
        not _is_int(max_train_examples) or max_train_examples < 1
    ):
        raise ValueError(
            f"max_train_examples must be a positive int or None, got {max_train_examples!r}."
        )
    if seed is not None and not _is_int(seed):
        raise ValueError(f"seed must be an int or None, got {seed!r}.")
    size = _normalize_image_size(image_size)

    if isinstance(name_or_path, os.PathLike):
        source = _load_directory(os.fspath(name_or_path), holdout, size)
    elif not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(
            "name_or_path must be a dataset name (e.g. 'digits', 'cifar10') or a "
            f"directory path, got {name_or_path!r}."
        )
    elif name_or_path == "digits":
        source = _load_digits(holdout, size)
    elif os.path.isdir(os.path.expanduser(name_or_path)):
        source = _load_directory(name_or_path, holdout, size)
    elif os.path.exists(os.path.expanduser(name_or_path)):
        raise ValueError(
            f"{name_or_path!r} is a file, not a directory; pass a directory with one "
            "sub-folder of images per class, or a dataset name such as 'digits'."
        )
    else:
        source = _load_tfds(name_or_path, holdout, size, data_dir, download, max_train_examples)

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


# --------------------------------------------------------------------------
# Sources. Each returns unbatched (image, int32 label) datasets; images are
# uint8 (scaled later, after the cache) or, for digits, float32 in [-1, 1].
# `needs_cache` is True when decoding is worth caching.


@dataclasses.dataclass(frozen=True)
class _Source:
    name: str
    train: tf.data.Dataset
    validation: tf.data.Dataset
    num_train: int
    num_val: int
    num_classes: int
    input_shape: Tuple[int, int, int]
    class_names: Tuple[str, ...]
    default_flip: bool
    needs_cache: bool


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _normalize_image_size(image_size: Optional[ImageSize]) -> Optional[Tuple[int, int]]:
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(f"image_size must be None, an int or an (h, w) pair, got {image_size!r}.")
    if min(size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}.")
    return size


def _default_holdout(source_name: Optional[str]) -> Union[int, float]:
    """Reward-set size used when ``holdout`` is None (see `load_dataset`)."""
    if source_name == PAPER_DATASET:
        return PAPER_HOLDOUT  # paper Sec. 4 / facts Sec. 5
    if source_name == "digits":
        return DIGITS_HOLDOUT
    return DEFAULT_HOLDOUT_FRACTION


def _resolve_holdout(holdout: Union[int, float, None], total: int, default, what: str) -> int:
    """Turns a holdout spec into a count that leaves >= 1 training example."""
    if holdout is None:
        holdout = default
    if isinstance(holdout, bool):
        raise ValueError(f"holdout must be an int or a fraction, got {holdout!r}.")
    if isinstance(holdout, (int, np.integer)):
        count = int(holdout)
    elif isinstance(holdout, (float, np.floating)):
        if not 0.0 < holdout < 1.0:
            raise ValueError(
                f"A fractional holdout must be in (0, 1), got {holdout!r}; pass an int "
                "for a number of examples."
            )
        count = max(1, int(round(holdout * total)))
    else:
        raise ValueError(f"holdout must be an int, a float in (0, 1) or None, got {holdout!r}.")
    if not 1 <= count < total:
        raise ValueError(
            f"holdout={holdout!r} must leave at least one training example and hold out "
            f"at least one: {what} has {total} training examples."
        )
    return count


def _scale_uint8(image: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


@functools.lru_cache(maxsize=4)
def _digits_arrays(size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as read-only float32 (N, h, w, 3) in [-1, 1], int32 labels.

    Cached per size (a few MB each) so repeated calls are cheap.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "The 'digits' dataset needs scikit-learn: pip install scikit-learn "
            "(or name another dataset)."
        ) from err
    bunch = load_digits()
    # Intensities are 0..16 (paper-independent: sklearn's UCI digits).
    images = bunch.images.astype(np.float32)[..., None]
    if size != (_DIGITS_NATIVE_SIZE, _DIGITS_NATIVE_SIZE):
        images = tf.image.resize(images, size, method="bilinear", antialias=True).numpy()
    images = np.clip(images / 8.0 - 1.0, -1.0, 1.0).astype(np.float32)
    images = np.repeat(images, 3, axis=-1)
    labels = bunch.target.astype(np.int32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _load_digits(holdout, size) -> _Source:
    size = size or (_DIGITS_DEFAULT_SIZE, _DIGITS_DEFAULT_SIZE)
    images, labels = _digits_arrays(size)
    total = len(labels)
    n_val = _resolve_holdout(holdout, total, _default_holdout("digits"), "'digits'")
    n_train = total - n_val
    return _Source(
        name="digits",
        train=tf.data.Dataset.from_tensor_slices((images[:n_train], labels[:n_train])),
        validation=tf.data.Dataset.from_tensor_slices((images[n_train:], labels[n_train:])),
        num_train=n_train,
        num_val=n_val,
        num_classes=10,
        input_shape=(size[0], size[1], 3),
        class_names=tuple(str(d) for d in range(10)),
        default_flip=False,  # a mirrored digit is not a digit
        needs_cache=False,  # already in memory
    )


def _load_directory(path: str, holdout, size) -> _Source:
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise ValueError(f"Image directory {root!r} does not exist.")
    class_names, files, labels = [], [], []
    for entry in sorted(os.listdir(root)):
        sub = os.path.join(root, entry)
        if entry.startswith(".") or not os.path.isdir(sub):
            continue
        images = _image_files(sub)
        if images:
            files.extend(images)
            labels.extend([len(class_names)] * len(images))
            class_names.append(entry)
    if not files:
        loose = _image_files(root, recursive=False)
        hint = (
            f" It holds {len(loose)} images directly; move them into one sub-folder per class."
            if loose
            else ""
        )
        raise ValueError(
            f"Image directory {root!r} has no class sub-folders with images "
            f"({', '.join(IMAGE_EXTENSIONS)}).{hint}"
        )
    if len(class_names) < 2:
        raise ValueError(
            f"Image directory {root!r} has images for only one class ({class_names[0]!r}); "
            "a classification dataset needs at least two class sub-folders."
        )
    total = len(files)
    n_val = _resolve_holdout(holdout, total, _default_holdout(None), f"directory {root!r}")
    order = np.random.default_rng(_DIRECTORY_SPLIT_SEED).permutation(total)
    files = np.asarray(files)[order]
    labels = np.asarray(labels, dtype=np.int32)[order]

    if size is None:
        first = tf.io.decode_image(tf.io.read_file(files[0]), expand_animations=False)
        size = (int(first.shape[0]), int(first.shape[1]))

    def decode(file, label):
        image = tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)
        image = tf.image.resize(image, size, method="bilinear")
        image = tf.saturate_cast(tf.round(image), tf.uint8)
        image.set_shape((size[0], size[1], 3))
        return image, label

    def make(sl):
        ds = tf.data.Dataset.from_tensor_slices((files[sl], labels[sl]))
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    n_train = total - n_val
    return _Source(
        name=root,
        train=make(slice(0, n_train)),
        validation=make(slice(n_train, total)),
        num_train=n_train,
        num_val=n_val,
        num_classes=len(class_names),
        input_shape=(size[0], size[1], 3),
        class_names=tuple(class_names),
        default_flip=True,
        needs_cache=True,
    )


def _image_files(folder: str, recursive: bool = True):
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
        if not recursive:
            break
    return found


def _tfds_builder(name: str, data_dir):
    import tensorflow_datasets as tfds

    try:
        not_found = tfds.core.registered.DatasetNotFoundError
    except AttributeError:  # pragma: no cover - older/newer tfds layout
        not_found = ValueError
    kwargs = {} if data_dir is None else {"data_dir": os.fspath(data_dir)}
    try:
        return tfds.builder(name, **kwargs)
    except not_found:
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(name.split(":")[0].split("/")[0], known, n=5, cutoff=0.5)
        suggestion = f" Similar tensorflow-datasets names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown dataset {name!r}: not 'digits', not an existing directory, and not a "
            f"tensorflow-datasets name.{suggestion} (tensorflow_datasets.list_builders() "
            "lists them all.)"
        ) from None
    except (ValueError, AssertionError) as err:
        raise ValueError(f"Cannot open tensorflow-datasets dataset {name!r}: {err}") from None


def _load_tfds(name, holdout, size, data_dir, download, max_train_examples) -> _Source:
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    features = builder.info.features
    keys = set(features.keys()) if hasattr(features, "keys") else set()
    if not {"image", "label"} <= keys or not isinstance(
        features["label"], tfds.features.ClassLabel
    ) or not isinstance(features["image"], tfds.features.Image):
        raise ValueError(
            f"tensorflow-datasets dataset {name!r} is not an image-classification dataset: "
            f"it needs an 'image' Image feature and a 'label' ClassLabel feature, it has "
            f"{sorted(keys)}."
        )
    if not builder.is_prepared():
        if not download:
            where = builder.data_dir
            raise DatasetNotPreparedError(
                f"tensorflow-datasets dataset {name!r} is not prepared in {where!r} and "
                "downloading is off. Prepare it on a machine with internet access, e.g. "
                f"`tfds build {name} --data_dir=DIR` (or pass download=True here), then copy "
                "DIR over and pass data_dir=DIR (or set TFDS_DATA_DIR)."
            )
        builder.download_and_prepare()
    splits = builder.info.splits
    if "train" not in splits:
        raise ValueError(
            f"tensorflow-datasets dataset {name!r} has no 'train' split (it has "
            f"{sorted(splits.keys())}); the reward set is cut from the train split."
        )
    total = splits["train"].num_examples
    n_val = _resolve_holdout(holdout, total, _default_holdout(builder.name), f"{name!r}")
    n_train = total - n_val
    if max_train_examples is not None:
        n_train = min(n_train, int(max_train_examples))
    # tfds split slicing: the reward set is the last n_val of 'train'.
    train_split, val_split = f"train[:{n_train}]", f"train[{total - n_val}:]"

    image_feature, num_classes = features["image"], features["label"].num_classes
    h, w, c = image_feature.shape
    if c is None:
        raise ValueError(
            f"tensorflow-datasets dataset {name!r} has images with an unknown channel count."
        )
    if size is None:
        if h is None or w is None:
            raise ValueError(
                f"tensorflow-datasets dataset {name!r} has images of varying size; pass "
                "image_size=(h, w) to resize them."
            )
        size = (h, w)
    resize = size != (h, w)
    if image_feature.tf_dtype != tf.uint8:
        raise ValueError(
            f"tensorflow-datasets dataset {name!r} stores {image_feature.tf_dtype.name} "
            "images; only uint8 images are supported."
        )

    def to_pair(example):
        image = example["image"]
        if resize:
            image = tf.image.resize(image, size, method="bilinear")
            image = tf.saturate_cast(tf.round(image), tf.uint8)
        image.set_shape((size[0], size[1], c))
        return image, tf.cast(example["label"], tf.int32)

    def make(split):
        ds = builder.as_dataset(split=split, shuffle_files=False)
        return ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return _Source(
        name=name,
        train=make(train_split),
        validation=make(val_split),
        num_train=n_train,
        num_val=n_val,
        num_classes=int(num_classes),
        input_shape=(size[0], size[1], int(c)),
        class_names=tuple(features["label"].names),
        default_flip=True,
        needs_cache=True,
    )


# --------------------------------------------------------------------------
# Pipelines.


def _to_float(image, label):
    if image.dtype == tf.uint8:
        image = _scale_uint8(image)
    return image, label


def _augment(image: tf.Tensor, seed: tf.Tensor, flip: bool) -> tf.Tensor:
    """Pad size//8 per side with black (-1), random crop back, optional flip.

    Paper Sec. 4 (facts Sec. 5): pad 32x32 CIFAR images to 40x40, take a
    random 32x32 crop, random horizontal flip. ``seed`` is a shape-[2] int
    tensor; the crop and the flip derive their stateless seeds from it.
    """
    h, w, c = image.shape
    pad_h, pad_w = h // 8, w // 8
    padded = tf.pad(image, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]], constant_values=-1.0)
    crop_seed = tf.stack([seed[0], seed[1]])
    image = tf.image.stateless_random_crop(padded, (h, w, c), seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=tf.stack([seed[1], seed[0]]))
    return image


def _train_pipeline(ds, num_train, batch_size, seed, augment, flip, cache):
    if cache:
        ds = ds.cache()  # decoded uint8, before scaling: 4x less memory
    ds = ds.shuffle(min(num_train, _MAX_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment:
        # One random int64 pair per element, a new stream every epoch but the
        # same streams for the same seed: reproducible, stateless augmentation.
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, randoms)).map(
            lambda pair, s: (_augment(pair[0], s, flip), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _eval_pipeline(ds, batch_size, cache):
    if cache:
        ds = ds.cache()
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
