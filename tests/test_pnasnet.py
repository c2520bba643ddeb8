"""PNASNet-5 Mobile / Large (TF-slim nets/nasnet/pnasnet.py): layout, sizes and costs."""

import numpy as np
import pytest

from nasnet_keras import model_cost, pyramid_model, pyramid_outputs
from nasnet_keras.applications import PNASNetLarge, PNASNetMobile
from nasnet_keras.builder import pnasnet_reduction_indices
from nasnet_keras.layers import AuxiliaryHead, ScheduledDropPath

# One test process for the module: its module fixture (PNASNetMobile) is then built once,
# not in every pytest-xdist process that runs one of its tests.
pytestmark = pytest.mark.xdist_group("test_pnasnet")

# TF-slim's inference graphs count 5,099,232 (Mobile) and 86,238,977 (Large) weights with 1001 classes;
# ours has 1000 (no background class): one fewer row of the classifier (P + 1 weights).
SLIM_MOBILE, SLIM_LARGE = 5_099_232 - (1080 + 1), 86_238_977 - (4320 + 1)


@pytest.fixture(scope="module")
def mobile():
    return PNASNetMobile(weights=None)


def _shapes(model, names):
    return {n: tuple(model.get_layer(n).output.shape[1:]) for n in names}


def test_reductions_where_slim_puts_them():
    assert pnasnet_reduction_indices(12) == [4, 8] and pnasnet_reduction_indices(9) == [3, 6]


def test_mobile_endpoints_params_and_cost(mobile):
    # slim pnasnet_test: stem 28x28x135, then 270 @ 28, 540 @ 14, 1080 @ 7.
    assert _shapes(mobile, ["cell_stem_2_concat", "cell_2_concat", "cell_5_concat", "cell_8_concat"]) == {
        "cell_stem_2_concat": (28, 28, 135), "cell_2_concat": (28, 28, 270), "cell_5_concat": (14, 14, 540),
        "cell_8_concat": (7, 7, 1080)}
    assert [layer.name for layer in mobile.layers if layer.name.endswith("_concat") and "reduce" in layer.name
            and "_b" not in layer.name] == ["cell_reduce_3_concat", "cell_reduce_6_concat"]
    assert mobile.count_params() == SLIM_MOBILE
    cost = model_cost(mobile)
    assert abs(cost.mult_adds - 588e6) <= 0.01 * 588e6, cost          # PNAS paper: 588M
    # The stem cells have int(54 / 4) = 13 and int(54 / 2) = 27 filters; 27 splits 13 / 14 in a factorized
    # reduction, as slim's int(27 / 2) and the rest.
    fr = mobile.get_layer("cell_0_prev")
    assert (fr.conv_1.filters, fr.conv_2.filters) == (27, 27)
    assert mobile.get_layer("cell_stem_1_concat").output.shape[-1] == 5 * 13
    odd = mobile.get_layer("cell_stem_2_prev")
    assert odd.filters == 27 and (odd.conv_1.filters, odd.conv_2.filters) == (13, 14)


@pytest.mark.slow
def test_large_endpoints_and_params():
    """Over 20 s: building the 86M-weight model is the only way to check its layout and count."""
    model = PNASNetLarge(weights=None)
    # slim pnasnet_test: stem 42x42x540, then 1080 @ 42, 2160 @ 21, 4320 @ 11.
    assert _shapes(model, ["cell_stem_2_concat", "cell_3_concat", "cell_7_concat", "cell_11_concat"]) == {
        "cell_stem_2_concat": (42, 42, 540), "cell_3_concat": (42, 42, 1080), "cell_7_concat": (21, 21, 2160),
        "cell_11_concat": (11, 11, 4320)}
    assert model.count_params() == SLIM_LARGE
    assert model.get_layer("stem_conv1").filters == 96                # 32 x stem multiplier 3


def test_training_settings_aux_head_and_drop_path_depth():
    model = PNASNetMobile(weights=None, aux_head=True, dropout=0.5, drop_path_keep_prob=0.6, total_training_steps=1000)
    aux = [layer for layer in model.layers if isinstance(layer, AuxiliaryHead)]
    # slim: the aux head follows cell reduction_indices[1] - 1 = 5 (its checkpoint scope aux_5).
    assert len(aux) == 1 and aux[0]._inbound_nodes[0].input_tensors[0] is model.get_layer("cell_5_concat").output
    drops = [layer for layer in model.layers if isinstance(layer, ScheduledDropPath)]
    assert {d.total_cells for d in drops} == {9 + 2}                    # num_cells + the 2 stem cells
    assert max(d.cell_index for d in drops) == 10
    assert model.get_layer("dropout").rate == 0.5


def test_pyramid_at_224_and_unknown_size(mobile):
    expected = {"P2": (56, 56, 65), "P3": (28, 28, 270), "P4": (14, 14, 540), "P5": (7, 7, 1080)}
    features = pyramid_outputs(PNASNetMobile(weights=None, include_top=False))
    assert {k: tuple(v.shape[1:]) for k, v in features.items()} == {
        k: (None, None, c) for k, (_, _, c) in expected.items()}
    backbone = pyramid_model(PNASNetMobile(weights=None, include_top=False, input_shape=(224, 224, 3)))
    assert {k: tuple(v.shape[1:]) for k, v in backbone.output.items()} == expected
    feats = backbone(np.zeros((1, 224, 224, 3), "float32"))
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == expected


@pytest.mark.parametrize("kwargs,message", [
    (dict(weights="imagenet", classes=10), "classes=10"),
])
def test_bad_pnasnet_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PNASNetMobile(**kwargs)
