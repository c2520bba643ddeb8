"""Fine-tune NASNetMobile on a small real image dataset, offline, with plain `model.fit`.

The data is the UCI handwritten digits (1,797 real 8x8 scans that ship with
nasnet-keras), upscaled to `--image_size` RGB images in [-1, 1], the
range `nasnet_keras.applications.preprocess_input` produces. The last 297
images are held out for evaluation.

    python examples/fine_tune.py                        # random init, 3 epochs
    python examples/fine_tune.py --weights imagenet     # published weights (downloads once)
    python examples/fine_tune.py --weights NASNet-mobile-no-top.h5
    python examples/fine_tune.py --freeze_backbone --no_augment --max_train_examples 1024 \
        --epochs 4 --learning_rate 5e-3                 # a linear probe in about a minute on 2 CPU cores

Training the whole backbone spends minutes of CPU time on the first step alone,
building the training graph of NASNetMobile (gradients and optimizer updates of
its ~740 weights); `--freeze_backbone` leaves only the classifier to train.

With `--drop_path_keep_prob 0.7` the backbone trains with ScheduledDropPath,
which keras.applications' NASNet cannot do.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from nasnet_keras.applications import NASNetMobile  # noqa: E402
from nasnet_keras.search.data import load_dataset  # noqa: E402
from nasnet_keras.training.optimization import build_fit_state  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None,
                        help="None (random init), 'imagenet', or a weights file (published .h5 layout or saved "
                             "by this package)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--max_train_examples", type=int, default=None)
    parser.add_argument("--drop_path_keep_prob", type=float, default=1.0)
    parser.add_argument("--freeze_backbone", action="store_true",
                        help="train only the new classifier (linear probe)")
    parser.add_argument("--no_augment", action="store_true",
                        help="train on the images as they are, without the random pad-and-crop augmentation")
    args = parser.parse_args(argv)
    weights = None if args.weights in (None, "None", "none") else args.weights

    keras.utils.set_random_seed(0)
    data = load_dataset("digits", image_size=args.image_size, batch_size=args.batch_size,
                        max_train_examples=args.max_train_examples, augment=not args.no_augment)
    steps = args.epochs * data.steps_per_epoch
    base = NASNetMobile(include_top=False, weights=weights, pooling="avg", input_shape=data.input_shape,
                        drop_path_keep_prob=args.drop_path_keep_prob, total_training_steps=steps,
                        # From random weights the published BN momentum (0.9997) would leave the moving
                        # statistics at their initial values after a few hundred steps.
                        bn_momentum=None if weights else 0.9)
    base.trainable = not args.freeze_backbone
    outputs = keras.layers.Dense(data.num_classes, activation="softmax", name="digits")(base.output)
    model = keras.Model(base.input, outputs)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    # Optional: create the optimizer and metric variables now, or Keras' first training step traces twice.
    build_fit_state(model, data.train.element_spec)
    print(f"Fine-tuning NASNetMobile (weights={weights}) on {data.num_train} digits at "
          f"{args.image_size}x{args.image_size} for {args.epochs} epochs")
    # shuffle=False: data.train reshuffles itself every epoch (fit's own shuffle only warns on a tf.data input).
    model.fit(data.train, validation_data=data.validation, epochs=args.epochs, verbose=2, shuffle=False)
    loss, accuracy = model.evaluate(data.validation, verbose=0)
    print(f"held-out accuracy: {accuracy:.4f} ({data.num_val} images)")
    return accuracy


if __name__ == "__main__":
    main()
