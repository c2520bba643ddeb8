"""Throughput of nasnet_keras models against keras.applications.

Inference: images/s of `nasnet_keras.applications.NASNetMobile` (batch 1
and 32, 224x224) and `NASNetLarge` (batch 8, 331x331), weights=None, against
`keras.applications.NASNetMobile` / `NASNetLarge` built in the same process.
Both run through the same call path,
`tf.function(lambda x: model(x, training=False), jit_compile=...)`, without
and with XLA. Calls alternate between the two models (ours, ref, ref, ours,
...) after a warm-up, and the median call time is reported.
Goal: ratio ours / reference >= 1.0 on every row (never slower).

Training: steps/s of `NASNetCIFAR` (32x32, 10 classes; a reduced
`num_cells` by default, printed) with ScheduledDropPath on (keep 0.6 over
10,000 total steps) and off (keep 1.0), through `model.train_on_batch` after
`compile(SGD, jit_compile=...)`, interleaved likewise.
Goal: drop path adds <= 10% to the step time.

XLA on CPU: TensorFlow's XLA CPU backend runs depthwise convolutions (the
core of every separable conv) tens of times slower than the default oneDNN
kernels, for both models alike. NASNetLarge with XLA and training with XLA
are therefore left out on CPU-only machines unless --cpu_xla_all is given.

Usage:
    python benchmarks/inference.py                 # full run
    python benchmarks/inference.py --quick         # smoke run (a few minutes on 2 cores)
    python benchmarks/inference.py --skip_large --repeats 15
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import _common  # noqa: E402

INFERENCE_GOAL = 1.0     # ours / reference images per second, every row
DROP_PATH_GOAL = 0.10    # extra step time with drop path on


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None,
                        help="minimum timed calls per model and row (default 7, or 3 with --quick).")
    parser.add_argument("--seconds", type=float, default=None,
                        help="timing budget per model and row: more calls are timed while they fit, up to 200 "
                             "(default 20, or 3 with --quick).")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer timed calls.")
    parser.add_argument("--skip_large", action="store_true", help="leave out NASNetLarge.")
    parser.add_argument("--skip_inference", action="store_true", help="run only the training benchmark.")
    parser.add_argument("--skip_training", action="store_true", help="run only the inference benchmark.")
    parser.add_argument("--jit", choices=("both", "off", "on"), default="both",
                        help="XLA settings to time (default both).")
    parser.add_argument("--cpu_xla_all", action="store_true",
                        help="on a CPU-only machine, also time NASNetLarge and training with XLA (very slow).")
    parser.add_argument("--cifar_cells", type=int, default=2,
                        help="NASNetCIFAR num_cells N for the training benchmark (default 2; the paper's is 6).")
    parser.add_argument("--cifar_filters", type=int, default=768,
                        help="NASNetCIFAR penultimate_filters P (default 768, the paper's).")
    parser.add_argument("--train_batch", type=int, default=32, help="training batch size (default 32).")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (default 0 = TensorFlow's choice).")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 20.0
    if args.repeats < 1 or args.seconds <= 0:
        parser.error("--repeats must be >= 1 and --seconds > 0.")
    if args.threads < 0:
        parser.error("--threads must be >= 0.")
    if args.cifar_cells < 1 or args.cifar_filters < 24 or args.train_batch < 1:
        parser.error("--cifar_cells and --train_batch must be >= 1, --cifar_filters >= 24.")
    return args


def _jit_settings(args, heavy):
    """XLA settings to time; `heavy` rows skip XLA on CPU-only machines."""
    import tensorflow as tf

    settings = {"both": (False, True), "off": (False,), "on": (True,)}[args.jit]
    if heavy and not args.cpu_xla_all and not tf.config.list_physical_devices("GPU"):
        settings = tuple(s for s in settings if not s)
    return settings


def _compare(fns, args, log, label):
    """Warms up two blocking callables, then times them interleaved.

    Returns the seconds of every timed call, keyed like `fns`.
    """
    warm = {}
    for key, fn in fns.items():               # trace (and XLA-compile), then one timed call
        start = time.perf_counter()
        fn()
        compile_s = time.perf_counter() - start
        warm[key] = _common.time_call(fn)
        log(f"  {label} {key}: first call {compile_s:.1f} s, warm call {warm[key]:.3f} s")
    rounds = _common.rounds_for(max(warm.values()), args.repeats, args.seconds)
    samples = _common.interleaved_samples(fns, rounds)
    log(f"  {label}: {rounds} interleaved calls each, spread (IQR/median) "
        + ", ".join(f"{k} {_common.spread(v):.0%}" for k, v in samples.items()))
    return samples


def _graph_differences(ours, ref, x):
    """Op types whose counts differ between the two traced inference graphs."""
    import collections

    import tensorflow as tf

    counts = []
    for model in (ours, ref):
        graph = tf.function(lambda t, m=model: m(t, training=False)).get_concrete_function(x).graph
        counts.append(collections.Counter(op.type for op in graph.get_operations()))
    diff = [f"{op} {counts[0][op]} vs {counts[1][op]}" for op in sorted(set(counts[0]) | set(counts[1]))
            if counts[0][op] != counts[1][op]]
    return f"{sum(counts[0].values())} vs {sum(counts[1].values())} ops" + (f"; differ: {', '.join(diff)}"
                                                                             if diff else "; same op counts")


def _predict_fn(model, x, jit):
    """A blocking zero-argument callable: one inference forward pass."""
    import tensorflow as tf

    forward = tf.function(lambda t: model(t, training=False), jit_compile=jit)
    return lambda: forward(x).numpy()


def bench_inference(name, ours_factory, ref_factory, size, batch, args, log, notes):
    """Table rows for one model and batch size."""
    import tensorflow as tf

    ours, ref = ours_factory(), ref_factory()
    log(f"{name}: ours {ours.count_params():,} params, reference {ref.count_params():,} params")
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32"))
    if batch == 1 or name == "NASNetLarge":
        notes.append(f"{name} graph (ours vs reference, before Grappler): {_graph_differences(ours, ref, x[:1])}")
    rows = []
    for jit in _jit_settings(args, heavy=name == "NASNetLarge"):
        jit_name = "on" if jit else "off"
        t = _compare({"ours": _predict_fn(ours, x, jit), "ref": _predict_fn(ref, x, jit)}, args, log,
                     f"{name} b{batch} jit {jit_name}")
        ours_ips, ref_ips = batch / _common.median(t["ours"]), batch / _common.median(t["ref"])
        paired, low, high = _common.paired_ratio(t["ref"], t["ours"])
        rows.append([name, batch, jit_name, f"{ours_ips:.2f}", f"{ref_ips:.2f}", f"{ours_ips / ref_ips:.3f}",
                     f"{paired:.3f} [{low:.3f}, {high:.3f}]", _common.verdict(low, high, INFERENCE_GOAL)])
    del ours, ref
    gc.collect()
    return rows


def _train_model(args, keep, jit):
    import keras

    from nasnet_keras.applications import NASNetCIFAR

    model = NASNetCIFAR(num_cells=args.cifar_cells, penultimate_filters=args.cifar_filters,
                        drop_path_keep_prob=keep, total_training_steps=10_000, name=f"cifar_keep_{keep}")
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy",
                  jit_compile=jit)
    return model


def bench_training(args, log):
    """Table rows comparing train steps with drop path on and off."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.train_batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, (args.train_batch,)).astype("int32")
    config = f"NASNetCIFAR {args.cifar_cells} @ {args.cifar_filters}"
    rows = []
    for jit in _jit_settings(args, heavy=True):
        jit_name = "on" if jit else "off"
        models = {"on": _train_model(args, 0.6, jit), "off": _train_model(args, 1.0, jit)}
        fns = {key: (lambda m=m: m.train_on_batch(x, y)) for key, m in models.items()}
        t = _compare(fns, args, log, f"{config} train jit {jit_name} drop path")
        on, off = _common.median(t["on"]), _common.median(t["off"])
        paired, low, high = _common.paired_ratio(t["on"], t["off"])
        rows.append([config, args.train_batch, jit_name, f"{1 / on:.3f}", f"{1 / off:.3f}", f"{on / off - 1:+.1%}",
                     f"{paired - 1:+.1%} [{low - 1:+.1%}, {high - 1:+.1%}]",
                     "met" if _common.verdict(low - 1, high - 1, DROP_PATH_GOAL, higher_is_better=False) != "worse"
                     else "not met"])
        del models, fns
        gc.collect()
    return rows


