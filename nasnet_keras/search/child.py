"""The child-network training recipe of the cell search (paper Sec. 4, Appendix A; TF-slim CIFAR setup).

`ChildTrainer` builds each trial's child with the package's one builder
`nasnet_keras.NASNet` (CIFAR stem, N cells per stack), trains it and scores
it on the held-out reward set:

* optimizer: SGD with momentum 0.9 and a single-period cosine learning-rate
  decay over all training steps (`keras.optimizers.schedules.CosineDecay`);
* L2 weight decay: every convolution / depthwise / pointwise / dense kernel
  gets a `keras.regularizers.L2(weight_decay / 2)` penalty, i.e. the loss
  gains ``weight_decay / 2 * sum(w ** 2)`` and the gradient ``weight_decay *
  w`` -- TF-slim's ``l2_regularizer(weight_decay)`` convention (its CIFAR
  setup uses 5e-4). BatchNorm parameters and biases are not decayed;
* augmentation: pad / random crop (/ flip), done by `search.data.load_dataset`;
* reward (the objective): accuracy on the reward set after the last epoch,
  reported as ``val_accuracy``.

A child of at most `EAGER_MAX_STEPS` training steps (a smoke test's) trains
eagerly, where tracing the training step would cost more than it saves.

Every child also records ``params`` and ``mult_adds`` (`nasnet_keras.model_cost`,
batch 1) and ``seconds``. A child whose loss becomes NaN / inf raises
`ChildTrainingFailed` (Keras Tuner marks the trial FAILED, no retry).

Progress. ``train(..., on_progress=f)`` calls ``f(phase, step)`` as the child
makes progress (``"built"``, then ``"train"`` per batch, ``"evaluate"`` per
reward batch; at most one call per `PROGRESS_INTERVAL_S` within a phase):
the child-process pool turns these into its no-progress timeout and the
worker's heartbeats to the chief, so "alive" means "making progress".
"""

from __future__ import annotations

import gc
import math
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.engine.tuner import maybe_distribute

from nasnet_keras import genotypes as gt
from nasnet_keras.builder import NASNet
from nasnet_keras.cost import model_cost
from nasnet_keras.search.data import SearchData
from nasnet_keras.training.optimization import add_weight_decay, build_fit_state

__all__ = ["ChildTrainer", "ChildTrainingFailed", "DISTRIBUTIONS", "ProgressCallback",
           "resolve_distribution_strategy"]

#: Names accepted by `resolve_distribution_strategy` (and the CLI's --distribution).
DISTRIBUTIONS = ("auto", "mirrored", "default", "one_device")
#: Least seconds between two progress calls of one phase.
PROGRESS_INTERVAL_S = 0.5
#: Images per batch when a child is scored on the reward set (`ChildTrainer.score`).
SCORE_BATCH = 256
#: Children that train at most this many steps (epochs x steps per epoch), without a distribution strategy,
#: train eagerly: tracing the training step costs more than it saves. Measured on the smallest child (one
#: block per cell, N = 1, F = 4, batch 32): tracing and the first step 4.0 s, then 0.11 s per step; eagerly
#: 0.6 s per step, so tracing pays from ~7 steps. The quick preset's children train 47 steps: traced.
EAGER_MAX_STEPS = 8


