import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import subprocess  # noqa: E402
import sys  # noqa: E402

from _cli import TINY_SEARCH_FLAGS, subprocess_env  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory):
    """One end-to-end run of `python -m search.run` with a tiny configuration, two children at once (the
    quick preset's default: a chief and two local worker processes), shared by the search CLI tests and
    the transfer-training tests (which train its best cell). About a minute: three TensorFlow processes
    plus their child processes start, which is what the default path does. Returns (cwd, result); the
    project directory is cwd / "out" / "rl"."""
    cwd = tmp_path_factory.mktemp("cli")
    result = subprocess.run([sys.executable, "-m", "search.run"] + TINY_SEARCH_FLAGS
                            + ["--directory=out", "--seed=1", "--local_workers=2"],
                            cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    return cwd, result


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.clear_session()
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(autouse=True)
def _restore_environment():
    """Undoes os.environ changes of in-process CLI calls (`search.run` sets TF_ENABLE_ONEDNN_OPTS for its
    children): a later test's subprocess must run TensorFlow with the settings this process started with, or
    its float results differ from the in-process reference (seen as a resume test failing in one order only)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
