"""Multi-scale features for detection and segmentation: the cell outputs at strides 4, 8, 16, 32.

`pyramid_outputs(model)` returns, for a model built by `nasnet_keras.NASNet`
(every zoo model, with or without its top, published weights included), the
output of the last cell at each resolution as a dict keyed ``"P<k>"`` for
stride ``2**k`` (KerasHub's ``pyramid_outputs`` convention):

* ImageNet stem: ``P2`` the first stem cell (stride 4), ``P3`` the last
  normal cell of the first stack (stride 8), ``P4`` of the second (16),
  ``P5`` of the third (32, the last cell, before the final ReLU);
* CIFAR stem (no stem reductions): ``P0``, ``P1``, ``P2`` for the three stacks.

`pyramid_model(model)` wraps them as a `keras.Model` with dict outputs that
shares the model's weights::

    backbone = pyramid_model(NASNetMobile(weights="imagenet", include_top=False))
    feats = backbone(images)        # {"P2": (b, 56, 56, 44), ..., "P5": (b, 7, 7, 1056)} at 224x224
"""

from __future__ import annotations

import re
from typing import Dict, Optional

import keras

__all__ = ["pyramid_outputs", "pyramid_model"]

_CELL_OUTPUT = re.compile(r"^cell_(?P<id>(?:stem_|reduce_)?\d+)_(?:concat|output)$")   # not block "_b0_concat"


def pyramid_outputs(model: keras.Model) -> Dict[str, "keras.KerasTensor"]:
    """The last cell output at each stride of a `NASNet`-built model, as ``{"P<k>": tensor}`` (stride ``2**k``).

    Cells are found by their output layers (``cell_<id>_concat`` / ``cell_<id>_output``) in the model's
    order; each stem and reduction cell (ids ``stem_*``, ``reduce_*``) halves the resolution, as does the
    ImageNet stem's strided conv.

    Args:
        model: a model from `nasnet_keras.NASNet` or `nasnet_keras.applications`.

    Returns:
        ``{"P2", "P3", "P4", "P5"}`` for the ImageNet stem, ``{"P0", "P1",
        "P2"}`` for the CIFAR stem; Keras tensors of shape ``(batch, h / 2**k,
        w / 2**k, channels)`` (``None`` where the input size is unknown).

    Raises:
        ValueError: the model was not built by `NASNet` (no cell layers).
    """
    cells = [(m.group("id"), layer.output) for layer in model.layers
             for m in [_CELL_OUTPUT.match(layer.name)] if m]
    if not cells or not any(cell_id.startswith("reduce_") for cell_id, _ in cells):
        raise ValueError(f"Model {model.name!r} has no NASNet cells (layers cell_<id>_concat, cell_reduce_*): "
                         "pass a model built by nasnet_keras.NASNet or nasnet_keras.applications.")
    level = 1 if any(cell_id.startswith("stem_") for cell_id, _ in cells) else 0   # the strided stem conv
    out = {}
    for cell_id, tensor in cells:
        level += cell_id.startswith(("stem_", "reduce_"))
        out[f"P{level}"] = tensor                       # the last cell at a level wins
    return out


def pyramid_model(model: keras.Model, name: Optional[str] = None) -> keras.Model:
    """A `keras.Model` from ``model``'s input to its `pyramid_outputs` (a dict), sharing its weights.

    Args:
        model: a model from `nasnet_keras.NASNet` or `nasnet_keras.applications`.
        name: the new model's name; default ``"<model name>_pyramid"``.
    """
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, pyramid_outputs(model), name=name or f"{model.name}_pyramid")
