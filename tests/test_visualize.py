"""Cell diagrams: `nasnet_keras.visualize`, `python -m search.draw`, and the search's best-cell drawings."""

import html
import re

import matplotlib.image
import pytest

from nasnet_keras.genotypes import NASNET_A, PNASNET_5, Genotype
from nasnet_keras.search import report_writer, reports
from nasnet_keras.visualize import plot_cell
from search import draw

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _svg_texts(path):
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)", path.read_text())]


@pytest.mark.parametrize("genotype,cell", [(NASNET_A, "normal"), (NASNET_A, "reduction"), (PNASNET_5, "normal")])
def test_svg_holds_every_op_input_and_combine(tmp_path, genotype, cell):
    path = tmp_path / "cell.svg"
    plot_cell(genotype, cell, str(path))
    texts = [t.strip() for t in _svg_texts(path)]
    spec = genotype.normal if cell == "normal" else genotype.reduction
    ops = [t.replace(" /2", "") for t in texts if t.replace(" /2", "") in {op for b in spec.blocks for op in b.ops}]
    # One box per op of every block, labelled with its name; stride 2 marked on the inputs' ops of a reduction.
    assert sorted(ops) == sorted(op for b in spec.blocks for op in b.ops)
    strided = sum(t.endswith(" /2") for t in texts)
    assert strided == (sum(i < 2 for b in spec.blocks for i in b.inputs) if cell == "reduction" else 0)
    assert {"h[i]", "h[i-1]", "concat -> h[i+1]"} <= set(texts)
    assert texts.count("+") == len(spec.blocks)                      # add combines
    assert f"{genotype.name} {cell} cell" in " ".join(texts)


def test_png_is_a_valid_image_of_plausible_size(tmp_path):
    path = tmp_path / "sub" / "normal.png"                # missing folders are created
    plot_cell(NASNET_A, "normal", str(path))
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(str(path)).shape
    assert 250 <= height <= 2000 and 500 <= width <= 3000 and width > height


def test_bad_cell_name_and_genotype():
    with pytest.raises(ValueError, match="cell must be 'normal' or 'reduction'"):
        plot_cell(NASNET_A, "stem")
    with pytest.raises(ValueError, match="must be a nasnet_keras.genotypes.Genotype"):
        plot_cell({"normal": []}, "normal")


def test_search_draw_cli(tmp_path, capsys):
    out = tmp_path / "cells"
    assert draw.main(["search.draw", "--genotype=pnasnet_5", f"--out={out}", "--format=svg", "--prefix=p5_"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p5_normal.svg", "p5_reduction.svg"]
    assert "sep_conv_7x7" in _svg_texts(out / "p5_normal.svg")
    assert "reduction: " in capsys.readouterr().out
    assert draw.main(["search.draw", "--genotype=no_such_cell", f"--out={tmp_path / 'x'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_cell" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_search_reports_draw_the_best_cells_when_the_best_changes(tmp_path):
    g1 = Genotype.from_dict({"normal": [[0, "identity", 1, "conv_1x1", "add"]],
                             "reduction": [[0, "max_pool_3x3", 1, "conv_1x1", "add"]]})
    g2 = Genotype.from_dict({"normal": [[1, "sep_conv_3x3", 0, "identity", "add"]],
                             "reduction": [[1, "conv_1x1", 1, "max_pool_3x3", "add"]]})
    project = tmp_path / "p"
    writer = report_writer.ReportWriter(str(project), plot_interval_s=0.0)
    writer.start([])
    assert not (project / "best_normal.png").exists()             # no completed trial yet
    writer.add(reports.TrialRecord("0", "COMPLETED", 0.5, 100, 200, 1.0, g1))
    first = (project / "best_normal.png").read_bytes()
    assert first[:8] == PNG_SIGNATURE and (project / "best_reduction.png").read_bytes()[:8] == PNG_SIGNATURE
    writer.add(reports.TrialRecord("1", "COMPLETED", 0.4, 100, 200, 1.0, g2))    # not better: not redrawn
    assert (project / "best_normal.png").read_bytes() == first
    writer.add(reports.TrialRecord("2", "COMPLETED", 0.9, 100, 200, 1.0, g2))    # new best: its cells
    assert (project / "best_normal.png").read_bytes() != first
    writer.close()
