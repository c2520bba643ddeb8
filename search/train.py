"""Trains a searched or published cell at full scale with the paper's recipe (transfer, paper Sec. 4.2-4.3).

    python -m search.train --genotype=nasnet_search/rl --epochs=3     # offline default data: digits
    python -m search.train --genotype=runs/rl/best_genotype.json --dataset=cifar10 --preset=cifar
    python -m search.train --genotype=nasnet_a --dataset=imagenet2012 --preset=mobile --directory=train_mobile
    python -m search.train --genotype=nasnet_a --preset=mobile --eval_only --weights=imagenet --dataset=imagenet2012
    nasnet-train ...                                                  # console script, same flags

``--genotype``: a published name (nasnet_a, pnasnet_5), a genotype JSON file,
or a search project directory (its best_genotype.json). ``--preset``
(`nasnet_keras.training.recipes`) carries the paper's recipe; every value
has a flag that overrides it; ``auto`` picks ``cifar`` for images up to
64 px and ``mobile`` for larger ones. The resolved configuration is printed
and saved as ``config.json`` in ``--directory`` with the run's outputs.

Distribution: ``--distribution=auto`` uses MultiWorkerMirroredStrategy when
``TF_CONFIG`` names a cluster (run the same command on every machine, each
with its own task), MirroredStrategy over several local GPUs, else one
device. ``--batch_size`` is per replica; the learning rate follows the
preset's scaling rule.

Never lose a run: a checkpoint every epoch (and every
``--checkpoint_every_steps``); the same command after a crash or SIGKILL
resumes with the same step, learning rate and drop-path schedule. A
directory holding a run with another configuration is refused, untouched.

TensorFlow backend only. Exit codes: 0 done, 1 bad flags or data, a refused
directory or a diverged run; 130 interrupted.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict, Sequence

from absl import flags

FLAGS = flags.FlagValues()   # own flag set: search.run's flags (same names) may live in the same process
_d = dict(flag_values=FLAGS)

flags.DEFINE_string("genotype", "nasnet_a", "Published name (nasnet_a, pnasnet_5), genotype JSON file, or search "
                    "project directory (its best_genotype.json).", **_d)
flags.DEFINE_string("dataset", "digits", "'digits' (offline, built in), a tensorflow-datasets name, or a directory "
                    "of class folders (optionally train/ + val/).", **_d)
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.", **_d)
flags.DEFINE_bool("download", False, "Let tensorflow-datasets download and prepare the dataset.", **_d)
flags.DEFINE_integer("max_train_examples", None, "Train on at most this many examples (quick runs).", **_d)
flags.DEFINE_enum("preset", "auto", ["auto", "cifar", "mobile", "large"], "Training recipe (paper App. A).", **_d)
flags.DEFINE_string("directory", "nasnet_train", "Run directory: config, checkpoints, logs, model, metrics.", **_d)
flags.DEFINE_integer("seed", 0, "Seed of weights, data order and augmentation.", **_d)
# Recipe overrides (None: the preset's value).
flags.DEFINE_integer("epochs", None, "Training epochs.", **_d)
flags.DEFINE_integer("batch_size", None, "Images per replica per step.", **_d)
flags.DEFINE_float("learning_rate", None, "Learning rate at the preset's base batch (scaled by its rule).", **_d)
flags.DEFINE_integer("num_cells", None, "N: normal cells per stack.", **_d)
flags.DEFINE_integer("filters", None, "F: filters of the first stack (P = 24F for NASNet-A).", **_d)
flags.DEFINE_integer("penultimate_filters", None, "P: filters of the last cell (sets F; use instead of --filters).",
                     **_d)
flags.DEFINE_integer("image_size", None, "Training crop / input size.", **_d)
flags.DEFINE_enum("optimizer", None, ["sgd", "rmsprop"], "Optimizer.", **_d)
flags.DEFINE_enum("schedule", None, ["cosine", "exponential", "constant"], "Learning-rate schedule.", **_d)
flags.DEFINE_float("momentum", None, "Momentum.", **_d)
flags.DEFINE_float("rmsprop_decay", None, "RMSProp's squared-gradient decay (Keras rho).", **_d)
flags.DEFINE_float("epsilon", None, "RMSProp epsilon.", **_d)
flags.DEFINE_float("decay_rate", None, "Exponential schedule: factor per decay period.", **_d)
flags.DEFINE_float("decay_epochs", None, "Exponential schedule: epochs per decay period (staircase).", **_d)
flags.DEFINE_float("weight_decay", None, "L2 weight decay (slim convention: loss + wd/2 * sum w^2).", **_d)
flags.DEFINE_float("label_smoothing", None, "Label smoothing.", **_d)
flags.DEFINE_float("clip_norm", None, "Global-norm gradient clipping (0: off).", **_d)
flags.DEFINE_float("ema_decay", None, "Moving average of the weights for evaluation (0: off).", **_d)
flags.DEFINE_float("drop_path_keep_prob", None, "ScheduledDropPath final keep probability (1: off).", **_d)
flags.DEFINE_bool("aux_head", None, "Train with the auxiliary head.", **_d)
flags.DEFINE_float("aux_weight", None, "Loss weight of the auxiliary head.", **_d)
flags.DEFINE_float("dropout", None, "Dropout before the classifier.", **_d)
flags.DEFINE_integer("cutout", None, "Cutout square size for the cifar preset (0: off; the usual value is 16).", **_d)
# Running.
flags.DEFINE_enum("distribution", "auto", ["auto", "mirrored", "multi_worker", "default", "one_device"],
                  "tf.distribute strategy.", **_d)
flags.DEFINE_enum("mixed_precision", None, ["mixed_float16", "mixed_bfloat16"], "Keras mixed-precision policy.",
                  **_d)
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.", **_d)
flags.DEFINE_integer("checkpoint_every_steps", None, "Also checkpoint every this many steps.", **_d)
flags.DEFINE_bool("eval_only", False, "Only evaluate --weights on the validation split.", **_d)
flags.DEFINE_string("weights", None, "'imagenet' or a weights file, for --eval_only.", **_d)

RECIPE_FLAGS = ("epochs", "batch_size", "learning_rate", "num_cells", "filters", "image_size", "optimizer",
                "schedule", "momentum", "rmsprop_decay", "epsilon", "decay_rate", "decay_epochs", "weight_decay",
                "label_smoothing", "clip_norm", "ema_decay", "drop_path_keep_prob", "aux_head", "aux_weight",
                "dropout", "cutout")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def _overrides(genotype) -> Dict[str, Any]:
    """Recipe values given on the command line (``--clip_norm=0`` / ``--ema_decay=0`` turn those off)."""
    values = {name: FLAGS[name].value for name in RECIPE_FLAGS if FLAGS[name].value is not None}
    if FLAGS.penultimate_filters is not None:
        from nasnet_keras.builder import output_units

        if FLAGS.filters is not None:
            raise ValueError("Pass --filters or --penultimate_filters, not both.")
        units = output_units(genotype.normal) * 4
        if FLAGS.penultimate_filters % units:
            raise ValueError(f"--penultimate_filters={FLAGS.penultimate_filters} must be a multiple of {units} for "
                             "this genotype (its normal-cell output width x 4), or pass --filters.")
        values["filters"] = FLAGS.penultimate_filters // units
    return values


def _configuration(genotype, source, recipe, data, strategy, role) -> Dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "genotype": genotype.to_dict(), "genotype_source": source,
        "model": {"num_cells": recipe.num_cells, "filters": recipe.filters, "stem": recipe.stem,
                  "input_shape": list(data.input_shape), "classes": data.num_classes},
        "recipe": recipe.to_dict(),
        "data": {"dataset": data.name, "num_train": data.num_train, "num_val": data.num_val,
                 "validation": data.validation_source, "global_batch": data.batch_size,
                 "steps_per_epoch": data.steps_per_epoch, "seed": FLAGS.seed,
                 "max_train_examples": FLAGS.max_train_examples},
        "environment": {"replicas": strategy.num_replicas_in_sync if strategy else 1,
                        "strategy": type(strategy).__name__ if strategy else "default",
                        "workers": role.num_workers if role else 1, "mixed_precision": FLAGS.mixed_precision,
                        "jit_compile": FLAGS.jit_compile, "tensorflow": tf.__version__, "keras": keras.__version__,
                        "python": platform.python_version()},
    }


def _print_config(config: Dict[str, Any]) -> None:
    r, d = config["recipe"], config["data"]
    print(f"Genotype: {config['genotype_source']}", flush=True)
    print(f"Data: {d['dataset']} ({d['num_train']} train, {d['num_val']} validation: {d['validation']}), "
          f"global batch {d['global_batch']}, {d['steps_per_epoch']} steps per epoch", flush=True)
    print("Recipe: " + ", ".join(f"{k}={v}" for k, v in sorted(r.items())), flush=True)
    e = config["environment"]
    print(f"Running on: {e['strategy']} ({e['replicas']} replica(s), {e['workers']} worker(s))", flush=True)


def run(argv: Sequence[str]) -> int:
    """Runs the command with ``argv`` already parsed into `FLAGS`; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from nasnet_keras.search.data import DatasetNotPreparedError
    from nasnet_keras.tensorflow_only import NotTensorFlowBackendError, require_tensorflow_backend
    from nasnet_keras.training import distribution, recipes
    from nasnet_keras.training.data import load_training_data, probe_native_size
    from nasnet_keras.training.genotype_source import load_genotype
    from nasnet_keras.training.run_directory import RunDirectory

    try:
        if len(argv) > 1:
            raise ValueError(f"Unexpected positional arguments {list(argv[1:])}; every option is a --flag.")
        require_tensorflow_backend("search.train")
        import keras

        strategy, role = distribution.make_strategy(FLAGS.distribution)   # first: before any TensorFlow op
        replicas = strategy.num_replicas_in_sync if strategy else 1
        genotype, source = load_genotype(FLAGS.genotype)
        overrides = _overrides(genotype)
        native = probe_native_size(FLAGS.dataset, data_dir=FLAGS.data_dir, download=FLAGS.download)
        preset = recipes.preset_for_images(native) if FLAGS.preset == "auto" else FLAGS.preset
        recipes.check_preset_fits(preset, native, FLAGS.image_size)
        recipe = recipes.resolve_recipe(preset, overrides)
        if FLAGS.eval_only:
            return _evaluate_only(genotype, source, recipe, replicas, strategy, role, load_training_data)
        if FLAGS.weights is not None:
            raise ValueError("--weights is for --eval_only; a training run starts from random weights.")
        if FLAGS.mixed_precision:
            keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
        data = load_training_data(
            FLAGS.dataset, preprocessing=recipe.preprocessing, image_size=recipe.image_size,
            batch_size=recipe.batch_size * replicas, seed=FLAGS.seed, cutout=recipe.cutout, data_dir=FLAGS.data_dir,
            download=FLAGS.download, max_train_examples=FLAGS.max_train_examples, drop_remainder=role is not None)
        config = _configuration(genotype, source, recipe, data, strategy, role)
        run_dir = RunDirectory(FLAGS.directory, worker=None if role is None or role.is_chief else role.name)
        if run_dir.is_chief and run_dir.finished() and run_dir.read_config() is not None:
            run_dir.claim(config)                   # refuses another configuration
            print(f"This run is already complete; its outputs are in {run_dir.root} (metrics.json). Use another "
                  "--directory to train again.", flush=True)
            return 0
        resumed = run_dir.claim(config)
        _print_config(config)
        print(f"{'Resuming' if resumed else 'Starting'} the run in {run_dir.root}", flush=True)
        from nasnet_keras.training.trainer import TransferTrainer

        trainer = TransferTrainer(genotype, recipe, data, run_dir, strategy=strategy, jit_compile=FLAGS.jit_compile,
                                  checkpoint_every_steps=FLAGS.checkpoint_every_steps, seed=FLAGS.seed)
        metrics = trainer.train()
    except (ValueError, DatasetNotPreparedError, ImportError, FloatingPointError, NotTensorFlowBackendError) as err:
        return _error(str(err))
    except KeyboardInterrupt:
        print(f"\nInterrupted. Re-run the same command to resume from the last checkpoint in {FLAGS.directory}.",
              file=sys.stderr, flush=True)
        return 130
    if not run_dir.is_chief:
        print(f"Worker {role.name} done; the chief writes the outputs.", flush=True)
        return 0
    _print_done(run_dir, metrics)
    return 0


