"""Who picks the architecture of each step: the controller (``enas``) or uniform sampling (``enas_random``).

Both samplers have the same small interface -- ``sample() -> (indices,
log_prob)``, ``add_reward(indices, log_prob, reward)``, ``get_state()`` /
``set_state()`` (JSON data, so a resumed search continues the exact same
sequence) -- so the search loop does not care which one runs.
``enas_random`` is the baseline of Li & Talwalkar (2019): the same shared
network and budget, architectures drawn uniformly.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nasnet_keras.search import space as space_lib
from nasnet_keras.search.controller import PPOController
from nasnet_keras.search.weight_sharing.config import WeightSharingConfig

__all__ = ["ControllerSampler", "SAMPLERS", "UniformSampler", "make_sampler"]


def logit_tanh_constants(space: space_lib.SearchSpace, tanh_constant: Optional[float],
                         op_tanh_reduce: float) -> Optional[List[float]]:
    """Per decision, the ``c`` of ENAS' logit squashing ``c * tanh(logits)``: ``tanh_constant`` for inputs and
    combines, ``tanh_constant / op_tanh_reduce`` for ops (Pham et al. 2018, authors' code); ``None``: off."""
    if tanh_constant is None:
        return None
    return [tanh_constant / op_tanh_reduce if d.field in ("op0", "op1") else tanh_constant
            for d in space_lib.decisions(space)]


class ControllerSampler:
    """The package's LSTM controller (`PPOController`) with the config's settings; learns from rewards."""

    name = "enas"

    def __init__(self, space: space_lib.SearchSpace, config: WeightSharingConfig, seed: int):
        self.controller = PPOController(
            space_lib.num_choices(space), units=config.controller_units,
            learning_rate=config.controller_learning_rate, entropy_weight=config.controller_entropy_weight,
            baseline_decay=config.controller_baseline_decay, batch_size=config.controller_batch_size,
            ppo_epochs=config.controller_ppo_epochs, adam_beta1=config.controller_adam_beta1,
            logit_tanh=logit_tanh_constants(space, config.controller_tanh_constant,
                                            config.controller_op_tanh_reduce),
            seed=seed)

    def sample(self) -> Tuple[List[int], float]:
        return self.controller.sample()

    def add_reward(self, indices: Sequence[int], log_prob: float, reward: float) -> Optional[Dict[str, float]]:
        return self.controller.add_reward(indices, log_prob, reward)

    def get_state(self) -> Dict[str, Any]:
        return self.controller.get_state()

    def set_state(self, state: Dict[str, Any]) -> None:
        self.controller.set_state(state)


class UniformSampler:
    """Every decision uniform and independent; rewards are ignored."""

    name = "enas_random"

    def __init__(self, space: space_lib.SearchSpace, config: WeightSharingConfig, seed: int):
        self.num_choices = space_lib.num_choices(space)
        self.rng = np.random.default_rng(seed)
        self.log_prob = -float(np.sum(np.log(self.num_choices)))

    def sample(self) -> Tuple[List[int], float]:
        return [int(self.rng.integers(n)) for n in self.num_choices], self.log_prob

    def add_reward(self, indices, log_prob, reward) -> None:
        return None

    def get_state(self) -> Dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}  # PCG64's state: plain ints, JSON-ready

    def set_state(self, state: Dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


SAMPLERS = {ControllerSampler.name: ControllerSampler, UniformSampler.name: UniformSampler}


def make_sampler(name: str, space: space_lib.SearchSpace, config: WeightSharingConfig, seed: int):
    """The sampler called ``name`` (``"enas"`` or ``"enas_random"``)."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown weight-sharing oracle {name!r}; choose one of {', '.join(SAMPLERS)}.")
    return SAMPLERS[name](space, config, seed)