class ChildTrainingFailed(keras_tuner.errors.FailedTrialError):
    """A child could not be trained (its loss became NaN / inf): Keras Tuner marks the trial FAILED.

    Attributes:
        record: what was measured before the failure (``params``, ``mult_adds``).
    """

    def __init__(self, message: str, record: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.record = dict(record or {})


def strategy_kind(spec: str, num_gpus: int) -> str:
    """What `resolve_distribution_strategy` makes of a name with ``num_gpus`` visible GPUs.

    Returns:
        ``"mirrored"``, ``"one_device"`` or ``"default"``.
    """
    _check_distribution_name(spec)
    if spec == "auto":
        return "mirrored" if num_gpus > 1 else "default"
    return spec


def resolve_distribution_strategy(spec: Union[str, tf.distribute.Strategy, None] = "auto"):
    """Turns a strategy name into the strategy each child trains under.

    Args:
        spec: ``"auto"`` (default; `tf.distribute.MirroredStrategy` over all
            GPUs when more than one GPU is visible, else the default
            strategy), ``"mirrored"`` (MirroredStrategy over every visible
            GPU, or the CPU when there is none), ``"default"`` (no strategy:
            TensorFlow's default placement), ``"one_device"``
            (`OneDeviceStrategy` on the first GPU, else the CPU), ``None``
            (same as ``"default"``) or a `tf.distribute.Strategy` instance.

    Returns:
        A `tf.distribute.Strategy`, or ``None`` for the default strategy (what
        `keras_tuner.Tuner` expects for "no strategy").

    Raises:
        ValueError: an unknown name.
    """
    if spec is None or isinstance(spec, tf.distribute.Strategy):
        return spec
    gpus = tf.config.list_logical_devices("GPU")
    kind = strategy_kind(spec, len(gpus))
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return None


def _check_distribution_name(spec) -> None:
    if not isinstance(spec, str) or spec not in DISTRIBUTIONS:
        raise ValueError(f"distribution_strategy must be one of {', '.join(DISTRIBUTIONS)}, None or a "
                         f"tf.distribute.Strategy; got {spec!r}.")


class _NaNGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (self.epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True


# ---------------------------------------------------------------------- one child
class ProgressCallback(keras.callbacks.Callback):
    """Reports progress from `fit` / `evaluate` and times their phases.

    Calls ``on_progress("train" | "evaluate", step)`` (if given) at the first
    batch of a phase and then at most every `PROGRESS_INTERVAL_S`, and keeps
    the time of each phase's start, first batch end and end in `marks`, from
    which `phase_seconds` splits a child's time into graph tracing (plus the
    first step) and the remaining steps.
    """

    def __init__(self, on_progress: Optional[Callable[[str, int], None]] = None):
        super().__init__()
        self.on_progress = on_progress
        self.marks: Dict[str, float] = {}
        self._last: Dict[str, float] = {}
        self._step = {"train": 0, "evaluate": 0}

    def _tick(self, phase: str) -> None:
        self._step[phase] += 1
        now = time.perf_counter()
        self.marks.setdefault(f"{phase}_first", now)
        if self.on_progress is not None and (
                self._step[phase] == 1 or now - self._last.get(phase, 0.0) >= PROGRESS_INTERVAL_S):
            self._last[phase] = now
            self.on_progress(phase, self._step[phase])

    def on_train_begin(self, logs=None):
        self.marks["train_begin"] = time.perf_counter()

    def on_train_end(self, logs=None):
        self.marks["train_end"] = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.marks.setdefault("evaluate_begin", time.perf_counter())

    def on_test_end(self, logs=None):
        self.marks["evaluate_end"] = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._tick("train")

    def on_test_batch_end(self, batch, logs=None):
        self._tick("evaluate")

    def phase_seconds(self) -> Dict[str, float]:
        """``{"time_first_train_step", "time_train_steps", "time_first_eval_step", "time_eval_steps"}``
        (seconds; the first steps include graph tracing), for the phases that ran."""
        m, out = self.marks, {}
        for phase, name in (("train", "train"), ("evaluate", "eval")):
            if f"{phase}_begin" in m and f"{phase}_first" in m:
                out[f"time_first_{name}_step"] = m[f"{phase}_first"] - m[f"{phase}_begin"]
                if f"{phase}_end" in m:
                    out[f"time_{name}_steps"] = m[f"{phase}_end"] - m[f"{phase}_first"]
        return out


class ChildTrainer:
    """Builds, trains and scores child networks on one dataset.

    Args:
        data: the `SearchData` to train on (its batch size is the global batch).
        epochs, num_cells, filters, learning_rate, momentum, weight_decay,
        drop_path_keep_prob: see `CellSearchTuner`.
        strategy: a `tf.distribute.Strategy` or ``None`` (default strategy).
        verbose: 2 shows Keras' per-epoch logs, else training is silent.
        builder: ``genotype -> keras.Model``; default `build` (the zoo's `NASNet`).
        max_model_size: children with more trainable parameters fail (as in
            `keras_tuner.Tuner`); ``None``: no limit.
    """

    def __init__(self, data: SearchData, *, epochs: int, num_cells: int, filters: int, learning_rate: float,
                 momentum: float, weight_decay: float, drop_path_keep_prob: float, strategy=None,
                 verbose: int = 0, builder: Optional[Callable[[gt.Genotype], keras.Model]] = None,
                 max_model_size: Optional[int] = None):
        self.data = data
        self.epochs = int(epochs)
        self.num_cells = int(num_cells)
        self.filters = int(filters)
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.drop_path_keep_prob = float(drop_path_keep_prob)
        self.strategy = strategy
        self.verbose = int(verbose)
        self.builder = builder or self.build
        self.max_model_size = max_model_size

    @property
    def trains_eagerly(self) -> bool:
        """Whether `compile` sets ``run_eagerly``: at most `EAGER_MAX_STEPS` training steps and no strategy."""
        return self.strategy is None and self.epochs * self.data.steps_per_epoch <= EAGER_MAX_STEPS

    def build(self, genotype: gt.Genotype) -> keras.Model:
        """The uncompiled child: `NASNet` with the CIFAR stem, N cells per stack, F filters, softmax output."""
        total_steps = self.epochs * self.data.steps_per_epoch
        return NASNet(genotype, num_cells=self.num_cells, filters=self.filters, stem="cifar",
                      input_shape=self.data.input_shape, classes=self.data.num_classes,
                      drop_path_keep_prob=self.drop_path_keep_prob,
                      total_training_steps=total_steps if self.drop_path_keep_prob < 1.0 else None,
                      name="child")

    def compile(self, model: keras.Model) -> None:
        """Adds L2 decay to the kernels and compiles with SGD + momentum + cosine decay (eagerly for a
        child of a few steps: `trains_eagerly`)."""
        add_weight_decay(model, self.weight_decay)  # slim convention, see module doc
        schedule = keras.optimizers.schedules.CosineDecay(
            self.learning_rate, decay_steps=self.epochs * self.data.steps_per_epoch)
        model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=self.momentum),
                      loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"],
                      run_eagerly=self.trains_eagerly)
        # Otherwise the first `fit` traces the whole train step twice (quick child: first step 21 s -> 10 s of
        # CPU, same results).
        build_fit_state(model, self.data.train.element_spec)

    def build_compiled(self, genotype: gt.Genotype, weights_path: Optional[str] = None) -> keras.Model:
        """`builder(genotype)` under the strategy, optionally loading weights, then `compile`d."""
        with maybe_distribute(self.strategy):
            model = self.builder(genotype)
            if weights_path is not None:
                model.load_weights(weights_path)
            self.compile(model)
        return model

    def train(self, genotype: gt.Genotype, *, seed: Optional[int] = None,
              callbacks: Sequence[keras.callbacks.Callback] = (),
              keep_best: Optional[Mapping[str, Any]] = None,
              on_progress: Optional[Callable[[str, int], None]] = None) -> Dict[str, Any]:
        """Trains one child from scratch and scores it on the reward set.

        Args:
            genotype: the cells.
            seed: seeds Keras (weights, dropout) first when given.
            callbacks: extra Keras callbacks for `fit`.
            keep_best: ``{"path": weights file, "best": best objective value
                so far or None, "objective": name, "direction": "max"|"min"}``;
                the trained weights are written to ``path`` when this child
                beats ``best``.
            on_progress: ``f(phase, step)`` called as the child makes progress
                (see the module docstring); default none.

        Returns:
            ``{"val_accuracy", "val_loss", "accuracy", "loss", "params",
            "mult_adds", "seconds", "kept"}`` (``kept``: weights were saved)
            and where the seconds went: ``time_build``, ``time_cost``
            (`model_cost`), ``time_first_train_step`` (graph tracing and
            the first step), ``time_train_steps``, ``time_first_eval_step``,
            ``time_eval_steps``, ``time_keep_best``.

        Raises:
            ChildTrainingFailed: the training or validation loss became NaN /
                inf, or the child exceeds ``max_model_size``.
        """
        keras.backend.clear_session()
        gc.collect()
        if seed is not None:
            keras.utils.set_random_seed(int(seed))
        start = time.perf_counter()
        record: Dict[str, Any] = {}
        model = None
        clock = ProgressCallback(on_progress)
        try:
            model = self.build_compiled(genotype)
            built = time.perf_counter()
            if on_progress is not None:
                on_progress("built", 0)
            cost = model_cost(model)
            costed = time.perf_counter()
            record.update(params=cost.params, mult_adds=cost.mult_adds)
            if self.max_model_size and cost.trainable_params > self.max_model_size:
                raise ChildTrainingFailed(f"Oversized child: {cost.trainable_params} trainable parameters > "
                                          f"max_model_size={self.max_model_size}; not trained.", record)
            guard = _NaNGuard()
            history = model.fit(self.data.train, epochs=self.epochs, shuffle=False,  # data.train shuffles
                                verbose=2 if self.verbose >= 2 else 0, callbacks=[guard, clock] + list(callbacks))
            if guard.where is not None:
                epoch, batch, value = guard.where
                raise ChildTrainingFailed(
                    f"Child training diverged: the loss became {value} at epoch {epoch}, batch {batch}. "
                    "Try a lower learning rate, or check the data for NaN / inf values.", record)
            val = self.score(model, clock)
            if not math.isfinite(float(val["loss"])):
                raise ChildTrainingFailed(
                    f"Child evaluation gave a non-finite validation loss ({val['loss']}); the trained weights "
                    "are unusable. Try a lower learning rate, or check the data for NaN / inf values.", record)
            metrics = {"val_accuracy": float(val["accuracy"]), "val_loss": float(val["loss"]),
                       "accuracy": float(history.history["accuracy"][-1]),
                       "loss": float(history.history["loss"][-1]),
                       "params": float(cost.params), "mult_adds": float(cost.mult_adds)}
            saving = time.perf_counter()
            metrics["kept"] = self._keep_if_best(model, metrics, keep_best)
            metrics.update(clock.phase_seconds(), time_build=built - start, time_cost=costed - built,
                           time_keep_best=time.perf_counter() - saving)
            metrics["seconds"] = time.perf_counter() - start
            return metrics
        finally:
            del model
            keras.backend.clear_session()
            gc.collect()

    def score(self, model: keras.Model, clock: Optional[keras.callbacks.Callback] = None) -> Dict[str, float]:
        """Loss and accuracy of ``model`` on the reward set, in inference mode, as `keras.Model.evaluate`
        reports them (``loss``: mean cross-entropy plus the L2 penalty; ``accuracy``: top-1).

        ``clock`` (default none): a callback told of the scoring as by `evaluate` (``on_test_begin``,
        ``on_test_batch_end``, ``on_test_end``), e.g. the child's `ProgressCallback`.

        Runs the model eagerly on batches of `SCORE_BATCH` images instead of tracing an evaluation graph:
        a child is scored once, and tracing took longer than scoring eagerly (quick child, 297 images:
        2.3 s for `evaluate`, 0.8 s eagerly).
        """
        clock = clock or keras.callbacks.Callback()
        clock.on_test_begin()
        count, correct, cross_entropy = 0, 0, 0.0
        for step, (images, labels) in enumerate(self.data.validation.unbatch().batch(SCORE_BATCH)):
            probabilities = model(images, training=False)
            labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
            cross_entropy += float(tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, probabilities)))
            predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            correct += int(tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.int32)))
            count += int(labels.shape[0])
            clock.on_test_batch_end(step)
        clock.on_test_end()
        penalty = float(tf.add_n(model.losses)) if model.losses else 0.0
        return {"loss": cross_entropy / max(count, 1) + penalty, "accuracy": correct / max(count, 1)}

    @staticmethod
    def _keep_if_best(model, metrics, keep_best) -> bool:
        if not keep_best:
            return False
        value, best = metrics.get(keep_best["objective"]), keep_best.get("best")
        if value is None:
            return False
        if best is not None and not (value > best if keep_best.get("direction", "max") == "max" else value < best):
            return False
        path = keep_best["path"]
        tmp = os.path.join(os.path.dirname(path), "tmp_" + os.path.basename(path))
        model.save_weights(tmp)
        os.replace(tmp, path)
        return True


