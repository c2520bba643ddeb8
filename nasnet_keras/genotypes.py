"""Cell genotypes: a NASNet cell described as plain data.

A `Genotype` holds a normal cell and a reduction cell (paper Sec. 3, Fig. 3).
Each cell is a sequence of B `Block`s; a block picks two inputs among the
states defined so far, applies one operation to each and combines the two
results. State indices follow the TF-slim encoding:

* state 0 -- the previous cell's output (after a 1x1 conv + BN),
* state 1 -- the output of the cell before that (resized / projected),
* state 2 + b -- the output of block b.

The cell output is the channel concatenation of the states listed in
`Cell.concat`; when it is not given, it is every block output that no block
uses as an input (the paper's rule).

Genotypes round-trip through `to_dict` / `from_dict` and `to_json` /
`from_json`; every constructor validates and raises `ValueError` naming the
cell, block and field at fault.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple

# The 13 operations of the search space (paper Sec. 3, the list below Fig. 2).
# The order is fixed: search spaces index into it.
OPS: Tuple[str, ...] = (
    "identity",
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)

# How a block joins its two results (paper Sec. 3, step 5).
COMBINES: Tuple[str, ...] = ("add", "concat")

# Number of blocks per cell used in the paper (Sec. 3: B = 5).
NUM_BLOCKS = 5


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a cell: `combine(op[0](state[inputs[0]]), op[1](state[inputs[1]]))`.

    Attributes:
        inputs: two state indices (0 and 1 are the cell inputs, 2 + b block b).
        ops: two operation names from `OPS`.
        combine: `"add"` (element-wise sum) or `"concat"` (channel concat).
    """

    inputs: Tuple[int, int]
    ops: Tuple[str, str]
    combine: str = "add"

    def to_list(self) -> list:
        """`[input0, op0, input1, op1, combine]`, the compact JSON form."""
        return [self.inputs[0], self.ops[0], self.inputs[1], self.ops[1], self.combine]


