"""One network holding every op of the cell search space, shared by all sampled children.

Weight sharing (ENAS, Pham et al. 2018, Sec. 2-3): instead of training each
child from scratch, every block of every cell holds each candidate op once,
and a child is a path through them. `SharedNASNet` is that network for the
package's `SearchSpace` and the builder's cell plan (`builder._plan_cells`:
CIFAR stem, N normal cells per stack, two reductions), wired exactly as
`nasnet_keras.NASNet(genotype, stem="cifar")` wires the child:

* the architecture -- the class index of every decision in `space.decisions`
  order -- is an argument of `forward`: each op layer (and the stem and the
  classifier) runs through its own `tf.function`, traced once for the whole
  search (`tracing_counts`), and the step calls only the functions of the
  chosen ops, so only they run and only their weights get gradients; a
  weight-sharing step is therefore never retraced for a new architecture.
  (One graph with a `tf.switch_case` per block side was tried first: its
  gradient exports every branch's intermediates from every branch, which made
  tracing take minutes and a training step ~9x a child's.)
* a cell output, the concat of the states no block read (paper Sec. 3), has
  a width that depends on the architecture. The network carries it at full
  width, ``B * filters`` channels, with zeros in place of the read states. Every
  consumer (the next cells' 1x1 convs and factorized reductions, the final
  ReLU -> average pool -> Dense) is linear after a ReLU, so the zero channels
  contribute nothing and the result equals the child's, whose kernels are
  exactly the rows of the unread states (`copy_to_child` takes those rows).
  Where the child passes its second input through unprojected (its width
  happens to equal the cell's filters), the unread states are passed through.
  Cells and inputs the child does not use (a Keras model drops them) are not run.

Op weights are shared per (cell, block, side, op) across the inputs a block
may read, except where the inputs differ in shape for that op (a reduction
cell's strided cell inputs vs its block outputs; the first cell's raw stem
input): each such group has its own copy.

Differences from a stand-alone child, as in ENAS: BatchNorm always uses the
statistics of the batch (moving statistics are neither used nor updated,
`FusedBatchNormalization.update_moving_statistics = False`); no drop path and
no auxiliary head; only the ``add`` combine (``concat`` would change every
state's width with the architecture and is refused).
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from nasnet_keras import genotypes as gt
from nasnet_keras.builder import CIFAR_BN, _plan_cells, stem_layers
from nasnet_keras.layers import FusedBatchNormalization
from nasnet_keras.search import space as space_lib
from nasnet_keras.search.weight_sharing.shared_cell import SharedCell, l2_penalty

__all__ = ["SharedNASNet", "check_shareable_space"]

# Weights whose multiply-adds `model_cost` counts: conv, depthwise / pointwise and dense kernels.
_MULT_ADD_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _positions(hw: Tuple[int, int]) -> int:
    return int(hw[0]) * int(hw[1])


def check_shareable_space(space: space_lib.SearchSpace) -> space_lib.SearchSpace:
    """Returns `space` if the shared network can hold it, else raises a `ValueError` naming the fix."""
    if not isinstance(space, space_lib.SearchSpace):
        raise ValueError(f"space must be a SearchSpace; got {type(space).__name__}.")
    if tuple(space.combines) != ("add",):
        raise ValueError(
            f"The weight-sharing search supports only the 'add' combine (as ENAS searched); this space has "
            f"combines={list(space.combines)}. A 'concat' block changes the width of every later state with the "
            "architecture, which one shared set of weights cannot hold exactly. Use --combines=add.")
    return space


class _Route(NamedTuple):
    """What the child of one architecture does in one cell (see `SharedNASNet.routes`)."""

    live: bool                 # the child has this cell (its output is read downstream)
    reads: frozenset           # states its blocks read
    second_input: str          # "same" (first cell: the stem), "layer", "passthrough" or "unread" (compact)
    blocks: tuple              # per block: ((state, layer or None), (state, layer or None))
    unread: tuple              # the cell's output slots (block indices), in concat order


class SharedNASNet(keras.Model):
    """The weight-sharing network over a `SearchSpace` (see the module docstring).

    Args:
        space: a `SearchSpace` with ``combines == ("add",)``; any B, any ops.
        num_cells: N, normal cells per stack (as `NASNet`).
        filters: F, filters of the first stack (stem: ``3 * F``, as `NASNet(stem="cifar")`).
        input_shape: ``(height, width, channels)``, static.
        classes: number of classes.
        bn_momentum, bn_epsilon: BatchNorm settings (default slim's CIFAR ones,
            as the search's children); only epsilon matters (batch statistics).

        weight_decay: slim-style L2 (``weight_decay / 2 * sum(w ** 2)`` per
            kernel) that `forward` returns for the layers it used (default 0).

    Call: ``model.forward(images, architecture)`` (see there);
    ``model((images, architecture))`` returns the probabilities only.
    """

    def __init__(self, space: space_lib.SearchSpace, *, num_cells: int, filters: int,
                 input_shape: Sequence[int], classes: int, bn_momentum: float = CIFAR_BN["bn_momentum"],
                 bn_epsilon: float = CIFAR_BN["bn_epsilon"], weight_decay: float = 0.0,
                 name: str = "shared_nasnet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight_decay = float(weight_decay)
        self._functions: Dict[str, tf.types.experimental.GenericFunction] = {}
        self.space = check_shareable_space(space)
        if len(input_shape) != 3 or any(d is None for d in input_shape):
            raise ValueError(f"input_shape must be a static (height, width, channels); got {input_shape}.")
        self.num_cells, self.filters, self.classes = int(num_cells), int(filters), int(classes)
        self.image_shape = tuple(int(d) for d in input_shape)
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)
        self.plan = _plan_cells(self.num_cells, self.filters, 2, "cifar", False)
        B = space.num_blocks
        self.stem_conv, self.stem_bn = stem_layers("cifar", 3 * self.filters, bn)
        hw = self.image_shape[:2]
        self.stem_conv.build((None, *self.image_shape))
        self.stem_bn.build((None, *hw, 3 * self.filters))
        outputs = [dict(hw=hw, channels=3 * self.filters, level=0, filters=None, is_stem=True)]
        self.cells = []
        for spec in self.plan:
            prev_prev = outputs[spec.prev_prev] if spec.prev_prev >= 0 else None
            cell = SharedCell(spec, space, bn, outputs[-1], prev_prev)
            self.cells.append(cell)
            outputs.append(dict(hw=cell.out_hw, channels=B * spec.filters, level=outputs[-1]["level"] +
                                int(spec.reduction), filters=spec.filters, is_stem=False))
        self.final_hw, self.final_channels = outputs[-1]["hw"], outputs[-1]["channels"]
        # Per layer name, over all cells: looked up for every op call of every step.
        self._meta = {name: meta for cell in self.cells for name, meta in cell.meta.items()}
        self._op_of = {name: op for cell in self.cells for name, op in cell.op_of.items()}
        self._last_routes = None
        self.predictions = keras.layers.Dense(self.classes, activation="softmax", name="predictions")
        self.predictions.build((None, self.final_channels))
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, FusedBatchNormalization):
                layer.update_moving_statistics = False
        self.built = True

    @property
    def num_decisions(self) -> int:
        return self.space.num_decisions

    # ------------------------------------------------------------------ compiled pieces
    def _compiled(self, key, fn, input_spec):
        if key not in self._functions:
            self._functions[key] = tf.function(fn, input_signature=[input_spec])
        return self._functions[key]

    def _run_layer(self, layer, x):
        meta = self._meta[layer.name]
        spec = tf.TensorSpec([None, *meta["in_hw"], meta["in_channels"]], tf.float32)
        decay = self.weight_decay
        return self._compiled(layer.name, lambda v: (layer(v, training=True), l2_penalty(layer, decay)), spec)(x)

    def _stem(self, images):
        def fn(x):
            return self.stem_bn(self.stem_conv(x), training=True), l2_penalty(self.stem_conv, self.weight_decay)
        return self._compiled("stem", fn, tf.TensorSpec([None, *self.image_shape], tf.float32))(images)

    def _head(self, features):
        def fn(x):
            pooled = tf.reduce_mean(tf.nn.relu(x), axis=[1, 2])
            return self.predictions(pooled), l2_penalty(self.predictions, self.weight_decay)
        spec = tf.TensorSpec([None, *self.final_hw, self.final_channels], tf.float32)
        return self._compiled("head", fn, spec)(features)

    @property
    def tracing_counts(self) -> Dict[str, int]:
        """``{piece: times traced}`` of every compiled piece used so far (each 1: traced once per search)."""
        return {k: f.experimental_get_tracing_count() for k, f in self._functions.items()}

    # ------------------------------------------------------------------ forward
    def forward(self, images, architecture: Sequence[int]):
        """The child of ``architecture`` on ``images`` with the shared weights (BatchNorm on batch statistics).

        Args:
            images: ``float32 [batch, h, w, c]``.
            architecture: class indices, ``num_decisions`` ints (`space.decisions` order).

        Returns:
            ``(probabilities [batch, classes], L2 penalty of the layers used)`` (penalty 0 unless the
            network was built with ``weight_decay``).
        """
        routes = self.routes(architecture)
        x, penalty = self._stem(images)
        outs, penalties = [x], [penalty]
        for spec, cell, route in zip(self.plan, self.cells, routes):
            if not route.live:
                outs.append(None)
                continue
            prev = outs[-1]
            states = [None, None]
            if 0 in route.reads:
                states[0], pen = self._run_layer(cell.input_conv, prev)
                penalties.append(pen)
            if 1 in route.reads:
                pp = outs[spec.prev_prev] if spec.prev_prev >= 0 else None
                if route.second_input == "same":
                    states[1] = prev
                elif route.second_input == "passthrough":
                    states[1] = pp
                elif route.second_input == "unread":
                    f_pp = self.plan[spec.prev_prev - 1].filters
                    kept = routes[spec.prev_prev - 1].unread
                    states[1] = tf.concat([pp[..., s * f_pp:(s + 1) * f_pp] for s in kept], axis=-1)
                else:
                    states[1], pen = self._run_layer(cell.pp_layer, pp)
                    penalties.append(pen)
            for sides in route.blocks:
                total = None
                for state, layer in sides:
                    y = states[state]
                    if layer is not None:
                        y, pen = self._run_layer(layer, y)
                        penalties.append(pen)
                    total = y if total is None else total + y
                states.append(total)
            zeros = tf.zeros_like(states[2])
            outs.append(tf.concat([states[2 + b] if b in route.unread else zeros
                                   for b in range(self.space.num_blocks)], axis=-1))
        probs, penalty = self._head(outs[-1])
        return probs, tf.add_n(penalties + [penalty])

    def call(self, inputs, training=None):
        images, architecture = inputs
        return self.forward(images, architecture)[0]

    # ------------------------------------------------------------------ the chosen child
    def routes(self, architecture: Sequence[int]) -> List[_Route]:
        """Per cell of the plan, what the child of ``architecture`` computes (a `_Route`).

        The last result is kept: a training step asks twice (its variables, then the forward pass)."""
        key = tuple(int(a) for a in architecture)
        if self._last_routes is not None and self._last_routes[0] == key:
            return self._last_routes[1]
        routes = self._routes(key)
        self._last_routes = (key, routes)
        return routes

    def _routes(self, architecture: Tuple[int, ...]) -> List[_Route]:
        genotype = self.genotype(architecture)
        kinds = [genotype.reduction if spec.reduction else genotype.normal for spec in self.plan]
        reads = [frozenset(i for block in kind.blocks for i in block.inputs) for kind in kinds]
        # A Keras functional model drops the layers of unread inputs and of cells whose output nothing reads.
        live = [False] * len(self.plan) + [True]  # per network output, stem first
        for k in reversed(range(len(self.plan))):
            if live[k + 1]:
                live[k] = live[k] or 0 in reads[k] or (1 in reads[k] and self.plan[k].prev_prev < 0)
                if self.plan[k].prev_prev >= 0 and 1 in reads[k]:
                    live[self.plan[k].prev_prev] = True
        out = []
        for k, (spec, cell, kind) in enumerate(zip(self.plan, self.cells, kinds)):
            unread = tuple(s - 2 for s in kind.output_states)
            second = {"same": "same", "passthrough": "passthrough"}.get(cell.pp_mode, "layer")
            if cell.pp_mode == "dynamic" and spec.prev_prev >= 1:
                f_pp = self.plan[spec.prev_prev - 1].filters
                if len(out[spec.prev_prev - 1].unread) * f_pp == spec.filters:
                    second = "unread"
            blocks = []
            for b, block in enumerate(kind.blocks):
                sides = []
                for side, (state, op) in enumerate(zip(block.inputs, block.ops)):
                    _, per_side = cell.groups[b][cell.group_of[b][state]]
                    sides.append((state, per_side[side][self.space.ops.index(op)]))
                blocks.append(tuple(sides))
            out.append(_Route(live[k + 1], reads[k], second, tuple(blocks), unread))
        return out

    def chosen_layers(self, architecture: Sequence[int]) -> List[Tuple[str, keras.layers.Layer, Optional[list]]]:
        """The layers the child of ``architecture`` uses, as ``(child layer name, shared layer, rows)``.

        ``rows`` lists, for a layer reading a full-width cell output, the input
        channels its kernels keep in the child (the unread states' channels,
        in order); ``None`` when the kernels are used whole. Child layer names
        are `nasnet_keras.NASNet`'s.
        """
        routes = self.routes(architecture)
        out = [("stem_conv1", self.stem_conv, None), ("stem_bn1", self.stem_bn, None)]
        rows: List[Optional[list]] = [None]  # per network output (stem first): channels the child keeps
        for spec, cell, route in zip(self.plan, self.cells, routes):
            name, f = f"cell_{spec.cell_id}", spec.filters
            rows.append([c for s in route.unread for c in range(s * f, (s + 1) * f)])
            if not route.live:
                continue
            if 0 in route.reads:
                out.append((f"{name}_input", cell.input_conv, rows[-2]))
            if 1 in route.reads and route.second_input == "layer":
                out.append((f"{name}_prev", cell.pp_layer, rows[spec.prev_prev]))
            for b, sides in enumerate(route.blocks):
                for side, (state, layer) in enumerate(sides):
                    if layer is not None:
                        op = self.genotype_op(layer)
                        out.append((f"{name}_b{b}_{'left' if side == 0 else 'right'}_{op}", layer, None))
        out.append(("predictions", self.predictions, rows[-1]))
        return out

    def chosen_variables(self, architecture: Sequence[int]) -> list:
        """The trainable variables of `chosen_layers` (what one training step of ``architecture`` updates)."""
        return [w for _, layer, _ in self.chosen_layers(architecture) for w in layer.trainable_weights]

    def genotype_op(self, layer) -> str:
        """The op name of a shared op layer."""
        return self._op_of[layer.name]

    def copy_to_child(self, architecture: Sequence[int], child: keras.Model) -> None:
        """Copies the chosen weights into ``child``, a `NASNet(self.genotype(architecture), stem="cifar",
        num_cells=N, filters=F, ...)` of the same input shape and classes (kernel rows as `chosen_layers`)."""
        for layer_name, layer, rows in self.chosen_layers(architecture):
            target = child.get_layer(layer_name)
            if len(target.weights) != len(layer.weights):
                raise ValueError(f"Layer {layer_name}: the child has {len(target.weights)} weights, the shared "
                                 f"network {len(layer.weights)}; is the child built from this architecture?")
            for dst, src in zip(target.weights, layer.weights):
                value = src.numpy()
                if rows is not None and value.ndim >= 2 and value.shape[-2] != dst.shape[-2]:
                    value = np.take(value, rows, axis=-2)
                dst.assign(value)

    def child_cost(self, architecture: Sequence[int]) -> Tuple[int, int]:
        """``(params, mult_adds)`` of the stand-alone child, as `nasnet_keras.model_cost` counts them
        (every weight; conv and dense multiply-adds of one image), without building it."""
        params = mult_adds = 0
        image_positions = _positions(self.image_shape[:2])
        for layer_name, layer, rows in self.chosen_layers(architecture):
            if layer is self.predictions:
                positions = 1
            elif layer is self.stem_conv or layer is self.stem_bn:
                positions = image_positions
            else:
                meta = self._meta[layer.name]
                positions = _positions(meta["in_hw"] if getattr(layer, "subsample", False) else meta["out_hw"])
            for w in layer.weights:
                size = int(np.prod(w.shape))
                if rows is not None and len(w.shape) >= 2:
                    size = size // int(w.shape[-2]) * len(rows)
                params += size
                if w.path.split("/")[-1] in _MULT_ADD_WEIGHTS:
                    mult_adds += size * positions
        return params, mult_adds

    def genotype(self, architecture: Sequence[int], name: str = "") -> gt.Genotype:
        """The `Genotype` of class indices ``architecture`` (`space.decisions` order)."""
        values = space_lib.indices_to_values([int(i) for i in architecture], self.space)
        return space_lib.genotype_from_hyperparameters(values, self.space, name=name)

    def architecture(self, genotype: gt.Genotype) -> np.ndarray:
        """Class indices (``int32 [num_decisions]``) of a `Genotype` of this space."""
        values = space_lib.hyperparameters_from_genotype(genotype, self.space)
        return np.asarray(space_lib.values_to_indices(values, self.space), np.int32)
