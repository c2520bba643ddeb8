"""Trains the shared network one sampled architecture per step and scores architectures with its weights.

`SharedTrainer` owns the `SharedNASNet` and its optimizer: SGD with
Nesterov momentum and cosine decay with warm restarts
(`keras.optimizers.schedules.CosineDecayRestarts`), as ENAS (Pham et al.
2018). A step runs eagerly and calls the network's compiled pieces for the
chosen ops (`SharedNASNet.forward`), so nothing is traced per architecture.
It runs under a `tf.distribute.Strategy` (default: the current one): each
replica trains the same architecture on its share of the batch, the loss is
the global-batch mean, and gradients are summed across replicas.

Only the variables of the layers the step's architecture uses get gradients
and updates (plain SGD momentum state of unused ops is left as it was), and
slim's L2 convention (``weight_decay / 2 * sum(w ** 2)``) applies to those
layers' kernels only.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from nasnet_keras.search import space as space_lib
from nasnet_keras.search.data import SearchData
from nasnet_keras.search.weight_sharing.config import WeightSharingConfig
from nasnet_keras.search.weight_sharing.shared_network import SharedNASNet

__all__ = ["SharedTrainer", "SharedTrainingDiverged"]


class SharedTrainingDiverged(RuntimeError):
    """The shared network's loss became NaN or infinite."""


