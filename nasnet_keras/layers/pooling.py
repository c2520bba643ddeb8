"""Pooling op of NASNet cells."""

import keras
from keras import ops

from nasnet_keras.layers.conv_blocks import _bn

#: `CellPooling` paddings of stride-2 pools: keras.applications' and TF-slim's.
POOL_PADDINGS = ("keras", "slim")


def check_pool_padding(padding: str) -> str:
    """``padding`` if it is one of `POOL_PADDINGS`; else a ValueError saying which to pick."""
    if padding not in POOL_PADDINGS:
        raise ValueError(f"pool_padding must be one of {', '.join(map(repr, POOL_PADDINGS))}; got {padding!r}. "
                         "'keras' matches the published Keras weights, 'slim' the original TF-slim checkpoints.")
    return padding


def same_padding(size, kernel, stride):
    """(before, after) zero padding that gives TensorFlow SAME geometry.

    Works on Python ints and on scalar tensors (unknown spatial sizes).
    For stride 2 this is exactly keras.applications' `correct_pad`.
    """
    out = (size + stride - 1) // stride
    total = ops.maximum((out - 1) * stride + kernel - size, 0) if not isinstance(size, int) \
        else max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable(package="nasnet_keras")
class CellPooling(keras.layers.Layer):
    """Average or max pooling op, with an optional 1x1 conv + BN to set channels.

    Stride 1 pools use SAME padding. Stride 2 pools, with ``padding="keras"``
    (default), zero-pad to SAME geometry and pool VALID, so padded zeros count
    in averages and maxima: that is what the published Keras NASNet weights
    were evaluated with (keras.applications `nasnet.py`). With
    ``padding="slim"`` they are TensorFlow SAME pools, which leave the padding
    out of averages and maxima, as TF-slim trained the original checkpoints
    (nasnet_utils.py `_pooling`). Both work with unknown spatial sizes. When
    `filters` differs from the input channels, a 1x1 conv + BN follows (paper
    Appendix A: channel counts are matched with 1x1 convolutions).

    Args:
        mode: `"avg"` or `"max"`.
        pool_size: int window size.
        strides: 1 or 2.
        filters: output channels, or `None` to keep the input channels.
        bn_momentum, bn_epsilon: BatchNorm settings of the 1x1 projection.
        padding: ``"keras"`` (default) or ``"slim"``, see above.

    Input `(batch, h, w, c)`; output `(batch, ceil(h/s), ceil(w/s), filters or c)`.
    """

    def __init__(self, mode, pool_size, strides=1, filters=None, bn_momentum=0.9997, bn_epsilon=1e-3,
                 padding="keras", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("avg", "max"):
            raise ValueError(f"CellPooling: mode must be 'avg' or 'max'; got {mode!r}.")
        self.padding = check_pool_padding(padding)
        self.mode, self.pool_size, self.strides = mode, int(pool_size), int(strides)
        self.filters = None if filters is None else int(filters)
        self.bn_momentum, self.bn_epsilon = bn_momentum, bn_epsilon
        pool_cls = keras.layers.AveragePooling2D if mode == "avg" else keras.layers.MaxPooling2D
        self._pad_first = self.strides > 1 and padding == "keras"
        self.pool = pool_cls(self.pool_size, strides=self.strides, padding="valid" if self._pad_first else "same",
                             name="pool")
        self.conv = self.bn = None
        if self.filters is not None:
            self.conv = keras.layers.Conv2D(self.filters, 1, use_bias=False, kernel_initializer="he_normal",
                                            name="conv")
            self.bn = _bn(bn_momentum, bn_epsilon, "bn")

    def _pooled_shape(self, input_shape):
        dims = [None if d is None else -(-d // self.strides) for d in input_shape[1:3]]
        return (input_shape[0], *dims, input_shape[3])

    def build(self, input_shape):
        if self.conv is not None:
            shape = self._pooled_shape(input_shape)
            self.conv.build(shape)
            self.bn.build((*shape[:3], self.filters))

    def compute_output_shape(self, input_shape):
        shape = self._pooled_shape(input_shape)
        return shape if self.filters is None else (*shape[:3], self.filters)

    def call(self, inputs, training=None):
        x = inputs
        if self._pad_first:
            pads = []
            for axis in (1, 2):
                size = x.shape[axis]
                size = ops.shape(x)[axis] if size is None else size
                pads.append(same_padding(size, self.pool_size, self.strides))
            x = ops.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
        x = self.pool(x)
        if self.conv is not None:
            x = self.bn(self.conv(x), training=training)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, pool_size=self.pool_size, strides=self.strides, filters=self.filters,
                      bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, padding=self.padding)
        return config
