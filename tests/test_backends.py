"""The zoo on the JAX backend: tests/_backend_check.py in a fresh interpreter with KERAS_BACKEND=jax (Keras
picks its backend once per process). Marked "backends": not in the default run;
`pip install '.[backends]' && python -m pytest -m backends` runs it (CI's second job). PyTorch: the same
script by hand (README, "Keras backends")."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = ("published_parity", "slim_checkpoint", "pnasnet", "fit_drop_path_aux", "save_and_load", "tensorflow_only")


@pytest.mark.slow
@pytest.mark.backends
def test_zoo_on_jax():
    # 1.5 (Intel Xeon) to 3 (AMD EPYC) minutes on 2 CPU cores, because under JAX every model is traced and
    # compiled by XLA; on the AMD machine: the NASNetMobile parity (~55 s, with the TensorFlow process that
    # writes keras.applications' reference), PNASNetMobile's build (~25 s) and a 3-epoch fit of a small
    # network with drop path and aux head (~80 s, the fewest epochs after which it clearly beats chance).
    # One interpreter pays JAX's start-up once.
    assert importlib.util.find_spec("jax") is not None, "jax is missing: pip install '.[backends]' (jax[cpu])"
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "_backend_check.py")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    assert out.stdout.startswith("Keras ") and " on jax" in out.stdout.splitlines()[0], out.stdout
    passed = [line.split(":")[0][3:] for line in out.stdout.splitlines() if line.startswith("ok ")]
    assert tuple(passed) == CHECKS, out.stdout
    assert "max abs difference" in out.stdout and "all checks passed" in out.stdout
