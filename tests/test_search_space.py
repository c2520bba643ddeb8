"""Tests of nasnet_keras.search.space: the cell search space as Keras Tuner hyperparameters."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nasnet_keras import genotypes  # noqa: E402
from nasnet_keras.search import space as sp  # noqa: E402


def test_default_space_has_one_choice_per_decision():
    hp = sp.build_hyperparameters()
    assert len(hp.space) == 2 * genotypes.NUM_BLOCKS * 5 == 50
    assert all(isinstance(h, keras_tuner.engine.hyperparameters.Choice) for h in hp.space)
    names = [h.name for h in hp.space]
    assert names[:5] == ["normal_b0_input0", "normal_b0_input1", "normal_b0_op0", "normal_b0_op1",
                         "normal_b0_combine"]
    assert all(n.startswith("normal_") for n in names[:25])
    assert all(n.startswith("reduction_") for n in names[25:])
    assert names[-1] == "reduction_b4_combine"
    # The registered defaults (what a hypermodel sees before any trial) decode too.
    g = sp.genotype_from_hyperparameters(hp)
    assert g.normal.blocks[0] == genotypes.Block((0, 0), ("identity", "identity"), "add")


def test_choice_ranges():
    by_name = {h.name: list(h.values) for h in sp.build_hyperparameters().space}
    for cell in ("normal", "reduction"):
        for b in range(5):
            assert by_name[f"{cell}_b{b}_input0"] == list(range(2 + b))
            assert by_name[f"{cell}_b{b}_input1"] == list(range(2 + b))
            assert by_name[f"{cell}_b{b}_op0"] == list(genotypes.OPS)
            assert by_name[f"{cell}_b{b}_op1"] == list(genotypes.OPS)
            assert by_name[f"{cell}_b{b}_combine"] == list(genotypes.COMBINES)
    assert sp.num_choices()[:5] == [2, 2, 13, 13, 2]
    assert sp.num_choices()[20:25] == [6, 6, 13, 13, 2]


def test_custom_space():
    space = sp.SearchSpace(num_blocks=3, ops=("identity", "sep_conv_3x3", "max_pool_3x3"), combines=("add",))
    hp = sp.build_hyperparameters(space)
    assert len(hp.space) == space.num_decisions == 30
    assert sp.num_choices(space)[:5] == [2, 2, 3, 3, 1]
    assert sp.SearchSpace.from_dict(space.to_dict()) == space
    assert space.differences(sp.SearchSpace()) == [
        "num_blocks: 3 vs 5", f"ops: {list(space.ops)!r} vs {list(genotypes.OPS)!r}",
        "combines: ['add'] vs ['add', 'concat']"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_blocks=0), "num_blocks"),
    (dict(ops=("identity", "conv_9x9")), "conv_9x9"),
    (dict(ops=("identity", "identity")), "twice"),
    (dict(combines=("mul",)), "mul"),
    (dict(ops="identity"), "non-empty list"),
])
def test_space_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sp.SearchSpace(**kwargs)


def test_nasnet_a_round_trip():
    values = sp.hyperparameters_from_genotype(genotypes.NASNET_A)
    assert list(values) == [h.name for h in sp.build_hyperparameters().space]
    assert values["reduction_b3_input0"] == 3 and values["reduction_b3_op0"] == "identity"
    decoded = sp.genotype_from_hyperparameters(values)
    # NASNet-A lists its concat explicitly; the space uses the unused-state rule.
    assert decoded.normal.blocks == genotypes.NASNET_A.normal.blocks
    assert decoded.reduction.blocks == genotypes.NASNET_A.reduction.blocks
    assert decoded.normal.concat is None and decoded.reduction.concat is None
    assert sp.hyperparameters_from_genotype(decoded) == values
    # Through a HyperParameters object too.
    hp = sp.build_hyperparameters()
    hp.values = dict(values)
    assert sp.genotype_from_hyperparameters(hp) == decoded


def test_indices_round_trip():
    values = sp.hyperparameters_from_genotype(genotypes.PNASNET_5)
    idx = sp.values_to_indices(values)
    assert len(idx) == 50 and sp.indices_to_values(idx) == values
    assert sp.architecture_key(idx) == ",".join(map(str, idx))


def test_random_samples_decode_to_valid_genotypes():
    rng = np.random.default_rng(0)
    for space in (sp.SearchSpace(), sp.SearchSpace(num_blocks=2, ops=("identity", "avg_pool_3x3"))):
        counts = sp.num_choices(space)
        for _ in range(200):
            idx = [int(rng.integers(n)) for n in counts]
            values = sp.indices_to_values(idx, space)
            g = sp.genotype_from_hyperparameters(values, space)
            for cell in (g.normal, g.reduction):
                assert cell.concat is None
                used = {i for b in cell.blocks for i in b.inputs}
                assert cell.output_states == tuple(s for s in range(2, 2 + space.num_blocks) if s not in used)
                assert 1 + space.num_blocks in cell.output_states  # the last block is never read
            assert sp.values_to_indices(sp.hyperparameters_from_genotype(g, space), space) == idx
    # Keras Tuner's own sampler gives decodable values as well.
    hp = sp.build_hyperparameters()
    for seed in range(20):
        values = {h.name: h.random_sample(seed * 100 + k) for k, h in enumerate(hp.space)}
        sp.genotype_from_hyperparameters(values)


def test_decoding_errors():
    values = sp.hyperparameters_from_genotype(genotypes.NASNET_A)
    missing = dict(values)
    del missing["normal_b2_op1"]
    with pytest.raises(ValueError, match="normal_b2_op1"):
        sp.genotype_from_hyperparameters(missing)
    bad = dict(values, normal_b0_input0=2)
    with pytest.raises(ValueError, match="normal_b0_input0"):
        sp.genotype_from_hyperparameters(bad)
    with pytest.raises(ValueError, match="Missing value"):
        sp.genotype_from_hyperparameters({})
    with pytest.raises(ValueError, match="HyperParameters or a dict"):
        sp.genotype_from_hyperparameters([1, 2])
    with pytest.raises(ValueError, match="out of range"):
        sp.indices_to_values([0] * 49 + [5])


def test_encoding_errors():
    with pytest.raises(ValueError, match="num_blocks=5"):
        sp.hyperparameters_from_genotype(genotypes.NASNET_A, sp.SearchSpace(num_blocks=4))
    with pytest.raises(ValueError, match="sep_conv_5x5"):
        sp.hyperparameters_from_genotype(genotypes.NASNET_A, sp.SearchSpace(ops=("identity", "sep_conv_3x3")))
    concat_cell = genotypes.Cell((genotypes.Block((0, 1), ("identity", "identity"), "concat"),))
    with pytest.raises(ValueError, match="combine"):
        sp.hyperparameters_from_genotype(genotypes.Genotype(concat_cell, concat_cell),
                                         sp.SearchSpace(num_blocks=1, combines=("add",)))
