"""Loading the published ImageNet weights and weights files.

The published files are the Keras port of the TF-slim checkpoints
(keras.applications `nasnet.py`, which downloads them), in the legacy Keras HDF5 layout: the root attribute
`layer_names` lists layer groups, each with a `weight_names` attribute. Our
layers have other names and group several Keras layers each, so
`published_layer_names` maps every layer of a NASNet-A model to the layers of
that file; nothing depends on layer order.

The download goes through `keras.utils.get_file` into the Keras cache
(`~/.keras/models` by default, or `$KERAS_HOME/models`). Point it at a
mirror with the `weights_base_url` argument or the `NASNET_KERAS_WEIGHTS_URL`
environment variable.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Dict, List, Optional

import keras
import numpy as np

from nasnet_keras import configs, genotypes
from nasnet_keras.layers import FactorizedReduction, SeparableConvBlock

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/"
BASE_URL_ENV = "NASNET_KERAS_WEIGHTS_URL"

# (preset, include_top) -> (file name, md5), as keras.applications `nasnet.py` publishes them.
PUBLISHED_WEIGHTS = {
    ("mobile", True): ("NASNet-mobile.h5", "020fb642bf7360b370c678b08e0adf61"),
    ("mobile", False): ("NASNet-mobile-no-top.h5", "1ed92395b5b598bdda52abe5c0dbfd63"),
    ("large", True): ("NASNet-large.h5", "11577c9a518f0070763c2b964a382f17"),
    ("large", False): ("NASNet-large-no-top.h5", "d81d89dc07e6e56530c4e77faddd61b5"),
}

CACHE_SUBDIR = "models"


def _imagenet_preset(genotype, num_cells, filters, stem, stem_filters, filter_multiplier, skip_reduction,
                     layout) -> Optional[str]:
    from nasnet_keras.builder import output_units

    for preset in ("mobile", "large", "pnasnet_mobile", "pnasnet_large"):
        c = configs.CONFIGS[preset]
        published = genotypes.GENOTYPES[c.genotype]
        if (genotype.normal, genotype.reduction) != (published.normal, published.reduction):
            continue
        units = output_units(published.normal)
        if (num_cells, filters, stem, stem_filters, filter_multiplier, skip_reduction, layout) == (
                c.num_cells, c.penultimate_filters // (units * 4), c.stem, c.stem_filters, 2, c.skip_reduction,
                c.layout):
            return preset
    return None


def check_imagenet_config(genotype, num_cells, filters, stem, stem_filters, filter_multiplier, skip_reduction,
                          layout="nasnet"):
    """The preset ("mobile", "large", "pnasnet_mobile", "pnasnet_large") of a build; ValueError unless it has
    published ImageNet weights."""
    published = [genotypes.GENOTYPES[configs.CONFIGS[p].genotype] for p in ("mobile", "pnasnet_mobile")]
    if (genotype.normal, genotype.reduction) not in [(g.normal, g.reduction) for g in published]:
        raise ValueError(
            "weights='imagenet' exists only for the NASNet-A and PNASNet-5 genotypes; this genotype "
            f"({genotype.name or 'unnamed'}) differs. Use weights=None (train from scratch), NASNET_A or PNASNET_5.")
    preset = _imagenet_preset(genotype, num_cells, filters, stem, stem_filters, filter_multiplier, skip_reduction,
                              layout)
    if preset is None:
        raise ValueError(
            "weights='imagenet' exists only for NASNet-A Mobile (4 @ 1056, stem_filters=32), NASNet-A Large "
            "(6 @ 4032, stem_filters=96, skip_reduction=True), PNASNet-5 Mobile and Large (layout='pnasnet'), "
            f"with the ImageNet stem; got {num_cells} cells, filters={filters}, stem={stem!r}, "
            f"stem_filters={stem_filters}, skip_reduction={skip_reduction}, layout={layout!r}. Use "
            "NASNetMobile/NASNetLarge/PNASNetMobile/PNASNetLarge or weights=None.")
    return preset


def cache_dir() -> str:
    """The Keras cache's models directory (`$KERAS_HOME/models`, default ~/.keras/models), created if needed."""
    keras_home = os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    target = os.path.join(keras_home, CACHE_SUBDIR)
    try:
        os.makedirs(target, exist_ok=True)   # get_file falls back to /tmp if it is missing
    except OSError:
        pass
    return target