def _print_done(run_dir, metrics: Dict[str, Any]) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    print(f"\nDone: validation top-1 {pct(metrics['val_top1'])}, top-5 {pct(metrics.get('val_top5'))}, "
          f"{metrics['params']:,} params, {metrics['mult_adds']:,} mult-adds. Outputs in {run_dir.root}:", flush=True)
    for name in ("config.json", "history.csv", "logs", "model.keras", "model.weights.h5", "metrics.json"):
        print(f"  {run_dir.path(name)}", flush=True)


def _evaluate_only(genotype, source, recipe, replicas, strategy, role, load_training_data) -> int:
    from nasnet_keras.training.evaluation import evaluate_weights

    if not FLAGS.weights:
        raise ValueError("--eval_only needs --weights: 'imagenet' (published NASNet-A Mobile / Large) or the path "
                         "of a weights file, e.g. <train directory>/model.weights.h5.")
    data = load_training_data(FLAGS.dataset, preprocessing=recipe.preprocessing, image_size=recipe.image_size,
                              batch_size=recipe.batch_size * replicas, seed=FLAGS.seed, data_dir=FLAGS.data_dir,
                              download=FLAGS.download, max_train_examples=FLAGS.max_train_examples)
    metrics, path = evaluate_weights(genotype, recipe, data, FLAGS.weights, FLAGS.directory, strategy=strategy,
                                     write=role is None or role.is_chief)
    top5 = metrics.get("val_top5")
    print(f"Evaluated {FLAGS.weights} ({source}) on {data.num_val} validation images of {data.name}: "
          f"top-1 {100 * metrics['val_top1']:.2f}%" + (f", top-5 {100 * top5:.2f}%" if top5 is not None else "")
          + (f". Written to {path}" if path else ""), flush=True)
    return 0


def cli(argv: Sequence[str]) -> int:
    """Parses ``argv`` (program name first) and runs; returns the exit code (flag errors: ``error:`` and 1)."""
    if any(a in ("--help", "-h", "--helpshort", "--helpfull", "-?") for a in argv[1:]):
        print(__doc__)
        print(FLAGS.get_help())
        return 0
    FLAGS.unparse_flags()
    try:
        rest = FLAGS(list(argv))
    except flags.Error as err:
        return _error(str(err))
    return run(rest)


def run_main() -> None:
    """Console-script entry point (``nasnet-train``)."""
    sys.exit(cli(sys.argv))


if __name__ == "__main__":
    run_main()
