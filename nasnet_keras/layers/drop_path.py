"""ScheduledDropPath (paper Sec. 4.1; TF-slim `_apply_drop_path`, schedule 'v3')."""

import keras
from keras import ops


def scheduled_keep_prob(step, cell_index, total_cells, total_steps, keep_prob):
    """Keep probability of one cell's drop path at a training step.

    The paper's ScheduledDropPath (Sec. 4.1), as in TF-slim's 'v3' schedule:
    the drop probability grows linearly with depth *and* with training
    progress::

        keep = 1 - (cell_index + 1) / total_cells
                   * min(1, step / total_steps) * (1 - keep_prob)

    Args:
        step: training step (Python number or scalar tensor).
        cell_index: 0-based index of the cell, stem cells included.
        total_cells: number of cells in the network, stem cells included.
        total_steps: training steps after which the final value is reached.
        keep_prob: the final keep probability of the last cell.

    Returns:
        The keep probability, same kind as `step` (float or float32 tensor).
    """
    if isinstance(step, (int, float)):
        progress = min(1.0, step / total_steps)
    else:
        progress = ops.minimum(1.0, ops.cast(step, "float32") / float(total_steps))
    return 1.0 - (cell_index + 1) / total_cells * progress * (1.0 - keep_prob)


@keras.saving.register_keras_serializable(package="nasnet_keras")
class ScheduledDropPath(keras.layers.Layer):
    """Drops a whole op output per example, with a depth- and time-scheduled rate.

    In training, each example's input is zeroed with probability
    `1 - keep` (mask shape `[batch, 1, 1, 1]`) and survivors are divided by
    `keep`, where `keep` follows `scheduled_keep_prob`. The training step is
    a non-trainable counter inside the layer that advances by one on every
    training call, so the schedule runs in plain `model.fit` with no callback
    and is saved with the model. At inference, or when `keep_prob >= 1`, the
    layer is the identity.

    Args:
        keep_prob: final keep probability (paper: 0.6 CIFAR, 0.7 Large).
        cell_index: 0-based cell index, stem cells included.
        total_cells: number of cells, stem cells included.
        total_steps: steps over which the drop rate ramps up; required when
            `keep_prob < 1`.
        seed: optional int seed for the masks.

    Input shape: `(batch, height, width, channels)`; output shape: the same.
    """

    def __init__(self, keep_prob, cell_index, total_cells, total_steps=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"ScheduledDropPath: keep_prob must be in (0, 1]; got {keep_prob}.")
        if not 0 <= cell_index < total_cells:
            raise ValueError(f"ScheduledDropPath: cell_index {cell_index} must be in [0, total_cells={total_cells}).")
        if keep_prob < 1.0 and (total_steps is None or total_steps <= 0):
            raise ValueError("ScheduledDropPath: total_steps must be a positive number of training steps when "
                             f"keep_prob < 1 (got {total_steps}); pass total_training_steps to the model builder.")
        self.keep_prob = float(keep_prob)
        self.cell_index = int(cell_index)
        self.total_cells = int(total_cells)
        self.total_steps = total_steps
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        self.step = self.add_weight(name="step", shape=(), dtype="int64", initializer="zeros",
                                    trainable=False, aggregation="only_first_replica")

    def keep_prob_at(self, step):
        """The keep probability this layer uses at `step`."""
        return scheduled_keep_prob(step, self.cell_index, self.total_cells, self.total_steps, self.keep_prob)

    def call(self, inputs, training=None):
        if not training or self.keep_prob >= 1.0:
            return inputs
        keep = self.keep_prob_at(self.step)
        self.step.assign_add(1)
        batch = ops.shape(inputs)[0]
        noise = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator, dtype="float32")
        mask = ops.floor(keep + noise)
        scale = ops.cast(mask / keep, inputs.dtype)
        return inputs * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(keep_prob=self.keep_prob, cell_index=self.cell_index, total_cells=self.total_cells,
                      total_steps=self.total_steps, seed=self.seed)
        return config
