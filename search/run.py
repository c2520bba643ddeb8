"""Runs a NASNet cell search from the command line.

    python -m search.run                      # quick preset: digits, 12 tiny children, a few minutes on a CPU
    python -m search.run --preset=paper       # the paper's setup on CIFAR-10 (needs a prepared tfds cifar10)
    python -m search.run --oracle=random      # random-search baseline, same --directory: compared on one plot
    python -m search.run --oracle=enas        # weight sharing (ENAS): one shared network, ~9 min on a CPU
    nasnet-search --max_trials=30 --epochs=2  # console script, same flags

Presets (`PRESETS`, the one place their values live) give the defaults of the
search flags; any flag given explicitly overrides its preset value.

* ``quick``: digits (1,500 train / 297 reward images, upscaled to 32x32,
  offline), 12 trials, 1 epoch, N = 1 cell per stack, F = 8 filters, B = 3
  blocks per cell, batch 32, learning rate 0.1, PPO update every 4 rewards.
  Made to finish in minutes on 2 CPU cores (README "Benchmarks" has the figure).
* ``paper`` (paper Sec. 4): CIFAR-10 with 5,000 held-out
  reward images, 20,000 trials, 20 epochs, N = 2, B = 5, batch 32,
  learning rate 0.025 (TF-slim's CIFAR setup), PPO update every 20 rewards.
  F = 32: the paper does not give the search-time filter count, so we
  use TF-slim's CIFAR ``num_conv_filters`` (the F of NASNet-A 6 @ 768).

Both use SGD momentum 0.9, one cosine period and L2 weight decay 5e-4
(TF-slim convention) -- see `nasnet_keras.search.child`.

Search space: ``--num_blocks``, ``--ops`` and ``--combines`` (comma-separated
names from `nasnet_keras.genotypes.OPS` / ``COMBINES``; default all 13 ops and
both combines), e.g. ENAS' 5-op add-only space: ``--combines=add
--ops=sep_conv_3x3,sep_conv_5x5,avg_pool_3x3,max_pool_3x3,identity``.

Weight sharing: ``--oracle=enas`` (the controller) and ``--oracle=enas_random``
(uniform) train one network whose weights every sampled child shares
(`nasnet_keras.search.weight_sharing`; its presets are in its ``config``
module, and the flags marked "--oracle=enas / enas_random only" set them).

Outputs go to ``<--directory>/<--project_name>`` (project name defaults to
the oracle name, so ``rl`` and ``random`` runs share ``--directory`` and
``rewards.png`` plots both; with more than one project the run also writes
``<--directory>/rewards.png``): ``trials.csv``, ``best_genotype.json``,
``rewards.png``, ``best_normal.png`` / ``best_reduction.png`` (the best cells),
written as trials end (on the chief in chief / worker mode), plus Keras
Tuner's own state and the child processes' logs. Re-running the same
command resumes the search (``--overwrite`` starts over); resuming with
a different search space or child setup is refused with a message and
nothing is deleted.

Faults. A child that makes no training progress for ``--trial_timeout``
seconds is killed, and one whose process dies is reported as a crash; both
are re-run ``--max_retries_per_trial`` times, then FAILED with the reason. A
diverged child (NaN loss) fails at once; ``--max_consecutive_failed_trials``
failures in a row stop the search everywhere with one message.

Distributed search: Keras Tuner's chief / worker mode, set by the
environment (``KERASTUNER_TUNER_ID=chief|tuner0|tuner1...``,
``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``); every process runs
the same command. A worker whose child flags differ from the chief's is
refused; a worker silent (no progress) for ``--worker_timeout`` seconds loses
its trial to another worker; workers wait up to ``--chief_timeout`` seconds
for a chief that restarts (same command: it resumes).

TensorFlow backend only (the children train with `tf.data` and
`tf.distribute`): another KERAS_BACKEND is refused with a message.
Exit codes: 0 done, 1 bad flags or data, a stopped search (too many failed
children), an unreachable chief, or a refused resume; 130 interrupted.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any, Dict, List, Sequence

from absl import app, flags, logging

#: Flag defaults per preset; explicit flags override them.
PRESETS: Dict[str, Dict[str, Any]] = {
    "quick": dict(dataset="digits", max_trials=12, epochs=1, num_cells=1, filters=8, num_blocks=3,
                  batch_size=32, learning_rate=0.1, weight_decay=5e-4, controller_batch_size=4, local_workers=2),
    "paper": dict(dataset="cifar10", max_trials=20000, epochs=20, num_cells=2, filters=32, num_blocks=5,
                  batch_size=32, learning_rate=0.025, weight_decay=5e-4, controller_batch_size=20, local_workers=1),
}
DEFAULT_PRESET = "quick"
#: The size the CLI suggests for re-training the best cell (CIFAR NASNet-A 6 @ 768: N = 6, F = 32).
FULL_SCALE = dict(num_cells=6, filters=32)
# Same names as nasnet_keras.search.tuner.DISTRIBUTIONS (kept here so --help needs no TensorFlow import).
DISTRIBUTIONS = ("auto", "mirrored", "default", "one_device")
#: Oracles of the weight-sharing search (nasnet_keras.search.weight_sharing); their defaults come from its PRESETS.
WEIGHT_SHARING_ORACLES = ("enas", "enas_random")
ORACLES = ("rl", "random") + WEIGHT_SHARING_ORACLES
#: Flags only the weight-sharing oracles read: name -> (type, help). Defaults: its presets.
_WEIGHT_SHARING_FLAGS = {
    "min_learning_rate": (float, "End of each cosine period of the shared network's learning rate."),
    "restart_epochs": (int, "Epochs of the first cosine period (>= --epochs: one period)."),
    "restart_multiplier": (float, "Length factor of each next cosine period."),
    "momentum": (float, "Nesterov momentum of the shared network."),
    "grad_clip_norm": (float, "Global-norm clip of the shared network's gradients."),
    "controller_every": (int, "Epochs between controller phases."),
    "controller_steps": (int, "Controller updates per controller phase (each of --controller_batch_size rewards)."),
    "reward_batch_size": (int, "Images of the reward minibatch that scores one architecture."),
    "controller_units": (int, "LSTM units of the controller."),
    "controller_learning_rate": (float, "Adam learning rate of the controller."),
    "controller_entropy_weight": (float, "Entropy bonus weight of the controller's loss."),
    "controller_baseline_decay": (float, "Decay of the controller's reward baseline."),
    "controller_tanh_constant": (float, "c of the logit squashing c * tanh(logits); 0 turns it off."),
    "controller_op_tanh_reduce": (float, "Op decisions use --controller_tanh_constant divided by this."),
    "controller_adam_beta1": (float, "Adam beta1 of the controller."),
    "controller_ppo_epochs": (int, "Policy-gradient steps per controller batch (1: REINFORCE, >1: PPO)."),
    "final_architectures": (int, "Distinct architectures sampled at the end and scored on the whole reward set."),
}


def _preset_help(name: str) -> str:
    return ", ".join(f"{p}: {values[name]}" for p, values in PRESETS.items())


FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", DEFAULT_PRESET, list(PRESETS), "Defaults for the search flags below.")
flags.DEFINE_string("dataset", None, "'digits', a tensorflow-datasets name (prepared in --data_dir) or a "
                    f"directory with one sub-folder of images per class. Preset: {_preset_help('dataset')}.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory (default: tfds's own).")
flags.DEFINE_bool("download", False, "Let tensorflow-datasets download a dataset that is not prepared.")
flags.DEFINE_integer("max_train_examples", None, "Use only the first this-many training examples.",
                     lower_bound=1)
flags.DEFINE_enum("oracle", "rl", list(ORACLES), "rl: the paper's PPO controller; random: uniform sampling; "
                  "enas / enas_random: the same two over one weight-sharing network (ENAS), minutes not days; "
                  "with these two, --dataset, --epochs (of the shared network), --batch_size, --learning_rate, "
                  "--weight_decay, --num_cells, --filters, --num_blocks, --ops, --combines and "
                  "--controller_batch_size default to the weight-sharing presets "
                  "(nasnet_keras.search.weight_sharing.config).")
flags.DEFINE_integer("max_trials", None, f"Child networks to train. Preset: {_preset_help('max_trials')}.",
                     lower_bound=1)
flags.DEFINE_integer("epochs", None, f"Training epochs per child. Preset: {_preset_help('epochs')}.",
                     lower_bound=1)
flags.DEFINE_integer("num_cells", None, f"N, normal cells per stack. Preset: {_preset_help('num_cells')}.",
                     lower_bound=1)
flags.DEFINE_integer("filters", None, f"F, filters of the first stack. Preset: {_preset_help('filters')}.",
                     lower_bound=1)
flags.DEFINE_integer("num_blocks", None, f"B, blocks per cell. Preset: {_preset_help('num_blocks')}.",
                     lower_bound=1)
flags.DEFINE_list("ops", None, "Operations a block may pick: comma-separated names from nasnet_keras.genotypes.OPS "
                  "(default: all 13 of the paper). The order is the controller's class order, part of the "
                  "search space a resume must repeat.")
flags.DEFINE_list("combines", None, "Ways a block may combine its two ops: comma-separated from add,concat "
                  "(default: both).")
flags.DEFINE_integer("batch_size", None, f"Child batch size. Preset: {_preset_help('batch_size')}.",
                     lower_bound=1)
flags.DEFINE_float("learning_rate", None, "Initial child learning rate (cosine decay to 0). "
                   f"Preset: {_preset_help('learning_rate')}.")
flags.DEFINE_float("weight_decay", None, f"L2 weight decay of the child. Preset: {_preset_help('weight_decay')}.",
                   lower_bound=0.0)
flags.DEFINE_integer("controller_batch_size", None, "Rewards per PPO update of the rl oracle. "
                     f"Preset: {_preset_help('controller_batch_size')}.", lower_bound=1)
flags.DEFINE_integer("local_workers", None, "Children trained at once on this machine: with N > 1 this process "
                     "becomes the chief of N local worker processes (Keras Tuner's distributed mode on 127.0.0.1; "
                     f"logs in --directory). Preset: {_preset_help('local_workers')}.", lower_bound=1)
for _name, (_kind, _help) in _WEIGHT_SHARING_FLAGS.items():
    (flags.DEFINE_integer if _kind is int else flags.DEFINE_float)(
        _name, None, f"--oracle=enas / enas_random only: {_help} Default: the preset's (see "
        "nasnet_keras.search.weight_sharing.config).")
flags.DEFINE_integer("max_consecutive_failed_trials", 3, "Stop after this many failed children in a row.",
                     lower_bound=1)
flags.DEFINE_integer("max_retries_per_trial", 1, "Re-runs of a child whose process hung or crashed before its trial "
                     "is FAILED (a diverged child fails at once).", lower_bound=0)
flags.DEFINE_float("trial_timeout", 900.0, "Seconds a child may make no training progress (graph tracing before "
                   "the first step included) before its process is killed and the trial re-run or failed. A fresh "
                   "child process may take max(this, 300) s to start (imports, dataset).", lower_bound=1.0)
flags.DEFINE_float("chief_timeout", 600.0, "Distributed workers: seconds to wait for an unreachable chief (e.g. "
                   "while it restarts) before exiting with an error.", lower_bound=1.0)
flags.DEFINE_integer("trials_per_worker", 20, "Children trained by one worker process before it is replaced "
                     "(bounds memory: TensorFlow keeps every traced training graph).", lower_bound=1)
flags.DEFINE_float("worker_timeout", 600.0, "Distributed search: seconds a worker's running trial may stay silent "
                   "before the chief hands it to another worker.", lower_bound=1.0)
flags.DEFINE_string("directory", "nasnet_search", "Directory holding the search projects.")
flags.DEFINE_string("project_name", None, "Project sub-directory (default: the --oracle name).")
flags.DEFINE_bool("overwrite", False, "Delete the project and start over instead of resuming it.")
flags.DEFINE_integer("seed", 0, "Seed of the oracle, the data order and the children's initial weights.")
flags.DEFINE_enum("distribution", "auto", list(DISTRIBUTIONS),
                  "auto: MirroredStrategy when more than one GPU is visible, else the default strategy.")
flags.DEFINE_integer("verbose", 1, "0 quiet, 1 one line per trial, 2 also Keras epoch logs.",
                     lower_bound=0, upper_bound=2)

flags.register_validator("learning_rate", lambda v: v is None or v > 0, "--learning_rate must be > 0.")
flags.register_validator("dataset", lambda v: v is None or v.strip() != "",
                         "--dataset must not be empty; name a dataset or a directory.")
flags.register_validator("project_name", lambda v: v is None or (v.strip() != "" and os.sep not in v),
                         "--project_name must be a non-empty name without path separators.")
flags.register_validator("directory", lambda v: v.strip() != "", "--directory must not be empty.")


def resolve_settings(flag_values=FLAGS) -> Dict[str, Any]:
    """The search settings: the preset's values, overridden by every flag given.

    Returns:
        A dict with every key of the presets plus ``preset``, ``oracle``,
        ``directory``, ``project_name``, ``overwrite``, ``seed``,
        ``distribution``, ``data_dir``, ``download``, ``max_train_examples``,
        ``max_consecutive_failed_trials``, ``max_retries_per_trial``,
        ``trials_per_worker``, ``verbose``, ``worker_timeout``,
        ``trial_timeout``, ``chief_timeout``, and ``ops`` / ``combines``
        (tuples of names, or None for `SearchSpace`'s defaults).
    """
    settings = dict(PRESETS[flag_values.preset])
    if flag_values.oracle in WEIGHT_SHARING_ORACLES:
        from nasnet_keras.search.weight_sharing.config import PRESETS as WEIGHT_SHARING_PRESETS

        settings.update(WEIGHT_SHARING_PRESETS[flag_values.preset])
        for name in ("max_trials", "local_workers"):
            settings.pop(name, None)
    for name in settings:
        value = flag_values[name].value
        if value is not None:
            settings[name] = value
    for name in ("preset", "oracle", "directory", "overwrite", "seed", "distribution", "data_dir",
                 "download", "max_train_examples", "max_consecutive_failed_trials", "max_retries_per_trial",
                 "trials_per_worker", "verbose", "worker_timeout", "trial_timeout", "chief_timeout"):
        settings[name] = flag_values[name].value
    for name in ("ops", "combines"):
        value = flag_values[name].value
        settings[name] = tuple(value) if value is not None else settings.get(name)
    if settings.get("controller_tanh_constant") == 0:
        settings["controller_tanh_constant"] = None
    settings["project_name"] = flag_values.project_name or flag_values.oracle
    return settings


def build_line(best_json: str, input_shape: Sequence[int], classes: int) -> str:
    """The Python statement that builds the searched cell at full scale (`FULL_SCALE`)."""
    return (f"model = NASNet(Genotype.from_json(open({os.path.abspath(best_json)!r}).read()), "
            f"num_cells={FULL_SCALE['num_cells']}, filters={FULL_SCALE['filters']}, stem='cifar', "
            f"input_shape={tuple(int(d) for d in input_shape)}, classes={int(classes)})")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def worker_flags(settings: Dict[str, Any], directory: str) -> List[str]:
    """The flags a local worker runs with: every resolved setting, without the chief-only ones."""
    skip = {"overwrite", "local_workers", "directory"}
    out = [f"--directory={directory}"]
    for name, value in settings.items():
        if name not in skip and value is not None:
            out.append(f"--{name}={','.join(value) if isinstance(value, (list, tuple)) else value}")
    return out


def _build_tuner(s: Dict[str, Any]):
    """The oracle and the `CellSearchTuner` of settings ``s`` (loads the data; refuses a bad resume)."""
    from nasnet_keras.search.oracles import NASNetRLOracle, RandomCellOracle
    from nasnet_keras.search.space import SearchSpace
    from nasnet_keras.search.tuner import CellSearchTuner

    choices = {k: s[k] for k in ("ops", "combines") if s.get(k) is not None}
    try:
        space = SearchSpace(num_blocks=s["num_blocks"], **choices)
    except ValueError as err:  # named as the flags: "--ops holds unknown names [...]; choose from ..."
        raise ValueError(str(err).replace("SearchSpace: ", "--", 1)) from None
    common = dict(max_trials=s["max_trials"], space=space, seed=s["seed"],
                  max_consecutive_failed_trials=s["max_consecutive_failed_trials"],
                  max_retries_per_trial=s["max_retries_per_trial"], worker_timeout=s["worker_timeout"])
    if s["oracle"] == "rl":
        oracle = NASNetRLOracle(batch_size=s["controller_batch_size"], **common)
    else:
        oracle = RandomCellOracle(**common)
    tuner = CellSearchTuner(
        oracle, s["dataset"], data_options=dict(batch_size=s["batch_size"], seed=s["seed"], data_dir=s["data_dir"],
                                                download=s["download"], max_train_examples=s["max_train_examples"]),
        trials_per_worker=s["trials_per_worker"], trial_timeout=s["trial_timeout"], chief_timeout=s["chief_timeout"],
        epochs=s["epochs"], num_cells=s["num_cells"], filters=s["filters"], learning_rate=s["learning_rate"],
        weight_decay=s["weight_decay"], space=space, distribution_strategy=s["distribution"], seed=s["seed"],
        verbose=s["verbose"], directory=s["directory"], project_name=s["project_name"], overwrite=s["overwrite"])
    return tuner


def _space_note(s: Dict[str, Any]) -> str:
    return "".join(f", {k} {','.join(s[k])}" for k in ("ops", "combines") if s.get(k) is not None)


def run_search(settings: Dict[str, Any]) -> int:
    """Runs (or resumes) the search described by `resolve_settings`' dict; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # faster CPU children (see nasnet_keras.search.child_process)
    from nasnet_keras.search import progress, reports
    from nasnet_keras.search.chief_rpc import ChiefError, WorkersGoneError
    from nasnet_keras.search.data import DatasetNotPreparedError
    from nasnet_keras.search.local_workers import LocalWorkers, exit_with_parent
    from nasnet_keras.search.roles import is_distributed_worker, serves_workers
    from nasnet_keras.search.tuner import TooManyFailedTrialsError

    s = settings
    if s["oracle"] in WEIGHT_SHARING_ORACLES:
        from nasnet_keras.search.weight_sharing.runner import run_weight_sharing

        return run_weight_sharing(s, _error)
    if s["overwrite"] and is_distributed_worker():
        return _error("--overwrite on a distributed worker would delete the project it may share with the chief; "
                      "pass --overwrite to the chief only.")
    exit_with_parent()  # a local worker ends with the chief that started it
    project_dir = os.path.join(s["directory"], s["project_name"])
    local = s["local_workers"] if not (is_distributed_worker() or serves_workers()) else 1
    print(f"NASNet cell search ({s['preset']} preset): oracle {s['oracle']}, dataset {s['dataset']}, "
          f"{s['max_trials']} trials x {s['epochs']} epoch(s), N={s['num_cells']}, F={s['filters']}, "
          f"B={s['num_blocks']}{_space_note(s)}, batch {s['batch_size']}, lr {s['learning_rate']} -> {project_dir}"
          + (f"; {local} children at once (local workers)" if local > 1 else ""), flush=True)
    workers = None
    try:
        if local > 1:
            worker_dir = os.path.join(s["directory"], f"{s['project_name']}_local_workers")
            if s["overwrite"] and os.path.isdir(worker_dir):
                shutil.rmtree(worker_dir)
            with LocalWorkers(worker_flags(s, worker_dir), local, s["directory"], s["project_name"]) as workers:
                tuner = _build_tuner(s)  # as the chief; bad flags or data fail before any worker starts
                workers.start()
                tuner.search(abandon=workers.all_exited)
        else:
            tuner = _build_tuner(s)
            tuner.search()
    except WorkersGoneError as err:
        return _error(f"{err} " + " ".join(workers.failures() if workers else []))
    except (TooManyFailedTrialsError, ChiefError) as err:
        return _error(str(err))
    except (ValueError, DatasetNotPreparedError, ImportError) as err:
        message = str(err)
        if message.startswith("Cannot resume"):
            message += (" On the command line: repeat the flags of the run that created the project (--preset, "
                        "--dataset, --num_blocks, --ops, --epochs, ...), add --overwrite to start over, or pick "
                        "another --project_name.")
        return _error(message)
    except KeyboardInterrupt:
        print(f"\nInterrupted. Re-run the same command to resume the search in {project_dir}.",
              file=sys.stderr, flush=True)
        return 130

    if is_distributed_worker():
        print(f"Worker {os.environ['KERASTUNER_TUNER_ID']} done; the chief writes the search outputs.", flush=True)
        return 0
    records = tuner.search_log.records
    projects = reports.directory_records(s["directory"])
    if len(projects) > 1:  # e.g. rl and random: one comparison plot
        reports.plot_rewards(projects, os.path.join(s["directory"], reports.REWARDS_PNG),
                             tuner.oracle.objective.direction)
    best = reports.best_record(records, tuner.oracle.objective.direction)
    completed = sum(r.status == "COMPLETED" for r in records)
    failed = sum(r.status == "FAILED" for r in records)
    print(f"\nDone: {completed} completed, {failed} failed trial(s). Outputs in {os.path.abspath(project_dir)}:")
    for name in (reports.TRIALS_CSV, reports.BEST_GENOTYPE_JSON, reports.REWARDS_PNG):
        path = os.path.join(project_dir, name)
        if os.path.exists(path):
            print(f"  {path}")
    if best is None:
        return _error("no child trial completed, so there is no best genotype.")
    print(f"Best: trial {best.trial_id}, reward {best.reward:.4f}, {best.params:,} params, "
          f"{best.mult_adds:,} mult-adds: {progress.short_genotype(best.genotype)}")
    best_json = os.path.join(project_dir, reports.BEST_GENOTYPE_JSON)
    print(f"Build it at full scale (N={FULL_SCALE['num_cells']}, F={FULL_SCALE['filters']}, as NASNet-A 6 @ 768):")
    print("  from nasnet_keras import NASNet, Genotype")
    print("  " + build_line(best_json, tuner.data.input_shape, tuner.data.num_classes), flush=True)
    print(f"or train it with the paper's recipe: python -m search.train --genotype={os.path.abspath(project_dir)}",
          flush=True)
    return 0


def main(argv: List[str]) -> int:
    """absl entry point: checks positional arguments, resolves the settings, runs the search."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments {argv[1:]}; every option is a --flag "
                             "(see --helpshort).")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # tensorflow-datasets logs lookups at INFO
    from nasnet_keras.tensorflow_only import NotTensorFlowBackendError, require_tensorflow_backend

    try:
        require_tensorflow_backend("search.run")
    except NotTensorFlowBackendError as err:
        return _error(str(err))
    return run_search(resolve_settings())


def cli(argv: Sequence[str]) -> int:
    """Parses ``argv`` (program name first) and runs `main` in this process; returns the exit code.

    Flag errors print ``error: ...`` and give 1, like the command line.
    """
    FLAGS.unparse_flags()
    try:
        rest = FLAGS(list(argv))
    except flags.Error as err:
        return _error(str(err))
    try:
        return int(main(rest) or 0)
    except app.UsageError as err:
        return _error(str(err))


def run_main() -> None:
    """Console-script entry point (``nasnet-search``): `absl.app.run(main)`."""
    app.run(main)


if __name__ == "__main__":
    run_main()
