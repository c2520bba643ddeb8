import numpy as np
import pytest

import keras
from nasnet_keras import NASNET_A, PNASNET_5, NASNet, inference_model
from nasnet_keras.applications import NASNetMobile
from nasnet_keras.genotypes import OPS
from nasnet_keras.layers import ScheduledDropPath

from _genotypes import every_op_genotype


def _run(model, x):
    """Inference outputs as numpy (an eager call: no graph to trace for one batch)."""
    out = model(x, training=False)
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def test_every_op_and_both_combines_build_and_run():
    g = every_op_genotype()
    assert g.ops_used == set(OPS)
    assert {b.combine for b in g.normal.blocks} == {"add", "concat"}
    for stem in ("cifar", "imagenet"):
        model = NASNet(g, num_cells=1, filters=8, stem=stem, input_shape=(32, 32, 3), classes=7)
        y = model(np.random.rand(2, 32, 32, 3).astype("float32"), training=True)
        assert y.shape == (2, 7)
        assert np.allclose(np.sum(y, axis=-1), 1.0, atol=1e-5)
        assert not np.any(np.isnan(y))


def test_unknown_spatial_size_builds_the_same_network():
    fixed = NASNet(PNASNET_5, num_cells=1, filters=8, stem="imagenet", input_shape=(64, 64, 3), include_top=False)
    free = NASNet(PNASNET_5, num_cells=1, filters=8, stem="imagenet", include_top=False)
    assert [w.shape for w in fixed.weights] == [w.shape for w in free.weights]
    free.set_weights(fixed.get_weights())
    x = np.random.rand(1, 64, 64, 3).astype("float32")
    np.testing.assert_allclose(_run(fixed, x), _run(free, x), atol=1e-5)
    assert _run(free, np.random.rand(1, 45, 77, 3).astype("float32")).shape[1:3] == (2, 3)


def test_layout_filters_double_and_cells_count():
    model = NASNet(NASNET_A, num_cells=2, penultimate_filters=96 * 4, stem="imagenet", include_top=False,
                   input_shape=(64, 64, 3))
    names = [l.name for l in model.layers if l.name.endswith("_concat") and l.name.startswith("cell_")]
    assert names == ["cell_stem_1_concat", "cell_stem_2_concat", "cell_0_concat", "cell_1_concat",
                     "cell_reduce_2_concat", "cell_3_concat", "cell_4_concat", "cell_reduce_4_concat",
                     "cell_5_concat", "cell_6_concat"]
    widths = [model.get_layer(n).output.shape[-1] for n in names]
    f = 96 * 4 // 24
    assert widths == [4 * f // 4, 4 * f // 2, 6 * f, 6 * f, 4 * 2 * f, 6 * 2 * f, 6 * 2 * f, 4 * 4 * f,
                      6 * 4 * f, 6 * 4 * f]
    assert model.output.shape[-1] == 96 * 4


def test_skip_reduction_feeds_the_reduction_input():
    plain = NASNet(NASNET_A, num_cells=1, filters=24, stem="cifar", input_shape=(32, 32, 3), include_top=False)
    skip = NASNet(NASNET_A, num_cells=1, filters=24, stem="cifar", input_shape=(32, 32, 3), include_top=False,
                  skip_reduction=True)
    # Cells: 0, reduce_1, 2, reduce_2, 3. Cell 2's second input is the reduction's input (cell 0)
    # normally, and the input of cell 0 (the stem) with skip_reduction; both at twice its resolution.
    assert plain.get_layer("cell_2_prev").input is plain.get_layer("cell_0_concat").output
    assert skip.get_layer("cell_2_prev").input is skip.get_layer("stem_bn1").output
    assert type(skip.get_layer("cell_2_prev")).__name__ == "FactorizedReduction"
    # Cell 3 follows reduce_2 the same way: it gets the input of cell 2 (reduce_1's output).
    assert skip.get_layer("cell_3_prev").input is skip.get_layer("cell_reduce_1_concat").output
    assert plain.get_layer("cell_3_prev").input is plain.get_layer("cell_2_concat").output