@dataclasses.dataclass(frozen=True)
class Cell:
    """A cell: B blocks and the states concatenated into its output.

    Attributes:
        blocks: the blocks in order; block b may read states 0 .. b + 1.
        concat: output states in concat order, or `None` for the paper's
            rule (block outputs that no block reads). Published cells list
            theirs explicitly because TF-slim's order differs.
    """

    blocks: Tuple[Block, ...]
    concat: Optional[Tuple[int, ...]] = None

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def output_states(self) -> Tuple[int, ...]:
        """The states concatenated into the cell output, in order."""
        if self.concat is not None:
            return self.concat
        used = {i for block in self.blocks for i in block.inputs}
        return tuple(s for s in range(2, 2 + len(self.blocks)) if s not in used)

    def to_dict(self) -> dict:
        out = {"blocks": [b.to_list() for b in self.blocks]}
        if self.concat is not None:
            out["concat"] = list(self.concat)
        return out


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A NASNet architecture: one normal and one reduction cell.

    Build one from data with `Genotype.from_dict` / `Genotype.from_json`, or
    directly:

    >>> Genotype(normal=Cell((Block((0, 1), ("sep_conv_3x3", "identity")),)),
    ...          reduction=Cell((Block((0, 1), ("max_pool_3x3", "sep_conv_5x5")),)))

    Construction validates both cells (see `validate`).
    """

    normal: Cell
    reduction: Cell
    name: str = ""

    def __post_init__(self):
        for kind in ("normal", "reduction"):
            cell = getattr(self, kind)
            if not isinstance(cell, Cell):
                cell = _cell_from_data(cell, kind)
                object.__setattr__(self, kind, cell)
            _validate_cell(cell, kind)

    # -- serialisation -------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict: `{"name", "normal": {...}, "reduction": {...}}`."""
        return {"name": self.name, "normal": self.normal.to_dict(),
                "reduction": self.reduction.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Genotype":
        """Inverse of `to_dict`. Blocks may be 5-item lists
        `[input0, op0, input1, op1, combine]` or dicts with keys
        `inputs`, `ops`, `combine`."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"A genotype must be a dict with keys 'normal' and 'reduction'; got {type(data).__name__}.")
        missing = [k for k in ("normal", "reduction") if k not in data]
        if missing:
            raise ValueError(f"Genotype data is missing {missing}; expected keys 'normal' and 'reduction' "
                             "(each {'blocks': [[in0, op0, in1, op1, combine], ...]}).")
        return cls(normal=_cell_from_data(data["normal"], "normal"),
                   reduction=_cell_from_data(data["reduction"], "reduction"),
                   name=str(data.get("name", "")))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"Genotype JSON does not parse: {e}") from None
        return cls.from_dict(data)

    def short(self) -> str:
        """A one-line summary, e.g. for progress output."""
        def cell(c):
            return " ".join(
                f"{b.ops[0]}({b.inputs[0]}){'+' if b.combine == 'add' else '|'}{b.ops[1]}({b.inputs[1]})"
                for b in c.blocks)
        return f"N[{cell(self.normal)}] R[{cell(self.reduction)}]"

    @property
    def ops_used(self) -> set:
        return {op for c in (self.normal, self.reduction) for b in c.blocks for op in b.ops}


def _cell_from_data(data: Any, kind: str) -> Cell:
    if isinstance(data, Cell):
        return data
    if isinstance(data, Mapping):
        blocks, concat = data.get("blocks"), data.get("concat")
    else:
        blocks, concat = data, None
    if not isinstance(blocks, (list, tuple)) or not blocks:
        raise ValueError(f"{kind} cell: 'blocks' must be a non-empty list of blocks; got {blocks!r}.")
    parsed = []
    for b, block in enumerate(blocks):
        where = f"{kind} cell, block {b}"
        if isinstance(block, Block):
            parsed.append(block)
            continue
        if isinstance(block, Mapping):
            inputs, ops, combine = block.get("inputs"), block.get("ops"), block.get("combine", "add")
        elif isinstance(block, (list, tuple)):
            if len(block) != 5:
                raise ValueError(f"{where}: a block needs 5 fields [input0, op0, input1, op1, combine]; "
                                 f"got {len(block)}: {list(block)!r}.")
            inputs, ops, combine = (block[0], block[2]), (block[1], block[3]), block[4]
        else:
            raise ValueError(f"{where}: expected a list or dict, got {type(block).__name__}.")
        parsed.append(Block(inputs=_pair(inputs, "inputs", where), ops=_pair(ops, "ops", where),
                            combine=combine))
    if concat is not None:
        if not isinstance(concat, (list, tuple)):
            raise ValueError(f"{kind} cell: 'concat' must be a list of state indices; got {concat!r}.")
        concat = tuple(concat)
    return Cell(blocks=tuple(parsed), concat=concat)


def _pair(value, field, where) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{where}: field '{field}' must hold exactly 2 entries (one per block input); "
                         f"got {value!r}.")
    return tuple(value)


def _validate_cell(cell: Cell, kind: str) -> None:
    if not cell.blocks:
        raise ValueError(f"{kind} cell: needs at least one block.")
    for b, block in enumerate(cell.blocks):
        where = f"{kind} cell, block {b}"
        if not isinstance(block, Block):
            raise ValueError(f"{where}: expected a Block, got {type(block).__name__}.")
        if len(block.inputs) != 2:
            raise ValueError(f"{where}: field 'inputs' must hold exactly 2 entries; got {block.inputs!r}.")
        if len(block.ops) != 2:
            raise ValueError(f"{where}: field 'ops' must hold exactly 2 entries; got {block.ops!r}.")
        for side, (i, op) in enumerate(zip(block.inputs, block.ops)):
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < 2 + b:
                raise ValueError(
                    f"{where}: field 'inputs[{side}]' = {i!r} is not a state defined yet; "
                    f"block {b} may read states 0..{1 + b} (0, 1 = cell inputs, 2 + k = block k).")
            if op not in OPS:
                raise ValueError(f"{where}: field 'ops[{side}]' = {op!r} is not a known operation; "
                                 f"choose one of {', '.join(OPS)}.")
        if block.combine not in COMBINES:
            raise ValueError(f"{where}: field 'combine' = {block.combine!r} must be one of {COMBINES}.")
    states = 2 + len(cell.blocks)
    if cell.concat is not None:
        for s in cell.concat:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < states:
                raise ValueError(f"{kind} cell: field 'concat' holds {s!r}, not a state of this cell "
                                 f"(valid: 0..{states - 1}).")
        if len(set(cell.concat)) != len(cell.concat):
            raise ValueError(f"{kind} cell: field 'concat' lists a state twice: {list(cell.concat)}.")
    if not cell.output_states:
        raise ValueError(f"{kind} cell: no unused state to form the cell output; "
                         "list the output states in 'concat' or leave a block output unread.")


def _slim_cell(ops: Sequence[str], indices: Sequence[int], concat: Iterable[int]) -> Cell:
    """Builds a cell from TF-slim's `operations` / `hiddenstate_indices` lists (add combines)."""
    blocks = tuple(Block((indices[2 * b], indices[2 * b + 1]), (ops[2 * b], ops[2 * b + 1]))
                   for b in range(len(ops) // 2))
    return Cell(blocks=blocks, concat=tuple(concat))


# NASNet-A, the published best cells (paper Fig. 4; TF-slim nasnet.py).
NASNET_A = Genotype(
    name="NASNet-A",
    normal=_slim_cell(
        ["sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3",
         "identity", "avg_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "identity"],
        [0, 1, 1, 1, 0, 1, 1, 1, 0, 0],
        concat=[1, 2, 3, 4, 5, 6]),
    reduction=_slim_cell(
        ["sep_conv_5x5", "sep_conv_7x7", "max_pool_3x3", "sep_conv_7x7", "avg_pool_3x3",
         "sep_conv_5x5", "identity", "avg_pool_3x3", "sep_conv_3x3", "max_pool_3x3"],
        [0, 1, 0, 1, 0, 1, 3, 2, 2, 0],
        concat=[3, 4, 5, 6]),
)

_PNASNET_CELL = _slim_cell(
    ["sep_conv_5x5", "max_pool_3x3", "sep_conv_7x7", "max_pool_3x3", "sep_conv_5x5",
     "sep_conv_3x3", "sep_conv_3x3", "max_pool_3x3", "sep_conv_3x3", "identity"],
    [1, 1, 0, 0, 0, 0, 4, 0, 1, 0],
    concat=[2, 3, 4, 5, 6])

# PNASNet-5 (Liu et al. 2018, TF-slim pnasnet.py): its reduction cell is its
# normal cell applied with stride 2.
PNASNET_5 = Genotype(name="PNASNet-5", normal=_PNASNET_CELL, reduction=_PNASNET_CELL)

GENOTYPES = {"nasnet_a": NASNET_A, "pnasnet_5": PNASNET_5}
