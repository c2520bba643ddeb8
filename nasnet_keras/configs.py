"""Model presets as data (TF-slim nets/nasnet/nasnet.py `cifar_config`, `mobile_imagenet_config`,
`large_imagenet_config`, pnasnet.py `mobile_imagenet_config`, `large_imagenet_config`, and the
keras.applications NASNet presets)."""

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
    layout: str = "nasnet"         # nasnet_keras.builder.LAYOUTS
    genotype: str = "nasnet_a"     # key of nasnet_keras.genotypes.GENOTYPES


CONFIGS = {
    # Paper Table 2 / slim mobile_imagenet_config: NASNet-A 4 @ 1056.
    "mobile": NASNetConfig(4, 1056, "imagenet", 32, False, 224, 1.0, 250_000, True, 0.5),
    # Paper Table 2 / slim large_imagenet_config: NASNet-A 6 @ 4032.
    "large": NASNetConfig(6, 4032, "imagenet", 96, True, 331, 0.7, 250_000, True, 0.5),
    # Paper Table 1 / slim cifar_config: NASNet-A 6 @ 768 (3.3M params).
    "cifar": NASNetConfig(6, 768, "cifar", 96, False, 32, 0.6, 937_500, True, 0.0),
    # Paper Table 1: NASNet-A 7 @ 2304 (27.6M params).
    "cifar_large": NASNetConfig(7, 2304, "cifar", 288, False, 32, 0.6, 937_500, True, 0.0),
    # PNAS paper (Liu et al. 2018) / slim pnasnet.py: PNASNet-5 Mobile, 9 cells of 54 filters (P = 5 * 4 * 54).
    "pnasnet_mobile": NASNetConfig(9, 1080, "imagenet", 32, False, 224, 1.0, 250_000, True, 0.5, "pnasnet",
                                  "pnasnet_5"),
    # PNASNet-5 Large: 12 cells of 216 filters, stem multiplier 3 (stem conv 96).
    "pnasnet_large": NASNetConfig(12, 4320, "imagenet", 96, False, 331, 0.6, 250_000, True, 0.5, "pnasnet",
                                 "pnasnet_5"),
}
