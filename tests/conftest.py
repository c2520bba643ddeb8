import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# pytest-xdist runs several test processes (setup.cfg: -n 3 on the 2-core machine), and many tests start
# TensorFlow subprocesses on top; TensorFlow's default of one intra-op thread per core then oversubscribes the
# cores. One core's share per test process cut a 2-process run of two training tests from 79.6 to 75.7 CPU-s
# (49 -> 42 s wall). Subprocesses inherit it through os.environ.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)  # not on macOS
os.environ.setdefault("TF_NUM_INTRAOP_THREADS",
                      str(max(1, _CPUS // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))

import subprocess  # noqa: E402
import sys  # noqa: E402

from _cli import TINY_SEARCH_FLAGS, subprocess_env  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    """Stops the run, before any test, when pytest-xdist's `--dist loadgroup` (setup.cfg) cannot put tests in
    their xdist_group: pytest-xdist 3.8 groups a test by renaming the node's `_nodeid`, which pytest 9.2 no
    longer reads, and then silently rebuilds the shared fixtures in every test process and lets the
    multi-process fault tests share the cores (a fresh venv: 16:28 for the suite instead of 13:11)."""
    import _pytest.nodes

    if config.getoption("dist", "no") == "loadgroup" and "_nodeid" not in vars(_pytest.nodes.Node):
        raise pytest.UsageError(f"pytest {pytest.__version__} and this pytest-xdist lose the tests' xdist_group "
                                "(setup.cfg runs them with --dist loadgroup): install the test extra's versions, "
                                "pip install '.[test]' (pytest<9.2).")


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


class _CheckResults(dict):
    """``{check name: its result}``; ``results[name]`` fails the test with the check's traceback when it raised,
    or says that it never reported."""

    def __getitem__(self, name):
        result = self.get(name, {"error": "no RESULT line (the script stopped before this check)"})
        if "error" in result:
            pytest.fail(f"the {name!r} check in tests/_mirrored_checks.py did not finish:\n{result['error']}")
        return result


@pytest.fixture(scope="session")
def mirrored_checks(tmp_path_factory):
    """tests/_mirrored_checks.py's results by check name: the three MirroredStrategy-over-two-logical-CPUs checks
    in one fresh interpreter (~80 s of CPU: one TensorFlow start and five models traced, two of them under the
    strategy). Its tests share the xdist group "mirrored", so it runs once."""
    import json

    run_dir = tmp_path_factory.mktemp("mirrored")
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "_mirrored_checks.py"),
                          str(run_dir)], capture_output=True, text=True, timeout=600, env=subprocess_env())
    results = _CheckResults()
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            results[result.pop("check")] = result
    if out.returncode != 0 or not results:
        pytest.fail(f"tests/_mirrored_checks.py exited with code {out.returncode}:\n{out.stderr[-3000:]}")
    return results


@pytest.fixture(scope="session")
def digits_nasnet(tmp_path_factory):
    """A small NASNet-A (N = 1, F = 8, 32x32) with the auxiliary head and drop path, trained 2 epochs on 768 of
    the built-in digits with Adam (~45 s: tracing ~15 s, then ~0.5 s per step; 0.85 held-out accuracy on this
    machine, the tests need > 0.5; SGD with momentum 0.9 reached 0.55 on these 48 steps), shared by the fit test
    of tests/test_training.py and the export tests: they run in one xdist group, "digits_nasnet", so it trains
    once. Fields: model, history (fit's), steps (training steps), x / y (held-out images and labels),
    calibration (100 training images), path (the saved .keras)."""
    from types import SimpleNamespace

    from nasnet_keras import NASNET_A, NASNet
    from nasnet_keras.search.data import load_dataset
    from nasnet_keras.training.optimization import build_fit_state

    keras.utils.set_random_seed(0)
    data = load_dataset("digits", batch_size=32, seed=0, augment=False, max_train_examples=768)
    epochs = 2
    steps = epochs * data.steps_per_epoch
    model = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), classes=10,
                   aux_head=True, drop_path_keep_prob=0.7, total_training_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy"] * 2,
                  loss_weights=[1.0, 0.4])
    train = data.train.map(lambda x, y: (x, (y, y)))
    build_fit_state(model, train.element_spec)  # one trace of the training step instead of two
    history = model.fit(train, epochs=epochs, verbose=0, shuffle=False)   # the dataset shuffles itself
    x = np.concatenate([b for b, _ in data.validation])
    y = np.concatenate([labels for _, labels in data.validation])
    calibration = np.concatenate([b for b, _ in data.train])[:100]
    path = str(tmp_path_factory.mktemp("digits_nasnet") / "digits.keras")
    model.save(path)
    return SimpleNamespace(model=model, history=history.history, steps=steps, x=x, y=y, calibration=calibration,
                           path=path)


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
