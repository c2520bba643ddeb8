"""Model cost: parameter count and multiply-adds of one forward pass.

`model_cost(model)` reports the numbers the paper uses to compare models
(paper Sec. 4.2, Table 2: "#Params" and "#Mult-Adds"):

* ``params``: every weight of the model, trainable or not (BatchNorm moving
  statistics included), the same number as ``model.count_params()``;
* ``mult_adds``: multiply-accumulate operations of one image (batch size 1) in
  inference mode, counting only convolutions and fully connected layers (the
  paper's convention). Additions, pooling, BatchNorm, activations and
  element-wise ops are not counted.

Mult-adds are measured on the TensorFlow graph rather than per Keras layer,
so any model works, including ones built from custom composite layers that
hold nested sublayers: the model's inference call is traced as a
`tf.function` with a concrete batch-1 input signature, then every op of the
graph is inspected with its static shapes. Nested `tf.function`s are
inlined into that trace; functions that still appear as call ops (e.g. from
a loaded SavedModel) are walked too. Counted ops and their mult-adds:

========================  ====================================================
op                        mult-adds
========================  ====================================================
Conv2D, Conv3D            output positions x prod(filter shape)
                          (= out_h * out_w * k_h * k_w * c_in / groups * c_out)
DepthwiseConv2dNative     out_h * out_w * k_h * k_w * c_in * multiplier
Conv2DBackpropInput,      input positions x prod(filter shape)
Conv3DBackpropInputV2     (transposed convolution)
MatMul, BatchMatMul*      m * k * n per matrix product
Einsum (two operands)     output size x size of the contracted dimensions
========================  ====================================================

Functions called through ``PartitionedCall`` / ``StatefulPartitionedCall``
are counted once per call. For ``If`` / ``Case`` the most expensive branch is
counted; a ``While`` body is counted once (its trip count is not static).

Requires the TensorFlow Keras backend.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from nasnet_keras.tensorflow_only import require_tensorflow_backend

__all__ = ["Cost", "model_cost"]

ShapeLike = Sequence[Optional[int]]


@dataclasses.dataclass(frozen=True)
class Cost:
    """The size and compute cost of a model.

    Attributes:
        params: number of weights, trainable and non-trainable (int).
        trainable_params: number of trainable weights (int).
        mult_adds: multiply-adds of one forward pass at batch size 1, counting
            convolutions and fully connected layers only (int).
    """

    params: int
    trainable_params: int
    mult_adds: int

    @property
    def non_trainable_params(self) -> int:
        """Weights that training does not update (e.g. BatchNorm statistics)."""
        return self.params - self.trainable_params

    def __str__(self) -> str:
        return f"{_human(self.params)} params, {_human(self.mult_adds)} mult-adds"


def _human(n: int) -> str:
    """Formats a count with 3 significant digits and a K/M/B/T suffix."""
    if n < 1000:
        return str(n)
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            break
    digits = max(0, 2 - int(math.floor(math.log10(value))))
    text = f"{value:.{digits}f}"
    if float(text) >= 1000 and suffix != "T":  # 999.6M rounds to 1000M -> 1.00B
        return _human(int(round(float(text) * scale)))
    return text + suffix


def model_cost(
    model: keras.layers.Layer,
    input_shape: Optional[Union[ShapeLike, Sequence[ShapeLike]]] = None,
) -> Cost:
    """Counts the parameters and multiply-adds of a Keras model.

    Args:
        model: a Keras model (functional, sequential or subclassed) on the
            TensorFlow backend; a single `keras.layers.Layer` works too (give
            ``input_shape``).
        input_shape: shape of one input sample WITHOUT the batch dimension,
            e.g. ``(224, 224, 3)``; a list of such shapes for a model with
            several inputs. Required when the model's input has unknown
            (None) dimensions or the model has no declared inputs (an unbuilt
            subclassed model); otherwise optional, and if given it must agree
            with the model's known dimensions.

    Returns:
        A `Cost` with ``params`` (as ``model.count_params()``),
        ``trainable_params`` and ``mult_adds`` (batch size 1, inference mode,
        convolutions and fully connected layers only).

    Raises:
        ValueError: if ``input_shape`` is needed and missing, malformed, or
            inconsistent with the model, or if an op's shape stays unknown.
        TypeError: if ``model`` is not a Keras model or layer.
        RuntimeError: if Keras does not run on the TensorFlow backend.
    """
    require_tensorflow_backend("model_cost (it traces the model with TensorFlow)")
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"model must be a keras.Model or keras.layers.Layer, got {type(model).__name__}."
        )

    specs = _input_specs(model, input_shape)
    args = specs[0] if len(specs) == 1 else list(specs)

    def forward(x):
        return model(x, training=False)

    # Nested tf.functions may hold a trace with looser shapes (e.g. a batch
    # of None from Keras's symbolic build); running them "eagerly" while the
    # outer function traces inlines their ops with the batch-1 shapes.
    was_eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        concrete = tf.function(forward, autograph=False).get_concrete_function(args)
    finally:
        tf.config.run_functions_eagerly(was_eager)
    mult_adds = _graph_mult_adds(concrete.graph, {})

    params = int(model.count_params())
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    return Cost(params=params, trainable_params=trainable, mult_adds=int(mult_adds))


# --------------------------------------------------------------------------
# Input signature


def _declared_inputs(model: keras.Model) -> Optional[List[Any]]:
    """The model's symbolic inputs, or None when it declares none."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    return list(inputs)


