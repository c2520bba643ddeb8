"""Cell search (paper Sec. 3-4): the search space as Keras Tuner hyperparameters,
the RL controller (LSTM + PPO) and a random baseline as Keras Tuner oracles,
and child training (`CellSearchTuner`)."""

from nasnet_keras.search.controller import PPOController
from nasnet_keras.search.oracles import NASNetRLOracle, RandomCellOracle
from nasnet_keras.search.space import (Decision, SearchSpace, build_hyperparameters, decisions,
                                       genotype_from_hyperparameters, hyperparameters_from_genotype, num_choices)

__all__ = ["Decision", "NASNetRLOracle", "PPOController", "RandomCellOracle", "SearchSpace",
           "build_hyperparameters", "decisions", "genotype_from_hyperparameters",
           "hyperparameters_from_genotype", "num_choices"]
