"""Training throughput: our NASNetMobile vs keras.applications.NASNetMobile, and the full cifar recipe.

    python benchmarks/train.py              # ~13 min on 2 CPU cores
    python benchmarks/train.py --quick      # smoke run

1. Images/s of one training step (`train_on_batch`, graph mode, the same
   RMSProp optimizer and loss, random 224x224 images, `weights=None`) of
   `keras.applications.NASNetMobile` and ours -- plain, with the auxiliary
   head (loss weight 0.4), and with aux head + ScheduledDropPath (keep 0.7)
   -- interleaved (a, b, b, a, ...), medians and the paired ratio against
   keras.applications (goal >= 1.0 for the plain model).
2. Images/s of `NASNetCIFAR` 6 @ 768 trained exactly as ``python -m
   search.train --preset=cifar`` compiles it (`TransferTrainer`: aux head,
   drop path 0.6, L2, clipping, cosine SGD), batch 32.
Prints Markdown tables and the machine.
"""

import argparse
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))

import numpy as np  # noqa: E402

from benchmarks._common import interleaved_samples, machine_info, markdown_table, median, paired_ratio  # noqa: E402


def _compiled(model):
    import keras

    model.compile(optimizer=keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1.0),
                  loss=keras.losses.CategoricalCrossentropy())
    return model


def mobile_models(batch):
    import keras

    from nasnet_keras.applications import NASNetMobile

    x = np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch) % 1000, 1000)
    models = {
        "keras.applications": (_compiled(keras.applications.NASNetMobile(weights=None)), y),
        "ours": (_compiled(NASNetMobile(weights=None)), y),
    }
    from nasnet_keras import NASNET_A, NASNet

    for name, keep in (("ours + aux head", 1.0), ("ours + aux head + drop path 0.7", 0.7)):
        model = NASNet(NASNET_A, 4, 1056, stem_filters=32, input_shape=(224, 224, 3), aux_head=True,
                       drop_path_keep_prob=keep, total_training_steps=250_000 if keep < 1 else None)
        model.compile(optimizer=keras.optimizers.RMSprop(0.01, rho=0.9, momentum=0.9, epsilon=1.0),
                      loss={"predictions": "categorical_crossentropy", "aux_predictions": "categorical_crossentropy"},
                      loss_weights={"predictions": 1.0, "aux_predictions": 0.4})
        models[name] = (model, {"predictions": y, "aux_predictions": y})
    return x, models


def mobile_table(batch, steps, rounds):
    x, models = mobile_models(batch)
    for model, y in models.values():          # trace and warm up
        for _ in range(2):
            model.train_on_batch(x, y)

    def steps_of(model, y):
        return lambda: [model.train_on_batch(x, y) for _ in range(steps)]

    samples = interleaved_samples({name: steps_of(*pair) for name, pair in models.items()}, rounds)
    reference = samples["keras.applications"]
    rows = []
    for name, times in samples.items():
        rate = batch * steps / median(times)
        if name == "keras.applications":
            rows.append([name, f"{rate:.2f}", "1.000", "-"])
            continue
        ratio, low, high = paired_ratio(reference, times)
        rows.append([name, f"{rate:.2f}", f"{median(reference) / median(times):.3f}",
                     f"{ratio:.3f} [{low:.3f}, {high:.3f}]"])
    return markdown_table(["model (NASNet-A Mobile, 224x224)", "train img/s", "ratio vs keras.applications",
                           "paired ratio [95% CI]"], rows)


def cifar_row(batch, steps, rounds):
    import tensorflow as tf

    from nasnet_keras import NASNET_A
    from nasnet_keras.training import TransferTrainer, resolve_recipe
    from nasnet_keras.training.run_directory import RunDirectory

    recipe = resolve_recipe("cifar", {"batch_size": batch})
    data = types.SimpleNamespace(input_shape=(32, 32, 3), num_classes=10, batch_size=batch,
                                 steps_per_epoch=50_000 // batch)
    trainer = TransferTrainer(NASNET_A, recipe, data, RunDirectory(os.path.join(_HERE, ".unused")))
    model = trainer.build_training_model()
    trainer.compile(model)
    x = tf.random.uniform((batch, 32, 32, 3), -1, 1)
    y = tf.one_hot(tf.range(batch) % 10, 10)
    targets = {name: y for name in model.output_names}
    for _ in range(2):
        model.train_on_batch(x, targets)
    times = interleaved_samples({"cifar": lambda: [model.train_on_batch(x, targets) for _ in range(steps)]},
                                rounds)["cifar"]
    rate = batch * steps / median(times)
    epoch_min = 50_000 / rate / 60
    return markdown_table(["model", "batch", "train img/s", "one CIFAR-10 epoch (50,000 images)"],
                          [[f"NASNet-A 6 @ 768, cifar recipe ({model.count_params():,} params)", batch,
                            f"{rate:.2f}", f"{epoch_min:.1f} min"]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps: a smoke run")
    args = parser.parse_args(argv)
    steps, rounds = (1, 2) if args.quick else (2, 7)
    info = machine_info()
    print("## Training benchmark\n")
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()) + "\n")
    print(f"### NASNet-A Mobile training step, batch 8, {steps} steps per sample, {rounds} interleaved rounds\n")
    print(mobile_table(8, steps, rounds) + "\n", flush=True)
    print(f"### Full cifar recipe, {steps} steps per sample, {rounds} rounds\n")
    print(cifar_row(32, steps, rounds), flush=True)


if __name__ == "__main__":
    main()
