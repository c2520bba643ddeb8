"""Keras layers for NASNet cells: the ops registry, its blocks and ScheduledDropPath."""

from nasnet_keras.layers.aux_head import AuxiliaryHead
from nasnet_keras.layers.conv_blocks import (FactorizedReduction, FusedBatchNormalization, ReLUConvBN,
                                             SeparableConvBlock)
from nasnet_keras.layers.drop_path import ScheduledDropPath, scheduled_keep_prob
from nasnet_keras.layers.pooling import CellPooling
from nasnet_keras.layers.registry import OP_FACTORIES, make_op

__all__ = ["AuxiliaryHead", "CellPooling", "FactorizedReduction", "FusedBatchNormalization", "OP_FACTORIES",
           "ReLUConvBN", "ScheduledDropPath", "SeparableConvBlock", "make_op", "scheduled_keep_prob"]
