"""Tests for nasnet_keras.cost.model_cost."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from nasnet_keras.cost import Cost, model_cost  # noqa: E402


def _trainable_count(model):
    return sum(int(tf.size(w)) for w in model.trainable_weights)


def test_conv_dense_exact():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inp)  # VALID -> 6x6x4
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10)(x)
    model = keras.Model(inp, out)

    cost = model_cost(model)

    conv = 6 * 6 * 3 * 3 * 3 * 4  # out_h * out_w * k_h * k_w * c_in * c_out
    dense = (6 * 6 * 4) * 10
    assert cost.mult_adds == conv + dense
    assert cost.params == model.count_params()
    assert cost.trainable_params == _trainable_count(model)
    assert cost.non_trainable_params == 2 * 4  # BN moving mean / variance
    assert isinstance(cost, Cost)
    with pytest.raises(dataclasses_frozen_error(), match="cannot assign to field 'params'"):
        cost.params = 0


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_separable_conv():
    inp = keras.Input((10, 10, 8))
    out = keras.layers.SeparableConv2D(16, 3, padding="same", depth_multiplier=2)(inp)
    cost = model_cost(keras.Model(inp, out))
    depthwise = 10 * 10 * 3 * 3 * 8 * 2
    pointwise = 10 * 10 * (8 * 2) * 16
    assert cost.mult_adds == depthwise + pointwise


def test_strided_dilated_grouped_and_transposed_convs():
    inp = keras.Input((16, 16, 8))
    a = keras.layers.Conv2D(6, 3, strides=2, padding="same")(inp)  # 8x8x6
    b = keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same")(inp)  # 16x16x8
    c = keras.layers.Conv2D(4, 1, groups=2)(inp)  # 16x16x4, 4 in-ch per group
    d = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(a)  # 16x16x2
    model = keras.Model(inp, [a, b, c, d])
    expected = (
        8 * 8 * 9 * 8 * 6
        + 16 * 16 * 9 * 8
        + 16 * 16 * 1 * (8 // 2) * 4
        + (8 * 8 * 6) * 9 * 2  # every input value feeds k_h*k_w*c_out outputs
    )
    assert model_cost(model).mult_adds == expected


class ConvBN(keras.layers.Layer):
    """A composite layer: conv + BN held as sublayers."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn = keras.layers.BatchNormalization()

    def call(self, x, training=None):
        return self.bn(self.conv(keras.ops.relu(x)), training=training)


class TwoConvBN(keras.layers.Layer):
    """A composite of composites, to check two levels of nesting."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.first = ConvBN(filters)
        self.second = ConvBN(filters)

    def call(self, x, training=None):
        return self.second(self.first(x, training=training), training=training)


def test_nested_custom_layers_are_counted():
    inp = keras.Input((12, 12, 3))
    x = TwoConvBN(5)(inp)
    out = keras.layers.Dense(7)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    cost = model_cost(model)
    expected = 12 * 12 * 9 * 3 * 5 + 12 * 12 * 9 * 5 * 5 + 5 * 7
    assert cost.mult_adds == expected
    assert cost.params == model.count_params()
    assert cost.trainable_params == _trainable_count(model)


class FunctionConv(keras.layers.Layer):
    """Runs its convolution inside a nested tf.function (a PartitionedCall op)."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(3, 3, input_shape[-1], 6))

    def call(self, x):
        return self._conv(x)

    @tf.function(autograph=False)
    def _conv(self, x):
        return tf.nn.conv2d(x, self.kernel, strides=1, padding="SAME")


def test_nested_tf_function_is_counted():
    inp = keras.Input((9, 9, 4))
    out = FunctionConv()(inp)
    assert model_cost(keras.Model(inp, out)).mult_adds == 9 * 9 * 9 * 4 * 6


