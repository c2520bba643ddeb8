"""The paper's training recipes as data: one `Recipe` per preset, every value overridable.

Sources: the paper (Zoph et al., CVPR 2018) Appendix A.6 (CIFAR-10) and A.7
(ImageNet), and TF-slim nets/nasnet/nasnet.py (`cifar_config`,
`mobile_imagenet_config`, `large_imagenet_config`, whose model sizes live in
`nasnet_keras.configs.CONFIGS`) with slim's train_image_classifier.py flags.

* ``cifar``  -- NASNet-A 6 @ 768 on 32x32 images: SGD momentum 0.9, lr 0.025,
  batch 32, single-period cosine decay over 600 epochs (slim: 937,500 steps
  at batch 32 on 50,000 images), L2 5e-4, auxiliary head (loss weight 0.4),
  drop path keep 0.6 over the run, global-norm clipping 5, pad/crop/flip
  (+ optional cutout; the paper's best CIFAR-10 errors use cutout but give no
  size, 16 is the usual value).
* ``mobile`` -- NASNet-A 4 @ 1056 at 224: RMSProp (decay 0.9, momentum 0.9,
  epsilon 1.0), lr 0.04 per 32 images (paper: 0.04 x 50 replicas of 32),
  staircase decay 0.97 every 2.4 epochs, label smoothing 0.1, aux head 0.4,
  dense dropout 0.5, L2 4e-5, no drop path, clipping 10, Inception-style
  crops, EMA 0.9999 of the weights for evaluation.
* ``large``  -- NASNet-A 6 @ 4032 at 331: as mobile with lr 0.015 per 16
  images (paper: 0.015 x 100 replicas of 16), L2 5e-5, drop path keep 0.7.

The ImageNet epochs are not stated in the paper; slim ramps drop path over
250,000 steps at the paper's global batch of 1,600 (50 x 32 or 100 x 16),
i.e. 312 epochs of ImageNet's 1,281,167 images: that is the default here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

from nasnet_keras.configs import CONFIGS
from nasnet_keras.training.optimization import OPTIMIZERS, SCHEDULES

__all__ = ["PRESETS", "Recipe", "SMALL_IMAGE_MAX", "check_preset_fits", "preset_for_images", "resolve_recipe"]

#: Images whose sides are at most this many pixels are "small" (CIFAR-like): the ``cifar`` preset (CIFAR stem,
#: no stem reductions) fits them; larger images need an ImageNet preset (3x3/2 stem + two reduction cells).
SMALL_IMAGE_MAX = 64
PREPROCESSING = ("cifar", "inception")
LR_SCALING = ("none", "linear")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything a transfer-training run needs besides the genotype and the data.

    Model: ``num_cells`` (N), ``filters`` (F of the first stack; P = 24F for
    NASNet-A), ``stem`` / ``stem_filters`` (None: the builder's default),
    ``skip_reduction``, ``image_size`` (training crop; None: native size),
    ``aux_head`` / ``aux_weight``, ``dropout`` (before the classifier),
    ``drop_path_keep_prob`` (ramped over the run's total steps).
    Optimization: ``optimizer`` (sgd | rmsprop), ``learning_rate`` at
    ``base_batch`` images, ``lr_scaling`` (``linear``: times global batch /
    ``base_batch``; ``none``), ``momentum``, ``rmsprop_decay``, ``epsilon``,
    ``schedule`` (cosine | exponential | constant) with ``decay_rate`` every
    ``decay_epochs``, ``weight_decay`` (slim L2), ``label_smoothing``,
    ``clip_norm`` (global norm; 0 / None: off), ``ema_decay`` (0 / None: no EMA),
    ``batch_size`` (per replica), ``epochs``.
    Data: ``preprocessing`` (cifar | inception), ``cutout`` (0: off).
    """

    name: str
    num_cells: int
    filters: int
    stem: str
    stem_filters: Optional[int]
    skip_reduction: bool
    image_size: Optional[int]
    aux_head: bool
    aux_weight: float
    dropout: float
    drop_path_keep_prob: float
    optimizer: str
    learning_rate: float
    base_batch: int
    lr_scaling: str
    momentum: float
    rmsprop_decay: float
    epsilon: float
    schedule: str
    decay_rate: float
    decay_epochs: float
    weight_decay: float
    label_smoothing: float
    clip_norm: Optional[float]
    ema_decay: Optional[float]
    batch_size: int
    epochs: int
    preprocessing: str
    cutout: int = 0

    def learning_rate_for(self, global_batch: int) -> float:
        """The initial learning rate at ``global_batch`` images per step (the preset's scaling rule)."""
        if self.lr_scaling == "linear":
            return self.learning_rate * global_batch / self.base_batch
        return self.learning_rate

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _imagenet_recipe(preset: str, learning_rate: float, batch: int, weight_decay: float) -> Recipe:
    config = CONFIGS[preset]
    return Recipe(
        name=preset, num_cells=config.num_cells, filters=config.penultimate_filters // 24, stem="imagenet",
        stem_filters=config.stem_filters, skip_reduction=config.skip_reduction, image_size=config.default_size,
        aux_head=config.aux_head, aux_weight=0.4, dropout=config.dropout,
        drop_path_keep_prob=config.drop_path_keep_prob,
        optimizer="rmsprop", learning_rate=learning_rate, base_batch=batch, lr_scaling="linear", momentum=0.9,
        rmsprop_decay=0.9, epsilon=1.0, schedule="exponential", decay_rate=0.97, decay_epochs=2.4,
        weight_decay=weight_decay, label_smoothing=0.1, clip_norm=10.0, ema_decay=0.9999, batch_size=batch,
        epochs=312, preprocessing="inception")


