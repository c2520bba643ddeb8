"""The ops registry: one entry per operation of the search space.

`OP_FACTORIES[name](filters, strides, in_channels, bn, name, pool_padding)`
returns the Keras layer computing that op, or `None` for a pass-through
identity (``pool_padding``: see `CellPooling`; only pools read it). Every
op outputs `filters` channels at `1 / strides` the input resolution, so any
two ops can be added. The names are `nasnet_keras.genotypes.OPS`.
"""

from nasnet_keras import genotypes
from nasnet_keras.layers.conv_blocks import ReLUConvBN, SeparableConvBlock
from nasnet_keras.layers.pooling import CellPooling


def _identity(filters, strides, in_channels, bn, name, pool_padding):
    # TF-slim nasnet_utils.py `_apply_conv_operation` ('none'): a strided identity or one whose input width
    # differs from `filters` is ReLU -> 1x1 conv (with the stride) -> BN.
    if strides > 1 or in_channels != filters:
        return ReLUConvBN(filters, ((1, 1),), strides=strides, name=name, **bn)
    return None


def _conv(*kernel_sizes, dilation_rate=1):
    def factory(filters, strides, in_channels, bn, name, pool_padding):
        return ReLUConvBN(filters, kernel_sizes, strides=strides, dilation_rate=dilation_rate, name=name, **bn)
    return factory


def _sep(kernel_size):
    def factory(filters, strides, in_channels, bn, name, pool_padding):
        return SeparableConvBlock(filters, kernel_size, strides=strides, name=name, **bn)
    return factory


def _pool(mode, size):
    def factory(filters, strides, in_channels, bn, name, pool_padding):
        return CellPooling(mode, size, strides=strides, filters=None if in_channels == filters else filters,
                           padding=pool_padding, name=name, **bn)
    return factory


# The 13 operations (paper Sec. 3).
OP_FACTORIES = {
    "identity": _identity,
    "conv_1x3_3x1": _conv((1, 3), (3, 1)),
    "conv_1x7_7x1": _conv((1, 7), (7, 1)),
    "dil_conv_3x3": _conv((3, 3), dilation_rate=2),
    "avg_pool_3x3": _pool("avg", 3),
    "max_pool_3x3": _pool("max", 3),
    "max_pool_5x5": _pool("max", 5),
    "max_pool_7x7": _pool("max", 7),
    "conv_1x1": _conv((1, 1)),
    "conv_3x3": _conv((3, 3)),
    "sep_conv_3x3": _sep(3),
    "sep_conv_5x5": _sep(5),
    "sep_conv_7x7": _sep(7),
}

assert tuple(OP_FACTORIES) == genotypes.OPS, "the ops registry must cover genotypes.OPS in order"


def make_op(op, filters, strides=1, in_channels=None, bn=None, name=None, pool_padding="keras"):
    """Creates the layer for operation `op` (a name from `genotypes.OPS`).

    Args:
        op: operation name.
        filters: output channels.
        strides: 1, or 2 inside a reduction cell on a cell input.
        in_channels: channels of the input (decides 1x1 channel matching).
        bn: dict with `bn_momentum` and `bn_epsilon`, or `None` for defaults.
        name: layer name.
        pool_padding: ``"keras"`` (default) or ``"slim"``: how stride-2
            pools pad (see `CellPooling`).

    Returns:
        A `keras.layers.Layer`, or `None` when the op is a plain identity.
    """
    if op not in OP_FACTORIES:
        raise ValueError(f"Unknown operation {op!r}; choose one of {', '.join(OP_FACTORIES)}.")
    return OP_FACTORIES[op](filters, strides, in_channels if in_channels is not None else filters, bn or {}, name,
                            pool_padding)
