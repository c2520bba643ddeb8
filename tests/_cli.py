"""Shared by the command-line tests: the checkout root, the tiny search flags, a subprocess environment."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny search: 3 children with 1 block per cell, 4 filters, 64 training images.
TINY_SEARCH_FLAGS = ["--max_trials=3", "--epochs=1", "--num_cells=1", "--filters=4", "--num_blocks=1",
                     "--max_train_examples=64", "--batch_size=32", "--controller_batch_size=2", "--local_workers=1"]


def subprocess_env():
    """The environment for a `python -m search.*` subprocess: this checkout first on the path, quiet TF."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env
