"""The variables (names and shapes) a TF-slim NASNet / PNASNet graph creates, and a checkpoint writer.

Written for the tests from TF-slim's code (nets/nasnet/nasnet.py, pnasnet.py, nasnet_utils.py), walking its
construction the way slim does, independently of the package's loader, so the loader is checked against
slim's naming and not against itself. The parameter counts of slim's own graphs check this walk.
"""

import math

import numpy as np

# TF-slim nasnet_utils.py / pnasnet.py: (operations, hiddenstate_indices, used_hiddenstates).
NASNET_NORMAL = (["separable_5x5_2", "separable_3x3_2", "separable_5x5_2", "separable_3x3_2", "avg_pool_3x3", "none",
                  "avg_pool_3x3", "avg_pool_3x3", "separable_3x3_2", "none"],
                 [0, 1, 1, 1, 0, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0])
NASNET_REDUCTION = (["separable_5x5_2", "separable_7x7_2", "max_pool_3x3", "separable_7x7_2", "avg_pool_3x3",
                     "separable_5x5_2", "none", "avg_pool_3x3", "separable_3x3_2", "max_pool_3x3"],
                    [0, 1, 0, 1, 0, 1, 3, 2, 2, 0], [1, 1, 1, 0, 0, 0, 0])
PNASNET_CELL = (["separable_5x5_2", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3", "separable_5x5_2",
                 "separable_3x3_2", "separable_3x3_2", "max_pool_3x3", "separable_3x3_2", "none"],
                [1, 1, 0, 0, 0, 0, 4, 0, 1, 0], [1, 1, 0, 0, 0, 0, 0])

# Slim's configs (num_cells counts slim's cells: NASNet's normal cells only).
NASNET_MOBILE = dict(kind="nasnet", num_cells=12, filters=44, stem_multiplier=1.0, skip_reduction_input=False,
                     size=224)
PNASNET_MOBILE = dict(kind="pnasnet", num_cells=9, filters=54, stem_multiplier=1.0, skip_reduction_input=True,
                      size=224)


def _bn(out, scope, channels):
    for v in ("beta", "gamma", "moving_mean", "moving_variance"):
        out[f"{scope}/{v}"] = (channels,)


