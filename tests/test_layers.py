import numpy as np
import pytest

import keras
from nasnet_keras.layers import FusedBatchNormalization


@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
def test_fused_batchnorm_matches_keras(epsilon):
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 2.0, (8, 5, 5, 6)).astype("float32")
    ours = FusedBatchNormalization(momentum=0.9, epsilon=epsilon)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=epsilon)
    ours.build(x.shape)
    ref.build(x.shape)
    weights = [rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.1, 6), rng.normal(0, 0.1, 6), rng.uniform(0.5, 1.5, 6)]
    ours.set_weights(weights)
    ref.set_weights(weights)
    for training in (True, False):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x, training=training)),
                                   keras.ops.convert_to_numpy(ref(x, training=training)), atol=1e-5)
    for a, b in zip(ours.get_weights(), ref.get_weights()):     # same moving-statistics update
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours.get_weights()[2], weights[2])    # and they did move


# ----------------------------------------------------------------------------- slim-exact pooling
def test_stride2_pooling_keras_counts_padding_slim_leaves_it_out():
    """keras.applications zero-pads a stride-2 pool (zeros enter averages and maxima); TF-slim's SAME pooling
    leaves the padding out (nasnet_utils.py `_pooling`). 4x4 input, 3x3/2 window: the last row and column of
    windows overlap the padding."""
    from nasnet_keras.layers import CellPooling

    ones = np.ones((1, 4, 4, 1), "float32")
    avg_keras = keras.ops.convert_to_numpy(CellPooling("avg", 3, strides=2)(ones))[0, ..., 0]
    avg_slim = keras.ops.convert_to_numpy(CellPooling("avg", 3, strides=2, padding="slim")(ones))[0, ..., 0]
    np.testing.assert_allclose(avg_slim, np.ones((2, 2)))
    np.testing.assert_allclose(avg_keras, [[1.0, 6 / 9], [6 / 9, 4 / 9]], rtol=1e-6)
    negative = -ones
    max_keras = keras.ops.convert_to_numpy(CellPooling("max", 3, strides=2)(negative))[0, ..., 0]
    max_slim = keras.ops.convert_to_numpy(CellPooling("max", 3, strides=2, padding="slim")(negative))[0, ..., 0]
    np.testing.assert_allclose(max_slim, -np.ones((2, 2)))
    np.testing.assert_allclose(max_keras, [[-1.0, 0.0], [0.0, 0.0]])
    # Stride 1 pools are SAME pools either way.
    same = [keras.ops.convert_to_numpy(CellPooling("avg", 3, padding=p)(ones)) for p in ("keras", "slim")]
    np.testing.assert_array_equal(same[0], same[1])
    assert CellPooling.from_config(CellPooling("max", 3, 2, padding="slim").get_config()).padding == "slim"


def test_builder_pool_padding_reaches_every_pool_and_is_checked():
    from nasnet_keras import NASNet, NASNET_A
    from nasnet_keras.applications import PNASNetMobile
    from nasnet_keras.layers import CellPooling

    model = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), pool_padding="slim")
    pools = [layer for layer in model.layers if isinstance(layer, CellPooling)]
    assert pools and {p.padding for p in pools} == {"slim"} and any(p.strides == 2 for p in pools)
    with pytest.raises(ValueError, match="pool_padding must be one of 'keras', 'slim'; got 'tf'"):
        NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), pool_padding="tf")
    model = PNASNetMobile(weights=None, include_top=False)
    assert {p.padding for p in model.layers if isinstance(p, CellPooling)} == {"slim"}
