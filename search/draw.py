"""Draws the two cells of a genotype (`nasnet_keras.visualize.plot_cell`).

    python -m search.draw --genotype=nasnet_search/rl --out=cells     # cells/normal.png, cells/reduction.png
    python -m search.draw --genotype=nasnet_a --out=figures --format=svg --prefix=nasnet_a_

``--genotype``: a published name (nasnet_a, pnasnet_5), a genotype JSON file,
or a search project directory (its best_genotype.json), as for
``search.train``. Files in ``--out`` with the same names are replaced.
Exit codes: 0 drawn, 1 bad flags or an unreadable genotype.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

FLAGS = flags.FlagValues()
flags.DEFINE_string("genotype", None, "Published name, genotype JSON file or search directory.", flag_values=FLAGS)
flags.DEFINE_string("out", "cells", "Folder for <prefix>normal.<format> and <prefix>reduction.<format>.",
                    flag_values=FLAGS)
flags.DEFINE_enum("format", "png", ["png", "svg", "pdf"], "File format.", flag_values=FLAGS)
flags.DEFINE_string("prefix", "", "File name prefix, e.g. 'best_'.", flag_values=FLAGS)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def main(argv: Sequence[str]) -> int:
    """Parses ``argv`` (program name first), draws both cells and prints their paths; returns the exit code."""
    try:
        FLAGS(list(argv))
    except flags.Error as err:
        return _error(f"{err}. See python -m search.draw --help.")
    if not FLAGS.genotype:
        return _error("--genotype is required: a published name (nasnet_a, pnasnet_5), a genotype JSON file or a "
                      "search directory.")
    from nasnet_keras.training.genotype_source import load_genotype
    from nasnet_keras.visualize import plot_genotype

    try:
        genotype, source = load_genotype(FLAGS.genotype)
    except ValueError as err:       # GenotypeNotFoundError too
        return _error(str(err))
    try:
        paths = plot_genotype(genotype, FLAGS.out, prefix=FLAGS.prefix, ext=FLAGS.format)
    except OSError as err:
        return _error(f"cannot write to --out={FLAGS.out!r}: {err}. Pass a folder you can write to.")
    print(f"{genotype.name or 'genotype'} ({source}):")
    for cell, path in paths.items():
        print(f"  {cell}: {path}")
    return 0


def run_main() -> None:
    """Console-script entry point."""
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(__doc__.strip() + "\n\nFlags:\n" + FLAGS.main_module_help())
        sys.exit(0)
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run_main()
