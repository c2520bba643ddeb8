"""PNASNet-5 Mobile / Large (Liu et al., "Progressive Neural Architecture Search", ECCV 2018; TF-slim
nets/nasnet/pnasnet.py) with keras.applications-style signatures, built by the package's one builder
(`nasnet_keras.NASNet` with ``layout="pnasnet"``)."""

from typing import Optional

from nasnet_keras import genotypes
from nasnet_keras.applications.nasnet import imagenet_model

_ARGS_DOC = """
    Args:
        input_shape: `(h, w, 3)`; default ({size}, {size}, 3) with
            `include_top`, else (None, None, 3).
        include_top: keep the classifier.
        weights: ``"imagenet"`` (default: TF-slim's published checkpoint
            {tarball}, downloaded, checked and converted once into the
            Keras cache; mirror: `weights_base_url` or
            ``$NASNET_KERAS_SLIM_WEIGHTS_URL``), `None`, the prefix of that
            checkpoint extracted (``.../model.ckpt``), or a weights file saved
            from this model (`.weights.h5`, `.keras`, `.h5`).
        input_tensor: optional Keras tensor as the input.
        pooling: `None`, `"avg"` or `"max"` with `include_top=False`.
        classes: classes with `include_top` (default 1000).
        classifier_activation: activation of the top layer (`None` = logits).
        name: model name.
        drop_path_keep_prob, total_training_steps, dropout, aux_head,
        bn_momentum, weights_base_url: as for `NASNetMobile` (keyword
            only; TF-slim trained with {keep} drop path, dropout 0.5 and the
            auxiliary head).
        pool_padding: ``"slim"`` (default: TF SAME pooling, as TF-slim
            trained PNASNet-5, the only published weights) or ``"keras"``.

    Returns:
        A `keras.Model`; preprocess images with
        `nasnet_keras.applications.preprocess_input` (x / 127.5 - 1).
"""


def PNASNetMobile(input_shape=None, include_top=True, weights="imagenet", input_tensor=None, pooling=None,
                  classes=1000, classifier_activation="softmax", name="pnasnet_mobile", *,
                  drop_path_keep_prob: float = 1.0, total_training_steps: Optional[int] = None,
                  weights_base_url: Optional[str] = None, bn_momentum: Optional[float] = None,
                  dropout: float = 0.0, aux_head: bool = False, pool_padding: str = "slim"):
    return imagenet_model("pnasnet_mobile", genotypes.PNASNET_5, input_shape, include_top, weights, input_tensor,
                          pooling, classes, classifier_activation, name, drop_path_keep_prob,
                          total_training_steps, weights_base_url, bn_momentum, dropout, aux_head, pool_padding)


def PNASNetLarge(input_shape=None, include_top=True, weights="imagenet", input_tensor=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name="pnasnet_large", *,
                 drop_path_keep_prob: float = 1.0, total_training_steps: Optional[int] = None,
                 weights_base_url: Optional[str] = None, bn_momentum: Optional[float] = None,
                 dropout: float = 0.0, aux_head: bool = False, pool_padding: str = "slim"):
    return imagenet_model("pnasnet_large", genotypes.PNASNET_5, input_shape, include_top, weights, input_tensor,
                          pooling, classes, classifier_activation, name, drop_path_keep_prob,
                          total_training_steps, weights_base_url, bn_momentum, dropout, aux_head, pool_padding)


PNASNetMobile.__doc__ = """PNASNet-5 Mobile (9 cells of 54 filters, 224x224): paper 5.1M params, 588M mult-adds,
    74.2% top-1.
""" + _ARGS_DOC.format(size=224, keep="no", tarball="pnasnet-5_mobile_2017_12_13")
PNASNetLarge.__doc__ = """PNASNet-5 Large (12 cells of 216 filters, stem multiplier 3, 331x331): paper 86.1M params,
    25.0B mult-adds, 82.9% top-1.
""" + _ARGS_DOC.format(size=331, keep="0.6", tarball="pnasnet-5_large_2017_12_13")
