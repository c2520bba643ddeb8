"""Deployment speed and int8 accuracy cost of NASNetMobile, ours next to keras.applications'.

Latency at batch 1 and throughput at batch 8 (224x224, weights=None: speed does not depend on the values) of
NASNetMobile in TF graph mode (`tf.function(model(x, training=False))`), as TFLite float32 (XNNPACK) and as
TFLite int8 (post-training full-integer, calibrated on random inputs), for `nasnet_keras.applications.
NASNetMobile` and `keras.applications.NASNetMobile`, both exported by `nasnet_keras.export`. TFLite runs on
LiteRT's interpreter (`ai-edge-litert`) with as many threads as cores. Calls of the models of one row alternate
(ours, ref, ref, ours, ...); medians of the repeats.

Accuracy: a small NASNet-A (N = 1, F = 8) fine-tuned on the built-in digits data; top-1 on its held-out set as
Keras float, TFLite float and TFLite int8 (calibrated on 100 training images).

    python benchmarks/export.py                # ~15 min on 2 cores
    python benchmarks/export.py --repeats 5 --skip_accuracy
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks._common import interleaved_samples, machine_info, markdown_table, median  # noqa: E402


def _speed(args, workdir):
    import keras
    import tensorflow as tf

    from nasnet_keras.applications import NASNetMobile
    from nasnet_keras.export import export_tflite, tflite_interpreter, tflite_predict

    models = {"ours": NASNetMobile(weights=None), "keras.applications": keras.applications.NASNetMobile(weights=None)}
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, (args.calibration, 224, 224, 3)).astype(np.float32)
    rows = []
    runners = {}
    for name, model in models.items():
        fn = tf.function(lambda x, m=model: m(x, training=False))
        runners[(name, "TF graph")] = lambda x, fn=fn: fn(tf.constant(x)).numpy()
        for kind, quantize in (("TFLite float32", None), ("TFLite int8", "int8")):
            path = os.path.join(workdir, f"{name}_{kind.split()[-1]}.tflite")
            start = time.perf_counter()
            export_tflite(model, path, quantize=quantize, representative_data=calibration if quantize else None)
            print(f"exported {name} {kind} in {time.perf_counter() - start:.0f} s "
                  f"({os.path.getsize(path) / 2**20:.1f} MiB)", flush=True)
            interpreters = {b: tflite_interpreter(path, num_threads=os.cpu_count()) for b in (1, 8)}
            runners[(name, kind)] = lambda x, it=interpreters, p=path: tflite_predict(it[len(x)], x, batch_size=len(x))
            rows.append((name, kind, os.path.getsize(path)))
    sizes = {(n, k): s for n, k, s in rows}
    table = []
    for kind in ("TF graph", "TFLite float32", "TFLite int8"):
        result = {}
        for batch in (1, 8):
            x = rng.uniform(-1, 1, (batch, 224, 224, 3)).astype(np.float32)
            fns = {name: (lambda r=runners[(name, kind)], x=x: r(x)) for name in models}
            for fn in fns.values():
                fn()                                                      # warm-up
            samples = interleaved_samples(fns, args.repeats)
            result[batch] = {name: median(s) for name, s in samples.items()}
        for name in models:
            size = sizes.get((name, kind))
            table.append([name, kind, f"{result[1][name] * 1000:.1f}", f"{8 / result[8][name]:.1f}",
                          "-" if size is None else f"{size / 2**20:.1f}"])
        print(markdown_table(["model", "runtime", "latency batch 1 (ms)", "images/s batch 8", "file MiB"],
                             table[-2:]), flush=True)
    return table


def _accuracy(workdir):
    import keras

    from nasnet_keras import NASNET_A, NASNet
    from nasnet_keras.export import export_tflite, inference_graph, tflite_predict
    from nasnet_keras.search.data import load_dataset

    keras.utils.set_random_seed(0)
    data = load_dataset("digits", batch_size=32, seed=0, augment=False)
    model = NASNet(NASNET_A, num_cells=1, filters=8, stem="cifar", input_shape=(32, 32, 3), classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    model.fit(data.train, epochs=5, verbose=0)
    x = np.concatenate([b for b, _ in data.validation])
    y = np.concatenate([b for _, b in data.validation])
    calibration = np.concatenate([b for b, _ in data.train])[:100]
    flat = export_tflite(model, os.path.join(workdir, "digits_float.tflite"))
    quant = export_tflite(model, os.path.join(workdir, "digits_int8.tflite"), quantize="int8",
                          representative_data=calibration)
    keras_top1 = inference_graph(model).predict(x, verbose=0).argmax(1)
    int8_top1 = tflite_predict(quant, x).argmax(1)
    return [["Keras float32", f"{(keras_top1 == y).mean():.3f}", "-"],
            ["TFLite float32", f"{(tflite_predict(flat, x).argmax(1) == y).mean():.3f}", "-"],
            ["TFLite int8", f"{(int8_top1 == y).mean():.3f}", f"{(int8_top1 == keras_top1).mean():.3f}"]], len(y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calibration", type=int, default=16, help="Random calibration inputs for the speed rows.")
    parser.add_argument("--skip_accuracy", action="store_true")
    args = parser.parse_args()
    info = machine_info()
    print(f"{time.strftime('%Y-%m-%d')}, {info['cpu']}, {info['cores']} cores, TF {info['tensorflow']}, "
          f"Keras {info['keras']}, load {info['load average (1 min) at start']}", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        table = _speed(args, workdir)
        print("\n" + markdown_table(["model", "runtime", "latency batch 1 (ms)", "images/s batch 8", "file MiB"],
                                    table))
        if not args.skip_accuracy:
            rows, n = _accuracy(workdir)
            print(f"\nint8 accuracy cost (NASNet-A N=1 F=8 fine-tuned on digits, {n} held-out images):\n")
            print(markdown_table(["model", "top-1", "top-1 agreement with Keras"], rows))


if __name__ == "__main__":
    main()
