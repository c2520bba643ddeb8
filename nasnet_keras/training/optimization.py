"""Optimizers, learning-rate schedules and weight decay of the NASNet training recipes.

* `add_weight_decay`: TF-slim's ``l2_regularizer(weight_decay)`` on every
  convolution / depthwise / pointwise / dense kernel: the loss gains
  ``weight_decay / 2 * sum(w ** 2)`` (gradient ``weight_decay * w``);
  BatchNorm parameters and biases are not decayed (TF-slim nets/nasnet
  arg scopes put the regularizer on conv and fully-connected weights only).
* `learning_rate_schedule`: single-period cosine decay (paper Appendix A.6,
  CIFAR-10) or staircase exponential decay (TF-slim train_image_classifier
  ``learning_rate_decay_type=exponential``, the paper's ImageNet runs:
  0.97 every 2.4 epochs).
* `make_optimizer`: SGD with momentum or RMSProp, with global-norm gradient
  clipping and, optionally, an exponential moving average (EMA) of the
  weights that the trainer swaps in for evaluation and saving (paper
  Appendix A.7: "evaluated with a moving average of the weights, decay
  0.9999").
* `build_fit_state`: creates a compiled model's optimizer slots and loss /
  metric variables before `fit`, so that Keras traces the first training
  step once instead of twice.

The EMA follows ``tf.train.ExponentialMovingAverage(decay, num_updates=step)``
as TF-slim's train_image_classifier.py uses it: the decay at step t is
``min(decay, (1 + t) / (10 + t))``, so short runs average over their own
steps instead of staying at the initial weights (Keras' built-in
``use_ema`` uses the fixed decay from the first step).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import keras
from keras import ops

__all__ = ["DECAYED_WEIGHTS", "EMARMSprop", "EMASGD", "add_weight_decay", "build_fit_state", "ema_decay_at",
           "learning_rate_schedule", "make_optimizer", "swapped_in_average"]

# Kernel weights that get L2 decay (conv, separable conv parts, dense).
DECAYED_WEIGHTS = ("kernel", "depthwise_kernel", "pointwise_kernel")
OPTIMIZERS = ("sgd", "rmsprop")
SCHEDULES = ("cosine", "exponential", "constant")


def add_weight_decay(model: keras.Model, weight_decay: float) -> int:
    """Puts slim-convention L2 decay on the model's kernels (call before `compile`).

    Args:
        model: a built model.
        weight_decay: slim's ``weight_decay``; the penalty is
            ``weight_decay / 2 * sum(w ** 2)`` per kernel. 0 does nothing.

    Returns:
        The number of kernels that got the penalty.
    """
    if weight_decay <= 0:
        return 0
    l2 = keras.regularizers.L2(weight_decay / 2.0)
    count = 0
    for variable in model.trainable_weights:
        if variable.path.split("/")[-1] in DECAYED_WEIGHTS:
            variable.regularizer = l2
            count += 1
    return count


def learning_rate_schedule(kind: str, learning_rate: float, total_steps: int, *, steps_per_epoch: int = 1,
                           decay_rate: float = 0.97, decay_epochs: float = 2.4):
    """The learning rate as a function of the optimizer step.

    Args:
        kind: ``"cosine"`` (single period from ``learning_rate`` to 0 over
            ``total_steps``), ``"exponential"`` (``learning_rate *
            decay_rate ** floor(step / (decay_epochs * steps_per_epoch))``)
            or ``"constant"``.
        learning_rate: initial rate.
        total_steps: training steps of the whole run (cosine).
        steps_per_epoch: optimizer steps per epoch (exponential).
        decay_rate, decay_epochs: the exponential decay (default 0.97
            every 2.4 epochs, the paper's ImageNet setting).

    Returns:
        A `keras.optimizers.schedules.LearningRateSchedule`, or a float for
        ``"constant"``.
    """
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, int(total_steps)))
    if kind == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=max(1.0, decay_epochs * steps_per_epoch), decay_rate=decay_rate,
            staircase=True)
    if kind == "constant":
        return float(learning_rate)
    raise ValueError(f"Unknown learning-rate schedule {kind!r}; use one of {', '.join(SCHEDULES)}.")


def ema_decay_at(step, decay: float):
    """EMA decay used after optimizer step ``step`` (0-based): 0 at step 0 (the
    average starts as a copy of the weights), then ``min(decay, (1 + step) /
    (10 + step))`` (tf.train.ExponentialMovingAverage with num_updates)."""
    if isinstance(step, (int, float)):
        return 0.0 if step == 0 else min(decay, (1.0 + step) / (10.0 + step))
    t = ops.cast(step, "float32")
    return ops.where(ops.equal(t, 0.0), 0.0, ops.minimum(decay, (1.0 + t) / (10.0 + t)))


class _WarmupEMA:
    """Mixin for a Keras optimizer built with ``use_ema=True``: the average
    follows `ema_decay_at`, and `fit` leaves the trained weights in place
    (the trainer swaps the average in with `swapped_in_average`)."""

    def _update_model_variables_moving_average(self, trainable_variables):
        # Overrides the Keras optimizer hook that runs after every update step (the only change: the
        # decay schedule); guarded by tests/test_training_recipe.py::test_ema_follows_the_slim_schedule.
        if not self.use_ema:
            return
        decay = ema_decay_at(self.iterations, self.ema_momentum)
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                decay_v = ops.cast(decay, var.dtype)
                average.assign(decay_v * average + (1.0 - decay_v) * var)

    def finalize_variable_values(self, var_list):
        """Does nothing: the training weights stay; see `swapped_in_average`."""

    def moving_averages(self):
        """The averaged copies of the trainable variables (in their order)."""
        return list(self._model_variables_moving_average) if self.use_ema else []


class _ClipAfterAllReduce:
    """Mixin: global-norm clipping of the gradient of the whole global batch, with any number of replicas.

    Keras clips each replica's gradient before the replicas' gradients are summed, so with N replicas the
    norm that is clipped is that of a 1/N share, and training differs from one device whenever clipping
    acts. Here the replicas first sum their gradients (one extra all-reduce, only when clipping is on and
    there are several replicas), clip the sum as one device would, and hand on 1/N of it each, which the
    optimizer's own all-reduce adds back up.
    """

    def _clip_gradients(self, grads):
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if not self.global_clipnorm or replicas == 1:
            return super()._clip_gradients(grads)
        present = [g for g in grads if g is not None]
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
        clipped, _ = tf.clip_by_global_norm(summed, self.global_clipnorm)
        shares = iter([c / replicas for c in clipped])
        return [next(shares) if g is not None else None for g in grads]


@keras.saving.register_keras_serializable(package="nasnet_keras")
class EMASGD(_ClipAfterAllReduce, _WarmupEMA, keras.optimizers.SGD):
    """`keras.optimizers.SGD` whose EMA follows TF-slim's schedule and whose global-norm clipping acts on
    the whole batch's gradient under tf.distribute (see module doc)."""


@keras.saving.register_keras_serializable(package="nasnet_keras")
class EMARMSprop(_ClipAfterAllReduce, _WarmupEMA, keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` whose EMA follows TF-slim's schedule and whose global-norm clipping acts
    on the whole batch's gradient under tf.distribute (see module doc)."""


def make_optimizer(name: str, learning_rate, *, momentum: float = 0.9, rmsprop_decay: float = 0.9,
                   epsilon: float = 1.0, clip_norm: Optional[float] = None,
                   ema_decay: Optional[float] = None) -> keras.optimizers.Optimizer:
    """The recipe's optimizer.

    Args:
        name: ``"sgd"`` (momentum SGD, paper CIFAR-10) or ``"rmsprop"``
            (paper ImageNet: decay 0.9, momentum 0.9, epsilon 1.0).
        learning_rate: a float or a schedule.
        momentum: momentum of both optimizers (default 0.9).
        rmsprop_decay: RMSProp's gradient-square decay (Keras ``rho``).
        epsilon: RMSProp epsilon (default 1.0 as in the paper).
        clip_norm: global-norm gradient clipping threshold; ``None`` or 0: off.
        ema_decay: keep an EMA of the weights with this decay (e.g. 0.9999);
            ``None`` or 0: no EMA.

    Returns:
        An `EMASGD` / `EMARMSprop` instance (plain behaviour when
        ``ema_decay`` is None).
    """
    ema = dict(use_ema=bool(ema_decay), ema_momentum=ema_decay if ema_decay else 0.99)
    clip = dict(global_clipnorm=clip_norm) if clip_norm else {}
    if name == "sgd":
        return EMASGD(learning_rate, momentum=momentum, **clip, **ema)
    if name == "rmsprop":
        return EMARMSprop(learning_rate, rho=rmsprop_decay, momentum=momentum, epsilon=epsilon, **clip, **ema)
    raise ValueError(f"Unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}.")


@contextlib.contextmanager
def swapped_in_average(model: keras.Model) -> Iterator[bool]:
    """Within the block the model's trainable weights are the optimizer's EMA.

    Yields True when an average was swapped in, False when the optimizer
    keeps none (then the block sees the weights as they are). The training
    weights are restored on exit, also after an exception.
    """
    optimizer = getattr(model, "optimizer", None)
    averages = optimizer.moving_averages() if isinstance(optimizer, _WarmupEMA) and optimizer.built else []
    if not averages:
        yield False
        return
    variables = list(model.trainable_variables)
    if len(variables) != len(averages):
        raise ValueError(f"The optimizer averages {len(averages)} variables but the model has {len(variables)} "
                         "trainable ones; was it compiled with another model?")
    saved = [ops.copy(v.value) for v in variables]
    for v, a in zip(variables, averages):
        v.assign(a)
    try:
        yield True
    finally:
        for v, s in zip(variables, saved):
            v.assign(s)


def build_fit_state(model: keras.Model, batch_spec) -> bool:
    """Creates the optimizer slots and the compiled loss / metric variables of a compiled model, before `fit`.

    Outside a distribution strategy, Keras 3 creates them inside the first
    traced training step; variables created while tracing make TensorFlow
    trace that step a second time (measured on 2 CPU cores: NASNetMobile
    fine-tuned with a frozen backbone, first epoch 27 -> 20 s; NASNet-A at
    N = 1, F = 8 with the aux head, 2 epochs on digits, `fit` 72 -> 64 s).
    Under a strategy Keras' own `fit` does the same; calling this first
    changes nothing there. The results of training are the same either way.

    Args:
        model: a compiled Keras model (TensorFlow backend).
        batch_spec: the structure of one training batch, ``(x, y)`` as
            `tf.TensorSpec`s, e.g. ``dataset.element_spec`` of the
            `tf.data.Dataset` given to `fit`.

    Returns:
        ``True`` if the state was built; ``False`` when this Keras version
        lacks the method it uses (Keras' private ``Model._symbolic_build``,
        present in Keras 3.0 - 3.15): `fit` then builds it as usual.
    """
    if not hasattr(model, "_symbolic_build"):
        return False
    model._symbolic_build(data_batch=batch_spec)
    return True