def test_drop_path_placement_and_depth():
    model = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3),
                   drop_path_keep_prob=0.6, total_training_steps=100)
    dps = [l for l in model.layers if isinstance(l, ScheduledDropPath)]
    # NASNet-A: 8 non-identity ops per normal cell (3 normal cells), 10 per reduction cell (2), none on identities.
    assert len(dps) == 3 * 8 + 2 * 9
    assert {l.total_cells for l in dps} == {5}
    assert sorted({l.cell_index for l in dps}) == [0, 1, 2, 3, 4]
    assert not any("identity" in l.name for l in dps)
    no_dp = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3))
    assert not any(isinstance(l, ScheduledDropPath) for l in no_dp.layers)


def test_aux_head_is_a_second_output():
    model = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), classes=5,
                   aux_head=True)
    assert [o.shape[-1] for o in model.outputs] == [5, 5]
    assert model.output_names == ["predictions", "aux_predictions"]
    single = inference_model(model)
    x = np.random.rand(1, 32, 32, 3).astype("float32")
    np.testing.assert_array_equal(_run(single, x), _run(model, x)[0])     # the main head, same weights


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(31, 64, 3)), "at least 32"),
    (dict(input_shape=(64, 64)), r"\(height, width, channels\)"),
    (dict(pooling="mean", include_top=False), "pooling must be"),
    (dict(stem="tiny"), "stem must be"),
    (dict(aux_head=True, include_top=False, input_shape=(32, 32, 3)), "needs include_top"),
    (dict(aux_head=True), "static input size"),
    (dict(drop_path_keep_prob=0.7), "total_training_steps"),
    (dict(penultimate_filters=100, filters=None), "multiple of 24"),
    (dict(genotype="NASNet-A"), "must be a nasnet_keras.genotypes.Genotype"),
])
def test_bad_builder_arguments(kwargs, message):
    args = dict(genotype=NASNET_A, num_cells=1, filters=8, stem="cifar")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        NASNet(**args)


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(224, 224, 1), include_top=False), "has 1 channels; ImageNet weights need 3"),
    (dict(input_shape=(16, 16, 3), include_top=False), "at least 32"),
    (dict(classes=10), "classes=10"),
])
def test_bad_application_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NASNetMobile(weights="imagenet", **kwargs)


def test_imagenet_weights_need_a_published_genotype_and_configuration():
    from nasnet_keras.genotypes import Block, Cell, Genotype

    cell = Cell((Block((0, 1), ("sep_conv_3x3", "identity")),))
    with pytest.raises(ValueError, match="only for the NASNet-A and PNASNet-5 genotypes"):
        NASNet(Genotype(normal=cell, reduction=cell), num_cells=4, filters=44, weights="imagenet")
    with pytest.raises(ValueError, match="only for NASNet-A Mobile"):
        NASNet(NASNET_A, num_cells=3, penultimate_filters=1056, stem_filters=32, weights="imagenet")
    with pytest.raises(ValueError, match="layout='nasnet'"):     # PNASNet-5's cells in NASNet's layout
        NASNet(PNASNET_5, num_cells=9, penultimate_filters=1080, stem_filters=32, weights="imagenet")


def test_grayscale_without_weights_is_fine():
    model = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 1), classes=3)
    assert model.get_layer("stem_conv1").kernel.shape == (3, 3, 1, 24)
    assert _run(model, np.zeros((1, 32, 32, 1), "float32")).shape == (1, 3)


def test_input_tensor():
    inp = keras.Input((40, 40, 3))
    model = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_tensor=inp, include_top=False,
                   pooling="avg")
    assert model.inputs[0] is inp and model.output.shape == (None, 6 * 4 * 8)


