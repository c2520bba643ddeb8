"""nasnet-keras: NASNet (Zoph et al., CVPR 2018) for Keras 3.

* `NASNet(genotype=...)` builds any cell genotype into a network;
* `nasnet_keras.applications` has NASNetMobile / NASNetLarge (published
  ImageNet weights) and NASNetCIFAR;
* `nasnet_keras.layers` has the cell ops and ScheduledDropPath;
* `nasnet_keras.search` searches for cells (Keras Tuner oracles);
* `pyramid_outputs` / `pyramid_model` give the multi-scale cell outputs;
* `nasnet_keras.visualize.plot_cell` draws a cell.
"""

from nasnet_keras import genotypes, layers
from nasnet_keras.builder import NASNet, inference_model
from nasnet_keras.cost import Cost, model_cost
from nasnet_keras.features import pyramid_model, pyramid_outputs
from nasnet_keras.genotypes import NASNET_A, PNASNET_5, Block, Cell, Genotype

__version__ = "0.1.0"

__all__ = ["NASNet", "NASNET_A", "PNASNET_5", "Block", "Cell", "Cost", "Genotype", "genotypes",
           "inference_model", "layers", "model_cost", "pyramid_model", "pyramid_outputs"]
