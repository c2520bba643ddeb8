"""Weight-sharing cell search (ENAS, Pham et al. 2018): one shared network over the whole search space,
the package's controller (or uniform sampling) choosing the child of every training step.

`python -m search.run --oracle=enas` runs it; from Python:

    data = load_dataset("digits", batch_size=32)
    search = WeightSharingSearch(data, SearchSpace(num_blocks=3, ops=ENAS_OPS, combines=("add",)),
                                 WeightSharingConfig(), oracle="enas", project_dir="runs/enas")
    result = search.run()          # {"best": TrialRecord, "records": [...], "scored": int}
"""

from nasnet_keras.search.weight_sharing.config import ENAS_OPS, PRESETS, WeightSharingConfig
from nasnet_keras.search.weight_sharing.search_loop import WeightSharingSearch
from nasnet_keras.search.weight_sharing.shared_network import SharedNASNet, check_shareable_space
from nasnet_keras.search.weight_sharing.shared_trainer import SharedTrainer, SharedTrainingDiverged

__all__ = ["ENAS_OPS", "PRESETS", "SharedNASNet", "SharedTrainer", "SharedTrainingDiverged", "WeightSharingConfig",
           "WeightSharingSearch", "check_shareable_space"]
