"""One builder that turns any genotype into a Keras model (paper Sec. 3, Fig. 2).

Data flows one way: `Genotype` -> cell plan (`_plan_cells`) -> layers ->
`keras.Model`. Every model of the package, the applications and the search's
child networks alike, comes from `NASNet(...)`.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import keras

from nasnet_keras import genotypes as gt
from nasnet_keras.layers import (AuxiliaryHead, FactorizedReduction, FusedBatchNormalization, ReLUConvBN,
                                 ScheduledDropPath, make_op)
from nasnet_keras.layers.pooling import check_pool_padding

# BatchNorm settings of the published ImageNet models and of slim's CIFAR
# setup (TF-slim nets/nasnet/nasnet.py, `nasnet_large_arg_scope` / `nasnet_cifar_arg_scope`).
IMAGENET_BN = dict(bn_momentum=0.9997, bn_epsilon=1e-3)
CIFAR_BN = dict(bn_momentum=0.9, bn_epsilon=1e-5)

MIN_INPUT_SIZE = 32


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One cell of the network plan."""

    cell_id: str           # keras.applications' block id ("stem_1", "0", "reduce_4", ...)
    reduction: bool
    filters: int
    index: int             # position in the network, stem cells included (drop path depth)
    prev_prev: int         # index into the list of outputs (stem output = 0) of the cell's second input


#: Cell layouts: NASNet's (paper Fig. 2) and PNASNet's (TF-slim nets/nasnet/pnasnet.py).
LAYOUTS = ("nasnet", "pnasnet")


def pnasnet_reduction_indices(num_cells: int) -> List[int]:
    """Where PNASNet's cells run at stride 2: int(k / 3 * num_cells), k = 1, 2 (TF-slim nasnet_utils.py
    `calc_reduction_layers` with 2 reductions; Large 12 cells -> [4, 8], Mobile 9 -> [3, 6])."""
    return [int(k / 3 * num_cells) for k in (1, 2)]


