"""Keras callbacks of a transfer-training run: schedule logging and EMA evaluation."""

from __future__ import annotations

import time

import keras
from keras import ops

from nasnet_keras.layers import ScheduledDropPath
from nasnet_keras.training.optimization import swapped_in_average

__all__ = ["AverageForValidation", "EpochProgress", "ScheduleLogger"]


def _drop_path_layers(model):
    return [layer for layer in model.layers if isinstance(layer, ScheduledDropPath)]


class ScheduleLogger(keras.callbacks.Callback):
    """Adds ``learning_rate`` and ``drop_path_keep_prob`` to each epoch's logs.

    ``drop_path_keep_prob`` is the keep probability of the deepest cell at the
    current step (1.0 without drop path), the value the paper's schedule
    reaches last. Put it before `CSVLogger` / `TensorBoard` in the callback
    list so that they record both.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(ops.convert_to_numpy(optimizer.learning_rate))
        layers = [layer for layer in _drop_path_layers(self.model) if layer.keep_prob < 1.0]
        if layers:
            deepest = max(layers, key=lambda layer: layer.cell_index)
            step = int(ops.convert_to_numpy(deepest.step))
            logs["drop_path_keep_prob"] = float(deepest.keep_prob_at(step))
        else:
            logs["drop_path_keep_prob"] = 1.0


class AverageForValidation(keras.callbacks.Callback):
    """Evaluates with the optimizer's moving average of the weights (paper Appendix A.7).

    During `fit`'s validation (and any `evaluate` given this callback) the
    model's trainable weights are the EMA; training continues from its own
    weights afterwards. Does nothing when the optimizer keeps no average.
    """

    def __init__(self):
        super().__init__()
        self._context = None

    def on_test_begin(self, logs=None):
        self._context = swapped_in_average(self.model)
        self._context.__enter__()

    def on_test_end(self, logs=None):
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch: the epoch's metrics, its duration and the time left for the run.

    Metrics of the main output are shown without their ``predictions_`` prefix (Keras adds it when the
    auxiliary head is a second output); the auxiliary head's own losses are left out of the line.

    Args:
        total_epochs: epochs of the whole run (for the ETA).
        print_fn: where lines go (default `print`, flushed).
    """

    def __init__(self, total_epochs: int, print_fn=None):
        super().__init__()
        self.total_epochs = int(total_epochs)
        self.print_fn = print_fn or (lambda line: print(line, flush=True))
        self._start = None
        self._durations = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - (self._start or time.perf_counter())
        self._durations.append(seconds)
        recent = self._durations[-5:]
        left = (self.total_epochs - epoch - 1) * sorted(recent)[len(recent) // 2]
        shown = " ".join(f"{k.replace('predictions_loss', 'cls_loss').replace('predictions_', '')}={v:.4g}"
                         for k, v in sorted((logs or {}).items())
                         if isinstance(v, (int, float)) and "aux_predictions" not in k)
        self.print_fn(f"epoch {epoch + 1}/{self.total_epochs}  {seconds:.1f} s  ETA {_duration(left)}  {shown}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
