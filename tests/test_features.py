"""Multi-scale features (`nasnet_keras.pyramid_outputs` / `pyramid_model`)."""

import numpy as np
import pytest

import keras
from nasnet_keras import NASNet, pyramid_model, pyramid_outputs
from nasnet_keras.applications import NASNetMobile
from nasnet_keras.genotypes import Genotype

# One test process for the module: its module fixture (NASNetMobile at an unknown size) is then built once,
# not in every pytest-xdist process that runs one of its tests.
pytestmark = pytest.mark.xdist_group("test_features")


@pytest.fixture(scope="module")
def mobile_free():
    """NASNetMobile without its top at an unknown input size, built once."""
    return NASNetMobile(weights=None, include_top=False, input_shape=(None, None, 3))


def test_mobile_pyramid_shapes_at_224_and_at_unknown_size(mobile_free):
    fixed = pyramid_outputs(NASNetMobile(weights=None, include_top=False, input_shape=(224, 224, 3)))
    expected = {"P2": (56, 56, 44), "P3": (28, 28, 264), "P4": (14, 14, 528), "P5": (7, 7, 1056)}
    assert {k: tuple(v.shape[1:]) for k, v in fixed.items()} == expected
    free = pyramid_outputs(mobile_free)
    assert {k: tuple(v.shape[1:]) for k, v in free.items()} == {k: (None, None, c) for k, (_, _, c) in expected.items()}
    feats = pyramid_model(mobile_free)(np.zeros((1, 96, 160, 3), "float32"))
    assert {k: tuple(v.shape[1:3]) for k, v in feats.items()} == {"P2": (24, 40), "P3": (12, 20), "P4": (6, 10),
                                                                  "P5": (3, 5)}


def test_pyramid_model_shares_the_weights(mobile_free):
    backbone = pyramid_model(mobile_free)
    assert backbone.count_params() == mobile_free.count_params()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    p5 = keras.ops.convert_to_numpy(backbone(x, training=False)["P5"])
    # The model's own output is the final ReLU of the last cell: P5 is that cell's output.
    np.testing.assert_allclose(np.maximum(p5, 0), keras.ops.convert_to_numpy(mobile_free(x, training=False)),
                               atol=1e-6)


def test_cifar_stem_levels_and_single_output_cells():
    # One output state per cell (an Identity output layer), and concat combines, whose layers are named
    # cell_<id>_b<k>_concat like the cells' own concat: neither may confuse the levels.
    g = Genotype.from_dict({"normal": [[0, "sep_conv_3x3", 1, "identity", "concat"]],
                            "reduction": [[0, "max_pool_3x3", 1, "identity", "concat"]]})
    model = NASNet(g, num_cells=2, filters=8, stem="cifar", input_shape=(32, 32, 3), include_top=False)
    feats = pyramid_outputs(model)
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == {"P0": (32, 32, 16), "P1": (16, 16, 32),
                                                                 "P2": (8, 8, 64)}


def test_not_a_nasnet_model_is_refused():
    inputs = keras.Input((32, 32, 3))
    plain = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="has no NASNet cells"):
        pyramid_outputs(plain)
