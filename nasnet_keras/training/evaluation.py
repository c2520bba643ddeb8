"""Evaluation only: a weights file (or the published ImageNet weights) on a validation split.

Uses the recipe's evaluation preprocessing (central crop 0.875 for the
ImageNet presets, TF-slim preprocessing/inception_preprocessing.py) and
writes ``metrics.json`` (``eval_metrics.json`` when the directory holds a
training run's ``metrics.json``, which is never overwritten).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import keras
import tensorflow as tf

from nasnet_keras import genotypes as gt
from nasnet_keras.training.recipes import Recipe
from nasnet_keras.training.run_directory import atomic_write
from nasnet_keras.training.trainer import TOP5_MIN_CLASSES, inference_network

__all__ = ["evaluate_weights"]


def _output_path(directory: str) -> str:
    path = os.path.join(directory, "metrics.json")
    if os.path.exists(path):
        with open(path) as f:
            try:
                if json.load(f).get("mode") == "train":
                    return os.path.join(directory, "eval_metrics.json")
            except json.JSONDecodeError:
                pass    # not a training run's file: replaced below
    return path


def evaluate_weights(genotype: gt.Genotype, recipe: Recipe, data, weights: str, directory: Optional[str], *,
                     strategy=None, write: bool = True) -> Tuple[Dict[str, Any], Optional[str]]:
    """Evaluates ``weights`` in the recipe's inference network on ``data.validation``.

    Args:
        genotype, recipe: the network (as `inference_network` builds it).
        data: a `TrainingData`; its classes must match the weights.
        weights: ``"imagenet"`` or a weights file (``model.weights.h5`` of a
            training run, a ``.keras`` file, or the published ``.h5`` layout).
        directory: where the metrics file goes (None: not written).
        strategy: a `tf.distribute.Strategy` or None.
        write: write the metrics file (False on non-chief workers).

    Returns:
        ``(metrics, path written or None)``; metrics hold ``val_top1``,
        ``val_top5`` (more than 5 classes), ``val_loss``, ``num_val``.

    Raises:
        ValueError: a missing or mismatched weights file (the message says
            which), or ``"imagenet"`` for a model without published weights.
    """
    if weights != "imagenet" and not os.path.exists(os.path.expanduser(weights)):
        raise ValueError(f"--weights={weights!r}: no such file. Pass 'imagenet' or the path of a weights file "
                         "(e.g. <train directory>/model.weights.h5).")
    weights = weights if weights == "imagenet" else os.path.abspath(os.path.expanduser(weights))
    with (strategy or tf.distribute.get_strategy()).scope():
        model = inference_network(genotype, recipe, data.input_shape, data.num_classes, weights=weights)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if data.num_classes > TOP5_MIN_CLASSES:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(), metrics=metrics)
    result = model.evaluate(data.validation, verbose=0, return_dict=True)
    out = {"mode": "eval", "weights": weights, "dataset": data.name, "num_val": data.num_val,
           "validation": data.validation_source, "val_top1": float(result["accuracy"]),
           "val_top5": float(result["top5"]) if "top5" in result else None, "val_loss": float(result["loss"]),
           "preset": recipe.name}
    if not write or directory is None:
        return out, None
    directory = os.path.abspath(os.path.expanduser(directory))
    os.makedirs(directory, exist_ok=True)
    path = _output_path(directory)
    atomic_write(path, json.dumps(out, indent=1, sort_keys=True) + "\n")
    return out, path