def _as_shape_list(input_shape, count: Optional[int]) -> List[Tuple]:
    """Normalizes ``input_shape`` to a list of per-input shape tuples."""

    def is_shape(s):
        return isinstance(s, (tuple, list, tf.TensorShape)) and all(
            d is None or isinstance(d, (int, np.integer)) for d in s
        )

    if is_shape(input_shape):
        shapes = [tuple(input_shape)]
    elif isinstance(input_shape, (tuple, list)) and all(is_shape(s) for s in input_shape):
        shapes = [tuple(s) for s in input_shape]
    else:
        raise ValueError(
            "input_shape must be a tuple of ints without the batch dimension, "
            f"e.g. (224, 224, 3), or a list of such tuples; got {input_shape!r}."
        )
    if count is not None and len(shapes) != count:
        raise ValueError(
            f"The model has {count} inputs but input_shape gives {len(shapes)} "
            f"shape(s): {input_shape!r}. Give one shape per input."
        )
    return shapes


def _input_specs(model: keras.Model, input_shape) -> List[tf.TensorSpec]:
    """Batch-1 `tf.TensorSpec`s to trace the model with."""
    inputs = _declared_inputs(model)
    if inputs is None:
        if input_shape is None:
            raise ValueError(
                "The model declares no inputs (it is probably a subclassed "
                "model that was never called), so its input size is unknown. "
                "Pass input_shape=(height, width, channels) (no batch dim)."
            )
        shapes = _as_shape_list(input_shape, None)
        for s in shapes:
            if any(d is None for d in s):
                raise ValueError(f"input_shape must be fully known, got {s!r}.")
        return [tf.TensorSpec((1,) + tuple(int(d) for d in s), tf.float32) for s in shapes]

    given = None if input_shape is None else _as_shape_list(input_shape, len(inputs))
    specs = []
    for i, kt in enumerate(inputs):
        declared = tuple(kt.shape)[1:]
        dtype = tf.as_dtype(keras.backend.standardize_dtype(kt.dtype))
        if given is None:
            if any(d is None for d in declared):
                raise ValueError(
                    f"Input {i} of the model has unknown dimensions "
                    f"{(None,) + declared} (batch first), so its mult-adds "
                    "depend on the image size. Pass input_shape without the "
                    "batch dimension, e.g. model_cost(model, "
                    "input_shape=(224, 224, 3))."
                )
            shape = declared
        else:
            shape = given[i]
            if len(shape) != len(declared):
                raise ValueError(
                    f"input_shape {shape!r} for input {i} has {len(shape)} "
                    f"dims but the model expects {len(declared)} "
                    f"(shape {(None,) + declared}, batch first). Leave the batch "
                    "dimension out of input_shape."
                )
            for got, want in zip(shape, declared):
                if got is None:
                    raise ValueError(f"input_shape must be fully known, got {shape!r}.")
                if want is not None and int(got) != int(want):
                    raise ValueError(
                        f"input_shape {shape!r} for input {i} conflicts with the "
                        f"model's input shape {(None,) + declared}."
                    )
        specs.append(tf.TensorSpec((1,) + tuple(int(d) for d in shape), dtype))
    return specs


# --------------------------------------------------------------------------
# Graph walk


def _static(shape: tf.TensorShape, op: tf.Operation) -> Tuple[int, ...]:
    """The fully known dims of ``shape``; raises if any is unknown."""
    if shape.rank is None or any(d is None for d in shape.as_list()):
        raise ValueError(
            f"Cannot count mult-adds of op {op.name!r} ({op.type}): its shape "
            f"{shape} is not static. Give model_cost a fully known input_shape."
        )
    return tuple(shape.as_list())


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64)) if len(dims) else 1


