"""Turns what a user passes as ``--genotype`` into a `Genotype`.

Three forms: a published name (``nasnet_a``, ``pnasnet_5``, the keys of
`nasnet_keras.genotypes.GENOTYPES`), a genotype JSON file
(`Genotype.to_json`), or a search project directory (``python -m
search.run``'s ``<directory>/<project>``), whose ``best_genotype.json`` is
the best completed trial's cell.
"""

from __future__ import annotations

import difflib
import os
from typing import Tuple

from nasnet_keras import genotypes as gt

__all__ = ["GenotypeNotFoundError", "load_genotype"]

BEST_GENOTYPE_JSON = "best_genotype.json"   # written by nasnet_keras.search.reports


class GenotypeNotFoundError(ValueError):
    """``--genotype`` names no published genotype, file or finished search."""


def load_genotype(spec: str) -> Tuple[gt.Genotype, str]:
    """The genotype ``spec`` names, and where it came from (for logs and ``config.json``).

    Args:
        spec: a published name, a JSON file, or a search project directory.

    Returns:
        ``(genotype, source)``; ``source`` is e.g. ``"published nasnet_a"``
        or the absolute path of the file read.

    Raises:
        GenotypeNotFoundError: nothing by that name, a missing file, or a
            search directory with no finished trial yet.
        ValueError: the file is not a valid genotype (the message says why).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise GenotypeNotFoundError("--genotype is empty: pass a published name "
                                    f"({', '.join(gt.GENOTYPES)}), a genotype JSON file or a search directory.")
    if spec.lower() in gt.GENOTYPES:
        return gt.GENOTYPES[spec.lower()], f"published {spec.lower()}"
    path = os.path.abspath(os.path.expanduser(spec))
    if os.path.isdir(path):
        best = os.path.join(path, BEST_GENOTYPE_JSON)
        if not os.path.isfile(best):
            projects = sorted(d for d in os.listdir(path)
                              if os.path.isfile(os.path.join(path, d, BEST_GENOTYPE_JSON)))
            hint = (f" It holds search projects: {', '.join(projects)}; pass one, e.g. "
                    f"--genotype={os.path.join(spec, projects[0])}." if projects else
                    " Wait until a trial of the search completes (or pick another run).")
            raise GenotypeNotFoundError(f"Search directory {path!r} has no {BEST_GENOTYPE_JSON}: no trial of it has "
                                        f"finished.{hint}")
        path = best
    elif not os.path.exists(path):
        close = difflib.get_close_matches(spec.lower(), list(gt.GENOTYPES), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise GenotypeNotFoundError(
            f"--genotype={spec!r} is not a published genotype ({', '.join(gt.GENOTYPES)}), not a file and not a "
            f"search directory.{hint}")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as err:
        raise GenotypeNotFoundError(f"Cannot read genotype file {path!r}: {err.strerror}.") from None
    try:
        genotype = gt.Genotype.from_json(text)
    except ValueError as err:
        raise ValueError(f"{path!r} is not a valid genotype: {err}") from None
    return genotype, path
