"""Cell diagrams drawn the way the paper's figures draw cells (paper Fig. 4 and Appendix Fig. 7-9).

``plot_cell(genotype, "normal" | "reduction", path)`` draws one cell of a
`Genotype` with matplotlib (no system binary): the two cell inputs at the
bottom (``h[i]``, the previous cell's output, state 0; ``h[i-1]``, the one
before, state 1), one box per op (its `nasnet_keras.genotypes.OPS` name) coloured by kind, one node per block
combine (``add`` / ``concat``), and the output concat at the top, which
takes the states of the genotype's ``output_states`` (``h[i+1]``). Rows
follow the data flow: a block sits one row above the highest state it reads.

The file format follows the path's extension (``.png``, ``.svg``, ``.pdf``);
SVG keeps its labels as text, so they can be searched.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

from nasnet_keras import genotypes as gt

__all__ = ["plot_cell", "plot_genotype"]

#: Box colours by op kind (separable conv, other conv, pooling, identity).
_COLOURS = {"sep": "#bcd7f5", "conv": "#c9e8c3", "pool": "#f8d8b0", "identity": "#e3e3e3"}
_INPUT_COLOUR, _COMBINE_COLOUR, _OUTPUT_COLOUR = "#fff3a8", "#ffffff", "#f6b5b5"
_INPUT_LABELS = ("h[i]", "h[i-1]")
_BLOCK_SPACING, _OP_OFFSET = 4.2, 1.05   # data units; an op label is about 1.6 wide


def _colour(op: str) -> str:
    if op == "identity":
        return _COLOURS["identity"]
    if "pool" in op:
        return _COLOURS["pool"]
    return _COLOURS["sep"] if op.startswith("sep") else _COLOURS["conv"]


def _layout(cell: gt.Cell) -> Tuple[Dict[int, int], Dict[int, float]]:
    """Row of every state (inputs 0) and the x position of each block's centre, rows centred."""
    row = {0: 0, 1: 0}
    for b, block in enumerate(cell.blocks):
        row[2 + b] = 1 + max(row[i] for i in block.inputs)
    centre: Dict[int, float] = {}
    for r in range(1, max(row.values()) + 1):
        blocks = [b for b in range(cell.num_blocks) if row[2 + b] == r]
        for k, b in enumerate(blocks):
            centre[b] = (k - (len(blocks) - 1) / 2) * _BLOCK_SPACING
    return row, centre


def plot_cell(genotype: gt.Genotype, cell: str = "normal", path: Optional[str] = None, *,
              title: Optional[str] = None, dpi: int = 120):
    """Draws one cell of a genotype.

    Args:
        genotype: a `Genotype`.
        cell: ``"normal"`` (default) or ``"reduction"``.
        path: where to save (format from the extension: ``.png``, ``.svg``,
            ``.pdf``); ``None`` only returns the figure. Parent folders are
            created.
        title: figure title; default ``"<genotype name> <cell> cell"``.
        dpi: resolution of raster files (default 120).

    Returns:
        The `matplotlib.figure.Figure` (drawn without pyplot, so it works
        in threads and without a display).

    Raises:
        ValueError: ``cell`` is not ``"normal"`` / ``"reduction"``, or
            ``genotype`` is not a `Genotype`.
    """
    import matplotlib
    from matplotlib.figure import Figure

    if not isinstance(genotype, gt.Genotype):
        raise ValueError(f"genotype must be a nasnet_keras.genotypes.Genotype; got {type(genotype).__name__}.")
    if cell not in ("normal", "reduction"):
        raise ValueError(f"cell must be 'normal' or 'reduction'; got {cell!r}.")
    spec = genotype.normal if cell == "normal" else genotype.reduction
    row, centre = _layout(spec)
    top = max(row.values()) + 1
    width = max(6.0, _BLOCK_SPACING * max(sum(1 for b in centre if row[2 + b] == r) for r in range(1, top)) + 1.5)
    fig = Figure(figsize=(width * 0.62, 1.5 * top + 1.6))
    ax = fig.add_subplot()
    ax.set_axis_off()

    def y_of(r):
        return r * 2.0

    def box(x, y, text, colour, shape="round,pad=0.35"):
        ax.text(x, y, text, ha="center", va="center", fontsize=8, zorder=3,
                bbox=dict(boxstyle=shape, fc=colour, ec="#444444", lw=0.8))

    def arrow(start, end):
        ax.annotate("", xy=end, xytext=start, zorder=1,
                    arrowprops=dict(arrowstyle="->", color="#555555", lw=0.8, shrinkA=9, shrinkB=9))

    position = {0: (-2.0, y_of(0)), 1: (2.0, y_of(0))}
    for s in (0, 1):
        box(*position[s], _INPUT_LABELS[s], _INPUT_COLOUR)
    for b, block in enumerate(spec.blocks):
        x, y = centre[b], y_of(row[2 + b]) - 0.7
        for side, (i, op) in enumerate(zip(block.inputs, block.ops)):
            op_xy = (x + (-_OP_OFFSET if side == 0 else _OP_OFFSET), y)
            strided = cell == "reduction" and i < 2
            box(*op_xy, op + (" /2" if strided else ""), _colour(op), "square,pad=0.3")
            arrow(position[i], op_xy)
            arrow(op_xy, (x, y + 0.75))
        position[2 + b] = (x, y + 0.75)
        box(x, y + 0.75, "+" if block.combine == "add" else "concat", _COMBINE_COLOUR, "circle,pad=0.15"
            if block.combine == "add" else "round,pad=0.25")
    out = (0.0, y_of(top))
    for s in spec.output_states:
        arrow(position[s], out)
    box(*out, "concat -> h[i+1]", _OUTPUT_COLOUR)
    ax.set_xlim(-width / 2, width / 2)
    ax.set_ylim(-0.8, y_of(top) + 0.8)
    name = genotype.name or "genotype"
    fig.suptitle(title or f"{name} {cell} cell" + (" (/2: stride 2)" if cell == "reduction" else ""), fontsize=10)
    if path is not None:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with matplotlib.rc_context({"svg.fonttype": "none"}):   # SVG labels stay text
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def plot_genotype(genotype: gt.Genotype, directory: str, prefix: str = "", ext: str = "png") -> Dict[str, str]:
    """Draws both cells: ``<directory>/<prefix>normal.<ext>`` and ``<prefix>reduction.<ext>``.

    Returns:
        ``{"normal": path, "reduction": path}``.
    """
    paths = {}
    for cell in ("normal", "reduction"):
        paths[cell] = os.path.join(directory, f"{prefix}{cell}.{ext}")
        plot_cell(genotype, cell, paths[cell])
    return paths
