"""Converts an original TF-slim checkpoint into a weights file of this package, once.

    python -m nasnet_keras.convert --checkpoint=pnasnet-5_large_2017_12_13/model.ckpt --model=pnasnet_large \\
        --out=pnasnet_large.weights.h5
    python -c "from nasnet_keras.applications import PNASNetLarge; PNASNetLarge(weights='pnasnet_large.weights.h5')"

The checkpoint is loaded into the model's full form (classifier and auxiliary head, slim-exact pooling),
strictly: every weight must find its variable with its shape and no variable may be left over (see
`nasnet_keras.slim_checkpoint`). The output holds the weights by layer name (the legacy Keras HDF5 layout
that keras.applications' files use), so it loads through ``weights=`` into the same model with or without
``include_top`` / ``aux_head``. Slim's background class 0 is dropped: 1000 keras.applications classes.
Exit codes: 0 converted, 1 bad flags, a checkpoint that does not fit, or an output that exists.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

#: --model name -> nasnet_keras.configs.CONFIGS preset.
MODELS = {"nasnet_mobile": "mobile", "nasnet_large": "large", "pnasnet_mobile": "pnasnet_mobile",
          "pnasnet_large": "pnasnet_large"}


def _parser():
    parser = argparse.ArgumentParser(prog="python -m nasnet_keras.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="TF-slim checkpoint prefix (.../model.ckpt) or the folder the tarball was extracted to.")
    parser.add_argument("--model", required=True, choices=sorted(MODELS), help="Architecture of the checkpoint.")
    parser.add_argument("--out", required=True, help="Output .h5 file (e.g. pnasnet_large.weights.h5).")
    parser.add_argument("--overwrite", action="store_true", help="Replace --out if it exists.")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the conversion for ``argv`` (without the program name); returns the exit code."""
    args = _parser().parse_args(argv)
    if not args.out.endswith(".h5"):
        print(f"error: --out={args.out!r} must end with .h5 (e.g. {args.model}.weights.h5).", file=sys.stderr)
        return 1
    if os.path.exists(args.out) and not args.overwrite:
        print(f"error: --out={args.out!r} exists; pass --overwrite to replace it.", file=sys.stderr)
        return 1
    from nasnet_keras import slim_checkpoint

    print(f"converting {args.checkpoint} ({args.model}) ...", flush=True)
    try:
        count = slim_checkpoint.convert_checkpoint(args.checkpoint, MODELS[args.model], args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {count} weights. Load it with weights={args.out!r} in the {args.model} application.")
    return 0


def run_main() -> None:
    """Console-script entry point (``nasnet-convert``)."""
    sys.exit(main())


if __name__ == "__main__":
    run_main()
