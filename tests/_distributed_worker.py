"""One process of a distributed cell search (Keras Tuner chief / worker mode), for tests/test_distributed.py.

The role comes from Keras Tuner's environment: ``KERASTUNER_TUNER_ID``
(``chief`` serves the oracle, ``tuner0``, ``tuner1``, ... run trials),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``. Every process builds
the same `NASNetRLOracle` and tuner and calls ``tuner.search()``; Keras Tuner
turns that into serving (chief) or running trials (workers).

    KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=PORT \\
        python tests/_distributed_worker.py --directory D --max-trials 8 --batch-size 4 --worker-timeout 3

Each architecture is scored with a deterministic function (no training,
``--trial-seconds`` of sleep per trial; real children are trained by the
end-to-end tests in tests/test_search_faults.py). A worker appends
``<trial_id> <attempt>`` to ``<directory>/runs_<tuner_id>.log`` for every
trial it finishes. ``--hang-file F``: the worker writes F (JSON: trial id and
pid) in its first trial and then blocks there, heartbeats on, until killed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras_tuner  # noqa: E402

import _oracle_search as harness  # noqa: E402
from nasnet_keras.search import fault_tolerance as ft  # noqa: E402
from nasnet_keras.search import oracles  # noqa: E402

# 2 x 64 architectures' worth of decisions per cell: small children, few duplicates in a few trials.
TINY_SPACE = {"num_blocks": 1, "ops": ["identity", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3"],
              "combines": ["add"]}


def _log_run(directory, trial):
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
    with open(os.path.join(directory, f"runs_{tuner_id}.log"), "a") as f:
        f.write(f"{trial.trial_id} {ft.trial_attempt(trial)}\n")


class ScoreWorkerTuner(keras_tuner.Tuner):
    """Scores the genotype deterministically (`_oracle_search.score`), with heartbeats and attempt tags."""

    def __init__(self, oracle, trial_seconds=0.0, hang_file=None, **kwargs):
        self.space = oracle.space  # on a worker, `self.oracle` becomes Keras Tuner's gRPC client
        super().__init__(oracle=oracle, **kwargs)
        self.trial_seconds = trial_seconds
        self.hang_file = hang_file

    def run_trial(self, trial, *args, **kwargs):
        with ft.TrialHeartbeat(self.oracle, trial, min_interval_s=0.3) as heartbeat:
            if self.hang_file:
                with open(self.hang_file + ".tmp", "w") as f:
                    json.dump({"trial_id": trial.trial_id, "pid": os.getpid()}, f)
                os.replace(self.hang_file + ".tmp", self.hang_file)
                while True:  # "training" that makes progress until SIGKILL
                    heartbeat.beat()
                    time.sleep(0.1)
            heartbeat.beat()
            time.sleep(self.trial_seconds)
            value = harness.score(trial.hyperparameters.values, self.space)
        _log_run(self.project_dir, trial)
        return ft.with_attempt(trial, {"val_accuracy": value})


def build(args):
    """The oracle and tuner every process builds (same arguments everywhere)."""
    oracle = oracles.NASNetRLOracle(max_trials=args.max_trials, seed=args.seed, batch_size=args.batch_size,
                                    lstm_units=16, worker_timeout=args.worker_timeout, space=TINY_SPACE)
    common = dict(directory=args.directory, project_name=args.project)
    return ScoreWorkerTuner(oracle, trial_seconds=args.trial_seconds, hang_file=args.hang_file, **common)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True)
    parser.add_argument("--project", default="search")
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--worker-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--trial-seconds", type=float, default=0.0)
    parser.add_argument("--hang-file", default=None)
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # three processes share the test machine's cores
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tuner = build(args)
    tuner.search(verbose=0)
    print(f"{os.environ.get('KERASTUNER_TUNER_ID')} done", flush=True)


if __name__ == "__main__":
    main()
