"""NASNet-A models with the keras.applications signatures (paper Table 2, Table 1)."""

from typing import Optional

from nasnet_keras import genotypes
from nasnet_keras.builder import NASNet
from nasnet_keras.configs import CONFIGS


def imagenet_model(preset, genotype, input_shape, include_top, weights, input_tensor, pooling, classes,
                   classifier_activation, name, drop_path_keep_prob, total_training_steps, weights_base_url,
                   bn_momentum, dropout, aux_head, pool_padding=None):
    """One ImageNet application: `NASNet` with `CONFIGS[preset]` and keras.applications' input defaults."""
    config = CONFIGS[preset]
    if input_shape is None and input_tensor is None:
        size = config.default_size
        input_shape = (size, size, 3) if include_top else (None, None, 3)
    return NASNet(
        genotype, config.num_cells, config.penultimate_filters, stem=config.stem, layout=config.layout,
        pool_padding=pool_padding,
        stem_filters=config.stem_filters, skip_reduction=config.skip_reduction,
        drop_path_keep_prob=drop_path_keep_prob, total_training_steps=total_training_steps, dropout=dropout,
        aux_head=aux_head, include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        weights_base_url=weights_base_url, bn_momentum=bn_momentum, name=name)


def NASNetMobile(input_shape=None, include_top=True, weights="imagenet", input_tensor=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name="nasnet_mobile", *,
                 drop_path_keep_prob: float = 1.0, total_training_steps: Optional[int] = None,
                 weights_base_url: Optional[str] = None, bn_momentum: Optional[float] = None,
                 dropout: float = 0.0, aux_head: bool = False, pool_padding: Optional[str] = None):
    """NASNet-A Mobile (4 @ 1056, 224x224): 5.3M params, 564M mult-adds, 74.0% top-1.

    Same arguments and defaults as `keras.applications.NASNetMobile`, and the
    same published weights, computed by this package's genotype builder.
    Unlike keras.applications, `include_top=False` accepts any input size
    >= 32, `None` included, with `weights="imagenet"`.

    Args:
        input_shape: `(h, w, 3)`; default (224, 224, 3) with `include_top`,
            else (None, None, 3).
        include_top: keep the 1000-class classifier.
        weights: `None`, `"imagenet"` (the Keras port of the slim
            weights), a weights file path, or the prefix of an original
            TF-slim checkpoint (``"nasnet-a_mobile_04_10_2017/model.ckpt"``:
            1001-class slim classifier, background class dropped).
        input_tensor: optional Keras tensor as the input.
        pooling: `None`, `"avg"` or `"max"` with `include_top=False`.
        classes: classes with `include_top` (1000 for ImageNet weights).
        classifier_activation: activation of the top layer (`None` = logits).
        name: model name.
        drop_path_keep_prob: ScheduledDropPath final keep prob for
            fine-tuning (default 1.0, off; keyword only; TF-slim trained
            Mobile with 1.0 and Large with 0.7).
        total_training_steps: steps over which drop path ramps up (slim:
            250,000).
        weights_base_url: mirror of the published weights files.
        bn_momentum: BatchNorm momentum; default the published 0.9997, whose
            moving statistics barely move in a short run: use ~0.9 when
            training from random weights.
        dropout: dropout rate before the classifier (default 0.0 as
            keras.applications; TF-slim trained both models with 0.5).
        aux_head: add the auxiliary classifier as a second output
            ``"aux_predictions"`` (default False as keras.applications;
            TF-slim trained with it, loss weight 0.4). Needs `include_top`
            and a static input size; `nasnet_keras.inference_model` drops it.

        pool_padding: ``"keras"`` (stride-2 pools count padded zeros, as
            the published Keras weights were evaluated) or ``"slim"`` (TF
            SAME pooling, as TF-slim trained the originals). Default: "slim"
            when `weights` is a TF-slim checkpoint, else "keras".

    Settings of the slim configs, for training from scratch:
    ``NASNetLarge(weights=None, dropout=0.5, aux_head=True,
    drop_path_keep_prob=0.7, total_training_steps=250_000)``
    (`nasnet_keras.configs.CONFIGS` holds them).

    Returns:
        A `keras.Model`; input images are preprocessed with
        `nasnet_keras.applications.preprocess_input` (x / 127.5 - 1).
    """
    return imagenet_model("mobile", genotypes.NASNET_A, input_shape, include_top, weights, input_tensor, pooling,
                          classes, classifier_activation, name, drop_path_keep_prob, total_training_steps,
                          weights_base_url, bn_momentum, dropout, aux_head, pool_padding)


def NASNetLarge(input_shape=None, include_top=True, weights="imagenet", input_tensor=None, pooling=None,
                classes=1000, classifier_activation="softmax", name="nasnet_large", *,
                drop_path_keep_prob: float = 1.0, total_training_steps: Optional[int] = None,
                weights_base_url: Optional[str] = None, bn_momentum: Optional[float] = None,
                dropout: float = 0.0, aux_head: bool = False, pool_padding: Optional[str] = None):
    """NASNet-A Large (6 @ 4032, 331x331): 88.9M params, 23.8B mult-adds, 82.7% top-1.

    Same arguments as `NASNetMobile` (and `keras.applications.NASNetLarge`);
    default input (331, 331, 3) with `include_top`.
    """
    return imagenet_model("large", genotypes.NASNET_A, input_shape, include_top, weights, input_tensor, pooling,
                          classes, classifier_activation, name, drop_path_keep_prob, total_training_steps,
                          weights_base_url, bn_momentum, dropout, aux_head, pool_padding)


def NASNetCIFAR(input_shape=(32, 32, 3), include_top=True, weights=None, input_tensor=None, pooling=None,
                classes=10, classifier_activation="softmax", name="nasnet_cifar", *,
                genotype=genotypes.NASNET_A, num_cells: Optional[int] = None,
                penultimate_filters: Optional[int] = None, aux_head: bool = False,
                drop_path_keep_prob: Optional[float] = None, total_training_steps: Optional[int] = None):
    """NASNet-A for CIFAR-10 (paper Table 1): 6 @ 768 by default (3.3M params).

    CIFAR stem (3x3 conv + BN, no stem reductions), slim's CIFAR BatchNorm
    (momentum 0.9, epsilon 1e-5). For 7 @ 2304 pass `num_cells=7,
    penultimate_filters=2304`.

    Args:
        input_shape: default (32, 32, 3).
        include_top, weights, input_tensor, pooling, classes,
        classifier_activation, name: as keras.applications (weights: `None`
            or a file; there are no published CIFAR weights).
        genotype: cells to stack (default NASNet-A).
        num_cells: N per stack (default 6).
        penultimate_filters: P (default 768).
        aux_head: add the auxiliary head output (loss weight 0.4 in the paper).
        drop_path_keep_prob: final keep prob (the paper trains with 0.6;
            default 1.0 = off unless `total_training_steps` is given, then 0.6).
        total_training_steps: steps over which drop path ramps up.
    """
    config = CONFIGS["cifar"]
    if drop_path_keep_prob is None:
        drop_path_keep_prob = config.drop_path_keep_prob if total_training_steps else 1.0
    if weights == "imagenet":
        raise ValueError("NASNetCIFAR has no published weights; use weights=None or a file you saved.")
    return NASNet(
        genotype, num_cells or config.num_cells, penultimate_filters or config.penultimate_filters,
        stem="cifar", skip_reduction=config.skip_reduction, drop_path_keep_prob=drop_path_keep_prob,
        total_training_steps=total_training_steps, aux_head=aux_head, include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name)
