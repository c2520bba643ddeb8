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
