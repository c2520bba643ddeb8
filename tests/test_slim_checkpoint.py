"""The original TF-slim checkpoints: names and shapes of slim's graphs (tests/_slim_names.py), loading through
weights=<prefix>, PNASNet's weights="imagenet" tarball over HTTP, the convert CLI, and every bad input."""

import os
import re
import tarfile

import keras
import numpy as np
import pytest
from _http import serve_directory
from _slim_names import NASNET_MOBILE, PNASNET_MOBILE, random_values, slim_variables, write_checkpoint

from nasnet_keras import NASNET_A, NASNet
from nasnet_keras.applications import NASNetMobile, PNASNetMobile, decode_predictions
from nasnet_keras.convert import main as convert_main
from nasnet_keras.layers import CellPooling
from nasnet_keras.slim_checkpoint import load_slim_checkpoint

pytestmark = pytest.mark.xdist_group("slim_checkpoint")


def test_the_test_checkpoints_have_slim_s_parameter_counts():
    # Slim's inference graphs (no auxiliary head, 1001 classes) count these; the names the tests write come
    # from walking slim's code, so this checks that walk.
    for config, count in ((NASNET_MOBILE, 5_327_773), (PNASNET_MOBILE, 5_099_232)):
        assert sum(int(np.prod(s)) for s in slim_variables(config, aux=False).values()) == count


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{"nasnet"|"pnasnet": (prefix, values)}: Mobile checkpoints with slim's names, shapes and the aux head."""
    root = tmp_path_factory.mktemp("slim")
    out = {}
    for key, config in (("nasnet", NASNET_MOBILE), ("pnasnet", PNASNET_MOBILE)):
        values = random_values(slim_variables(config), seed=len(key))
        os.makedirs(root / key)
        prefix = str(root / key / "model.ckpt")
        write_checkpoint(values, prefix)
        out[key] = (prefix, values)
    return out


def _value_sum(values):
    """Sum of every checkpoint value, slim's background class left out."""
    return sum(float(np.sum(v[..., 1:] if "/FC/" in k else v)) for k, v in values.items())


def _model_sum(model):
    return sum(float(np.sum(w.numpy())) for w in model.weights if "seed_generator" not in w.path)


def test_nasnet_mobile_from_a_slim_checkpoint(checkpoints):
    prefix, values = checkpoints["nasnet"]
    model = NASNetMobile(weights=prefix, aux_head=True)
    layer = model.get_layer
    np.testing.assert_array_equal(layer("stem_conv1").kernel.numpy(), values["conv0/weights"])
    np.testing.assert_array_equal(layer("predictions").kernel.numpy(), values["final_layer/FC/weights"][:, 1:])
    np.testing.assert_array_equal(layer("predictions").bias.numpy(), values["final_layer/FC/biases"][1:])
    np.testing.assert_array_equal(layer("aux_predictions").dense.kernel.numpy(),
                                  values["aux_7/aux_logits/FC/weights"][:, 1:])
    # our 2nd reduction cell (cell_reduce_8) is slim's reduction_cell_1; our cell 5 (after it) slim's cell_4
    np.testing.assert_array_equal(layer("cell_reduce_8_b4_left_sep_conv_3x3").sep_1.depthwise_kernel.numpy(),
                                  values["reduction_cell_1/comb_iter_4/left/separable_3x3_1/depthwise_weights"])
    np.testing.assert_array_equal(layer("cell_5_prev").conv_2.kernel.numpy(), values["cell_4/path2_conv/weights"])
    # every value landed (the loader is strict: each variable used once, each weight set once)
    assert _model_sum(model) == pytest.approx(_value_sum(values), rel=1e-6)
    assert {p.padding for p in model.layers if isinstance(p, CellPooling)} == {"slim"}   # as slim trained it
    probs = keras.ops.convert_to_numpy(model(np.zeros((1, 224, 224, 3), np.float32), training=False)[0])
    assert probs.shape == (1, 1000) and len(decode_predictions(probs, top=3)[0]) == 3


def test_pnasnet_imagenet_downloads_the_tarball_converts_once_and_caches(checkpoints, tmp_path, monkeypatch):
    prefix, values = checkpoints["pnasnet"]
    served = tmp_path / "mirror"
    served.mkdir()
    with tarfile.open(served / "pnasnet-5_mobile_2017_12_13.tar.gz", "w:gz") as tar:
        for suffix in (".index", ".data-00000-of-00001"):
            tar.add(prefix + suffix, arcname="model.ckpt" + suffix)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with serve_directory(served) as url:
        features = PNASNetMobile(weights="imagenet", weights_base_url=url, include_top=False)
    converted = tmp_path / "keras" / "models" / "pnasnet-5_mobile_2017_12_13.h5"
    assert converted.exists()
    assert not [p for p in os.listdir(converted.parent) if p.startswith(".")]     # the extraction is cleaned up
    np.testing.assert_array_equal(features.get_layer("cell_stem_1_input").convs[0].kernel.numpy(),
                                  values["cell_stem_0/1x1/weights"])
    # the server is gone: the cached conversion serves the classifier model too
    model = PNASNetMobile(weights="imagenet", weights_base_url="http://127.0.0.1:9/")
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(),
                                  values["final_layer/FC/weights"][:, 1:])
    # PNASNet's stride-2 cells are slim's cell_<i>: cell_reduce_3 is cell_3
    np.testing.assert_array_equal(model.get_layer("cell_reduce_3_b0_left_sep_conv_5x5").sep_1.depthwise_kernel.numpy(),
                                  values["cell_3/comb_iter_0/left/separable_5x5_1/depthwise_weights"])
    # a pool that changes the width (on the stem output) and a strided identity: 1x1 + bn_1 in slim
    np.testing.assert_array_equal(model.get_layer("cell_stem_1_b0_right_max_pool_3x3").bn.moving_variance.numpy(),
                                  values["cell_stem_0/comb_iter_0/right/bn_1/moving_variance"])
    np.testing.assert_array_equal(model.get_layer("cell_reduce_6_b4_right_identity").convs[0].kernel.numpy(),
                                  values["cell_6/comb_iter_4/right/1x1/weights"])
    aux = {k: v for k, v in values.items() if k.startswith("aux_")}
    assert _model_sum(model) == pytest.approx(_value_sum(values) - _value_sum(aux), rel=1e-6)