def _plan_cells(num_cells: int, filters: int, filter_multiplier: int, stem: str,
                skip_reduction: bool, layout: str = "nasnet") -> List[CellSpec]:
    """The ordered cells, filters doubling at each reduction.

    ``"nasnet"`` (paper Fig. 2): [2 stem reductions] + 3 stacks of N normal
    cells separated by 2 reduction cells (ids keras.applications'). ``"pnasnet"``
    (TF-slim pnasnet.py): [2 stem reductions] + ``num_cells`` cells, of which
    those at `pnasnet_reduction_indices` are reductions (id ``reduce_<i>``).
    """
    kinds = []
    if stem == "imagenet":   # TF-slim: int(num_conv_filters * filter_scaling) for scalings 1/4, 1/2 (PNASNet: 13, 27)
        kinds += [("stem_1", True, filters // filter_multiplier ** 2), ("stem_2", True, filters // filter_multiplier)]
    if layout == "pnasnet":
        reductions, f = pnasnet_reduction_indices(num_cells), filters
        for i in range(num_cells):
            f = f * filter_multiplier if i in reductions else f
            kinds.append((f"reduce_{i}" if i in reductions else str(i), i in reductions, f))
    else:
        for stack in range(3):
            if stack:
                kinds.append((f"reduce_{stack * num_cells}", True, filters * filter_multiplier ** stack))
            kinds += [(str(stack * num_cells + i + (1 if stack else 0)), False, filters * filter_multiplier ** stack)
                      for i in range(num_cells)]
    plan = []
    for index, (cell_id, reduction, f) in enumerate(kinds):
        output_slot = index + 1            # outputs[0] is the stem; cell k writes outputs[k + 1]
        prev_prev = output_slot - 2        # -1: no second input (first cell)
        after_reduction = index > 0 and kinds[index - 1][0].startswith("reduce_")
        if skip_reduction and after_reduction and not reduction:
            prev_prev -= 1                 # keras/slim skip_reduction: bypass the reduction's input
        plan.append(CellSpec(cell_id, reduction, f, index, prev_prev))
    return plan


def output_units(cell: gt.Cell) -> int:
    """Width of a cell output in units of `filters`."""
    width = {0: 1, 1: 1}
    for b, block in enumerate(cell.blocks):
        width[2 + b] = 2 if block.combine == "concat" else 1
    return sum(width[s] for s in cell.output_states)


def _build_cell(spec: CellSpec, cell: gt.Cell, prev, prev_prev, prev_level, prev_prev_level, bn, drop_path,
                pool_padding="keras"):
    name = f"cell_{spec.cell_id}"
    f = spec.filters
    h = ReLUConvBN(f, ((1, 1),), name=f"{name}_input", **bn)(prev)
    if prev_prev is None:
        p = prev                                   # first cell: both inputs are the stem output
    elif prev_prev_level < prev_level:
        p = FactorizedReduction(f, name=f"{name}_prev", **bn)(prev_prev)
    elif prev_prev.shape[-1] != f:
        p = ReLUConvBN(f, ((1, 1),), name=f"{name}_prev", **bn)(prev_prev)
    else:
        p = prev_prev
    states = [h, p]
    for b, block in enumerate(cell.blocks):
        results = []
        for side, (i, op) in enumerate(zip(block.inputs, block.ops)):
            x = states[i]
            stride = 2 if spec.reduction and i < 2 else 1
            tag = f"{name}_b{b}_{'left' if side == 0 else 'right'}"
            layer = make_op(op, f, stride, in_channels=x.shape[-1], bn=bn, name=f"{tag}_{op}",
                            pool_padding=pool_padding)
            y = x if layer is None else layer(x)
            if drop_path is not None and op != "identity":
                y = ScheduledDropPath(cell_index=spec.index, name=f"{tag}_drop_path", **drop_path)(y)
            results.append(y)
        merge = keras.layers.Add if block.combine == "add" else keras.layers.Concatenate
        states.append(merge(name=f"{name}_b{b}_{block.combine}")(results))
    outputs = [_output_state(states[s], s, spec, name, bn) for s in cell.output_states]
    if len(outputs) > 1:
        return keras.layers.Concatenate(name=f"{name}_concat")(outputs)
    return keras.layers.Identity(name=f"{name}_output")(outputs[0])   # every cell output has a named layer


def _output_state(x, state, spec, name, bn):
    """A state as it enters the cell's output concat. Block outputs (state >= 2) as they are; a cell input
    (only explicit `concat` lists hold one) is brought to `filters` channels at the output's resolution
    without a ReLU first: a 1x1 conv + BN where its width differs (the first CIFAR cell outputs the stem),
    a factorized reduction in a reduction cell (TF-slim nasnet_utils.py `_combine_unused_states`)."""
    if state >= 2:
        return x
    if spec.reduction:
        return FactorizedReduction(spec.filters, relu=False, name=f"{name}_concat_state_{state}", **bn)(x)
    if x.shape[-1] != spec.filters:
        return ReLUConvBN(spec.filters, ((1, 1),), relu=False, name=f"{name}_concat_state_{state}", **bn)(x)
    return x


def stem_layers(stem: str, stem_filters: int, bn: dict):
    """The stem's conv and BatchNorm layers: a 3x3 conv (stride 2 VALID for ``"imagenet"``, stride 1 SAME for
    ``"cifar"``), no bias, then BN (`bn`: ``bn_momentum``, ``bn_epsilon``)."""
    strides, padding = (2, "valid") if stem == "imagenet" else (1, "same")
    conv = keras.layers.Conv2D(stem_filters, 3, strides=strides, padding=padding, use_bias=False,
                               kernel_initializer="he_normal", name="stem_conv1")
    return conv, FusedBatchNormalization(momentum=bn["bn_momentum"], epsilon=bn["bn_epsilon"], name="stem_bn1")


def _check_input_shape(input_shape, weights):
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels); got {input_shape}.")
    h, w, c = input_shape
    if weights == "imagenet" and c != 3:
        raise ValueError(f"input_shape {input_shape} has {c} channels; ImageNet weights need 3 (RGB). "
                         "Convert the images to RGB or use weights=None.")
    if c is None or c < 1:
        raise ValueError(f"input_shape {input_shape} needs a known, positive number of channels.")
    for d in (h, w):
        if d is not None and d < MIN_INPUT_SIZE:
            raise ValueError(f"input_shape {input_shape} is too small: height and width must be at least "
                             f"{MIN_INPUT_SIZE} (or None). Resize the images first.")


def NASNet(
    genotype: gt.Genotype = gt.NASNET_A,
    num_cells: int = 6,
    penultimate_filters: int = 4032,
    *,
    filters: Optional[int] = None,
    stem: str = "imagenet",
    stem_filters: Optional[int] = None,
    filter_multiplier: int = 2,
    skip_reduction: bool = False,
    layout: str = "nasnet",
    pool_padding: Optional[str] = None,
    drop_path_keep_prob: float = 1.0,
    total_training_steps: Optional[int] = None,
    aux_head: bool = False,
    dropout: float = 0.0,
    bn_momentum: Optional[float] = None,
    bn_epsilon: Optional[float] = None,
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape=None,
    pooling: Optional[str] = None,
    classes: int = 1000,
    classifier_activation="softmax",
    weights_base_url: Optional[str] = None,
    name: Optional[str] = None,
) -> keras.Model:
    """Builds a NASNet-style network from any genotype.

    Layout (paper Fig. 2): stem -> N normal -> reduction -> N normal ->
    reduction -> N normal -> ReLU -> classifier. Filters are multiplied by
    `filter_multiplier` at every reduction. With ``layout="pnasnet"``
    (TF-slim pnasnet.py): stem -> `num_cells` cells, the genotype's
    reduction cell (PNASNet-5's is its normal cell) at the two positions of
    `pnasnet_reduction_indices`.

    Args:
        genotype: a `Genotype` (default `NASNET_A`).
        num_cells: N, normal cells per stack (Mobile 4, Large 6, CIFAR 6);
            with ``layout="pnasnet"`` all cells after the stem, the two
            reductions included (PNASNet-5 Mobile 9, Large 12; >= 3).
        penultimate_filters: P in "N @ P", channels of the final cell output;
            sets `filters = P // (units * filter_multiplier**2)` where
            `units` is the normal-cell output width in filters (6 for
            NASNet-A, so filters = P // 24).
        filters: cell filters of the first stack; overrides
            `penultimate_filters` when given.
        stem: `"imagenet"` (3x3/2 VALID conv + BN, then two reduction cells at
            1/4 and 1/2 the filters) or `"cifar"` (3x3 conv + BN).
        stem_filters: channels of the stem conv; default 96 (ImageNet, as
            keras.applications.NASNet) or `3 * filters` (CIFAR, slim's stem
            multiplier 3).
        filter_multiplier: filter growth per reduction (default 2).
        skip_reduction: the first normal cell after a reduction takes the
            reduction's input instead of its own second input (Large: True;
            ``"nasnet"`` layout only).
        layout: ``"nasnet"`` (default) or ``"pnasnet"`` (see above).
        pool_padding: how stride-2 pools pad: ``"keras"`` (zeros counted,
            as the published Keras weights) or ``"slim"`` (TF SAME pooling,
            padding left out, as the original TF-slim checkpoints). Default
            None: ``"slim"`` when loading a TF-slim checkpoint or PNASNet-5's
            ImageNet weights, else ``"keras"``.
        drop_path_keep_prob: final keep probability of ScheduledDropPath
            (1.0 = off).
        total_training_steps: steps over which drop path ramps up (required
            when `drop_path_keep_prob < 1`).
        aux_head: add the auxiliary classifier after the second stack as a
            second output named `"aux_predictions"` (needs `include_top` and a
            static input size).
        dropout: dropout rate before the final Dense (default 0).
        bn_momentum, bn_epsilon: BatchNorm settings; default ImageNet's
            (0.9997, 1e-3) for the ImageNet stem, slim CIFAR's (0.9, 1e-5)
            for the CIFAR stem.
        include_top: add ReLU -> global average pool -> Dense(classes).
        weights: `None`, `"imagenet"` (the NASNet-A Mobile / Large and
            PNASNet-5 Mobile / Large configs only), the prefix of a TF-slim
            checkpoint (``.../model.ckpt``, see `nasnet_keras.slim_checkpoint`)
            or a path to a weights file (published `.h5` layout, a file saved
            by this package, `.weights.h5` or `.keras`).
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: `(height, width, channels)`; height and width >= 32 or
            `None`. Default `(None, None, 3)`.
        pooling: with `include_top=False`: `None` (4D output), `"avg"` or `"max"`.
        classes: number of classes (with `include_top`).
        classifier_activation: activation of the top layer; `None` for logits.
        weights_base_url: mirror for `weights="imagenet"` (see
            `nasnet_keras.weights`).
        name: model name.

    Returns:
        A `keras.Model` mapping images `(batch, h, w, c)` to class scores
        `(batch, classes)` (a list `[predictions, aux_predictions]` with
        `aux_head=True`), or to features when `include_top=False`.
    """
    from nasnet_keras import weights as weights_lib

    if not isinstance(genotype, gt.Genotype):
        raise ValueError(f"genotype must be a nasnet_keras.genotypes.Genotype; got {type(genotype).__name__}. "
                         "Use Genotype.from_json(text) or Genotype.from_dict(data).")
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' or 'cifar'; got {stem!r}.")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}.")
    if pool_padding is None:
        pool_padding = "slim" if _slim_weights(weights, layout) else "keras"
    check_pool_padding(pool_padding)   # here too: a genotype without pools must still refuse a bad value
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}.")
    if num_cells < (3 if layout == "pnasnet" else 1):
        raise ValueError(f"num_cells must be >= {3 if layout == 'pnasnet' else 1} for layout={layout!r}; "
                         f"got {num_cells}.")
    if layout == "pnasnet" and skip_reduction:
        raise ValueError("skip_reduction applies to layout='nasnet' only (a PNASNet reduction is one of its cells).")
    if weights not in (None, "imagenet") and not isinstance(weights, str):
        raise ValueError("weights must be None, 'imagenet' or a path to a weights file; got "
                         f"{weights!r}.")
    if isinstance(weights, str) and weights != "imagenet":
        weights_lib.check_weights_path(weights)      # before the build: a wrong path fails at once
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(f"weights='imagenet' with include_top=True gives 1000 ImageNet classes, but classes="
                         f"{classes}. Use include_top=False and add your own head, or classes=1000.")
    if aux_head and not include_top:
        raise ValueError("aux_head=True needs include_top=True (the auxiliary head is a second classifier).")
    if drop_path_keep_prob < 1.0 and not total_training_steps:
        raise ValueError("drop_path_keep_prob < 1 needs total_training_steps (the number of training steps "
                         "over which ScheduledDropPath ramps up), e.g. epochs * steps_per_epoch.")
    if not 0.0 < drop_path_keep_prob <= 1.0:
        raise ValueError(f"drop_path_keep_prob must be in (0, 1]; got {drop_path_keep_prob}.")

    units = output_units(genotype.normal)
    if filters is None:
        if penultimate_filters % (units * filter_multiplier ** 2):
            raise ValueError(
                f"penultimate_filters={penultimate_filters} must be a multiple of {units * filter_multiplier ** 2} "
                f"(= {units} output units of this normal cell x filter_multiplier**2), or pass filters=.")
        filters = penultimate_filters // (units * filter_multiplier ** 2)
    if stem == "imagenet" and filters < filter_multiplier ** 2:
        raise ValueError(f"filters={filters} is too small for the ImageNet stem cells, which get filters / "
                         f"{filter_multiplier ** 2} and filters / {filter_multiplier}: pass filters >= "
                         f"{filter_multiplier ** 2}.")
    default_bn = IMAGENET_BN if stem == "imagenet" else CIFAR_BN
    bn = dict(bn_momentum=default_bn["bn_momentum"] if bn_momentum is None else bn_momentum,
              bn_epsilon=default_bn["bn_epsilon"] if bn_epsilon is None else bn_epsilon)
    if stem_filters is None:
        stem_filters = 96 if stem == "imagenet" else 3 * filters

    if input_shape is None:
        input_shape = tuple(input_tensor.shape[1:]) if input_tensor is not None else (None, None, 3)
    input_shape = tuple(input_shape)
    _check_input_shape(input_shape, weights)
    if aux_head and None in input_shape[:2]:
        raise ValueError("aux_head=True needs a static input size; pass input_shape=(h, w, c).")
    imagenet_file = None
    if weights == "imagenet":
        preset = weights_lib.check_imagenet_config(genotype, num_cells, filters, stem, stem_filters,
                                                   filter_multiplier, skip_reduction, layout)
        # Fetched once the arguments are checked and before any layer is built: a failed download or a bad
        # checksum is reported at once, not after the seconds (NASNetLarge: tens of seconds) of building.
        imagenet_file = weights_lib.fetch_imagenet_weights(preset, include_top, weights_base_url)

    if input_tensor is None:
        inputs = keras.Input(shape=input_shape)
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = keras.Input(tensor=input_tensor, shape=input_shape)

    plan = _plan_cells(num_cells, filters, filter_multiplier, stem, skip_reduction, layout)
    drop_path = None
    if drop_path_keep_prob < 1.0:
        drop_path = dict(keep_prob=drop_path_keep_prob, total_cells=len(plan), total_steps=total_training_steps)

    stem_conv, stem_bn = stem_layers(stem, stem_filters, bn)
    x = stem_bn(stem_conv(inputs))

    outputs, levels = [x], [0]
    aux = None
    aux_after = [s.index for s in plan if s.cell_id.startswith("reduce_")][1] - 1   # before the 2nd reduction
    for spec in plan:
        cell = genotype.reduction if spec.reduction else genotype.normal
        has_pp = spec.prev_prev >= 0
        x = _build_cell(spec, cell, outputs[-1], outputs[spec.prev_prev] if has_pp else None,
                        levels[-1], levels[spec.prev_prev] if has_pp else None, bn, drop_path, pool_padding)
        outputs.append(x)
        levels.append(levels[-1] + int(spec.reduction))
        if aux_head and spec.index == aux_after:
            aux = AuxiliaryHead(classes, activation=classifier_activation, name="aux_predictions", **bn)(x)

    x = keras.layers.ReLU(name="final_relu")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)

    if input_tensor is not None:
        model_inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        model_inputs = inputs
    model = keras.Model(model_inputs, [x, aux] if aux is not None else x,
                        name=name or f"nasnet_{genotype.name.lower().replace('-', '_') or 'custom'}")
    if imagenet_file is not None:
        weights_lib.load_legacy_h5(model, imagenet_file)
    elif weights is not None:
        weights_lib.load_weights(model, weights, layout=layout)
    return model


def _slim_weights(weights, layout) -> bool:
    """Whether `weights` are TF-slim's (a checkpoint, or PNASNet-5's published ones), trained with TF SAME pools."""
    from nasnet_keras import slim_checkpoint

    if weights == "imagenet":
        return layout == "pnasnet"
    return isinstance(weights, str) and (slim_checkpoint.checkpoint_prefix(weights) is not None
                                         or slim_checkpoint.looks_like_checkpoint(weights))


def inference_model(model: keras.Model) -> keras.Model:
    """The same network without the auxiliary head output (shares weights)."""
    if len(model.outputs) == 1:
        return model
    # `model.input` keeps the input structure (one tensor, not a one-element list): called on a tensor, the new
    # model then does not warn that the structure differs.
    return keras.Model(model.input, model.outputs[0], name=model.name)
