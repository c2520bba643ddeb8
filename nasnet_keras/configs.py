"""Model presets as data (TF-slim nets/nasnet/nasnet.py `cifar_config`, `mobile_imagenet_config`, `large_imagenet_config`, and the keras.applications NASNet presets)."""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class NASNetConfig:
    """Builder arguments of a published configuration ("N @ P")."""

    num_cells: int                 # N, normal cells per stack
    penultimate_filters: int       # P
    stem: str
    stem_filters: int
    skip_reduction: bool
    default_size: int              # input height/width the model was trained at
    drop_path_keep_prob: float     # slim's final keep prob for training from scratch
    total_training_steps: Optional[int]
    aux_head: bool
    dropout: float                 # rate before the classifier (slim: 1 - dense_dropout_keep_prob)


CONFIGS = {
    # Paper Table 2 / slim mobile_imagenet_config: NASNet-A 4 @ 1056.
    "mobile": NASNetConfig(4, 1056, "imagenet", 32, False, 224, 1.0, 250_000, True, 0.5),
    # Paper Table 2 / slim large_imagenet_config: NASNet-A 6 @ 4032.
    "large": NASNetConfig(6, 4032, "imagenet", 96, True, 331, 0.7, 250_000, True, 0.5),
    # Paper Table 1 / slim cifar_config: NASNet-A 6 @ 768 (3.3M params).
    "cifar": NASNetConfig(6, 768, "cifar", 96, False, 32, 0.6, 937_500, True, 0.0),
    # Paper Table 1: NASNet-A 7 @ 2304 (27.6M params).
    "cifar_large": NASNetConfig(7, 2304, "cifar", 288, False, 32, 0.6, 937_500, True, 0.0),
}