# ----------------------------------------------------------------------------- TF-slim fidelity
def test_cifar_first_cell_reduces_the_stem_output_before_its_concat():
    """TF-slim (nasnet_utils.py `_combine_unused_states`): the first CIFAR cell's second input is the stem
    output (3F wide); NASNet-A's normal cell outputs that input, so slim brings it to F channels with a
    1x1 conv + BN (no ReLU) before the concat: 6 x F, not 3F + 5F."""
    from nasnet_keras.applications import NASNetCIFAR
    from nasnet_keras.layers import ReLUConvBN

    model = NASNetCIFAR(num_cells=2)                       # F = 32, stem 96
    assert model.get_layer("stem_bn1").output.shape[-1] == 96
    assert model.get_layer("cell_0_concat").output.shape[-1] == 192   # 256 before the fix
    reduce = model.get_layer("cell_0_concat_state_1")
    assert isinstance(reduce, ReLUConvBN) and reduce.relu is None and reduce.filters == 32
    assert reduce.convs[0].kernel.shape == (1, 1, 96, 32)
    # Later cells read F-wide inputs: nothing to reduce.
    assert not [layer.name for layer in model.layers if layer.name.startswith("cell_1_concat_state")]


def test_strided_identity_is_relu_then_strided_1x1_conv_then_bn():
    """TF-slim `_apply_conv_operation` ('none' with stride 2): ReLU -> 1x1 conv stride 2 -> BN."""
    from nasnet_keras.genotypes import Genotype

    g = Genotype.from_dict({"normal": [[0, "identity", 1, "identity", "add"]],
                            "reduction": [[0, "identity", 1, "max_pool_3x3", "add"]]})
    model = NASNet(g, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), include_top=False)
    layer = model.get_layer("cell_reduce_1_b0_left_identity")
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 5)).astype("float32")
    sub = type(layer).from_config(dict(layer.get_config(), name="probe"))
    y = keras.ops.convert_to_numpy(sub(x, training=False))
    kernel = keras.ops.convert_to_numpy(sub.convs[0].kernel)[0, 0]           # (5, 16): 2F after the reduction
    expected = np.maximum(x, 0)[:, ::2, ::2, :] @ kernel / np.sqrt(1.0 + sub.bn.epsilon)   # fresh BN
    assert y.shape == (2, 5, 5, 16) and sub.strides == 2
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_reduction_cell_outputting_an_input_reduces_it_without_relu():
    """An input state in a reduction cell's explicit concat is at the input resolution: slim reduces it with
    a factorized reduction (no ReLU) to the output's size and F channels."""
    from nasnet_keras.genotypes import Genotype
    from nasnet_keras.layers import FactorizedReduction

    g = Genotype.from_dict({"normal": [[0, "sep_conv_3x3", 1, "identity", "add"]],
                            "reduction": {"blocks": [[0, "max_pool_3x3", 1, "sep_conv_3x3", "add"]],
                                          "concat": [0, 2]}})
    model = NASNet(g, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), include_top=False)
    reduce = model.get_layer("cell_reduce_1_concat_state_0")
    assert isinstance(reduce, FactorizedReduction) and reduce.relu is None
    assert model.get_layer("cell_reduce_1_concat").output.shape[1:] == (16, 16, 2 * 16)
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 4)).astype("float32")
    with_relu = FactorizedReduction(8, name="with_relu")
    without = FactorizedReduction(8, relu=False, name="without")
    with_relu.build(x.shape), without.build(x.shape)
    without.set_weights(with_relu.get_weights())
    a, b = (keras.ops.convert_to_numpy(layer(x, training=False)) for layer in (with_relu, without))
    assert not np.allclose(a, b)                     # negative inputs pass without the ReLU
    np.testing.assert_allclose(keras.ops.convert_to_numpy(with_relu(np.maximum(x, 0), training=False)), a, atol=1e-6)
