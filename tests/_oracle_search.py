"""A cell search with a deterministic objective, for tests/test_oracles.py.

No child is trained: a trial's objective is the fraction of its decisions that
equal those of a fixed target genotype (NASNet-A's blocks). The module is
imported by the tests and also run as a subprocess that can SIGKILL itself at
a chosen trial, to test resuming:

    python tests/_oracle_search.py --directory D --summary S.json \
        --job rl:60:7 --job random:60:7 --kill rl:run:30 --kill rl:sync:45

``--job KIND:TRIALS:SEED`` runs a search (in order, project name = KIND);
``--kill KIND:POINT:TRIAL`` kills the process once (a marker file remembers
it) at trial TRIAL, POINT ``run`` (inside run_trial) or ``sync`` (inside the
oracle's end_trial, after Keras Tuner saved the ended trial but before the
reward reached the controller).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from nasnet_keras import genotypes  # noqa: E402
from nasnet_keras.search import oracles  # noqa: E402
from nasnet_keras.search import space as space_lib  # noqa: E402

TARGET = genotypes.Genotype(normal=genotypes.NASNET_A.normal.blocks, reduction=genotypes.NASNET_A.reduction.blocks)


def target_indices(space=None):
    """Class indices of the target: NASNet-A's blocks when `space` holds them, else the last choice of
    every decision."""
    try:
        return space_lib.values_to_indices(space_lib.hyperparameters_from_genotype(TARGET, space), space)
    except ValueError:
        return [n - 1 for n in space_lib.num_choices(space)]


def score(values, space=None, target=None) -> float:
    """Fraction of the decisions in `values` equal to the target's."""
    target = target_indices(space) if target is None else target
    got = space_lib.values_to_indices(values, space)
    return float(np.mean([a == b for a, b in zip(got, target)]))


def _kill_now(marker):
    with open(marker, "w") as f:
        f.write("killed\n")
    os.kill(os.getpid(), signal.SIGKILL)


class KillableRLOracle(oracles.NASNetRLOracle):
    """`NASNetRLOracle` that can die between Keras Tuner's end-of-trial save and the controller feed."""

    kill_trial = None
    marker = None

    def _sync_rewards(self):
        if (self.kill_trial is not None and self.end_order and int(self.end_order[-1]) == self.kill_trial
                and self._fed_cursor < len(self.end_order) and not os.path.exists(self.marker)):
            _kill_now(self.marker)
        super()._sync_rewards()


class ScoreTuner(keras_tuner.Tuner):
    """A Tuner whose `run_trial` scores the genotype with `score` (no training).

    Args:
        kill_run_at: trial number at which `run_trial` SIGKILLs the process
            (once: `marker` is created first).
        marker: path of the marker file.
        run_log: optional file; each `run_trial` that returns appends its trial id.
    """

    def __init__(self, oracle, kill_run_at=None, marker=None, run_log=None, **kwargs):
        super().__init__(oracle=oracle, **kwargs)
        self.kill_run_at = kill_run_at
        self.marker = marker
        self.run_log = run_log

    def run_trial(self, trial, *args, **kwargs):
        if self.kill_run_at is not None and int(trial.trial_id) == self.kill_run_at \
                and not os.path.exists(self.marker):
            _kill_now(self.marker)
        if self.run_log:
            with open(self.run_log, "a") as f:
                f.write(trial.trial_id + "\n")
        return {"val_accuracy": score(trial.hyperparameters.values, self.oracle.space)}


def make_oracle(kind, max_trials, seed, **kwargs):
    """`kind` in {"rl", "random"}: a `KillableRLOracle` (no kill set) or a `RandomCellOracle`."""
    if kind == "rl":
        return KillableRLOracle(max_trials=max_trials, seed=seed, **kwargs)
    if kind == "random":
        return oracles.RandomCellOracle(max_trials=max_trials, seed=seed, **kwargs)
    raise ValueError(f"unknown oracle kind {kind!r}")


def summarize(oracle) -> dict:
    """What a resumed search must reproduce: every trial's values in start order, scores, controller state."""
    trials = [oracle.trials[t] for t in oracle.start_order]
    out = {"trial_ids": list(oracle.start_order),
           "values": [t.hyperparameters.values for t in trials],
           "scores": [t.score for t in trials],
           "status": [t.status for t in trials],
           "stats": dict(getattr(oracle, "stats", {})),
           "seed_state": oracle._seed_state}
    if isinstance(oracle, oracles.NASNetRLOracle):
        ctl = oracle.controller
        digest = hashlib.sha256()
        for k, v in sorted(ctl.get_weights().items()):
            digest.update(k.encode())
            digest.update(np.ascontiguousarray(v).tobytes())
        out.update(baseline=ctl.baseline, num_updates=ctl.num_updates, num_rewards=ctl.num_rewards,
                   pending=ctl.pending, weights_sha256=digest.hexdigest(), next_sample=ctl.sample()[0])
    return out


def run_search(kind, directory, trials, seed, kills=(), markers_dir=None, overwrite=False):
    """Runs (or resumes) one search through a real `Tuner.search`; returns `summarize(oracle)`.

    Each trial that `run_trial` scores is appended to ``<directory>/<kind>_runs.log``.
    """
    oracle = make_oracle(kind, trials, seed)
    kill_run = None
    for k_kind, point, at in kills:
        if k_kind != kind:
            continue
        marker = os.path.join(markers_dir, f"{kind}_{point}_{at}.killed")
        if point == "run" and not os.path.exists(marker) and kill_run is None:
            kill_run = (at, marker)
        elif point == "sync":
            oracle.kill_trial, oracle.marker = at, marker
    tuner = ScoreTuner(oracle, kill_run_at=kill_run[0] if kill_run else None,
                       marker=kill_run[1] if kill_run else None,
                       run_log=os.path.join(directory, f"{kind}_runs.log"),
                       directory=directory, project_name=kind, overwrite=overwrite)
    tuner.search(verbose=0)
    return summarize(tuner.oracle)


def run_api(oracle, num_trials, space=None):
    """Drives an oracle through create_trial / update_trial / end_trial (no Tuner); returns the scores."""
    target = target_indices(space)
    scores = []
    for _ in range(num_trials):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        s = score(trial.hyperparameters.values, space, target)
        oracle.update_trial(trial.trial_id, {"val_accuracy": s})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        scores.append(s)
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--job", action="append", required=True, help="KIND:TRIALS:SEED")
    parser.add_argument("--kill", action="append", default=[], help="KIND:POINT:TRIAL")
    args = parser.parse_args(argv)
    kills = [(k, p, int(t)) for k, p, t in (s.split(":") for s in args.kill)]
    result = {}
    for job in args.job:
        kind, trials, seed = job.split(":")
        result[kind] = run_search(kind, args.directory, int(trials), int(seed), kills, args.directory)
    with open(args.summary, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
