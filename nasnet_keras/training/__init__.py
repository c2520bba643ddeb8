"""Full-scale (transfer) training of NASNet genotypes with the paper's recipes (Zoph et al. 2018, Appendix A).

`python -m search.train` is the command; the parts, in the order data flows:

* `recipes` -- the paper's presets (`PRESETS`: cifar, mobile, large) as `Recipe` records;
* `data` -- `load_training_data`: train / validation pipelines with the recipe's preprocessing
  (`preprocessing`: CIFAR pad-crop-flip-cutout, Inception crops);
* `optimization` -- slim L2 decay, schedules, optimizers with the moving average of the weights;
* `trainer` -- `TransferTrainer`: builds the genotype with `NASNet`, trains, checkpoints, resumes, saves;
* `checkpoint`, `run_directory`, `callbacks`, `distribution`, `genotype_source`, `evaluation`.

(`data` is not imported here: it imports the search's data sources, which import `preprocessing`.)
"""

from nasnet_keras.training.genotype_source import load_genotype
from nasnet_keras.training.recipes import PRESETS, Recipe, resolve_recipe
from nasnet_keras.training.trainer import TransferTrainer, inference_network

__all__ = ["PRESETS", "Recipe", "TransferTrainer", "inference_network", "load_genotype", "resolve_recipe"]