def main(argv=None):
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    import keras
    import tensorflow as tf

    from nasnet_keras import applications as ours_apps

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    started = time.perf_counter()
    print("## Machine\n")
    for key, value in _common.machine_info().items():
        print(f"- {key}: {value}")
    print(f"- timing: warm-up call first, then at least {args.repeats} and up to 200 calls per model "
          f"(~{args.seconds:g} s budget), alternating between the two models; medians reported, "
          "paired ratio = median over rounds of the ratio of back-to-back calls, "
          "with a bootstrap 95% confidence interval\n")

    if not args.skip_inference:
        notes = []
        mobile = (lambda: ours_apps.NASNetMobile(weights=None), lambda: keras.applications.NASNetMobile(weights=None))
        rows = bench_inference("NASNetMobile", *mobile, 224, 1, args, log, notes)
        rows += bench_inference("NASNetMobile", *mobile, 224, 32, args, log, notes)
        if not args.skip_large:
            rows += bench_inference("NASNetLarge", lambda: ours_apps.NASNetLarge(weights=None),
                                    lambda: keras.applications.NASNetLarge(weights=None), 331, 8, args, log, notes)
        print("## Inference (images/s, higher is better)\n")
        print("nasnet_keras.applications vs keras.applications, weights=None, "
              "tf.function(model(x, training=False), jit_compile=jit).\n")
        print(f"Goal: ratio ours / reference >= {INFERENCE_GOAL:.1f} on every row.\n")
        print(_common.markdown_table(["model", "batch", "jit", "ours img/s", "reference img/s", "ratio",
                                      "paired ratio [95% CI]", "ours vs reference"], rows))
        slower = [r for r in rows if r[-1] == "worse"]
        print(f"\nGoal (never slower): met on {len(rows) - len(slower)} of {len(rows)} rows "
              f"(slower with 95% confidence on {len(slower)}; lowest ratio {min(float(r[5]) for r in rows):.3f}).\n")
        for note in notes:
            print(f"- {note}")
        print()

    if not args.skip_training:
        rows = bench_training(args, log)
        print("## Training step, ScheduledDropPath on vs off (steps/s, higher is better)\n")
        print(f"Config: NASNetCIFAR(num_cells={args.cifar_cells}, penultimate_filters={args.cifar_filters}), "
              f"input 32x32x3, 10 classes, batch {args.train_batch}, SGD(0.01, momentum=0.9), "
              "sparse categorical cross-entropy, model.train_on_batch; drop path on: drop_path_keep_prob=0.6, "
              "total_training_steps=10000; off: drop_path_keep_prob=1.0.\n")
        print(f"Goal: cost = step time on / step time off - 1 <= {DROP_PATH_GOAL:.0%}.\n")
        print(_common.markdown_table(["model", "batch", "jit", "drop path on steps/s", "off steps/s", "cost",
                                      "paired cost [95% CI]", "goal"], rows))
        print(f"\nGoal met on {sum(r[-1] == 'met' for r in rows)} of {len(rows)} rows "
              "(met = the 95% interval reaches down to 10% or below).\n")
    if _jit_settings(args, heavy=True) != _jit_settings(args, heavy=False):
        print("XLA rows for NASNetLarge and training were skipped: CPU-only machine "
              "(XLA:CPU depthwise convolutions are tens of times slower; pass --cpu_xla_all to time them).\n")
    print(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
