"""Per-image preprocessing for full-scale NASNet training (paper Appendix A).

Every function takes ONE image and returns float32 in [-1, 1] (the range the
NASNet models expect, TF-slim's ``(x - 0.5) * 2`` of a [0, 1] image). Inputs
are either uint8 ``(H, W, C)`` in [0, 255] or float32 ``(H, W, C)`` already in
[-1, 1] (the built-in digits source delivers floats); `to_signed` maps both to
float32 [-1, 1]. All randomness is stateless and comes from a shape-[2] int
``seed`` tensor (int32 or int64), so a pipeline that feeds the same seeds gets
the same images.

* `cifar_train`: the CIFAR augmentation of Zoph et al. 2018, Sec. 4 / App. A
  (pad 32x32 to 40x40, random 32x32 crop, random left-right flip), plus the
  optional cutout of DeVries & Taylor 2017 that the paper's best CIFAR models
  use. The cell search (`nasnet_keras.search.data`) uses the same function
  with ``cutout=0``.
* `inception_train` / `central_crop_eval`: the ImageNet preprocessing of
  TF-slim's ``preprocessing/inception_preprocessing.py`` (``preprocess_for_train``
  without its colour distortion, and ``preprocess_for_eval``), which the
  TF-slim ``nets/nasnet`` ImageNet models were trained and evaluated with.

Bilinear resizing is affine-equivariant, so resizing in [-1, 1] gives the
same values as TF-slim's resize in [0, 1] followed by ``(x - 0.5) * 2`` (up to
float rounding).
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["INCEPTION_AREA_RANGE", "INCEPTION_ASPECT_RANGE", "INCEPTION_MIN_OBJECT_COVERED",
           "INCEPTION_MAX_ATTEMPTS", "EVAL_CENTRAL_FRACTION", "to_signed",
           "cifar_train", "distorted_bounding_box_crop", "inception_train", "central_crop_eval"]

#: Fraction of the image area a random Inception crop covers -- TF-slim
#: inception_preprocessing.py, ``distorted_bounding_box_crop(area_range=(0.05, 1.0))``.
INCEPTION_AREA_RANGE = (0.05, 1.0)
#: Width / height of a random Inception crop -- same function,
#: ``aspect_ratio_range=(0.75, 1.33)``.
INCEPTION_ASPECT_RANGE = (0.75, 1.33)
#: Same function, ``min_object_covered=0.1``: with the whole image as the
#: bounding box a crop covers at least 10% of the image.
INCEPTION_MIN_OBJECT_COVERED = 0.1
#: Same function, ``max_attempts=100``; after 100 rejected samples the whole
#: image is used.
INCEPTION_MAX_ATTEMPTS = 100
#: TF-slim inception_preprocessing.py ``preprocess_for_eval(central_fraction=0.875)``:
#: the central 87.5% of each side (``tf.image.central_crop``) is kept.
EVAL_CENTRAL_FRACTION = 0.875


def to_signed(image: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 ``x / 127.5 - 1``; a float image (taken to be in [-1, 1]) -> float32."""
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 127.5 - 1.0
    return tf.cast(image, tf.float32)