def _einsum_mult_adds(op: tf.Operation) -> int:
    """Mult-adds of a two-operand einsum: output size x contracted sizes."""
    if len(op.inputs) != 2:
        return 0
    equation = op.get_attr("equation")
    if isinstance(equation, bytes):
        equation = equation.decode()
    lhs, out = equation.replace(" ", "").split("->")
    sizes: Dict[str, int] = {}
    for term, tensor in zip(lhs.split(","), op.inputs):
        dims = _static(tensor.shape, op)
        head, _, tail = term.partition("...")
        for label, dim in zip(head, dims[: len(head)]):
            sizes[label] = dim
        for label, dim in zip(tail, dims[len(dims) - len(tail):] if tail else ()):
            sizes[label] = dim
    contracted = [sizes[l] for l in sizes if l not in out]
    return _prod(_static(op.outputs[0].shape, op)) * _prod(contracted)


def _op_mult_adds(op: tf.Operation) -> int:
    """Mult-adds of one (non-call) op; 0 for ops that are not counted."""
    kind = op.type
    if kind in ("Conv2D", "Conv3D"):
        out = _static(op.outputs[0].shape, op)
        filt = _static(op.inputs[1].shape, op)
        return _prod(out) // filt[-1] * _prod(filt)
    if kind == "DepthwiseConv2dNative":
        out = _static(op.outputs[0].shape, op)
        filt = _static(op.inputs[1].shape, op)  # [k_h, k_w, c_in, multiplier]
        return _prod(out) * filt[0] * filt[1]
    if kind in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
        filt = _static(op.inputs[1].shape, op)  # [..., c_out_of_transpose, c_in]
        grad = _static(op.inputs[2].shape, op)
        return _prod(grad) // filt[-1] * _prod(filt)
    if kind == "MatMul":
        out = _static(op.outputs[0].shape, op)
        a = _static(op.inputs[0].shape, op)
        k = a[0] if op.get_attr("transpose_a") else a[1]
        return _prod(out) * k
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        out = _static(op.outputs[0].shape, op)
        a = _static(op.inputs[0].shape, op)
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return _prod(out) * k
    if kind == "Einsum":
        return _einsum_mult_adds(op)
    return 0


def _function_graph(graph: tf.Graph, name: str) -> tf.Graph:
    """The traced graph of the library function ``name`` called from ``graph``."""
    # TensorFlow has no public accessor for a FuncGraph's nested functions;
    # `_get_function` returns the AtomicFunction whose `.graph` keeps the
    # static shapes (and variable shapes) of the trace.
    getter = getattr(graph, "_get_function", None)
    function = getter(name) if getter is not None else None
    nested = getattr(function, "graph", None)
    if nested is None:
        raise ValueError(
            f"Cannot inspect the nested function {name!r} called in the model's "
            "graph (this TensorFlow version hides it), so its mult-adds cannot "
            "be counted."
        )
    return nested


def _func_names(op: tf.Operation) -> Dict[str, List[str]]:
    """Names of the functions an op calls, per function-valued attribute."""
    found: Dict[str, List[str]] = {}
    for attr_name, value in op.node_def.attr.items():
        if value.HasField("func"):
            found[attr_name] = [value.func.name]
        elif value.HasField("list") and len(value.list.func):
            found[attr_name] = [f.name for f in value.list.func]
    return found


def _graph_mult_adds(graph: tf.Graph, memo: Dict[str, int]) -> int:
    """Sums the mult-adds of every op in ``graph``, following function calls."""

    def called(name: str) -> int:
        if name not in memo:
            memo[name] = _graph_mult_adds(_function_graph(graph, name), memo)
        return memo[name]

    total = 0
    for op in graph.get_operations():
        funcs = _func_names(op)
        if not funcs:
            total += _op_mult_adds(op)
        elif op.type in ("If", "StatelessIf", "Case", "StatelessCase"):
            branches = [n for key, names in funcs.items()
                        if key in ("then_branch", "else_branch", "branches")
                        for n in names]
            total += max((called(n) for n in branches), default=0)
        elif op.type in ("While", "StatelessWhile"):
            total += called(funcs["body"][0]) if "body" in funcs else 0
        else:  # PartitionedCall, StatefulPartitionedCall and other callers
            total += sum(called(n) for names in funcs.values() for n in names)
    return total
