"""Settings of a weight-sharing search, and its two presets (the one place their values live).

``paper`` is ENAS' CIFAR-10 micro search (Pham et al. 2018, Sec. 3.2 and
Appendix; values of the authors' ``scripts/cifar10_micro_search.sh`` in
melodyguan/enas): shared network of 6 normal cells (N = 2 per stack) and two
reductions, 20 filters, B = 5 over ENAS' 5 ops with the add combine; 150
epochs of batch 160, Nesterov momentum 0.9, cosine learning rate with warm
restarts from 0.05 to 0.0005 (first period 10 epochs, each next one twice as
long), L2 1e-4, gradients clipped to global norm 5; after every epoch 30 controller updates of 10 architectures
scored on one validation minibatch of 160 images each; controller: LSTM of 64
units, Adam (beta1 = 0) with learning rate 0.0035, entropy weight 1e-4,
baseline decay 0.99, logits squashed as ``1.10 * tanh(.)`` (op logits
``1.10 / 2.5 * tanh(.)``), REINFORCE (one policy-gradient step per batch).

Two deliberate differences: the entropy bonus is a term of the controller's
loss (`PPOController`), not a term added to the reward as in ENAS' code; and
no auxiliary head (ENAS' weight 0.4), because the package's children are
trained and scored without one.

``quick`` keeps the quick RL preset's child (digits, N = 1, F = 8, B = 3,
batch 32) over ENAS' 5 ops with the add combine (with the paper's 13 ops,
each op gets a fifth of the updates and the shared network had not left
chance level after 3 epochs), and makes the schedule short enough for a
CPU: 8 epochs, lr 0.05 -> 0.0005 in one period, 50 rewards per epoch on
minibatches of 64 and 100 architectures scored at the end: 500 architectures
scored with the shared weights in all.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from nasnet_keras.search.checks import check_positive, check_probability

__all__ = ["ENAS_OPS", "PRESETS", "WeightSharingConfig"]

#: ENAS' micro search ops (Pham et al. 2018, Sec. 2.4), in the package's names.
ENAS_OPS: Tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")


@dataclasses.dataclass(frozen=True)
class WeightSharingConfig:
    """Everything a weight-sharing search run depends on, besides the data and the search space.

    Shared network and its training: ``num_cells`` (N), ``filters`` (F),
    ``epochs``, ``batch_size``, ``learning_rate`` (start of each cosine
    period), ``min_learning_rate`` (its end), ``restart_epochs`` (first
    period; ``>= epochs``: one period), ``restart_multiplier`` (growth of
    each next period), ``momentum`` (Nesterov), ``weight_decay`` (slim-style
    L2 on the chosen ops' kernels), ``grad_clip_norm`` (global norm; ENAS: 5).

    Controller phase, every ``controller_every`` epochs:
    ``controller_steps`` updates of ``controller_batch_size`` architectures,
    each scored on one reward minibatch of ``reward_batch_size`` images.
    Controller: ``controller_units``, ``controller_learning_rate``,
    ``controller_entropy_weight``, ``controller_baseline_decay``,
    ``controller_tanh_constant`` (``None``: no squashing),
    ``controller_op_tanh_reduce``, ``controller_adam_beta1``,
    ``controller_ppo_epochs`` (1: REINFORCE).

    Selection: ``final_architectures`` (M) sampled at the end (distinct),
    each scored on the whole reward set.
    """

    num_cells: int = 1
    filters: int = 8
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 0.05
    min_learning_rate: float = 0.0005
    restart_epochs: int = 8
    restart_multiplier: float = 2.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    controller_every: int = 1
    controller_steps: int = 10
    controller_batch_size: int = 5
    reward_batch_size: int = 64
    controller_units: int = 64
    controller_learning_rate: float = 0.0035
    controller_entropy_weight: float = 1e-4
    controller_baseline_decay: float = 0.99
    controller_tanh_constant: Optional[float] = 1.10
    controller_op_tanh_reduce: float = 2.5
    controller_adam_beta1: float = 0.0
    controller_ppo_epochs: int = 1
    final_architectures: int = 100
    grad_clip_norm: float = 5.0

    def __post_init__(self):
        for name in ("num_cells", "filters", "epochs", "batch_size", "restart_epochs", "controller_every",
                     "controller_steps", "controller_batch_size", "reward_batch_size", "controller_units",
                     "controller_ppo_epochs", "final_architectures"):
            check_positive(name, getattr(self, name))
        for name in ("learning_rate", "min_learning_rate", "restart_multiplier", "controller_learning_rate",
                     "controller_op_tanh_reduce", "grad_clip_norm"):
            check_positive(name, getattr(self, name), float)
        for name in ("weight_decay", "controller_entropy_weight"):
            check_positive(name, getattr(self, name), float, allow_zero=True)
        check_probability("momentum", self.momentum, allow_zero=True, allow_one=False)
        check_probability("controller_baseline_decay", self.controller_baseline_decay, allow_zero=True,
                          allow_one=False)
        check_probability("controller_adam_beta1", self.controller_adam_beta1, allow_zero=True, allow_one=False)
        if self.controller_tanh_constant is not None:
            check_positive("controller_tanh_constant", self.controller_tanh_constant, float)
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(f"min_learning_rate ({self.min_learning_rate}) must not exceed learning_rate "
                             f"({self.learning_rate}).")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "WeightSharingConfig":
        """The config from a dict holding (at least) every field; other keys are ignored."""
        return cls(**{f.name: settings[f.name] for f in dataclasses.fields(cls)})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


_PAPER = WeightSharingConfig(
    num_cells=2, filters=20, epochs=150, batch_size=160, learning_rate=0.05, min_learning_rate=0.0005,
    restart_epochs=10, restart_multiplier=2.0, momentum=0.9, weight_decay=1e-4, controller_every=1,
    controller_steps=30, controller_batch_size=10, reward_batch_size=160, controller_units=64,
    controller_learning_rate=0.0035, controller_entropy_weight=1e-4, controller_baseline_decay=0.99,
    controller_tanh_constant=1.10, controller_op_tanh_reduce=2.5, controller_adam_beta1=0.0,
    controller_ppo_epochs=1, final_architectures=100, grad_clip_norm=5.0)

#: Per preset of ``python -m search.run``: the weight-sharing settings plus the search space (``num_blocks``,
#: ``ops``, ``combines``) and ``dataset``. Explicit flags override them.
PRESETS: Dict[str, Dict[str, Any]] = {
    "quick": dict(WeightSharingConfig().to_dict(), dataset="digits", num_blocks=3, ops=ENAS_OPS,
                  combines=("add",)),
    "paper": dict(_PAPER.to_dict(), dataset="cifar10", num_blocks=5, ops=ENAS_OPS, combines=("add",)),
}