_CIFAR = CONFIGS["cifar"]
PRESETS: Dict[str, Recipe] = {
    # Paper Appendix A.6; TF-slim nets/nasnet/nasnet.py cifar_config (F = 768 / 24 = 32, stem 3F).
    "cifar": Recipe(
        name="cifar", num_cells=_CIFAR.num_cells, filters=_CIFAR.penultimate_filters // 24, stem="cifar",
        stem_filters=None, skip_reduction=_CIFAR.skip_reduction, image_size=None, aux_head=_CIFAR.aux_head,
        aux_weight=0.4, dropout=_CIFAR.dropout, drop_path_keep_prob=_CIFAR.drop_path_keep_prob, optimizer="sgd",
        learning_rate=0.025,
        base_batch=32, lr_scaling="none", momentum=0.9, rmsprop_decay=0.9, epsilon=1.0, schedule="cosine",
        decay_rate=0.97, decay_epochs=2.4, weight_decay=5e-4, label_smoothing=0.0, clip_norm=5.0, ema_decay=None,
        batch_size=32, epochs=600, preprocessing="cifar"),
    # Paper Appendix A.7; TF-slim mobile_imagenet_config: lr 0.04 per replica of 32 images, L2 4e-5.
    "mobile": _imagenet_recipe("mobile", 0.04, 32, 4e-5),
    # Paper Appendix A.7; TF-slim large_imagenet_config: lr 0.015 per replica of 16 images, L2 5e-5.
    "large": _imagenet_recipe("large", 0.015, 16, 5e-5),
}


def preset_for_images(native_size) -> str:
    """The preset that fits images of ``native_size`` ``(h, w)`` (None: varying, ImageNet-like)."""
    if native_size is not None and max(native_size) <= SMALL_IMAGE_MAX:
        return "cifar"
    return "mobile"


def check_preset_fits(preset: str, native_size, image_size: Optional[int] = None) -> None:
    """Refuses a preset that does not fit the data, naming the one that does.

    Args:
        preset: ``cifar``, ``mobile`` or ``large``.
        native_size: ``(h, w)`` of the dataset's images; None when they vary.
        image_size: the training size asked for (``--image_size``), if any;
            an ImageNet preset may train small images upscaled to it.

    Raises:
        ValueError: the images are too small for an ImageNet preset or too
            large / varying for ``cifar``.
    """
    small = native_size is not None and max(native_size) <= SMALL_IMAGE_MAX
    shown = "of varying size" if native_size is None else f"{native_size[0]}x{native_size[1]}"
    if preset == "cifar" and not small and image_size is None:
        raise ValueError(
            f"--preset=cifar trains 32x32-style images with the CIFAR stem, but these images are {shown}. "
            "Use --preset=mobile (224) or --preset=large (331) for ImageNet-sized images, or pass "
            f"--image_size=N (N <= {SMALL_IMAGE_MAX}) to shrink them.")
    if preset in ("mobile", "large") and small and image_size is None:
        raise ValueError(
            f"--preset={preset} trains {PRESETS[preset].image_size}x{PRESETS[preset].image_size} crops of "
            f"ImageNet-sized images with the ImageNet stem (1/32 resolution at the end), but these images are "
            f"{shown}. Use --preset=cifar for small images (or pass --image_size to train them upscaled).")


def resolve_recipe(preset: str, overrides: Optional[Dict[str, Any]] = None) -> Recipe:
    """The preset with ``overrides`` (field -> value; None values are ignored) applied and checked.

    Raises:
        ValueError: an unknown preset or field, or a value out of range.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    values = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(Recipe)})
    if unknown:
        raise ValueError(f"Unknown recipe settings: {', '.join(unknown)}.")
    recipe = dataclasses.replace(PRESETS[preset], **values)
    _check(recipe)
    return recipe


def _check(r: Recipe) -> None:
    problems = []
    for name in ("num_cells", "filters", "batch_size", "epochs", "base_batch"):
        if int(getattr(r, name)) < 1:
            problems.append(f"{name} must be >= 1 (got {getattr(r, name)})")
    for name in ("learning_rate", "decay_epochs"):
        if not getattr(r, name) > 0:
            problems.append(f"{name} must be > 0 (got {getattr(r, name)})")
    for name in ("weight_decay", "aux_weight", "cutout"):
        if getattr(r, name) < 0:
            problems.append(f"{name} must be >= 0 (got {getattr(r, name)})")
    for name in ("dropout", "label_smoothing"):
        if not 0.0 <= getattr(r, name) < 1.0:
            problems.append(f"{name} must be in [0, 1) (got {getattr(r, name)})")
    if not 0.0 < r.drop_path_keep_prob <= 1.0:
        problems.append(f"drop_path_keep_prob must be in (0, 1] (got {r.drop_path_keep_prob})")
    if r.ema_decay and not 0.0 < r.ema_decay < 1.0:
        problems.append(f"ema_decay must be in (0, 1), or 0 for off (got {r.ema_decay})")
    if r.clip_norm and not r.clip_norm > 0:
        problems.append(f"clip_norm must be > 0, or 0 for off (got {r.clip_norm})")
    if r.image_size is not None and r.image_size < 32:
        problems.append(f"image_size must be >= 32 (got {r.image_size})")
    for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("preprocessing", PREPROCESSING),
                          ("lr_scaling", LR_SCALING), ("stem", ("cifar", "imagenet"))):
        if getattr(r, name) not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)} (got {getattr(r, name)!r})")
    if r.preprocessing == "inception" and r.image_size is None:
        problems.append("preprocessing 'inception' needs an image_size (the crop size)")
    if problems:
        raise ValueError("Invalid training settings: " + "; ".join(problems) + ".")