def test_convert_cli_writes_a_file_every_variant_loads(checkpoints, tmp_path, capsys):
    prefix, values = checkpoints["nasnet"]
    out = str(tmp_path / "nasnet_mobile.weights.h5")
    assert convert_main([f"--checkpoint={os.path.dirname(prefix)}", "--model=nasnet_mobile", f"--out={out}"]) == 0
    assert "wrote" in capsys.readouterr().out
    backbone = NASNetMobile(weights=out, include_top=False, pool_padding="slim")
    # our last cell, keras id 12, is slim's 12th normal cell, cell_11
    np.testing.assert_array_equal(backbone.get_layer("cell_12_b0_left_sep_conv_5x5").bn_2.gamma.numpy(),
                                  values["cell_11/comb_iter_0/left/bn_sep_5x5_2/gamma"])
    assert convert_main([f"--checkpoint={prefix}", "--model=nasnet_mobile", f"--out={out}"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err


@pytest.fixture(scope="module")
def slim_mobile():
    """NASNet-A Mobile as slim built it, with the auxiliary head, random weights."""
    return NASNetMobile(weights=None, aux_head=True, pool_padding="slim")


def _variant(checkpoints, tmp_path, change):
    _, values = checkpoints["nasnet"]
    values = dict(values)
    change(values)
    prefix = str(tmp_path / "model.ckpt")
    write_checkpoint(values, prefix)
    return prefix


def test_missing_variable_is_named(checkpoints, tmp_path, slim_mobile):
    prefix = _variant(checkpoints, tmp_path, lambda v: v.pop("cell_2/beginning_bn/gamma"))
    before = slim_mobile.get_layer("stem_conv1").kernel.numpy()
    with pytest.raises(ValueError, match=re.escape("needs the variable 'cell_2/beginning_bn/gamma'")):
        load_slim_checkpoint(slim_mobile, prefix)
    np.testing.assert_array_equal(slim_mobile.get_layer("stem_conv1").kernel.numpy(), before)   # nothing half-set


def test_misshaped_variable_is_named(checkpoints, tmp_path, slim_mobile):
    prefix = _variant(checkpoints, tmp_path, lambda v: v.update({"conv0/weights": np.zeros((3, 3, 3, 33), "f")}))
    with pytest.raises(ValueError, match=re.escape("variable 'conv0/weights' has shape [3, 3, 3, 33] but layer "
                                                   "'stem_conv1' expects [3, 3, 3, 32]")):
        load_slim_checkpoint(slim_mobile, prefix)


def test_left_over_variable_is_named(checkpoints, tmp_path, slim_mobile):
    prefix = _variant(checkpoints, tmp_path, lambda v: v.update({"cell_12/1x1/weights": np.zeros((1, 1, 4, 4), "f")}))
    with pytest.raises(ValueError, match=re.escape("1 variable(s) this model has no place for, first "
                                                   "'cell_12/1x1/weights'")):
        load_slim_checkpoint(slim_mobile, prefix)


def test_training_state_is_skipped(checkpoints, tmp_path, slim_mobile):
    prefix = _variant(checkpoints, tmp_path, lambda v: v.update({
        "global_step": np.array(7, np.int64), "conv0/weights/RMSProp": v["conv0/weights"] * 0}))
    load_slim_checkpoint(slim_mobile, prefix)
    np.testing.assert_array_equal(slim_mobile.get_layer("stem_conv1").kernel.numpy(),
                                  checkpoints["nasnet"][1]["conv0/weights"])


def test_checkpoint_of_another_architecture_names_the_first_misfit(checkpoints, slim_mobile):
    # PNASNet's stem cells have int(54 / 4) = 13 filters where NASNet-A Mobile's have 44 / 4 = 11
    with pytest.raises(ValueError, match=re.escape("does not fit this model: variable 'cell_stem_0/1x1/weights' has "
                                                   "shape [1, 1, 32, 13] but layer 'cell_stem_1_input' expects "
                                                   "[1, 1, 32, 11]")):
        load_slim_checkpoint(slim_mobile, checkpoints["pnasnet"][0])


def test_missing_checkpoint_lists_the_expected_files(tmp_path):
    prefix = str(tmp_path / "nasnet-a_mobile_04_10_2017" / "model.ckpt")
    with pytest.raises(ValueError, match=re.escape(f"{prefix}.index, {prefix}.data-00000-of-00001")):
        NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), weights=prefix)


def test_a_genotype_slim_cannot_express_is_refused(checkpoints):
    from nasnet_keras.genotypes import Block, Cell, Genotype

    cell = Cell((Block((0, 1), ("conv_3x3", "identity")),))
    model = NASNet(Genotype(normal=cell, reduction=cell), num_cells=1, filters=8, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="conv_3x3.*has no TF-slim counterpart"):
        load_slim_checkpoint(model, checkpoints["nasnet"][0])
