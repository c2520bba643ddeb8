"""ImageNet input preprocessing and prediction decoding for NASNet models.

* `preprocess_input` scales pixels from [0, 255] to [-1, 1] (x / 127.5 - 1),
  the preprocessing the NASNet ImageNet weights were trained with.
* `decode_predictions` turns a (samples, 1000) score array into readable
  (WordNet id, class name, score) tuples, the same format as
  ``keras.applications.imagenet_utils.decode_predictions``, but offline: the
  class index ships with this package (``imagenet_class_index.json``, made by
  ``tools/make_class_index.py``).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np

__all__ = ["preprocess_input", "decode_predictions", "imagenet_class_index"]

NUM_CLASSES = 1000
_INDEX_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "imagenet_class_index.json")


def preprocess_input(x, data_format: Optional[str] = None):
    """Scales images from [0, 255] to [-1, 1] ("tf" mode: x / 127.5 - 1).

    Args:
        x: images as a NumPy array (or nested list), a TensorFlow tensor or a
            Keras symbolic tensor, any shape, e.g. (batch, height, width, 3),
            with pixel values in [0, 255]; integer types are accepted.
        data_format: ``None``, ``"channels_last"`` or ``"channels_first"``.
            Accepted for API compatibility with keras.applications; this
            scaling treats every channel alike, so it has no effect.

    Returns:
        The scaled images as float32: a new NumPy array for NumPy / list input
        (the input is not modified), otherwise a tensor of the input's kind.

    Raises:
        ValueError: for an unknown ``data_format``.
        TypeError: if ``x`` is not numeric.
    """
    if data_format not in (None, "channels_last", "channels_first"):
        raise ValueError(
            "data_format must be None, 'channels_last' or 'channels_first', "
            f"got {data_format!r}."
        )
    if isinstance(x, (np.ndarray, list, tuple, int, float, np.number)):
        array = np.asarray(x)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(f"preprocess_input needs numeric images, got dtype {array.dtype}.")
        array = array.astype(np.float32)  # always a copy: the input stays intact
        array /= 127.5
        array -= 1.0
        return array
    x = keras.ops.cast(x, "float32")
    return x / 127.5 - 1.0


@functools.lru_cache(maxsize=1)
def _load_index() -> Dict[str, Tuple[str, str]]:
    try:
        with open(_INDEX_PATH, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"The ImageNet class index {_INDEX_PATH} is missing; the package "
            "data was not installed. Regenerate it with "
            "`python tools/make_class_index.py` or reinstall nasnet_keras."
        ) from None
    if len(raw) != NUM_CLASSES:
        raise ValueError(f"{_INDEX_PATH} has {len(raw)} classes, expected {NUM_CLASSES}.")
    return {key: (str(value[0]), str(value[1])) for key, value in raw.items()}


def imagenet_class_index() -> Dict[str, List[str]]:
    """The ImageNet-1k class index shipped with the package.

    Returns:
        A new dict ``{"0": ["n01440764", "tench"], ...}`` mapping each class
        index (as a string, "0" to "999") to its WordNet id and short name,
        laid out like Keras's ``imagenet_class_index.json``.
    """
    return {key: list(value) for key, value in _load_index().items()}


def decode_predictions(preds, top: int = 5) -> List[List[Tuple[str, str, float]]]:
    """Decodes ImageNet class scores into the top classes of each sample.

    Args:
        preds: scores of shape (samples, 1000), a NumPy array or tensor
            (probabilities or logits; only their order matters).
        top: how many classes to return per sample, 1 to 1000 (default 5).

    Returns:
        A list with one list per sample of ``top`` tuples
        ``(wordnet_id, class_name, score)``, highest score first (ties keep
        the lower class index first), e.g.
        ``[[("n01440764", "tench", 0.91), ...], ...]``.

    Raises:
        ValueError: if ``preds`` is not of shape (samples, 1000) or ``top`` is
            out of range.
    """
    scores = np.asarray(keras.ops.convert_to_numpy(preds))
    if scores.ndim != 2 or scores.shape[1] != NUM_CLASSES:
        raise ValueError(
            "decode_predictions expects a batch of ImageNet predictions of "
            f"shape (samples, {NUM_CLASSES}), got shape {scores.shape}. For a "
            "single sample use preds[None]; the model needs include_top=True "
            f"and classes={NUM_CLASSES}."
        )
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"top must be an int from 1 to {NUM_CLASSES}, got {top!r}.")
    index = _load_index()
    scores = scores.astype(np.float64)  # exact for float32; safe to negate
    results = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[: int(top)]
        results.append([index[str(i)] + (float(row[i]),) for i in order])
    return results
