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