def published_weights_url(preset: str, include_top: bool, base_url: Optional[str] = None):
    """(url, file name, md5) of a published file; `base_url` > $NASNET_KERAS_WEIGHTS_URL > BASE_URL."""
    fname, md5 = PUBLISHED_WEIGHTS[(preset, include_top)]
    base = base_url or os.environ.get(BASE_URL_ENV) or BASE_URL
    return base.rstrip("/") + "/" + fname, fname, md5


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_published_weights(preset: str, include_top: bool, base_url: Optional[str] = None) -> str:
    """Path of a published weights file, downloaded into the Keras cache if needed.

    Raises:
        ValueError: the file cannot be downloaded and is not cached (the
            message names the URL, the md5 and where to put the file), or
            its md5 does not match (the bad file is removed from the cache).
    """
    url, fname, md5 = published_weights_url(preset, include_top, base_url)
    target = os.path.join(cache_dir(), fname)
    try:
        path = keras.utils.get_file(fname, url, cache_dir=os.path.dirname(cache_dir()), cache_subdir=CACHE_SUBDIR,
                                    file_hash=md5, hash_algorithm="md5")
    except Exception as e:  # noqa: BLE001 -- get_file raises many kinds; all mean "no valid file"
        reason = f"{type(e).__name__}: {e}"
        if os.path.exists(target) and _md5(target) != md5:
            os.remove(target)
            reason += " (a file with the wrong md5 was removed from the cache)"
        raise ValueError(
            f"Could not get the ImageNet weights {fname}.\n  URL: {url}\n  md5: {md5}\n  cache path: {target}\n"
            f"  reason: {reason}\nDownload the file yourself and put it at the cache path, point "
            f"weights_base_url= or ${BASE_URL_ENV} at a mirror, or pass weights=<path to the file>.") from None
    return path  # get_file checked the md5 of the cached or downloaded file


def fetch_imagenet_weights(preset: str, include_top: bool, base_url: Optional[str] = None) -> str:
    """Local path of a preset's ImageNet weights in the published legacy `.h5` layout (`load_legacy_h5`).

    NASNet-A: the Keras file (`fetch_published_weights`); PNASNet-5: TF-slim's
    checkpoint, converted once (`slim_checkpoint.fetch_converted_imagenet`).
    Downloads on first use; raises ValueError naming the URL and the cache
    path when that fails.
    """
    from nasnet_keras import slim_checkpoint

    if preset in slim_checkpoint.SLIM_RELEASES and configs.CONFIGS[preset].layout == "pnasnet":
        return slim_checkpoint.fetch_converted_imagenet(preset, base_url)
    return fetch_published_weights(preset, include_top, base_url)


def load_weights(model: keras.Model, weights: str, layout: str = "nasnet"):
    """Loads a TF-slim checkpoint or a weights file into a model built by `NASNet`.

    Files: a TF-slim checkpoint prefix (``.../model.ckpt``), the published
    legacy `.h5` layout and files written by `save_weights_by_name` (by layer
    name), Keras 3 `.weights.h5`, and `.keras` archives. ``"imagenet"`` is not
    taken here: `NASNet` fetches it with `fetch_imagenet_weights` before it
    builds the network, then loads it with `load_legacy_h5`.
    """
    from nasnet_keras import slim_checkpoint

    check_weights_path(weights)
    if slim_checkpoint.checkpoint_prefix(weights) is not None:
        return slim_checkpoint.load_slim_checkpoint(model, weights, layout)
    if weights.endswith(".keras") or (weights.endswith(".weights.h5") and not _is_by_name_h5(weights)):
        return model.load_weights(weights)
    return load_legacy_h5(model, weights)


def check_weights_path(weights: str) -> None:
    """ValueError unless `weights` names a file or a TF-slim checkpoint (the message says which files)."""
    from nasnet_keras import slim_checkpoint

    if os.path.exists(weights) or slim_checkpoint.checkpoint_prefix(weights) is not None:
        return
    if slim_checkpoint.looks_like_checkpoint(weights):
        raise slim_checkpoint.missing_checkpoint_error(weights)
    raise ValueError(f"weights={weights!r}: no such file. Pass None, 'imagenet', the path of a weights file or "
                     "the prefix of a TF-slim checkpoint.")


def _is_by_name_h5(path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "layer_names" in f.attrs
    except OSError:
        return False


def save_weights_by_name(model: keras.Model, path: str) -> None:
    """Writes `model`'s weights in the legacy Keras HDF5 layout (one group per layer, by layer name).

    Such a file loads with `NASNet(weights=path)` into any model of the same
    configuration whatever its `include_top` / `aux_head` (layers are
    matched by name, not order); Keras' own `load_weights` expects its
    `.weights.h5` format instead. Written through a temporary file.
    """
    import h5py

    tmp = f"{path}.tmp-{os.getpid()}"
    with h5py.File(tmp, "w") as f:
        names = []
        for layer in model.layers:
            variables = layer.trainable_weights + layer.non_trainable_weights   # the order load_legacy_h5 reads
            if not variables or any(w.path.endswith("step") or "seed_generator" in w.path for w in variables):
                continue
            group = f.create_group(layer.name)
            weight_names = [f"{i}_{w.name}" for i, w in enumerate(variables)]
            for name, w in zip(weight_names, variables):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(w))
            group.attrs["weight_names"] = weight_names
            names.append(layer.name)
        f.attrs["layer_names"] = names
    os.replace(tmp, path)