class ConcreteConv(keras.layers.Layer):
    """Calls a pre-traced ConcreteFunction, which stays a call op in the graph."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(1, 1, input_shape[-1], 3))
        spec = tf.TensorSpec((1,) + tuple(input_shape[1:]), tf.float32)
        self._fn = tf.function(self._conv, autograph=False).get_concrete_function(spec)

    def _conv(self, x):
        return tf.nn.conv2d(x, self.kernel, strides=1, padding="VALID")

    def call(self, x):
        return self._fn(x)


def test_function_call_op_is_walked():
    model = ConcreteConv()
    cost = model_cost(model, input_shape=(5, 5, 2))
    assert cost.mult_adds == 5 * 5 * 2 * 3


class BranchConv(keras.layers.Layer):
    """A data-dependent tf.cond between a cheap and an expensive conv."""

    def build(self, input_shape):
        self.small = self.add_weight(shape=(1, 1, input_shape[-1], 2))
        self.big = self.add_weight(shape=(3, 3, input_shape[-1], 2))

    def call(self, x):
        return tf.cond(
            tf.reduce_sum(x) > 0,
            lambda: tf.nn.conv2d(x, self.small, 1, "SAME"),
            lambda: tf.nn.conv2d(x, self.big, 1, "SAME"),
        )


def test_cond_counts_most_expensive_branch():
    cost = model_cost(BranchConv(), input_shape=(4, 4, 3))
    assert cost.mult_adds == 4 * 4 * 9 * 3 * 2


def test_unknown_spatial_dims_need_input_shape():
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    with pytest.raises(ValueError, match="input_shape"):
        model_cost(model)
    small = model_cost(model, input_shape=(16, 16, 3)).mult_adds
    large = model_cost(model, input_shape=(32, 32, 3)).mult_adds
    assert small == 16 * 16 * 9 * 3 * 8 + 8 * 2
    assert large == 32 * 32 * 9 * 3 * 8 + 8 * 2


def test_bad_input_shape_errors():
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    with pytest.raises(ValueError, match="batch dimension"):
        model_cost(model, input_shape=(1, 8, 8, 3))
    with pytest.raises(ValueError, match="conflicts"):
        model_cost(model, input_shape=(9, 8, 3))
    with pytest.raises(ValueError, match="tuple of ints"):
        model_cost(model, input_shape="8x8x3")
    assert model_cost(model, input_shape=(8, 8, 3)).mult_adds == 8 * 8 * 3 * 2


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(3, 3)

    def call(self, x, training=None):
        return self.conv(x)


def test_unbuilt_subclassed_model():
    model = SubclassedNet()
    with pytest.raises(ValueError, match="input_shape"):
        model_cost(model)
    cost = model_cost(model, input_shape=(5, 5, 2))
    assert cost.mult_adds == 3 * 3 * 9 * 2 * 3
    assert cost.params == 3 * 3 * 2 * 3 + 3


def test_multi_input_model():
    a = keras.Input((4,))
    b = keras.Input((6,))
    out = keras.layers.Dense(3)(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], out)
    assert model_cost(model).mult_adds == 10 * 3
    with pytest.raises(ValueError, match="2 inputs"):
        model_cost(model, input_shape=(4,))


def test_str_format():
    assert str(Cost(5_326_716, 5_289_978, 563_638_816)) == "5.33M params, 564M mult-adds"
    assert str(Cost(88_949_818, 88_753_150, 23_783_414_658)) == "88.9M params, 23.8B mult-adds"
    assert str(Cost(950, 950, 12_345)) == "950 params, 12.3K mult-adds"
    assert str(Cost(999_700, 0, 0)) == "1.00M params, 0 mult-adds"


def test_nasnet_mobile_matches_paper():
    # Paper Table 2: NASNet-A (4 @ 1056) has 564M mult-adds; Keras counts
    # 5,326,716 parameters with the top.
    model = keras.applications.NASNetMobile(weights=None)
    cost = model_cost(model)
    assert cost.mult_adds == pytest.approx(564e6, rel=0.03)
    assert cost.params == model.count_params() == 5_326_716
    assert str(cost) == "5.33M params, 564M mult-adds"


# NASNetLarge (paper Table 2: 23.8B mult-adds, 88.9M params): tests/test_weights.py, test_large_parity_over_http,
# on the suite's one NASNetLarge.