def _derived_seed(seed: tf.Tensor, salt: int) -> tf.Tensor:
    """A new shape-[2] seed derived from ``seed`` and ``salt``, for one more random op."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), salt)


def _cutout(image: tf.Tensor, seed: tf.Tensor, size: int) -> tf.Tensor:
    """Sets a ``size x size`` square of a float ``(H, W, C)`` image to 0 (DeVries & Taylor 2017).

    The square's centre is uniform over the ``H x W`` pixels; rows
    ``[cy - size // 2, cy - size // 2 + size)`` (likewise columns) are
    zeroed, clipped at the borders, so a centre near an edge zeroes a smaller
    rectangle. 0 is mid-grey in [-1, 1]. ``size`` 0 returns ``image``.
    """
    if size <= 0:
        return image
    shape = tf.shape(image)
    hw = tf.cast(shape[:2], tf.float32)
    centre = tf.cast(tf.random.stateless_uniform([2], seed=seed) * hw, tf.int32)
    centre = tf.minimum(centre, shape[:2] - 1)
    start = centre - size // 2

    def inside(axis):
        index = tf.range(shape[axis])
        return (index >= start[axis]) & (index < start[axis] + size)

    mask = inside(0)[:, None, None] & inside(1)[None, :, None]
    return tf.where(mask, tf.zeros_like(image), image)


def cifar_train(image: tf.Tensor, seed: tf.Tensor, *, flip: bool, cutout: int = 0) -> tf.Tensor:
    """The paper's CIFAR training augmentation of one ``(H, W, C)`` image (static shape).

    Pads ``H // 8`` rows / ``W // 8`` columns on each side (32 -> 40) with
    black (-1), takes a random ``(H, W)`` crop (paper Sec. 4 / App. A), flips
    left-right with probability 1/2 when ``flip``, then, when ``cutout`` > 0,
    zeroes a random ``cutout x cutout`` square (`_cutout`). uint8 or float32
    [-1, 1] in; float32 ``(H, W, C)`` in [-1, 1] out. ``seed`` is a shape-[2]
    int tensor; the crop, the flip and the cutout use distinct seeds derived
    from it.
    """
    image = to_signed(image)
    h, w, c = image.shape
    pad_h, pad_w = h // 8, w // 8
    padded = tf.pad(image, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]], constant_values=-1.0)
    image = tf.image.stateless_random_crop(padded, (h, w, c), seed=tf.stack([seed[0], seed[1]]))
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=tf.stack([seed[1], seed[0]]))
    if cutout > 0:
        image = _cutout(image, _derived_seed(seed, 1), cutout)
    return image


def distorted_bounding_box_crop(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A random Inception crop of an ``(H, W, C)`` image of any (dynamic) size.

    TF-slim inception_preprocessing.py ``distorted_bounding_box_crop`` with
    the whole image as the bounding box: ``tf.image.stateless_sample_distorted_bounding_box``
    with `INCEPTION_AREA_RANGE`, `INCEPTION_ASPECT_RANGE`,
    `INCEPTION_MIN_OBJECT_COVERED`, `INCEPTION_MAX_ATTEMPTS` and
    ``use_image_if_no_bounding_boxes=True``. Returns the crop
    ``(h, w, C)``, same dtype as ``image``.
    """
    whole_image = tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=whole_image, seed=seed,
        min_object_covered=INCEPTION_MIN_OBJECT_COVERED, aspect_ratio_range=INCEPTION_ASPECT_RANGE,
        area_range=INCEPTION_AREA_RANGE, max_attempts=INCEPTION_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, size)
    crop.set_shape((None, None, image.shape[-1]))  # tf.slice loses the channel count
    return crop


def _resize_signed(image: tf.Tensor, size: int) -> tf.Tensor:
    """float [-1, 1] ``(h, w, C)`` -> bilinear ``(size, size, C)`` (TF-slim: ``align_corners=False``)."""
    channels = image.shape[-1]
    image = tf.image.resize(image, (size, size), method="bilinear")
    image = tf.clip_by_value(image, -1.0, 1.0)
    image.set_shape((size, size, channels))
    return image


def inception_train(image: tf.Tensor, seed: tf.Tensor, size: int, *, flip: bool = True) -> tf.Tensor:
    """Inception-style training crop of one image of any size (TF-slim ``preprocess_for_train``).

    `distorted_bounding_box_crop`, bilinear resize of the crop to
    ``(size, size)``, a random left-right flip when ``flip``. TF-slim's
    optional colour distortion is not applied. Input uint8 ``(H, W, C)`` (any
    H, W, possibly unknown statically) or float32 in [-1, 1]; output float32
    ``(size, size, C)`` in [-1, 1]. ``seed``: shape-[2] int tensor.
    """
    crop = distorted_bounding_box_crop(to_signed(image), seed)
    crop = _resize_signed(crop, size)
    if flip:
        crop = tf.image.stateless_random_flip_left_right(crop, seed=_derived_seed(seed, 2))
    return crop


def central_crop_eval(image: tf.Tensor, size: int, fraction: float = EVAL_CENTRAL_FRACTION) -> tf.Tensor:
    """TF-slim ``preprocess_for_eval``: central crop, bilinear resize to ``(size, size)``.

    ``tf.image.central_crop(image, fraction)`` keeps the central ``fraction``
    of each side (default `EVAL_CENTRAL_FRACTION` = 0.875; TF-slim calls it
    "87.5% of the original image"): the top offset is
    ``int((H - H * fraction) / 2)``, likewise the left. Input uint8 or float32
    [-1, 1] ``(H, W, C)`` of any size; output float32 ``(size, size, C)`` in [-1, 1].
    """
    image = to_signed(image)
    if fraction < 1.0:
        image = tf.image.central_crop(image, central_fraction=fraction)
    return _resize_signed(image, size)
