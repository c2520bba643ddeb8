"""Writes nasnet_keras/applications/imagenet_class_index.json from local data.

The index maps each ImageNet-1k class index (as a string) to
``[wordnet_id, short_name]``, the layout keras.applications uses, e.g.
``{"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"], ...}``.

Sources (both shipped with the installed ``tensorflow_datasets`` package, so
no network access is needed):

* ``datasets/imagenet2012/labels.txt``: the 1000 WordNet ids, one per line,
  in class-index order;
* ``datasets/siscore/labels.py``: ``IMAGENET_LABELS_LIST``, the 1000
  human-readable names in the same order ("tench, Tinca tinca", ...).

The short name is the first comma-separated synonym with spaces replaced by
underscores ("great white shark, white shark, ..." -> "great_white_shark");
a disambiguating suffix such as " (bird)" is dropped, as in the Keras index.

Usage::

    python tools/make_class_index.py [--tfds-dir DIR] [--output PATH]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
from typing import Dict, List

NUM_CLASSES = 1000
DEFAULT_OUTPUT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "nasnet_keras", "applications", "imagenet_class_index.json",
)


def find_tfds_dir() -> str:
    """Directory of the installed tensorflow_datasets package (not imported)."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "tensorflow_datasets is not installed; pass --tfds-dir pointing to "
            "its package directory."
        )
    return list(spec.submodule_search_locations)[0]


def read_wnids(path: str) -> List[str]:
    """Reads the WordNet ids, one per line, skipping blank lines."""
    with open(path, encoding="utf-8") as f:
        wnids = [line.strip() for line in f if line.strip()]
    return wnids


def read_names(path: str) -> List[str]:
    """Reads the IMAGENET_LABELS_LIST literal from siscore/labels.py (no import)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "IMAGENET_LABELS_LIST"
            for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise SystemExit(f"IMAGENET_LABELS_LIST not found in {path}.")


def short_name(label: str) -> str:
    """First synonym of a label, spaces -> underscores.

    The TFDS list disambiguates the two "crane" classes as "crane (bird)" and
    "crane (machine)"; the Keras index calls both "crane", so a trailing
    parenthetical is dropped.
    """
    first = label.split(",")[0].strip()
    if first.endswith(")") and " (" in first:
        first = first[: first.rindex(" (")]
    return first.replace(" ", "_")


def build_index(wnids: List[str], names: List[str]) -> Dict[str, List[str]]:
    """Builds and checks the {index: [wnid, short_name]} mapping."""
    if len(wnids) != NUM_CLASSES or len(names) != NUM_CLASSES:
        raise SystemExit(
            f"Expected {NUM_CLASSES} ids and names, got {len(wnids)} and {len(names)}."
        )
    if len(set(wnids)) != NUM_CLASSES:
        raise SystemExit("WordNet ids are not unique.")
    bad = [w for w in wnids if not (w.startswith("n") and w[1:].isdigit() and len(w) == 9)]
    if bad:
        raise SystemExit(f"Malformed WordNet ids: {bad[:5]}")
    return {str(i): [wnid, short_name(name)] for i, (wnid, name) in enumerate(zip(wnids, names))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfds-dir", default=None,
                        help="tensorflow_datasets package directory (default: installed one)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON file to write")
    args = parser.parse_args(argv)

    root = args.tfds_dir or find_tfds_dir()
    wnids = read_wnids(os.path.join(root, "datasets", "imagenet2012", "labels.txt"))
    names = read_names(os.path.join(root, "datasets", "siscore", "labels.py"))
    index = build_index(wnids, names)

    # Spot checks against well-known entries of the ImageNet-1k index.
    expected = {"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"],
                "2": ["n01484850", "great_white_shark"],
                "134": ["n02012849", "crane"], "517": ["n03126707", "crane"]}
    for key, value in expected.items():
        if index[key] != value:
            raise SystemExit(f"Index {key} is {index[key]}, expected {value}.")

    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=None, separators=(", ", ": "))
        f.write("\n")
    print(f"wrote {len(index)} classes to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
