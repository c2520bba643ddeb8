"""Trains a genotype at full scale with a paper recipe, resumably, and evaluates it.

Data flows one way: genotype + `Recipe` + `TrainingData` -> `NASNet(...)`
(the package's one builder) -> compiled model -> `fit` with checkpoints ->
the inference network and its files (see `run_directory`).

The training model carries the training-only parts of the recipe: the
auxiliary head (second output, loss weight ``aux_weight``), ScheduledDropPath
(ramped over the run's total steps), dense dropout. The saved model is the
same network without them (`inference_network`), with the moving average of
the weights when the recipe keeps one: exactly what `NASNet(genotype=...,
weights=path)` -- and, for NASNet-A at the ImageNet configs,
`NASNetMobile` / `NASNetLarge(weights=path)` -- builds and loads.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from nasnet_keras import genotypes as gt
from nasnet_keras.builder import NASNet
from nasnet_keras.cost import model_cost
from nasnet_keras.training import checkpoint as ckpt
from nasnet_keras.training.callbacks import AverageForValidation, EpochProgress, ScheduleLogger
from nasnet_keras.training.optimization import (add_weight_decay, build_fit_state, learning_rate_schedule,
                                                make_optimizer, swapped_in_average)
from nasnet_keras.training.recipes import Recipe
from nasnet_keras.training.run_directory import RunDirectory

__all__ = ["TransferTrainer", "inference_network"]

#: Top-5 accuracy is tracked for label sets with more than this many classes.
TOP5_MIN_CLASSES = 5


def inference_network(genotype: gt.Genotype, recipe: Recipe, input_shape, num_classes: int,
                      weights: Optional[str] = None) -> keras.Model:
    """The recipe's network as deployed: no auxiliary head, no drop path, no dropout (all training-only).

    Args:
        genotype, recipe: what to build (N, F, stem, skip_reduction).
        input_shape: ``(S, S, C)``.
        num_classes: classifier outputs.
        weights: None, ``"imagenet"`` or a weights file (see `NASNet`).

    Returns:
        A `keras.Model` mapping images ``(batch, S, S, C)`` in [-1, 1] to
        softmax scores ``(batch, num_classes)``.
    """
    return NASNet(genotype, num_cells=recipe.num_cells, filters=recipe.filters, stem=recipe.stem,
                  stem_filters=recipe.stem_filters, skip_reduction=recipe.skip_reduction,
                  input_shape=tuple(input_shape), classes=num_classes, weights=weights,
                  name=f"nasnet_{recipe.name}")


class _VectorStepLogs(keras.Model):
    """The same functional network, whose train / test steps return their scalar logs as shape-[1] vectors.

    Keras 3.15 reduces every step's logs across workers of a MultiWorkerMirroredStrategy with a mean over
    axis 0, which fails on scalars (tensorflow/tensorflow#72388); a [1] vector per replica reduces to the
    same mean. Epoch logs and `evaluate` results come from the metric objects, unchanged.
    """

    def train_step(self, data):
        return {k: keras.ops.reshape(v, (1,)) for k, v in super().train_step(data).items()}

    def test_step(self, data):
        return {k: keras.ops.reshape(v, (1,)) for k, v in super().test_step(data).items()}


class TransferTrainer:
    """One transfer-training run.

    Args:
        genotype: the cells.
        recipe: the resolved `Recipe`.
        data: a `nasnet_keras.training.data.TrainingData` batched by the
            global batch (per-replica batch x replicas).
        run_dir: where outputs and checkpoints go.
        strategy: a `tf.distribute.Strategy` or None (default strategy).
        checkpoint_every_steps: also checkpoint every this many steps.
        jit_compile: compile the train step with XLA.
        seed: seeds weights, dropout and drop-path masks.
        print_fn: progress lines (default `print`).
    """

    def __init__(self, genotype: gt.Genotype, recipe: Recipe, data, run_dir: RunDirectory, *, strategy=None,
                 checkpoint_every_steps: Optional[int] = None, jit_compile: bool = False, seed: int = 0,
                 print_fn=None):
        self.genotype = genotype
        self.recipe = recipe
        self.data = data
        self.run_dir = run_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.checkpoint_every_steps = checkpoint_every_steps
        self.jit_compile = bool(jit_compile)
        self.seed = int(seed)
        self.print_fn = print_fn or (lambda line: print(line, flush=True))

    # ------------------------------------------------------------------ model
    @property
    def total_steps(self) -> int:
        return self.recipe.epochs * self.data.steps_per_epoch

    @property
    def global_batch(self) -> int:
        return self.data.batch_size

    def build_training_model(self) -> keras.Model:
        """The network with the recipe's training-only parts (aux head, drop path, dropout), uncompiled."""
        r = self.recipe
        model = NASNet(self.genotype, num_cells=r.num_cells, filters=r.filters, stem=r.stem,
                       stem_filters=r.stem_filters, skip_reduction=r.skip_reduction,
                       drop_path_keep_prob=r.drop_path_keep_prob,
                       total_training_steps=self.total_steps if r.drop_path_keep_prob < 1.0 else None,
                       aux_head=r.aux_head, dropout=r.dropout, input_shape=self.data.input_shape,
                       classes=self.data.num_classes, name=f"nasnet_{r.name}_train")
        if keras.mixed_precision.global_policy().compute_dtype == "float32":
            return model
        # Mixed precision: losses and metrics (top-5 needs float32) see float32 class scores.
        outputs = [keras.layers.Activation("linear", dtype="float32", name=f"{name}_float32")(output)
                   for name, output in zip(model.output_names, model.outputs)]
        return keras.Model(model.input, outputs, name=model.name)   # the input's structure, not a list

    def _loss_and_metrics(self):
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=self.recipe.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if self.data.num_classes > TOP5_MIN_CLASSES:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
        return loss, metrics

    def compile(self, model: keras.Model) -> None:
        """Weight decay, optimizer with its schedule / clipping / EMA, losses (aux head weighted), metrics."""
        r = self.recipe
        add_weight_decay(model, r.weight_decay)
        schedule = learning_rate_schedule(r.schedule, r.learning_rate_for(self.global_batch), self.total_steps,
                                          steps_per_epoch=self.data.steps_per_epoch, decay_rate=r.decay_rate,
                                          decay_epochs=r.decay_epochs)
        optimizer = make_optimizer(r.optimizer, schedule, momentum=r.momentum, rmsprop_decay=r.rmsprop_decay,
                                   epsilon=r.epsilon, clip_norm=r.clip_norm, ema_decay=r.ema_decay)
        loss, metrics = self._loss_and_metrics()
        if len(model.outputs) == 2:
            main, aux = model.output_names
            model.compile(optimizer=optimizer, loss={main: loss, aux: loss},
                          loss_weights={main: 1.0, aux: r.aux_weight}, metrics={main: metrics},
                          jit_compile=self.jit_compile)
        else:
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=self.jit_compile)

    def _targets(self, model: keras.Model, dataset: tf.data.Dataset) -> tf.data.Dataset:
        """(images, int labels) -> (images, one-hot targets per output)."""
        depth, names = self.data.num_classes, list(model.output_names)

        def to_targets(images, labels):
            onehot = tf.one_hot(labels, depth)
            return images, ({n: onehot for n in names} if len(names) > 1 else onehot)

        return dataset.map(to_targets, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    # ------------------------------------------------------------------ train
    def train(self) -> Dict[str, Any]:
        """Trains (resuming from the run's checkpoint if there is one), saves the outputs, returns the metrics."""
        keras.utils.set_random_seed(self.seed)
        with self.strategy.scope():
            model = self.build_training_model()
            if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
                model = _VectorStepLogs(model.input, model.outputs, name=model.name)
            self.compile(model)
            start_step = ckpt.restore(model, self.run_dir.checkpoint_dir)
        spe, epochs = self.data.steps_per_epoch, self.recipe.epochs
        epoch, left = ckpt.resume_plan(start_step, spe, epochs)
        if start_step:
            self.print_fn(f"Resuming from step {start_step} of {self.total_steps} (epoch {epoch + 1}, "
                          f"{left} steps left in it) from {self.run_dir.checkpoint_dir}.")
        train = self._targets(model, self.data.train)
        validation = self._targets(model, self.data.validation)
        self._build_state(model, train.element_spec)
        checkpoint = ckpt.StepCheckpoint(self.run_dir.checkpoint_dir, self.checkpoint_every_steps)
        callbacks = self._callbacks(epoch, checkpoint)
        started = time.perf_counter()
        last_logs: Dict[str, float] = {}
        if epoch < epochs and left < spe:           # finish the epoch the checkpoint interrupted
            history = model.fit(train.take(left), initial_epoch=epoch, epochs=epoch + 1, validation_data=validation,
                                callbacks=callbacks, verbose=0, shuffle=False)
            last_logs = {k: v[-1] for k, v in history.history.items()}
            epoch += 1
            self._check_diverged(checkpoint)
        if epoch < epochs:
            history = model.fit(train, initial_epoch=epoch, epochs=epochs, validation_data=validation,
                                callbacks=callbacks, verbose=0, shuffle=False)
            last_logs = {k: v[-1] for k, v in history.history.items()} or last_logs
            self._check_diverged(checkpoint)
        seconds = time.perf_counter() - started
        steps_run = int(model.optimizer.iterations.numpy()) - start_step
        evaluation = model.evaluate(validation, verbose=0, return_dict=True, callbacks=[AverageForValidation()])
        network = self._inference_copy(model)
        metrics = self._metrics(model, network, last_logs, evaluation, seconds, steps_run)
        self._save(network, metrics)
        return metrics

    def _inference_copy(self, model: keras.Model) -> keras.Model:
        """`inference_network` holding the trained weights (the moving average when the recipe keeps one)."""
        network = inference_network(self.genotype, self.recipe, self.data.input_shape, self.data.num_classes)
        with swapped_in_average(model):
            for layer in network.layers:
                if layer.weights:
                    layer.set_weights([np.asarray(w) for w in model.get_layer(layer.name).get_weights()])
        return network

    def _build_state(self, model: keras.Model, batch_spec) -> None:
        """Creates the optimizer slots and the loss / metric state from the batch spec, before `fit`.

        Under MultiWorkerMirroredStrategy Keras 3.15 builds this state inside `fit` by reducing a real first
        batch across workers, an eager reduce of `PerReplica` images that fails (tensorflow/tensorflow#72388);
        here the spec gives the same variables without touching data, and `fit`'s own build is skipped.
        Guarded by tests/test_training_distributed.py.
        """
        with self.strategy.scope():
            if not build_fit_state(model, batch_spec):
                return
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    def _callbacks(self, first_epoch: int, checkpoint: ckpt.StepCheckpoint):
        run = self.run_dir
        callbacks = [ScheduleLogger(), AverageForValidation(), checkpoint]
        if run.is_chief:
            ckpt.truncate_history(run.path("history.csv"), first_epoch)
            callbacks += [keras.callbacks.CSVLogger(run.path("history.csv"), append=True),
                          keras.callbacks.TensorBoard(run.logs_dir, write_graph=False),
                          EpochProgress(self.recipe.epochs, self.print_fn)]
        return callbacks

    def _check_diverged(self, checkpoint: ckpt.StepCheckpoint) -> None:
        if checkpoint.diverged_at is None:
            return
        kept = (f"the last good state is kept in {checkpoint.path}" if os.path.exists(checkpoint.path)
                else "no checkpoint was written before it")
        raise FloatingPointError(
            f"Training diverged: the loss or the weights became NaN / infinite by step {checkpoint.diverged_at}; "
            f"{kept}. Train again in a new --directory with a lower --learning_rate (or stronger --clip_norm), "
            "and check the data for NaN / inf values.")

    def _metrics(self, model, network, train_logs, evaluation, seconds, steps_run) -> Dict[str, Any]:
        def pick(logs, name):      # "accuracy", or "<main output>_accuracy" with the aux head
            for key in (name, f"{model.output_names[0]}_{name}"):
                if key in logs:
                    return float(logs[key])
            return None

        cost = model_cost(network)
        images = steps_run * self.global_batch
        return {"mode": "train", "train_top1": pick(train_logs, "accuracy"), "train_top5": pick(train_logs, "top5"),
                "val_top1": pick(evaluation, "accuracy"), "val_top5": pick(evaluation, "top5"),
                "val_loss": float(evaluation["loss"]), "params": int(cost.params), "mult_adds": int(cost.mult_adds),
                "train_seconds": round(seconds, 3), "steps": int(model.optimizer.iterations.numpy()),
                "images_per_second": round(images / seconds, 2) if seconds > 0 and images else None,
                "moving_average": bool(self.recipe.ema_decay)}

    def _save(self, network: keras.Model, metrics: Dict[str, Any]) -> None:
        """Writes the inference network and metrics.json (chief), then drops the checkpoint.

        A non-chief worker writes only ``model.weights.h5`` in its own folder (its copy of the same weights).
        """
        if not self.run_dir.is_chief:
            network.save_weights(os.path.join(self.run_dir.own, "model.weights.h5"))
        else:
            network.save(self.run_dir.path("model.keras"))
            network.save_weights(self.run_dir.path("model.weights.h5"))
            self.run_dir.write_json("metrics.json", metrics)
        shutil.rmtree(self.run_dir.checkpoint_dir, ignore_errors=True)
