"""One cell of the weight-sharing network: every candidate op of every block side, built from static shapes.

Used by `nasnet_keras.search.weight_sharing.shared_network.SharedNASNet`, which runs the chosen ones. The
cell's second input is made as `nasnet_keras.builder` makes a child's (paper Sec. 3; TF-slim
``nasnet_utils``): the previous-previous output, factorized-reduced when it has twice the resolution,
projected by a 1x1 conv when its width differs from the cell's filters, else passed through. Its width
depends on the architecture here, so ``pp_mode`` records which cases can happen.
"""

from __future__ import annotations

from typing import Dict, Tuple

import keras
import tensorflow as tf

from nasnet_keras.layers import FactorizedReduction, ReLUConvBN, make_op
from nasnet_keras.training.optimization import DECAYED_WEIGHTS

__all__ = ["SharedCell", "l2_penalty"]


def _half(hw: Tuple[int, int]) -> Tuple[int, int]:
    return (-(-hw[0] // 2), -(-hw[1] // 2))


def _kernels(layer) -> list:
    return [w for w in layer.trainable_weights if w.path.split("/")[-1] in DECAYED_WEIGHTS]


class SharedCell(keras.layers.Layer):
    """One cell's candidate ops, built eagerly from static shapes.

    Args:
        spec: the cell's `nasnet_keras.builder.CellSpec`.
        space: the `SearchSpace`.
        bn: ``{"bn_momentum", "bn_epsilon"}``.
        prev, prev_prev: the two outputs the cell reads, as ``{"hw", "channels", "level", "filters" (None for
            the stem), "is_stem"}`` (``prev_prev`` None for the first cell).

    Attributes: ``input_conv`` (state 0), ``pp_mode`` / ``pp_layer`` (state 1), ``groups[b]`` (per block:
    ``(member states, {side: [layer or None per op]})``), ``group_of[b][state]``, ``meta`` (per layer name:
    ``layer``, ``in_hw``, ``out_hw``, ``in_channels``), ``op_of`` (op layer name -> op name).
    """

    def __init__(self, spec, space, bn, prev, prev_prev, **kwargs):
        # prev / prev_prev: dicts {"hw", "channels", "level", "filters" (None: stem), "is_stem"}.
        super().__init__(name=f"cell_{spec.cell_id}", **kwargs)
        self.spec, self.space, B, f = spec, space, space.num_blocks, spec.filters
        self.num_ops = len(space.ops)
        self.in_hw = prev["hw"]
        self.out_hw = _half(self.in_hw) if spec.reduction else self.in_hw
        self.op_of: Dict[str, str] = {}  # op layer name -> op name
        self.meta: Dict[str, dict] = {}  # layer name -> {"layer", "in_hw", "out_hw"}
        name = f"cell_{spec.cell_id}"
        self.input_conv = self._add(ReLUConvBN(f, ((1, 1),), name=f"{name}_input", **bn), prev["channels"],
                                    prev["hw"], prev["hw"])
        # The second input, as builder._build_cell makes it.
        self.pp_mode, self.pp_layer, self.pp_units = "same", None, None
        p_channels = prev["channels"]
        if prev_prev is not None:
            if prev_prev["level"] < prev["level"]:
                self.pp_mode = "factorized"
                self.pp_layer = self._add(FactorizedReduction(f, name=f"{name}_prev", **bn), prev_prev["channels"],
                                          prev_prev["hw"], prev["hw"])
                p_channels = f
            elif prev_prev["is_stem"]:
                self.pp_mode = "passthrough" if prev_prev["channels"] == f else "conv"
                p_channels = prev_prev["channels"]
            else:
                f_pp = prev_prev["filters"]
                self.pp_mode = "conv"
                if f % f_pp == 0 and 1 <= f // f_pp <= B:
                    self.pp_mode, self.pp_units = "dynamic", f // f_pp  # passes through when U * f_pp == f
            if self.pp_mode in ("conv", "dynamic"):
                self.pp_layer = self._add(ReLUConvBN(f, ((1, 1),), name=f"{name}_prev", **bn),
                                          prev_prev["channels"], prev_prev["hw"], prev["hw"])
            p_channels = f
        stride = 2 if spec.reduction else 1
        signature = {0: (stride, f), 1: (stride, p_channels)}
        for b in range(B):
            signature[2 + b] = (1, f)
        # groups[b] = [(member states, {side: [layer or None per op]})]; group_of / local_of index by state.
        self.groups, self.group_of, self.local_of = [], [], []
        for b in range(B):
            keys = []
            for s in range(2 + b):
                if signature[s] not in keys:
                    keys.append(signature[s])
            groups = []
            for key in keys:
                members = [s for s in range(2 + b) if signature[s] == key]
                tag = "" if len(keys) == 1 else "_from" + "_".join(str(m) for m in members)
                hw = self.in_hw if members[0] < 2 else self.out_hw
                per_side = {}
                for side in (0, 1):
                    per_side[side] = []
                    for op in space.ops:
                        layer = make_op(op, f, key[0], in_channels=key[1], bn=bn,
                                        name=f"{name}_b{b}_{'left' if side == 0 else 'right'}_{op}{tag}")
                        if layer is not None:
                            self._add(layer, key[1], hw, self.out_hw)
                            self.op_of[layer.name] = op
                        per_side[side].append(layer)
                groups.append((members, per_side))
            self.groups.append(groups)
            self.group_of.append([keys.index(signature[s]) for s in range(2 + b)])
            self.local_of.append([groups[keys.index(signature[s])][0].index(s) for s in range(2 + b)])
        self.built = True

    def _add(self, layer, in_channels, in_hw, out_hw):
        layer.build((None, *in_hw, in_channels))
        self.meta[layer.name] = {"layer": layer, "in_hw": in_hw, "out_hw": out_hw, "in_channels": in_channels}
        return layer



def l2_penalty(layer, weight_decay: float):
    """slim's L2 convention on the layer's kernels: ``weight_decay / 2 * sum(w ** 2)`` (0 when off)."""
    kernels = _kernels(layer)
    if not weight_decay or not kernels:
        return tf.constant(0.0)
    return (weight_decay / 2.0) * tf.add_n([tf.reduce_sum(tf.square(w)) for w in kernels])


