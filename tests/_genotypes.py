"""Genotypes shared by tests."""

from nasnet_keras.genotypes import OPS, Genotype


def every_op_genotype(combine="concat"):
    """A genotype whose two cells use all 13 ops, each on a cell input (strided in
    reductions) and on block outputs, with the given combine."""
    def cell(shift):
        blocks = []
        ops = list(OPS[shift:]) + list(OPS[:shift])
        for b in range(7):
            left, right = ops[(2 * b) % 13], ops[(2 * b + 1) % 13]
            blocks.append([b % 2, left, (b + 1) if b else 1, right, combine if b % 2 else "add"])
        return {"blocks": blocks}
    return Genotype.from_dict({"name": "every-op", "normal": cell(0), "reduction": cell(5)})


def one_block_genotype():
    """The smallest cells of the space: one block each (a separable conv beside an identity / a max pool), for tests
    whose point does not depend on the cell (a graph of few ops converts and traces in seconds)."""
    return Genotype.from_dict({"name": "one-block",
                               "normal": {"blocks": [[0, "sep_conv_3x3", 1, "identity", "add"]]},
                               "reduction": {"blocks": [[0, "sep_conv_3x3", 1, "max_pool_3x3", "add"]]}})


def decay_genotype():
    """A separable conv (depthwise + pointwise kernels), a plain 1x1 conv (kernel) and BatchNorm in both cells: with
    a Dense head's bias, every kind of weight that L2 decay must take or leave."""
    return Genotype.from_dict({"normal": [[0, "sep_conv_3x3", 1, "conv_1x1", "add"]],
                               "reduction": [[0, "max_pool_3x3", 1, "conv_1x1", "add"]]})