class SharedTrainer:
    """Shared-weight training and scoring.

    Args:
        data: the `SearchData` (its ``train`` batches are the training steps;
            its ``validation`` set is the reward set, re-batched to
            ``config.reward_batch_size``).
        space: the `SearchSpace` (add combine only).
        config: the `WeightSharingConfig`.
        strategy: a `tf.distribute.Strategy`; ``None``: the current one.
        seed: shuffles the reward minibatches.
    """

    def __init__(self, data: SearchData, space: space_lib.SearchSpace, config: WeightSharingConfig,
                 strategy: Optional[tf.distribute.Strategy] = None, seed: int = 0):
        self.data, self.space, self.config = data, space, config
        self.strategy = strategy or tf.distribute.get_strategy()
        steps = data.steps_per_epoch
        with self.strategy.scope():
            self.model = SharedNASNet(space, num_cells=config.num_cells, filters=config.filters,
                                      input_shape=data.input_shape, classes=data.num_classes,
                                      weight_decay=config.weight_decay)
            self.velocities = {v.path: tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                                                   name=v.path.replace("/", "_") + "_velocity")
                               for v in self.model.trainable_weights}
        self.schedule = keras.optimizers.schedules.CosineDecayRestarts(
            config.learning_rate, first_decay_steps=config.restart_epochs * steps, t_mul=config.restart_multiplier,
            m_mul=1.0, alpha=config.min_learning_rate / config.learning_rate)
        self.iterations = 0
        reward = data.validation.unbatch()
        self.reward_set = self.strategy.experimental_distribute_dataset(
            reward.batch(config.reward_batch_size).prefetch(2))
        self._minibatches = iter(self.strategy.experimental_distribute_dataset(
            reward.shuffle(max(data.num_val, 1), seed=seed, reshuffle_each_iteration=True)
            .batch(config.reward_batch_size).repeat().prefetch(2)))
        self.train_set = self.strategy.experimental_distribute_dataset(data.train)

    # ------------------------------------------------------------------ steps
    def train_step(self, batch, architecture: Sequence[int]) -> Tuple[float, float, float]:
        """One optimizer step on ``batch`` for ``architecture``; returns ``(sum of losses, correct, count)``.

        Only the chosen layers' variables get gradients and updates (`SharedNASNet.chosen_variables`).

        Raises:
            SharedTrainingDiverged: the loss is NaN or infinite (the search stops before checkpointing).
        """
        architecture = [int(a) for a in architecture]
        model = self.model
        variables = model.chosen_variables(architecture)

        def replica(images, labels):
            ctx = tf.distribute.get_replica_context()
            count = tf.cast(tf.shape(labels)[0], tf.float32)
            total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
            with tf.GradientTape() as tape:
                probs, penalty = model.forward(images, architecture)
                ce = keras.losses.sparse_categorical_crossentropy(labels, probs)
                loss = tf.reduce_sum(ce) / total + penalty / ctx.num_replicas_in_sync
            grads = tape.gradient(loss, variables)
            if ctx.num_replicas_in_sync > 1:
                grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip_norm)
            self._apply(grads, variables)
            return tf.reduce_sum(ce), _correct(probs, labels), count

        loss, correct, count = self._sum(self.strategy.run(replica, args=batch))
        self.iterations += 1
        if not math.isfinite(loss):
            raise SharedTrainingDiverged(
                f"The shared network's loss became {loss} (optimizer step {self.iterations}). "
                "Lower --learning_rate, or check the data for NaN / inf values.")
        return loss, correct, count

    def _apply(self, grads, variables) -> None:
        """SGD with Nesterov momentum on ``variables`` only: Keras' `SGD` update as one fused op per variable
        (Keras' `apply_gradients` costs ~2.5 ms per variable in eager mode, about a whole step's compute).
        Under several replicas the gradients are already summed and each replica updates its own copy, so
        the copies stay equal."""
        lr = tf.constant(float(self.schedule(self.iterations)), tf.float32)
        momentum = tf.constant(self.config.momentum, tf.float32)
        for v, g in zip(variables, grads):
            tf.raw_ops.ResourceApplyKerasMomentum(var=v.value.handle, accum=self.velocities[v.path].handle, lr=lr,
                                                  grad=g, momentum=momentum, use_nesterov=True)

    def _score(self, batch, architecture) -> Tuple[float, float]:
        def replica(images, labels):
            probs, _ = self.model.forward(images, architecture)
            return _correct(probs, labels), tf.cast(tf.shape(labels)[0], tf.float32)

        return self._sum(self.strategy.run(replica, args=batch))

    def _sum(self, per_replica) -> list:
        return [float(self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)) for v in per_replica]

    @property
    def tracing_counts(self) -> dict:
        """``{compiled piece: times traced}`` (see `SharedNASNet.tracing_counts`)."""
        return self.model.tracing_counts

    def minibatch_reward(self, architecture: Sequence[int]) -> float:
        """Accuracy of ``architecture`` on the next (shuffled) reward minibatch, shared weights."""
        correct, count = self._score(next(self._minibatches), [int(a) for a in architecture])
        return correct / max(count, 1.0)

    def reward_set_accuracy(self, architecture: Sequence[int]) -> float:
        """Accuracy of ``architecture`` on the whole reward set, shared weights."""
        architecture = [int(a) for a in architecture]
        correct = count = 0.0
        for batch in self.reward_set:
            c, n = self._score(batch, architecture)
            correct, count = correct + c, count + n
        return correct / max(count, 1.0)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step."""
        return float(self.schedule(self.iterations))

    # ------------------------------------------------------------------ state
    def get_arrays(self) -> dict:
        """Model weights (``model/<i>``), momentum (``velocity/<i>``) and step (``iterations``) as numpy arrays."""
        out = {f"model/{i}": np.asarray(v.numpy()) for i, v in enumerate(self.model.weights)}
        out.update({f"velocity/{i}": self.velocities[v.path].numpy()
                    for i, v in enumerate(self.model.trainable_weights)})
        out["iterations"] = np.array(self.iterations, np.int64)
        return out

    def set_arrays(self, arrays) -> None:
        """Inverse of `get_arrays`.

        Raises:
            ValueError: the arrays come from a network of another shape.
        """
        pairs = [(f"model/{i}", v) for i, v in enumerate(self.model.weights)]
        pairs += [(f"velocity/{i}", self.velocities[v.path]) for i, v in enumerate(self.model.trainable_weights)]
        for key, v in pairs:
            if key not in arrays or tuple(arrays[key].shape) != tuple(v.shape):
                raise ValueError(f"The checkpoint does not fit this shared network ({key}: "
                                 f"{'missing' if key not in arrays else tuple(arrays[key].shape)} vs "
                                 f"{tuple(v.shape)}).")
            v.assign(arrays[key])
        self.iterations = int(arrays["iterations"])

    def weights_finite(self) -> bool:
        return all(bool(np.all(np.isfinite(v.numpy()))) for v in self.model.trainable_weights)


def _correct(probs, labels):
    predicted = tf.argmax(probs, axis=-1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32))
