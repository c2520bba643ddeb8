"""Loading the original TF-slim checkpoints of NASNet-A and PNASNet-5.

The paper's ImageNet models were trained with TF-slim (tensorflow/models `research/slim/nets/nasnet`:
`nasnet.py`, `pnasnet.py`, `nasnet_utils.py`) and published as `model.ckpt` tarballs. A checkpoint stores
one tensor per slim variable name; `slim_variable_map` gives, for every weight of a model built by
`nasnet_keras.NASNet`, the slim name it comes from:

==============================  =====================================================================
our layer                       slim variables (under the cell's scope)
==============================  =====================================================================
``stem_conv1`` / ``stem_bn1``   ``conv0/weights``, ``conv0_bn/*`` (CIFAR stem: ``l1_stem_3x3``, ``l1_stem_bn``)
``cell_<id>_input``             ``1x1/weights``, ``beginning_bn/*``
``cell_<id>_prev``              ``prev_1x1/weights`` + ``prev_bn/*``, or ``path1_conv``, ``path2_conv``,
                                ``final_path_bn`` (factorized reduction)
``cell_<id>_b<k>_<side>_<op>``  ``comb_iter_<k>/<side>/separable_<s>x<s>_{1,2}`` + ``bn_sep_<s>x<s>_{1,2}``
                                (separable convs), ``comb_iter_<k>/<side>/1x1`` + ``bn_1`` (a strided or
                                width-changing identity, a pool followed by a 1x1 conv)
``cell_<id>_concat_state_<s>``  ``cell_output/reduction_<s>/...`` (an unused input reduced into the output)
``aux_predictions``             ``aux_<n>/aux_logits/{proj, aux_bn0, Conv, aux_bn1, FC}``
``predictions``                 ``final_layer/FC/{weights, biases}``
==============================  =====================================================================

Cell scopes: ``cell_stem_0``, ``cell_stem_1``, then (NASNet) ``cell_<i>`` for the i-th normal cell and
``reduction_cell_<j>`` for the j-th reduction cell, or (PNASNet, where a reduction is one of its cells)
``cell_<i>`` for the i-th cell. BatchNorm variables are ``gamma``, ``beta``, ``moving_mean``,
``moving_variance``; convs have no biases. Slim classifies 1001 classes, class 0 being "background": its
row is dropped so a 1000-class model gets the keras.applications classes.

Loading is strict: a model weight without its variable, a variable of another shape, or a checkpoint
variable the model does not use is an error naming it. The exceptions: the auxiliary head and the
classifier of the checkpoint may stay unused (a model without `aux_head` or without the top), and
training state (``global_step``, optimizer slots, moving-average shadows) is skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np

from nasnet_keras.layers import AuxiliaryHead, CellPooling, FactorizedReduction, ReLUConvBN, SeparableConvBlock

#: Where TF-slim publishes its checkpoints (tensorflow/models research/slim README, "Pre-trained Models").
SLIM_BASE_URL = "https://storage.googleapis.com/download.tensorflow.org/models/"
SLIM_BASE_URL_ENV = "NASNET_KERAS_SLIM_WEIGHTS_URL"


@dataclasses.dataclass(frozen=True)
class SlimRelease:
    """One published TF-slim checkpoint tarball (TF-slim README; no hashes are published)."""

    preset: str        # key of nasnet_keras.configs.CONFIGS
    tarball: str
    top1: float        # ImageNet top-1 of the checkpoint, as published

    @property
    def converted_name(self) -> str:
        """File name of the converted weights in the Keras cache."""
        return self.tarball.replace(".tar.gz", ".h5")


SLIM_RELEASES = {r.preset: r for r in (
    SlimRelease("mobile", "nasnet-a_mobile_04_10_2017.tar.gz", 74.0),
    SlimRelease("large", "nasnet-a_large_04_10_2017.tar.gz", 82.7),
    SlimRelease("pnasnet_mobile", "pnasnet-5_mobile_2017_12_13.tar.gz", 74.2),
    SlimRelease("pnasnet_large", "pnasnet-5_large_2017_12_13.tar.gz", 82.9),
)}

CHECKPOINT_FILES = (".index", ".data-00000-of-00001")
_TRAINING_STATE = ("ExponentialMovingAverage", "RMSProp", "RMSProp_1", "Momentum")
_CELL_RE = re.compile(r"^cell_(?P<cid>stem_\d+|reduce_\d+|\d+)_(?P<part>input|prev|concat_state_(?P<state>\d+)|"
                      r"b(?P<b>\d+)_(?P<side>left|right)_(?P<op>.+))$")


def checkpoint_prefix(path: str) -> Optional[str]:
    """The prefix of the TF checkpoint `path` names (a prefix such as ``.../model.ckpt``, one of its files,
    or a directory holding ``model.ckpt.index`` at any depth), or None."""
    if os.path.isdir(path):
        for root, _, files in sorted(os.walk(path)):
            if "model.ckpt.index" in files:
                return os.path.join(root, "model.ckpt")
        return None
    for suffix in CHECKPOINT_FILES:
        if path.endswith(suffix):
            path = path[:-len(suffix)]
    return path if os.path.exists(path + ".index") else None


def looks_like_checkpoint(path: str) -> bool:
    """Whether `path` is meant as a TF checkpoint (for the error message when it names none)."""
    base = os.path.basename(path.rstrip("/"))
    return ".ckpt" in base or base.endswith(CHECKPOINT_FILES)


def missing_checkpoint_error(path: str) -> ValueError:
    files = ", ".join(path + s for s in CHECKPOINT_FILES)
    return ValueError(f"weights={path!r}: no TF checkpoint there. A TF-slim checkpoint prefix names the files "
                      f"{files} (a directory holding model.ckpt.index also works). Extract the published "
                      "tarball and pass the prefix, e.g. weights='nasnet-a_mobile_04_10_2017/model.ckpt'.")


def _bn(bn, scope):
    return [(bn.gamma, f"{scope}/gamma"), (bn.beta, f"{scope}/beta"), (bn.moving_mean, f"{scope}/moving_mean"),
            (bn.moving_variance, f"{scope}/moving_variance")]


def _conv(conv, scope):
    return [(conv.kernel, f"{scope}/weights")]


def _factorized(layer, scope):
    return _conv(layer.conv_1, f"{scope}/path1_conv") + _conv(layer.conv_2, f"{scope}/path2_conv") + \
        _bn(layer.bn, f"{scope}/final_path_bn")


def _dense(dense, scope):
    return [(dense.kernel, f"{scope}/weights"), (dense.bias, f"{scope}/biases")]


def _cell_scopes(model, layout) -> Dict[str, str]:
    """Our cell ids, in network order, -> slim variable scopes."""
    ids = []
    for layer in model.layers:
        m = _CELL_RE.match(layer.name)
        if m and m["cid"] not in ids:
            ids.append(m["cid"])
    scopes, normal, reduction = {}, 0, 0
    for cid in ids:
        if cid.startswith("stem_"):
            scopes[cid] = f"cell_stem_{int(cid[5:]) - 1}"
        elif layout == "pnasnet":
            scopes[cid] = f"cell_{cid.replace('reduce_', '')}"
        elif cid.startswith("reduce_"):
            scopes[cid], reduction = f"reduction_cell_{reduction}", reduction + 1
        else:
            scopes[cid], normal = f"cell_{normal}", normal + 1
    return scopes


def aux_scope(model, layout) -> Optional[str]:
    """Slim's scope of the auxiliary head: ``aux_<i>`` for the cell ``cell_<i>`` before the second reduction
    (TF-slim nasnet.py / pnasnet.py `_build_*_base`)."""
    scopes = _cell_scopes(model, layout)
    ids = list(scopes)
    reductions = [i for i, cid in enumerate(ids) if cid.startswith("reduce_")]
    if len(reductions) < 2:
        return None
    return scopes[ids[reductions[1] - 1]].replace("cell_", "aux_")


def _op_variables(layer, op, scope):
    if isinstance(layer, SeparableConvBlock):
        k = layer.kernel_size
        out = []
        for n, (sep, bn) in enumerate(((layer.sep_1, layer.bn_1), (layer.sep_2, layer.bn_2)), start=1):
            out += [(sep.depthwise_kernel, f"{scope}/separable_{k}x{k}_{n}/depthwise_weights"),
                    (sep.pointwise_kernel, f"{scope}/separable_{k}x{k}_{n}/pointwise_weights")]
            out += _bn(bn, f"{scope}/bn_sep_{k}x{k}_{n}")
        return out
    if isinstance(layer, CellPooling) and layer.conv is not None:
        return _conv(layer.conv, f"{scope}/1x1") + _bn(layer.bn, f"{scope}/bn_1")
    if op == "identity" and isinstance(layer, ReLUConvBN):
        return _conv(layer.convs[0], f"{scope}/1x1") + _bn(layer.bn, f"{scope}/bn_1")
    raise ValueError(f"layer '{layer.name}' ({op}) has no TF-slim counterpart: slim's NASNet cells implement "
                     "separable convs, pools and identities only (TF-slim nasnet_utils.py). A TF-slim checkpoint "
                     "cannot hold this genotype's weights.")


def _layer_variables(layer, scopes, aux) -> Optional[List[Tuple[object, str]]]:
    """[(our variable, slim name)] for one layer; None for a layer without weights of its own to load."""
    stem_conv, stem_bn = ("conv0", "conv0_bn") if "stem_1" in scopes else ("l1_stem_3x3", "l1_stem_bn")
    if layer.name == "stem_conv1":
        return _conv(layer, stem_conv)
    if layer.name == "stem_bn1":
        return _bn(layer, stem_bn)
    if layer.name == "predictions":
        return _dense(layer, "final_layer/FC")
    if isinstance(layer, AuxiliaryHead):
        scope = f"{aux}/aux_logits"
        return (_conv(layer.conv_1, f"{scope}/proj") + _bn(layer.bn_1, f"{scope}/aux_bn0")
                + _conv(layer.conv_2, f"{scope}/Conv") + _bn(layer.bn_2, f"{scope}/aux_bn1")
                + _dense(layer.dense, f"{scope}/FC"))
    m = _CELL_RE.match(layer.name)
    if not m:
        return None
    scope = scopes[m["cid"]]
    if m["part"] == "input":
        return _conv(layer.convs[0], f"{scope}/1x1") + _bn(layer.bn, f"{scope}/beginning_bn")
    if m["part"] == "prev":
        if isinstance(layer, FactorizedReduction):
            return _factorized(layer, scope)
        return _conv(layer.convs[0], f"{scope}/prev_1x1") + _bn(layer.bn, f"{scope}/prev_bn")
    if m["state"] is not None:
        inner = f"{scope}/cell_output/reduction_{m['state']}"
        if isinstance(layer, FactorizedReduction):
            return _factorized(layer, inner)
        return _conv(layer.convs[0], f"{inner}/path_conv") + _bn(layer.bn, f"{inner}/path_bn")
    if m["op"].endswith("drop_path"):
        return None
    return _op_variables(layer, m["op"], f"{scope}/comb_iter_{m['b']}/{m['side']}")


def _is_state(variable) -> bool:
    """Drop-path step counters and RNG seeds: layer state, not weights a checkpoint holds."""
    return variable.path.endswith("step") or "seed_generator" in variable.path


def slim_variable_map(model: keras.Model, layout: str = "nasnet") -> List[Tuple[object, str, str]]:
    """[(model variable, slim variable name, our layer name)] covering every weight of `model`.

    Raises:
        ValueError: naming the first layer or weight with no slim counterpart.
    """
    scopes, aux = _cell_scopes(model, layout), aux_scope(model, layout)
    out = []
    for layer in model.layers:
        weights = [w for w in layer.weights if not _is_state(w)]
        if not weights:
            continue
        pairs = _layer_variables(layer, scopes, aux) or []
        covered = {id(v) for v, _ in pairs}
        unset = [w.path for w in weights if id(w) not in covered]
        if unset:
            raise ValueError(f"layer '{layer.name}' has weights with no TF-slim counterpart, first {unset[0]}: "
                             "a TF-slim checkpoint cannot set them.")
        out += [(v, name, layer.name) for v, name in pairs]
    return out


def _is_training_state(name: str) -> bool:
    return name == "global_step" or name.rsplit("/", 1)[-1] in _TRAINING_STATE


def _fits(name, stored, expected) -> bool:
    """Shapes agree, or a slim classifier has the one extra background class."""
    if stored == expected:
        return True
    return name.endswith(("FC/weights", "FC/biases")) and stored[:-1] == expected[:-1] and \
        stored[-1] == expected[-1] + 1


def load_slim_checkpoint(model: keras.Model, path: str, layout: str = "nasnet") -> int:
    """Sets every weight of `model` from the TF-slim checkpoint at `path`; returns the number set.

    Args:
        model: a model built by `nasnet_keras.NASNet` (any include_top /
            aux_head; build it with ``pool_padding="slim"`` to compute what
            slim computed).
        path: checkpoint prefix (``.../model.ckpt``), one of its files, or a
            directory holding ``model.ckpt.index``.
        layout: ``"nasnet"`` or ``"pnasnet"``, as the model was built.

    Raises:
        ValueError: no checkpoint at `path` (naming the files expected); a
            model weight whose variable is missing or has another shape, or a
            checkpoint variable the model leaves unused (naming the first;
            a checkpoint of another architecture or configuration).
    """
    import tensorflow as tf

    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise missing_checkpoint_error(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"checkpoint {prefix} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                         "is the download complete? Extract the tarball again.") from None
    shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}
    pairs = slim_variable_map(model, layout)
    for variable, name, layer in pairs:
        if name not in shapes:
            raise ValueError(f"checkpoint {prefix} does not fit this model: layer '{layer}' needs the variable "
                             f"'{name}', which the checkpoint lacks. It holds another architecture or "
                             "configuration (NASNet-A vs PNASNet-5, Mobile vs Large, genotype).")
        if not _fits(name, shapes[name], tuple(variable.shape)):
            raise ValueError(f"checkpoint {prefix} does not fit this model: variable '{name}' has shape "
                             f"{list(shapes[name])} but layer '{layer}' expects {list(variable.shape)}. It holds "
                             "another architecture or configuration (NASNet-A vs PNASNet-5, Mobile vs Large, "
                             "classes, genotype).")
    used = {name for _, name, _ in pairs}
    optional = ("final_layer/FC/", f"{aux_scope(model, layout)}/")
    unused = sorted(n for n in shapes if n not in used and not _is_training_state(n) and not n.startswith(optional))
    if unused:
        raise ValueError(f"checkpoint {prefix} holds {len(unused)} variable(s) this model has no place for, first "
                         f"'{unused[0]}': it was saved from another architecture or configuration.")
    for variable, name, _ in pairs:
        value = reader.get_tensor(name)
        if value.shape != tuple(variable.shape):      # drop slim's background class 0
            value = value[..., 1:]
        variable.assign(value.astype(np.float32))
    return len(pairs)


def slim_url(preset: str, base_url: Optional[str] = None) -> str:
    """URL of a published tarball; `base_url` > $NASNET_KERAS_SLIM_WEIGHTS_URL > `SLIM_BASE_URL`."""
    base = base_url or os.environ.get(SLIM_BASE_URL_ENV) or SLIM_BASE_URL
    return base.rstrip("/") + "/" + SLIM_RELEASES[preset].tarball


def _full_model(preset):
    """The preset's model with every layer a published checkpoint fills (top and auxiliary head)."""
    from nasnet_keras import configs, genotypes
    from nasnet_keras.builder import NASNet

    c = configs.CONFIGS[preset]
    return NASNet(genotypes.GENOTYPES[c.genotype], c.num_cells, c.penultimate_filters, stem=c.stem,
                  stem_filters=c.stem_filters, skip_reduction=c.skip_reduction, layout=c.layout, pool_padding="slim",
                  aux_head=True, input_shape=(c.default_size, c.default_size, 3), name=preset)


