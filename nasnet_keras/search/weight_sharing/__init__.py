"""Weight-sharing cell search (ENAS, Pham et al. 2018): one shared network over the whole search space,
the package's controller (or uniform sampling) choosing the child of every training step."""

from nasnet_keras.search.weight_sharing.shared_network import SharedNASNet, check_shareable_space

__all__ = ["SharedNASNet", "check_shareable_space"]