def _factorized(out, scope, cin, f, stride):
    if stride == 1:
        out[f"{scope}/path_conv/weights"] = (1, 1, cin, f)
        _bn(out, f"{scope}/path_bn", f)
        return
    out[f"{scope}/path1_conv/weights"] = (1, 1, cin, f // 2)
    out[f"{scope}/path2_conv/weights"] = (1, 1, cin, f // 2 + f % 2)
    _bn(out, f"{scope}/final_path_bn", f)


def _cell(out, scope, cell, net, prev, filters, stride):
    """net, prev: (height, channels) of the inputs (prev None for the first cell). Returns the output's."""
    operations, indices, used = cell
    if prev is None:
        prev = net
    elif prev[0] != net[0]:
        _factorized(out, scope, prev[1], filters, 2)
        prev = (net[0], filters)
    elif prev[1] != filters:
        out[f"{scope}/prev_1x1/weights"] = (1, 1, prev[1], filters)
        _bn(out, f"{scope}/prev_bn", filters)
        prev = (prev[0], filters)
    out[f"{scope}/1x1/weights"] = (1, 1, net[1], filters)
    _bn(out, f"{scope}/beginning_bn", filters)
    states = [(net[0], filters), prev]
    for it in range(5):
        results = []
        for side, k in (("left", 2 * it), ("right", 2 * it + 1)):
            h, cin = states[indices[k]]
            s = stride if indices[k] < 2 else 1
            op, where = operations[k], f"{scope}/comb_iter_{it}/{side}"
            if op.startswith("separable"):
                size = int(op.split("x")[0][-1])
                for n in (1, 2):
                    out[f"{where}/separable_{size}x{size}_{n}/depthwise_weights"] = (size, size, cin, 1)
                    out[f"{where}/separable_{size}x{size}_{n}/pointwise_weights"] = (1, 1, cin, filters)
                    _bn(out, f"{where}/bn_sep_{size}x{size}_{n}", filters)
                    cin = filters
            elif op == "none":
                if s > 1 or cin != filters:
                    out[f"{where}/1x1/weights"] = (1, 1, cin, filters)
                    _bn(out, f"{where}/bn_1", filters)
            elif cin != filters:   # a pool
                out[f"{where}/1x1/weights"] = (1, 1, cin, filters)
                _bn(out, f"{where}/bn_1", filters)
            results.append(math.ceil(h / s))
        states.append((results[0], filters))
    final_h = states[-1][0]
    channels = 0
    for idx, (h, c) in enumerate(states):
        if used[idx]:
            continue
        if h != final_h or c != filters:
            _factorized(out, f"{scope}/cell_output/reduction_{idx}", c, filters, 2 if h != final_h else 1)
        channels += filters
    return final_h, channels


def slim_variables(config, classes=1001, aux=True):
    """{name: shape} of the variables slim's graph for `config` creates (`aux`: the training graph's head)."""
    out = {}
    kind, n = config["kind"], config["num_cells"]
    normal = NASNET_NORMAL if kind == "nasnet" else PNASNET_CELL
    reduction = NASNET_REDUCTION if kind == "nasnet" else PNASNET_CELL
    stem = int(32 * config["stem_multiplier"])
    out["conv0/weights"] = (3, 3, 3, stem)
    _bn(out, "conv0_bn", stem)
    net = ((config["size"] - 3) // 2 + 1, stem)
    outputs = [None, net]
    scaling = 1.0 / 4
    for i in range(2):                                            # nasnet.py `_imagenet_stem`
        net = _cell(out, f"cell_stem_{i}", reduction, net, outputs[-2], int(config["filters"] * scaling), 2)
        outputs.append(net)
        scaling *= 2
    reductions = [int(k / 3 * n) for k in (1, 2)]                # nasnet_utils.py `calc_reduction_layers`
    aux_cell = reductions[1] - 1
    scaling = 1.0
    for i in range(n):
        prev = outputs[-2]
        if i in reductions:
            scaling *= 2
            if kind == "nasnet":
                net = _cell(out, f"reduction_cell_{reductions.index(i)}", reduction, net, outputs[-2],
                            int(config["filters"] * scaling), 2)
                outputs.append(net)
                if not config["skip_reduction_input"]:
                    prev = outputs[-2]
        stride = 2 if kind == "pnasnet" and i in reductions else 1
        net = _cell(out, f"cell_{i}", normal, net, prev, int(config["filters"] * scaling), stride)
        outputs.append(net)
        if aux and i == aux_cell:                                 # nasnet.py `_build_aux_head`
            h = (net[0] - 5) // 3 + 1
            scope = f"aux_{i}/aux_logits"
            out[f"{scope}/proj/weights"] = (1, 1, net[1], 128)
            _bn(out, f"{scope}/aux_bn0", 128)
            out[f"{scope}/Conv/weights"] = (h, h, 128, 768)
            _bn(out, f"{scope}/aux_bn1", 768)
            out[f"{scope}/FC/weights"] = (768, classes)
            out[f"{scope}/FC/biases"] = (classes,)
    out["final_layer/FC/weights"] = (net[1], classes)
    out["final_layer/FC/biases"] = (classes,)
    return out


def random_values(shapes, seed=0):
    """Distinct random float32 values per variable (positive variances)."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in sorted(shapes.items()):
        v = rng.normal(0, 0.1, size=shape).astype(np.float32)
        values[name] = np.abs(v) + 0.5 if name.endswith("moving_variance") else v
    return values


def write_checkpoint(values, prefix):
    """Writes {name: array} as a TF checkpoint with exactly those variable names (as slim's Saver does)."""
    import tensorflow as tf

    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[n]) for n in names])
