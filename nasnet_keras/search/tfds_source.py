"""The tensorflow-datasets source of the cell search and transfer training (see `data_sources`).

`tfds_source` reads the ``train`` split of a prepared tensorflow-datasets
image-classification dataset; its last ``holdout`` examples are the reward
set (for ``"cifar10"`` the paper's 5,000, paper Sec. 4) unless the dataset
has a named validation split the caller asks for.
"""

from __future__ import annotations

import difflib
import os
from typing import Optional, Sequence, Tuple

import tensorflow as tf

from nasnet_keras.search.data_sources import DatasetNotPreparedError, Source, _default_holdout, _resolve_holdout

__all__ = ["tfds_source"]


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


def tfds_source(name: str, holdout, size: Optional[Tuple[int, int]], data_dir, download: bool,
                max_train_examples: Optional[int], *, validation_splits: Sequence[str] = (),
                keep_native: bool = False) -> Source:
    """The ``train`` split of tensorflow-datasets dataset ``name``, its last ``holdout`` as reward set.

    ``size`` None keeps the dataset's fixed image size. The training part is
    sliced to at most ``max_train_examples`` (None: all). With ``download``
    an unprepared dataset is downloaded and prepared first.

    ``validation_splits``: split names in order of preference; the first one
    the dataset has is the whole validation set and the whole ``train``
    split is trained on (``holdout`` is then unused); when it has none of
    them (or none are given) the holdout is cut from ``train`` as above.
    ``keep_native``: with ``size`` None, images of varying size are kept as
    they are (``input_shape`` ``(None, None, C)``) instead of raising.

    Raises:
        ValueError: an unknown name, not an image-classification dataset
            (uint8 ``image``, ClassLabel ``label``, a ``train`` split), images
            of varying size with ``size`` None, or a bad ``holdout``.
        DatasetNotPreparedError: not prepared and ``download`` is False.
    """
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
    named = next((split for split in validation_splits if split in splits), None)
    if named is not None:
        n_val, val_split, n_train = splits[named].num_examples, named, total
        validation_source = f"tfds split {named!r}"
    else:
        n_val = _resolve_holdout(holdout, total, _default_holdout(builder.name), f"{name!r}")
        n_train = total - n_val
        # tfds split slicing: the reward set is the last n_val of 'train'.
        val_split, validation_source = f"train[{total - n_val}:]", f"last {n_val} of tfds split 'train'"
    if max_train_examples is not None:
        n_train = min(n_train, int(max_train_examples))
    train_split = f"train[:{n_train}]"

    image_feature, num_classes = features["image"], features["label"].num_classes
    h, w, c = image_feature.shape
    if c is None:
        raise ValueError(
            f"tensorflow-datasets dataset {name!r} has images with an unknown channel count."
        )
    if size is None:
        if (h is None or w is None) and not keep_native:
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

    return Source(
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
        validation_source=validation_source,
    )

