"""The NASNet cell search space as Keras Tuner hyperparameters.

An architecture is a normal cell and a reduction cell of B blocks each
(paper Sec. 3). Every block makes 5 decisions, in the paper's order (Sec. 3,
steps 1-5):

1. ``input0`` -- first input, a state index in ``0 .. 1 + b``,
2. ``input1`` -- second input, same range,
3. ``op0``    -- operation applied to the first input,
4. ``op1``    -- operation applied to the second input,
5. ``combine`` -- how the two results are joined.

The decision order is fixed: the normal cell's B blocks first, then the
reduction cell's; within a block the five decisions above. So with the paper's
B = 5 there are 2 x 5 x 5 = 50 decisions. Decision ``k`` is named
``f"{cell}_b{block}_{field}"``, e.g. ``"normal_b0_input0"`` or
``"reduction_b4_combine"``. Each is one ``keras_tuner`` ``Choice``; its values
are the state indices (ints) or the op / combine names (strings), and the
class index a controller samples is the position in that ``Choice``'s values.

The space has no decision for the cell output: a decoded genotype uses the
paper's rule (``Cell.concat = None``: concatenate every block output that no
block reads). The last block's output can never be read, so every sample
decodes to a valid genotype.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import keras_tuner

from nasnet_keras import genotypes

CELL_KINDS: Tuple[str, str] = ("normal", "reduction")
BLOCK_FIELDS: Tuple[str, ...] = ("input0", "input1", "op0", "op1", "combine")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Settings of the cell search space.

    Attributes:
        num_blocks: B, blocks per cell (paper: 5).
        ops: the operations a block may pick, a subset of `genotypes.OPS`
            (default: all 13 of the paper, in `genotypes.OPS` order).
        combines: the combine choices, a subset of `genotypes.COMBINES`
            (default: `("add", "concat")`).

    The object is immutable and hashable; `to_dict` / `from_dict` give the
    JSON form oracles save to compare on resume.
    """

    num_blocks: int = genotypes.NUM_BLOCKS
    ops: Tuple[str, ...] = genotypes.OPS
    combines: Tuple[str, ...] = genotypes.COMBINES

    def __post_init__(self):
        nb = self.num_blocks
        if isinstance(nb, bool) or not isinstance(nb, int) or nb < 1:
            raise ValueError(f"SearchSpace: num_blocks must be a positive int; got {nb!r}.")
        for field, allowed in (("ops", genotypes.OPS), ("combines", genotypes.COMBINES)):
            value = getattr(self, field)
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"SearchSpace: {field} must be a non-empty list of names from {allowed}; "
                                 f"got {value!r}.")
            value = tuple(value)
            unknown = [v for v in value if v not in allowed]
            if unknown:
                raise ValueError(f"SearchSpace: {field} holds unknown names {unknown}; "
                                 f"choose from {', '.join(allowed)}.")
            if len(set(value)) != len(value):
                raise ValueError(f"SearchSpace: {field} lists a name twice: {list(value)}.")
            object.__setattr__(self, field, value)

    @property
    def num_decisions(self) -> int:
        """2 cells x B blocks x 5 decisions."""
        return len(CELL_KINDS) * self.num_blocks * len(BLOCK_FIELDS)

    def to_dict(self) -> dict:
        """JSON-ready form: ``{"num_blocks": int, "ops": [...], "combines": [...]}``."""
        return {"num_blocks": self.num_blocks, "ops": list(self.ops), "combines": list(self.combines)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchSpace":
        """Inverse of `to_dict`; missing keys take the defaults."""
        if not isinstance(data, Mapping):
            raise ValueError(f"SearchSpace.from_dict expects a dict; got {type(data).__name__}.")
        unknown = set(data) - {"num_blocks", "ops", "combines"}
        if unknown:
            raise ValueError(f"SearchSpace.from_dict: unknown keys {sorted(unknown)}; "
                             "expected num_blocks, ops, combines.")
        kwargs = dict(data)
        for key in ("ops", "combines"):
            if key in kwargs and isinstance(kwargs[key], list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def differences(self, other: "SearchSpace") -> List[str]:
        """Human-readable list of the settings where `other` differs from `self`."""
        out = []
        for key, mine in self.to_dict().items():
            theirs = other.to_dict()[key]
            if mine != theirs:
                out.append(f"{key}: {mine!r} vs {theirs!r}")
        return out


class Decision(NamedTuple):
    """One decision of the space.

    Attributes:
        name: the hyperparameter name, e.g. ``"normal_b2_op1"``.
        cell: ``"normal"`` or ``"reduction"``.
        block: block index ``b`` in ``0 .. B-1``.
        field: one of `BLOCK_FIELDS`.
        choices: the possible values, in class-index order.
    """

    name: str
    cell: str
    block: int
    field: str
    choices: tuple

    @property
    def num_choices(self) -> int:
        return len(self.choices)


def _space(space: Optional[SearchSpace]) -> SearchSpace:
    if space is None:
        return SearchSpace()
    if isinstance(space, Mapping):
        return SearchSpace.from_dict(space)
    if not isinstance(space, SearchSpace):
        raise ValueError(f"space must be a SearchSpace (or its dict form); got {type(space).__name__}.")
    return space


def decision_name(cell: str, block: int, field: str) -> str:
    """The hyperparameter name of one decision, e.g. ``decision_name("normal", 0, "op1")``."""
    return f"{cell}_b{block}_{field}"


def decisions(space: Optional[SearchSpace] = None) -> List[Decision]:
    """All decisions of `space` in the fixed order (see the module docstring).

    Args:
        space: a `SearchSpace`; default `SearchSpace()` (the paper's).

    Returns:
        A list of `space.num_decisions` `Decision`s.
    """
    space = _space(space)
    out = []
    for cell in CELL_KINDS:
        for b in range(space.num_blocks):
            states = tuple(range(2 + b))
            for field, choices in zip(BLOCK_FIELDS, (states, states, space.ops, space.ops, space.combines)):
                out.append(Decision(decision_name(cell, b, field), cell, b, field, tuple(choices)))
    return out


def num_choices(space: Optional[SearchSpace] = None) -> List[int]:
    """Number of choices of each decision, in decision order (for a controller)."""
    return [d.num_choices for d in decisions(space)]


def build_hyperparameters(space: Optional[SearchSpace] = None) -> keras_tuner.HyperParameters:
    """A `keras_tuner.HyperParameters` holding one `Choice` per decision.

    Args:
        space: a `SearchSpace`; default `SearchSpace()`.

    Returns:
        `HyperParameters` with `space.num_decisions` `Choice`s, named as in
        `decisions(space)`; input choices are ints, op / combine choices strings.
    """
    hp = keras_tuner.HyperParameters()
    for d in decisions(space):
        hp.Choice(d.name, list(d.choices), ordered=False)
    return hp


def _values_dict(hp_or_values: Union[keras_tuner.HyperParameters, Mapping[str, Any]]) -> Mapping[str, Any]:
    if isinstance(hp_or_values, keras_tuner.HyperParameters):
        return hp_or_values.values
    if isinstance(hp_or_values, Mapping):
        return hp_or_values
    raise ValueError("Expected keras_tuner.HyperParameters or a dict of decision values; "
                     f"got {type(hp_or_values).__name__}.")


def values_to_indices(hp_or_values, space: Optional[SearchSpace] = None) -> List[int]:
    """Class index of every decision, in decision order.

    Args:
        hp_or_values: `HyperParameters` or a dict ``{decision name: value}``;
            extra keys (other hyperparameters) are ignored.
        space: the `SearchSpace` the values belong to (default the paper's).

    Raises:
        ValueError: a decision is missing or its value is not one of its choices.
    """
    values = _values_dict(hp_or_values)
    out = []
    for d in decisions(space):
        if d.name not in values:
            raise ValueError(f"Missing value for decision '{d.name}'; a cell architecture needs all "
                             f"{len(decisions(space))} decisions (see nasnet_keras.search.space.decisions).")
        value = values[d.name]
        if value not in d.choices or isinstance(value, bool):
            raise ValueError(f"Decision '{d.name}' = {value!r} is not one of its choices {list(d.choices)}.")
        out.append(d.choices.index(value))
    return out


def indices_to_values(indices: Sequence[int], space: Optional[SearchSpace] = None) -> Dict[str, Any]:
    """Inverse of `values_to_indices`: ``{decision name: value}`` from class indices."""
    ds = decisions(space)
    if len(indices) != len(ds):
        raise ValueError(f"Expected {len(ds)} class indices (one per decision); got {len(indices)}.")
    out = {}
    for d, i in zip(ds, indices):
        i = int(i)
        if not 0 <= i < d.num_choices:
            raise ValueError(f"Class index {i} of decision '{d.name}' is out of range 0..{d.num_choices - 1}.")
        out[d.name] = d.choices[i]
    return out


def genotype_from_hyperparameters(hp_or_values, space: Optional[SearchSpace] = None,
                                  name: str = "") -> genotypes.Genotype:
    """Decodes decision values into a `Genotype`.

    Args:
        hp_or_values: `keras_tuner.HyperParameters` (its `.values` are used)
            or a plain dict ``{decision name: value}``.
        space: the `SearchSpace` (default the paper's: B = 5, 13 ops, add/concat).
        name: the genotype's name.

    Returns:
        A valid `Genotype` whose cells have ``concat=None`` (the paper's
        unused-state output rule).

    Raises:
        ValueError: a decision is missing or holds a value outside its choices.
    """
    space = _space(space)
    values = indices_to_values(values_to_indices(hp_or_values, space), space)
    cells = {}
    for cell in CELL_KINDS:
        blocks = []
        for b in range(space.num_blocks):
            v = {f: values[decision_name(cell, b, f)] for f in BLOCK_FIELDS}
            blocks.append(genotypes.Block(inputs=(v["input0"], v["input1"]), ops=(v["op0"], v["op1"]),
                                          combine=v["combine"]))
        cells[cell] = genotypes.Cell(blocks=tuple(blocks), concat=None)
    return genotypes.Genotype(normal=cells["normal"], reduction=cells["reduction"], name=name)


def hyperparameters_from_genotype(genotype: genotypes.Genotype,
                                  space: Optional[SearchSpace] = None) -> Dict[str, Any]:
    """Encodes a `Genotype` as decision values (inverse of `genotype_from_hyperparameters`).

    The cells' ``concat`` is not a decision and is dropped: decoding the result
    gives the same blocks with ``concat=None``.

    Args:
        genotype: a `Genotype` (or its dict form).
        space: the `SearchSpace` the values must fit (default the paper's).

    Returns:
        ``{decision name: value}`` for all decisions, in decision order.

    Raises:
        ValueError: the genotype's block count, ops or combines are outside `space`.
    """
    space = _space(space)
    if isinstance(genotype, Mapping):
        genotype = genotypes.Genotype.from_dict(genotype)
    if not isinstance(genotype, genotypes.Genotype):
        raise ValueError(f"Expected a Genotype; got {type(genotype).__name__}.")
    values = {}
    for cell in CELL_KINDS:
        c = getattr(genotype, cell)
        if c.num_blocks != space.num_blocks:
            raise ValueError(f"{cell} cell has {c.num_blocks} blocks but the search space has "
                             f"num_blocks={space.num_blocks}; use SearchSpace(num_blocks={c.num_blocks}).")
        for b, block in enumerate(c.blocks):
            fields = {"input0": block.inputs[0], "input1": block.inputs[1], "op0": block.ops[0],
                      "op1": block.ops[1], "combine": block.combine}
            for f in BLOCK_FIELDS:
                values[decision_name(cell, b, f)] = fields[f]
    for cell in CELL_KINDS:
        for b in range(space.num_blocks):
            for f, allowed in (("op0", space.ops), ("op1", space.ops), ("combine", space.combines)):
                value = values[decision_name(cell, b, f)]
                if value not in allowed:
                    raise ValueError(f"{cell} cell, block {b}: {f} = {value!r} is not in the search space "
                                     f"(allowed: {list(allowed)}).")
    return values


def architecture_key(indices: Sequence[int]) -> str:
    """A compact string naming one architecture (its class indices), used to spot duplicates."""
    return ",".join(str(int(i)) for i in indices)
