import dataclasses
import json

import pytest

from nasnet_keras.genotypes import COMBINES, NASNET_A, OPS, PNASNET_5, Block, Cell, Genotype


def _cell(blocks, concat=None):
    return {"blocks": blocks, **({"concat": concat} if concat is not None else {})}


GOOD = [[0, "sep_conv_3x3", 1, "identity", "add"], [2, "max_pool_3x3", 0, "conv_1x1", "concat"]]


def test_thirteen_ops_and_two_combines():
    assert len(OPS) == 13 and len(set(OPS)) == 13
    assert COMBINES == ("add", "concat")


def test_nasnet_a_is_the_published_cells():
    n, r = NASNET_A.normal, NASNET_A.reduction
    assert [b.to_list()[:4] for b in n.blocks] == [
        [0, "sep_conv_5x5", 1, "sep_conv_3x3"], [1, "sep_conv_5x5", 1, "sep_conv_3x3"],
        [0, "avg_pool_3x3", 1, "identity"], [1, "avg_pool_3x3", 1, "avg_pool_3x3"],
        [0, "sep_conv_3x3", 0, "identity"]]
    assert n.output_states == (1, 2, 3, 4, 5, 6)
    assert [b.to_list()[:4] for b in r.blocks] == [
        [0, "sep_conv_5x5", 1, "sep_conv_7x7"], [0, "max_pool_3x3", 1, "sep_conv_7x7"],
        [0, "avg_pool_3x3", 1, "sep_conv_5x5"], [3, "identity", 2, "avg_pool_3x3"],
        [2, "sep_conv_3x3", 0, "max_pool_3x3"]]
    assert r.output_states == (3, 4, 5, 6)
    assert all(b.combine == "add" for c in (n, r) for b in c.blocks)


def test_pnasnet_reduction_is_its_normal_cell():
    assert PNASNET_5.normal == PNASNET_5.reduction
    assert PNASNET_5.normal.blocks[3].inputs == (4, 0)


@pytest.mark.parametrize("g", [NASNET_A, PNASNET_5])
def test_round_trips(g):
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_default_concat_is_unused_block_outputs():
    g = Genotype.from_dict({"normal": _cell(GOOD), "reduction": _cell(GOOD)})
    assert g.normal.output_states == (3,)       # block 0 (state 2) is read by block 1
    assert Genotype.from_json(g.to_json()) == g


def test_blocks_as_dicts():
    g = Genotype.from_dict({"normal": {"blocks": [{"inputs": [0, 1], "ops": ["identity", "conv_3x3"]}]},
                            "reduction": _cell(GOOD)})
    assert g.normal.blocks[0] == Block((0, 1), ("identity", "conv_3x3"), "add")


def test_genotype_is_immutable():
    normal = NASNET_A.normal
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'normal'"):
        NASNET_A.normal = NASNET_A.reduction
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'ops'"):
        NASNET_A.normal.blocks[0].ops = ("identity", "identity")
    assert NASNET_A.normal is normal and NASNET_A.normal.blocks[0].ops == ("sep_conv_5x5", "sep_conv_3x3")
    assert isinstance(NASNET_A.normal.blocks, tuple)      # no in-place append / item assignment either


@pytest.mark.parametrize("blocks, concat, message", [
    ([[0, "sep_conv_9x9", 1, "identity", "add"]], None, r"normal cell, block 0: field 'ops\[0\]' = 'sep_conv_9x9'"),
    ([[0, "identity", 1, "identity", "add"], [3, "identity", 0, "identity", "add"]], None,
     r"normal cell, block 1: field 'inputs\[0\]' = 3 is not a state defined yet"),
    ([[0, "identity", -1, "identity", "add"]], None, r"block 0: field 'inputs\[1\]' = -1"),
    ([[0, "identity", 1, "identity"]], None, r"normal cell, block 0: a block needs 5 fields"),
    ([{"inputs": [0, 1, 1], "ops": ["identity", "identity"]}], None, r"block 0: field 'inputs' must hold exactly 2"),
    ([{"inputs": [0, 1], "ops": ["identity"]}], None, r"block 0: field 'ops' must hold exactly 2"),
    ([[0, "identity", 1, "identity", "mul"]], None, r"block 0: field 'combine' = 'mul'"),
    ([[0, "identity", 1, "identity", "add"]], [], r"normal cell: no unused state"),
    ([[0, "identity", 1, "identity", "add"]], [7], r"normal cell: field 'concat' holds 7"),
    ([], None, r"normal cell: 'blocks' must be a non-empty list"),
])
def test_validation_names_block_and_field(blocks, concat, message):
    with pytest.raises(ValueError, match=message):
        Genotype.from_dict({"normal": _cell(blocks, concat), "reduction": _cell(GOOD)})


def test_validation_in_direct_construction():
    with pytest.raises(ValueError, match="reduction cell, block 0"):
        Genotype(normal=NASNET_A.normal, reduction=Cell((Block((0, 5), ("identity", "identity")),)))


def test_bad_json_and_missing_keys():
    with pytest.raises(ValueError, match="does not parse"):
        Genotype.from_json("{not json")
    with pytest.raises(ValueError, match="missing"):
        Genotype.from_dict({"normal": _cell(GOOD)})