# keras.applications' NASNet names the ops of each block by side and block
# number; one separable conv of its reduction cell carries block 4's name.
_REDUCTION_NAME_FIX = {(4, "left"): "left4"}
_LAYER_RE = re.compile(r"^cell_(?P<cid>stem_\d+|reduce_\d+|\d+)_(?P<part>input|prev|b(?P<b>\d+)_(?P<side>left|right)_.+)$")


def published_layer_names(layer) -> Optional[List[tuple]]:
    """[(sublayer, name of the layer holding its weights in the published file)] for one of our layers."""
    if layer.name in ("stem_conv1", "stem_bn1", "predictions"):
        return [(layer, layer.name)]
    m = _LAYER_RE.match(layer.name)
    if not m:
        return None
    cid = m["cid"]
    kind = "normal" if cid.isdigit() else "reduction"
    if m["part"] == "input":
        return [(layer.convs[0], f"{kind}_conv_1_{cid}"), (layer.bn, f"{kind}_bn_1_{cid}")]
    if m["part"] == "prev":
        if isinstance(layer, FactorizedReduction):
            return [(layer.conv_1, f"adjust_conv_1_{cid}"), (layer.conv_2, f"adjust_conv_2_{cid}"),
                    (layer.bn, f"adjust_bn_{cid}")]
        return [(layer.convs[0], f"adjust_conv_projection_{cid}"), (layer.bn, f"adjust_bn_{cid}")]
    if isinstance(layer, SeparableConvBlock):
        b, side = int(m["b"]), m["side"]
        tag = (_REDUCTION_NAME_FIX.get((b, side)) if kind == "reduction" else None) or f"{side}{b + 1}"
        block_id = f"{kind}_{tag}_{cid}"
        return [(layer.sep_1, f"separable_conv_1_{block_id}"), (layer.bn_1, f"separable_conv_1_bn_{block_id}"),
                (layer.sep_2, f"separable_conv_2_{block_id}"), (layer.bn_2, f"separable_conv_2_bn_{block_id}")]
    return None


def _read_legacy_h5(path) -> Dict[str, List[np.ndarray]]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"weights file {path} is not an HDF5 file ({e}).") from None
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise ValueError(f"weights file {path} is not in the legacy Keras HDF5 layout (no 'layer_names'); "
                             "save weights with model.save_weights('x.weights.h5') and load that file instead.")
        out = {}
        for lname in group.attrs["layer_names"]:
            lname = lname.decode() if isinstance(lname, bytes) else lname
            g = group[lname]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
            out[lname] = [np.asarray(g[n]) for n in names]
        return out


def load_legacy_h5(model: keras.Model, path: str) -> None:
    """Loads a legacy-layout `.h5` file, by our layer names or the published ones.

    Raises:
        ValueError: naming the first of our layers whose weights are missing
            from the file or have another shape (a file of another
            architecture or configuration).
    """
    stored = _read_legacy_h5(path)
    for layer in model.layers:
        if not layer.weights or isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.name in stored:          # a legacy file saved from a model of this package
            variables = layer.trainable_weights + layer.non_trainable_weights   # the legacy saving order
            values = stored[layer.name]
            if [tuple(v.shape) for v in variables] != [tuple(v.shape) for v in values]:
                raise ValueError(f"weights file {path} does not match this model: layer '{layer.name}' expects "
                                 f"shapes {[tuple(v.shape) for v in variables]} but the file holds "
                                 f"{[v.shape for v in values]}.")
            for variable, value in zip(variables, values):
                variable.assign(value)
            continue
        else:
            pairs = published_layer_names(layer)
            if pairs is None:
                if all(w.path.endswith("step") or "seed_generator" in w.path for w in layer.weights):
                    continue      # drop-path counters and RNG state are not model weights
                if layer.name.startswith("aux_predictions"):
                    continue      # the published files have no auxiliary head: it stays freshly initialised
                raise ValueError(f"weights file {path} has no weights for layer '{layer.name}'; it was saved "
                                 "from another architecture.")
        for sub, source in pairs:
            if source not in stored:
                raise ValueError(f"weights file {path} does not match this model: layer '{layer.name}' needs "
                                 f"'{source}', which the file lacks. The file was saved from another "
                                 "architecture or configuration (include_top, num_cells, filters, genotype).")
            values = stored[source]
            expected = [tuple(w.shape) for w in sub.weights]
            if [tuple(v.shape) for v in values] != expected:
                raise ValueError(f"weights file {path} does not match this model: layer '{layer.name}' expects "
                                 f"shapes {expected} but '{source}' holds {[v.shape for v in values]}.")
            sub.set_weights(values)
