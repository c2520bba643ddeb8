"""Reading the image-classification sources the cell search trains children on.

Each loader returns a `Source`: unbatched training and reward (validation)
datasets plus metadata, which `nasnet_keras.search.data.load_dataset` caches,
augments and batches.

Three kinds of source are understood:

* ``"digits"`` (`digits_source`): 1,797 real 8x8 grey-scale handwritten
  digits that ship inside this package (``digits.npz``, next to this module),
  so a quick search runs with no network and no download. Images are upscaled (bilinear,
  antialiased) to 32x32 -- or ``image_size`` -- and the grey channel is copied
  into 3 channels so the images look like small RGB photos to a CIFAR-style
  child network. Intensities 0..16 become float32 ``x / 8 - 1`` in [-1, 1].
  The last 297 examples are the reward set (1,500 train / 297 reward).
* a directory with one sub-folder of images per class (PNG, JPEG, BMP, GIF)
  (`directory_source`).
* a tensorflow-datasets name (`nasnet_keras.search.tfds_source`): ``"cifar10"``, ``"mnist"``,
  ``"fashion_mnist"``, ``"name/config"``, ``"name:version"``... The dataset
  needs ``image`` and ``label`` features and a ``train`` split, and must
  already be prepared in ``data_dir`` (nothing is downloaded unless
  ``download=True``). ``"cifar10"`` uses the paper's preset: the last 5,000 of
  the 50,000 training images are held out as the reward set (paper Sec. 4).

In every case the reward set is the *last* ``holdout`` examples of the
training data (for directories: of a fixed, seed-independent permutation of
the sorted file list), so it does not change between trials or seeds.
Directory and tfds images stay uint8 here; `nasnet_keras.search.data` scales
them to [-1, 1] after caching the decoded images.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from nasnet_keras.search.checks import is_int

__all__ = ["PAPER_DATASET", "PAPER_HOLDOUT", "DIGITS_HOLDOUT", "DEFAULT_HOLDOUT_FRACTION", "IMAGE_EXTENSIONS",
           "DatasetNotPreparedError", "Source", "digits_source", "class_folder_files", "decode_image_file",
           "directory_source"]

#: The dataset the paper searched on.
PAPER_DATASET = "cifar10"
#: Paper Sec. 4: 5,000 of CIFAR-10's 50,000 training images are held out as
#: the reward's validation set.
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
_DIGITS_NATIVE_SIZE = 8
_DIGITS_DEFAULT_SIZE = 32


class DatasetNotPreparedError(FileNotFoundError):
    """A tensorflow-datasets dataset is not prepared in the data directory.

    Raised instead of silently downloading; the message says how to prepare it.
    """


@dataclasses.dataclass(frozen=True)
class Source:
    """One loaded source, before batching.

    ``train`` / ``validation`` are unbatched ``(image, int32 label)`` datasets
    in a fixed order, images ``(H, W, C)`` = ``input_shape``, uint8 (float32 in
    [-1, 1] for digits); the other fields are as in `SearchData`, plus
    ``default_flip`` (random left-right flips suit these images) and
    ``needs_cache`` (the datasets decode files, so caching pays) and
    ``validation_source`` (where the validation examples come from, in words).
    ``input_shape`` is ``(None, None, C)`` for a tfds source of varying-size
    images loaded with ``keep_native``.
    """

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
    validation_source: str = ""


def _default_holdout(source_name: Optional[str]) -> Union[int, float]:
    """Reward-set size used when ``holdout`` is None (see `load_dataset`)."""
    if source_name == PAPER_DATASET:
        return PAPER_HOLDOUT  # paper Sec. 4
    if source_name == "digits":
        return DIGITS_HOLDOUT
    return DEFAULT_HOLDOUT_FRACTION


def _resolve_holdout(holdout: Union[int, float, None], total: int, default, what: str) -> int:
    """Turns a holdout spec into a count that leaves >= 1 training example."""
    if holdout is None:
        holdout = default
    if isinstance(holdout, bool):
        raise ValueError(f"holdout must be an int or a fraction, got {holdout!r}.")
    if is_int(holdout):
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


# --------------------------------------------------------------------------
# The handwritten digits that ship with the package.
#
# digits.npz holds the 1,797-image test part of the UCI "Optical Recognition of
# Handwritten Digits" data set (E. Alpaydin, C. Kaynak, 1998; UCI Machine
# Learning Repository, https://doi.org/10.24432/C50P49, CC BY 4.0), in the
# order scikit-learn's ``load_digits`` gives it: ``images`` uint8 (1797, 8, 8),
# ink counts 0..16 per 4x4 block of the 32x32 scan, ``labels`` uint8 (1797,).
# Shipping the 45 KB file instead of depending on scikit-learn keeps a
# scikit-learn import (~1.1 s of CPU, made by Keras whenever scikit-learn is
# installed) out of every search and child process.
_DIGITS_FILE = "digits.npz"


@functools.lru_cache(maxsize=4)
def _digits_arrays(size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as read-only float32 (N, h, w, 3) in [-1, 1], int32 labels.

    Cached per size (a few MB each) so repeated calls are cheap.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), _DIGITS_FILE)
    with np.load(path, allow_pickle=False) as stored:
        images = stored["images"].astype(np.float32)[..., None]
        labels = stored["labels"].astype(np.int32)
    if size != (_DIGITS_NATIVE_SIZE, _DIGITS_NATIVE_SIZE):
        images = tf.image.resize(images, size, method="bilinear", antialias=True).numpy()
    images = np.clip(images / 8.0 - 1.0, -1.0, 1.0).astype(np.float32)
    images = np.repeat(images, 3, axis=-1)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digits_source(holdout, size: Optional[Tuple[int, int]]) -> Source:
    """The packaged handwritten digits at ``size`` (default 32x32), last ``holdout`` as reward set.

    Raises:
        ValueError: a bad ``holdout``.
    """
    size = size or (_DIGITS_DEFAULT_SIZE, _DIGITS_DEFAULT_SIZE)
    images, labels = _digits_arrays(size)
    total = len(labels)
    n_val = _resolve_holdout(holdout, total, _default_holdout("digits"), "'digits'")
    n_train = total - n_val
    return Source(
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
        validation_source=f"last {n_val} of 'digits'",
    )


# --------------------------------------------------------------------------
# A directory of class folders.


def class_folder_files(path: str) -> Tuple[str, Tuple[str, ...], np.ndarray, np.ndarray]:
    """Lists the images under ``path/<class>/``: ``(root, class_names, files, labels)``.

    ``root`` is the absolute path, ``class_names`` the sorted names of the
    class sub-folders with images (label = index), ``files`` / ``labels``
    (int32) in a fixed, seed-independent random order (`_DIRECTORY_SPLIT_SEED`),
    so that the last examples are a fair holdout.

    Raises:
        ValueError: the directory is missing, has no images in class
            sub-folders, or has only one class.
    """
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
    order = np.random.default_rng(_DIRECTORY_SPLIT_SEED).permutation(len(files))
    return root, tuple(class_names), np.asarray(files)[order], np.asarray(labels, dtype=np.int32)[order]


def decode_image_file(file: tf.Tensor, label: tf.Tensor, size: Optional[Tuple[int, int]] = None):
    """Reads one image file as RGB uint8 ``(H, W, 3)``; ``size`` resizes it (bilinear, rounded).

    ``size`` None keeps the file's own size (static shape ``(None, None, 3)``).
    Returns ``(image, label)``; a ``tf.data`` map function.
    """
    image = tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)
    if size is None:
        image.set_shape((None, None, 3))
        return image, label
    image = tf.image.resize(image, size, method="bilinear")
    image = tf.saturate_cast(tf.round(image), tf.uint8)
    image.set_shape((size[0], size[1], 3))
    return image, label


def directory_source(path: str, holdout, size: Optional[Tuple[int, int]]) -> Source:
    """Images under ``path/<class>/`` (sorted class names are the labels), as RGB uint8.

    ``size`` None keeps the size of the first image in `class_folder_files`
    order; every image is resized (bilinear) to it.

    Raises:
        ValueError: the directory is missing, has no images in class
            sub-folders, has only one class, or a bad ``holdout``.
    """
    root, class_names, files, labels = class_folder_files(path)
    total = len(files)
    n_val = _resolve_holdout(holdout, total, _default_holdout(None), f"directory {root!r}")

    if size is None:
        first = tf.io.decode_image(tf.io.read_file(files[0]), expand_animations=False)
        size = (int(first.shape[0]), int(first.shape[1]))

    def make(sl):
        ds = tf.data.Dataset.from_tensor_slices((files[sl], labels[sl]))
        return ds.map(functools.partial(decode_image_file, size=size),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    n_train = total - n_val
    return Source(
        name=root,
        train=make(slice(0, n_train)),
        validation=make(slice(n_train, total)),
        num_train=n_train,
        num_val=n_val,
        num_classes=len(class_names),
        input_shape=(size[0], size[1], 3),
        class_names=class_names,
        default_flip=True,
        needs_cache=True,
        validation_source=f"last {n_val} of directory {root!r} (fixed shuffle)",
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
