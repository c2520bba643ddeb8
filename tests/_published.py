"""Files in the layout of the published keras.applications NASNet weights, written with h5py (not Keras'
saving code), for the parity tests of every backend."""

import h5py
import keras
import numpy as np


def randomize_batchnorm(model, seed=0):
    """Gives every BatchNormalization layer random scale, offset and statistics, so that parity checks them."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])


def write_legacy_h5(model, path, skip=()):
    """Writes `model`'s weights (less the layers named in `skip`) in the legacy Keras HDF5 layout of the
    published NASNet files, with h5py only: root attribute `layer_names`; one group per layer whose
    `weight_names` attribute lists its datasets ("<layer>/<variable>:0"), trainable weights first, then
    the non-trainable ones."""
    layers = [layer for layer in model.layers if layer.name not in skip]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in layers]
        f.attrs["backend"] = b"tensorflow"
        for layer in layers:
            group = f.create_group(layer.name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{v.path.split('/', 1)[-1]}:0" for v in variables]
            assert len(set(names)) == len(names), names
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, v in zip(names, variables):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(v))