def convert_checkpoint(path: str, preset: str, out: str) -> int:
    """Loads a TF-slim checkpoint into the preset's full model and writes it with
    `nasnet_keras.weights.save_weights_by_name`; returns the number of weights. See `load_slim_checkpoint`."""
    from nasnet_keras import configs
    from nasnet_keras.weights import save_weights_by_name

    model = _full_model(preset)
    count = load_slim_checkpoint(model, path, configs.CONFIGS[preset].layout)
    save_weights_by_name(model, out)
    return count


def fetch_converted_imagenet(preset: str, base_url: Optional[str] = None) -> str:
    """Path of a published TF-slim checkpoint converted for this package, in the Keras cache.

    The first call downloads the tarball with `keras.utils.get_file`,
    extracts it, checks and converts it (`convert_checkpoint`: every
    variable present with its shape, nothing left over; slim publishes no
    hashes) and caches the result as ``<tarball name>.h5``; later calls use
    that file.
    """
    import shutil
    import tarfile
    import tempfile

    from nasnet_keras.weights import cache_dir

    release = SLIM_RELEASES[preset]
    converted = os.path.join(cache_dir(), release.converted_name)
    if os.path.exists(converted):
        return converted
    url = slim_url(preset, base_url)
    try:
        tarball = keras.utils.get_file(release.tarball, url, cache_dir=os.path.dirname(cache_dir()),
                                       cache_subdir=os.path.basename(cache_dir()))
    except Exception as e:  # noqa: BLE001 -- get_file raises many kinds; all mean "no file"
        raise ValueError(
            f"Could not get the TF-slim checkpoint {release.tarball}.\n  URL: {url}\n  cache: {cache_dir()}\n"
            f"  reason: {type(e).__name__}: {e}\nDownload and extract it yourself and pass weights=<.../model.ckpt>,"
            f" or point weights_base_url= or ${SLIM_BASE_URL_ENV} at a mirror.") from None
    extracted = tempfile.mkdtemp(prefix=f".{preset}-", dir=cache_dir())
    try:
        try:
            with tarfile.open(tarball) as tar:
                tar.extractall(extracted, filter="data")
        except (tarfile.TarError, EOFError, OSError) as e:
            os.remove(tarball)
            raise ValueError(f"{url} did not give a valid tarball ({type(e).__name__}: {e}); the file was removed "
                             "from the cache, so the next call downloads it again.") from None
        if checkpoint_prefix(extracted) is None:
            raise ValueError(f"the tarball {tarball} (from {url}) holds no model.ckpt.index: not a TF-slim "
                             "checkpoint. Remove it from the cache and check the mirror.")
        convert_checkpoint(extracted, preset, converted)
    finally:
        shutil.rmtree(extracted, ignore_errors=True)
    return converted
