"""Cell search (paper Sec. 3-4): the search space as Keras Tuner hyperparameters,
the RL controller (LSTM + PPO) and a random baseline as Keras Tuner oracles,
and child training (`CellSearchTuner`)."""

from nasnet_keras.search import progress
from nasnet_keras.search.controller import PPOController
from nasnet_keras.search.data import SearchData, load_dataset
from nasnet_keras.search.oracles import NASNetRLOracle, RandomCellOracle, TrialHeartbeat
from nasnet_keras.search.space import (Decision, SearchSpace, build_hyperparameters, decisions,
                                       genotype_from_hyperparameters, hyperparameters_from_genotype, num_choices)
from nasnet_keras.search.tuner import (CellSearchTuner, ChildTrainer, ChildTrainingFailed, TooManyFailedTrialsError,
                                       resolve_distribution_strategy)

__all__ = ["CellSearchTuner", "ChildTrainer", "ChildTrainingFailed", "Decision", "NASNetRLOracle", "PPOController",
           "RandomCellOracle", "SearchData", "SearchSpace", "TooManyFailedTrialsError", "TrialHeartbeat",
           "build_hyperparameters", "decisions", "genotype_from_hyperparameters", "hyperparameters_from_genotype",
           "load_dataset", "num_choices", "progress", "resolve_distribution_strategy"]
