"""Cell search (paper Sec. 3-4): the search space as Keras Tuner hyperparameters, the RL controller
(LSTM + PPO) and a random baseline as Keras Tuner oracles, fault-tolerant chief / worker search,
child training (`CellSearchTuner`) and live reports; weight-sharing search (ENAS) in
`nasnet_keras.search.weight_sharing`."""

from nasnet_keras.search import progress, reports
from nasnet_keras.search.child import ChildTrainer, ChildTrainingFailed, resolve_distribution_strategy
from nasnet_keras.search.child_process import ChildCrashedError, ChildHungError
from nasnet_keras.search.chief_rpc import ChiefClient, ChiefError, ChiefUnreachableError
from nasnet_keras.search.controller import PPOController
from nasnet_keras.search.data import SearchData, load_dataset
from nasnet_keras.search.fault_tolerance import FaultTolerantOracle
from nasnet_keras.search.oracles import NASNetRLOracle, RandomCellOracle
from nasnet_keras.search.report_writer import ReportWriter, SearchLog
from nasnet_keras.search.space import (Decision, SearchSpace, build_hyperparameters, decisions,
                                       genotype_from_hyperparameters, hyperparameters_from_genotype, num_choices)
from nasnet_keras.search.trial_wire import TrialHeartbeat
from nasnet_keras.search.tuner import CellSearchTuner, TooManyFailedTrialsError

__all__ = ["CellSearchTuner", "ChiefClient", "ChiefError", "ChiefUnreachableError", "ChildCrashedError",
           "ChildHungError", "ChildTrainer", "ChildTrainingFailed", "Decision", "FaultTolerantOracle",
           "NASNetRLOracle", "PPOController", "RandomCellOracle", "ReportWriter", "SearchData", "SearchLog",
           "SearchSpace", "TooManyFailedTrialsError", "TrialHeartbeat", "build_hyperparameters", "decisions",
           "genotype_from_hyperparameters", "hyperparameters_from_genotype", "load_dataset", "num_choices",
           "progress", "reports", "resolve_distribution_strategy"]
