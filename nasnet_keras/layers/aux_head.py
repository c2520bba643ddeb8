"""Auxiliary classifier head (paper Sec. 4.1; TF-slim `_build_aux_head`)."""

import keras

from nasnet_keras.layers.conv_blocks import _bn


@keras.saving.register_keras_serializable(package="nasnet_keras")
class AuxiliaryHead(keras.layers.Layer):
    """ReLU -> 5x5/3 avg pool (VALID) -> 1x1 conv 128 + BN + ReLU ->
    conv 768 over the remaining spatial extent (VALID) + BN + ReLU -> flatten -> Dense.

    Attached to the end of the second stack; its output is a second model
    output used only as a training loss (weight 0.4 in the paper's CIFAR
    setup). The pool window shrinks to the feature map when that is smaller
    than 5x5.

    Args:
        classes: number of classes.
        activation: activation of the final Dense (default `"softmax"`).
        bn_momentum, bn_epsilon: BatchNorm settings.

    Input `(batch, h, w, c)` with static `h`, `w`; output `(batch, classes)`.
    """

    def __init__(self, classes, activation="softmax", bn_momentum=0.9997, bn_epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.classes, self.activation = int(classes), activation
        self.bn_momentum, self.bn_epsilon = bn_momentum, bn_epsilon
        self.relu = keras.layers.ReLU()
        self.conv_1 = keras.layers.Conv2D(128, 1, use_bias=False, kernel_initializer="he_normal", name="conv_1")
        self.bn_1 = _bn(bn_momentum, bn_epsilon, "bn_1")
        self.conv_2 = None
        self.bn_2 = _bn(bn_momentum, bn_epsilon, "bn_2")
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(self.classes, activation=activation, name="dense")

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None:
            raise ValueError("AuxiliaryHead needs a static spatial size; build the model with a fixed "
                             "input_shape (e.g. (32, 32, 3)) or set aux_head=False.")
        pool = min(5, h, w)
        self.pool = keras.layers.AveragePooling2D(pool, strides=3, padding="valid")
        ph, pw = (h - pool) // 3 + 1, (w - pool) // 3 + 1
        self.conv_1.build((None, ph, pw, input_shape[3]))
        self.bn_1.build((None, ph, pw, 128))
        self.conv_2 = keras.layers.Conv2D(768, (ph, pw), padding="valid", use_bias=False,
                                          kernel_initializer="he_normal", name="conv_2")
        self.conv_2.build((None, ph, pw, 128))
        self.bn_2.build((None, 1, 1, 768))
        self.dense.build((None, 768))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.classes)

    def call(self, inputs, training=None):
        x = self.pool(self.relu(inputs))
        x = self.relu(self.bn_1(self.conv_1(x), training=training))
        x = self.relu(self.bn_2(self.conv_2(x), training=training))
        return self.dense(self.flatten(x))

    def get_config(self):
        config = super().get_config()
        config.update(classes=self.classes, activation=self.activation, bn_momentum=self.bn_momentum,
                      bn_epsilon=self.bn_epsilon)
        return config
