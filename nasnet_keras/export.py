"""Exporting a trained zoo or genotype model: TensorFlow SavedModel, TFLite float32, TFLite int8.

    from nasnet_keras.export import export_saved_model, export_tflite, tflite_predict
    export_saved_model(model, "served/nasnet")                       # tf.saved_model.load(...).serve(images)
    export_tflite(model, "nasnet.tflite")                            # float32
    export_tflite("served/nasnet", "nasnet.tflite")                  # float32, from the SavedModel above
    export_tflite(model, "nasnet_int8.tflite", quantize="int8", representative_data="calibration_images/")
    probs = tflite_predict("nasnet_int8.tflite", images)             # float in, float out, any batch size

    python -m nasnet_keras.export --model=model.keras --format=tflite_int8 --representative=images/ --out=m.tflite

Every export is of `inference_graph(model)`: the auxiliary head's output dropped and each ScheduledDropPath
layer replaced by an identity (both only act in training). Inputs are what the Keras model takes (for the
zoo: `preprocess_input` images, x / 127.5 - 1). int8 is TFLite's post-training full-integer quantization: int8
weights and activations, calibrated on the representative images, with int8 input and output tensors;
`tflite_predict` quantizes the input and dequantizes the output with the file's scales. TFLite files run
with LiteRT's interpreter (`ai-edge-litert`, which TF 2.21 names as the successor of `tf.lite.Interpreter`).

Exporting needs the TensorFlow backend (TensorFlow's converters read the model's TensorFlow graph); a model
trained on JAX or PyTorch exports after `model.save("m.keras")` and, with KERAS_BACKEND=tensorflow,
`python -m nasnet_keras.export --model=m.keras ...` (a `.keras` file loads on every backend).
`tflite_predict` runs on any backend.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Optional, Sequence, Tuple, Union

import keras
import numpy as np

from nasnet_keras.tensorflow_only import NotTensorFlowBackendError, require_tensorflow_backend

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def inference_graph(model: keras.Model) -> keras.Model:
    """`model` as it computes at inference, sharing its weights: the first output only (no auxiliary head), and
    `ScheduledDropPath` layers replaced by identities (they are identities at inference)."""
    from nasnet_keras.layers import ScheduledDropPath

    # one input tensor (not a one-element list) and the first output: a plain `images -> scores` signature
    model = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, model.outputs[0],
                        name=model.name)

    def clone(layer):
        if isinstance(layer, ScheduledDropPath):
            return keras.layers.Identity(name=layer.name)
        return layer                                    # the same layer object: shared weights

    if not any(isinstance(layer, ScheduledDropPath) for layer in model.layers):
        return model
    return keras.models.clone_model(model, clone_function=clone)


def _require_tensorflow(what: str):
    require_tensorflow_backend(what, "Save the model as .keras and export it from a TensorFlow process: "
                                     "KERAS_BACKEND=tensorflow python -m nasnet_keras.export --model=<file>.keras ...")


def _refuse_existing(path: str, overwrite: bool):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it.")


def _replace(tmp: str, path: str):
    """Moves a finished export onto `path`; an older export there is removed only now, after success."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    os.replace(tmp, path)


def _fixed_input(model: keras.Model, input_shape: Optional[Sequence[int]]) -> keras.Model:
    """`model` with a static (h, w, c) input, as TFLite needs."""
    shape = tuple(model.input_shape[1:])
    if input_shape is None:
        if None in shape:
            raise ValueError(f"the model's input size is unknown ({shape}); TFLite needs a fixed one: pass "
                             "input_shape=(height, width, channels), e.g. input_shape=(224, 224, 3) "
                             "(CLI: --input_shape=224,224,3).")
        return model
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or any(s is not None and s != d for s, d in zip(shape, input_shape)):
        raise ValueError(f"input_shape={input_shape} does not fit the model's input {shape}: pass (height, width, "
                         "channels) with the model's fixed sizes and channels, or leave it out.")
    if shape == input_shape:
        return model
    inputs = keras.Input(shape=input_shape, name="images")
    return keras.Model(inputs, model(inputs), name=model.name)


def export_saved_model(model: keras.Model, path: str, overwrite: bool = False) -> str:
    """Writes `inference_graph(model)` as a TensorFlow SavedModel with a ``serve`` endpoint (and the
    ``serving_default`` signature): images `(batch, h, w, c)` float32 -> the model's output. Returns `path`.

    Raises:
        FileExistsError: `path` exists and not `overwrite`.
        NotTensorFlowBackendError: Keras runs on another backend.
    """
    _require_tensorflow("export_saved_model")
    _refuse_existing(path, overwrite)
    tmp = f"{path.rstrip(os.sep)}.tmp-{os.getpid()}"
    inference_graph(model).export(tmp, format="tf_saved_model", verbose=False)
    _replace(tmp, path)
    return path


def representative_images(source, input_shape: Tuple[int, int, int], limit: int = 100,
                          preprocess: Optional[Callable] = None) -> np.ndarray:
    """Up to `limit` calibration images as the model takes them, `(n, h, w, c)` float32.

    Args:
        source: an array of model inputs (used as they are), a directory of
            image files (read recursively in sorted order, resized), or
            ``"tfds:<name>"`` (its train split, resized).
        input_shape: the model's `(h, w, c)`.
        limit: images to take (default 100).
        preprocess: maps resized [0, 255] images to model inputs (default
            the zoo's `preprocess_input`); not applied to arrays.
    """
    import tensorflow as tf

    from nasnet_keras.applications import preprocess_input

    preprocess = preprocess or preprocess_input
    h, w, c = input_shape
    if isinstance(source, np.ndarray):
        if source.ndim != 4 or tuple(source.shape[1:]) != tuple(input_shape):
            raise ValueError(f"representative_data has shape {source.shape}; the model takes (n, {h}, {w}, {c}).")
        return source[:limit].astype(np.float32)
    if not isinstance(source, str):
        raise ValueError("representative_data must be an array of model inputs, a directory of images or "
                         f"'tfds:<name>'; got {type(source).__name__}.")
    if source.startswith("tfds:"):
        import tensorflow_datasets as tfds

        try:
            ds = tfds.load(source[5:], split="train", as_supervised=True, download=False)
        except Exception as e:  # noqa: BLE001 -- tfds raises many kinds; all mean "not available"
            raise ValueError(f"representative_data={source!r}: cannot load it ({type(e).__name__}: {e}). "
                             "Prepare it with tfds first or pass a directory of images.") from None
        images = [tf.image.resize(tf.image.grayscale_to_rgb(x) if x.shape[-1] == 1 and c == 3 else x, (h, w))
                  for x, _ in ds.take(limit)]
    elif os.path.isdir(source):
        files = sorted(os.path.join(root, f) for root, _, names in os.walk(source) for f in names
                       if f.lower().endswith(IMAGE_EXTENSIONS))[:limit]
        if not files:
            raise ValueError(f"representative_data={source!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
        images = [tf.image.resize(tf.io.decode_image(tf.io.read_file(f), channels=c, expand_animations=False),
                                  (h, w)) for f in files]
    else:
        raise ValueError(f"representative_data={source!r} is not a directory; pass a directory of images, "
                         "'tfds:<name>' or an array.")
    return np.asarray(preprocess(np.stack([np.asarray(x, np.float32) for x in images])), np.float32)


def export_tflite(model: Union[keras.Model, str, os.PathLike], path: str, quantize: Optional[str] = None,
                  representative_data=None, input_shape: Optional[Sequence[int]] = None, num_calibration: int = 100,
                  overwrite: bool = False) -> str:
    """Writes `inference_graph(model)` as a TFLite flatbuffer. Returns `path`.

    Args:
        model: a Keras model (zoo or `NASNet(genotype)`), or the directory
            `export_saved_model` wrote: converted as it is, which spares
            writing the SavedModel a Keras model is converted through (much
            of a conversion's time) when both files are wanted.
        path: output file.
        quantize: None (float32, default) or ``"int8"`` (full-integer
            post-training quantization, int8 input and output).
        representative_data: with ``"int8"``: calibration images (see
            `representative_images`).
        input_shape: `(h, w, c)`, required when the Keras model's size is
            unknown (a SavedModel keeps the size it was exported with).
        num_calibration: calibration images used (default 100).
        overwrite: replace an existing `path`.

    Raises:
        ValueError: unknown spatial size without `input_shape`, int8 without
            `representative_data`, an unknown `quantize`, a directory that is
            not a SavedModel of one fixed-size image input.
        FileExistsError: `path` exists and not `overwrite`.
        NotTensorFlowBackendError: Keras runs on another backend.
    """
    _require_tensorflow("export_tflite")
    import tensorflow as tf

    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None (float32) or 'int8'; got {quantize!r}.")
    if quantize == "int8" and representative_data is None:
        raise ValueError("int8 quantization needs representative_data: ~100 typical inputs to calibrate the "
                         "activation ranges (an array of model inputs, a directory of images or 'tfds:<name>'; "
                         "CLI: --representative).")
    _refuse_existing(path, overwrite)
    if isinstance(model, (str, os.PathLike)):
        if input_shape is not None:
            raise ValueError("input_shape applies to a Keras model; a SavedModel is converted with the input size "
                             "it was exported with.")
        shape = _saved_model_input_shape(os.fspath(model))
        converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(model))
        flatbuffer = _convert(converter, shape, quantize, representative_data, num_calibration)
    else:
        graph = _fixed_input(inference_graph(model), input_shape)
        with tempfile.TemporaryDirectory() as saved:
            # Through a SavedModel written quietly: `TFLiteConverter.from_keras_model` writes one itself and
            # prints every captured variable (~1,000 lines for NASNetMobile).
            graph.export(saved, format="tf_saved_model", verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(saved)
            flatbuffer = _convert(converter, tuple(graph.input_shape[1:]), quantize, representative_data,
                                  num_calibration)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(flatbuffer)
    _replace(tmp, path)
    return path


def _saved_model_input_shape(saved: str) -> Tuple[int, int, int]:
    """The `(h, w, c)` input of the ``serving_default`` signature of the SavedModel in directory `saved`."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = os.path.join(saved, "saved_model.pb")
    if not os.path.isfile(pb):
        raise ValueError(f"{saved!r} is not a SavedModel directory (no saved_model.pb); pass a Keras model or a "
                         "directory written by export_saved_model.")
    proto = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        proto.ParseFromString(f.read())
    signature = proto.meta_graphs[0].signature_def.get("serving_default") if proto.meta_graphs else None
    if signature is None or len(signature.inputs) != 1:
        raise ValueError(f"The SavedModel in {saved!r} has no serving_default signature with one input; write it "
                         "with export_saved_model.")
    dims = tuple(d.size for d in next(iter(signature.inputs.values())).tensor_shape.dim)
    if len(dims) != 4 or any(d < 0 for d in dims[1:]):
        raise ValueError(f"The SavedModel in {saved!r} takes images of unknown size {dims[1:]}; TFLite needs a "
                         "fixed one: convert the Keras model with input_shape=(height, width, channels) instead.")
    return dims[1:]


def _convert(converter, input_shape: Tuple[int, int, int], quantize: Optional[str], representative_data,
             num_calibration: int):
    """Runs a TFLite converter: float32, or full-integer int8 calibrated on `representative_data`."""
    import tensorflow as tf

    if quantize == "int8":
        calibration = representative_images(representative_data, input_shape, num_calibration)

        def batches():
            for image in calibration:
                yield [image[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = batches
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def tflite_interpreter(path: str, num_threads: Optional[int] = None):
    """A LiteRT interpreter for `path` (XNNPACK for float ops), tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def tflite_predict(path_or_interpreter: Union[str, object], images: np.ndarray, batch_size: int = 1) -> np.ndarray:
    """Runs a TFLite file on `images` (model inputs, float32 `(n, h, w, c)`); returns float32 outputs.

    int8 files: the input is quantized and the output dequantized with the
    scales stored in the file.
    """
    interpreter = (tflite_interpreter(path_or_interpreter) if isinstance(path_or_interpreter, str)
                   else path_or_interpreter)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    if tuple(inp["shape"])[0] != batch_size:
        interpreter.resize_tensor_input(inp["index"], (batch_size, *inp["shape"][1:]))
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start:start + batch_size], np.float32)
        n = len(x)
        if n < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), np.float32)])
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y[:n])
    return np.concatenate(results)


FORMATS = ("saved_model", "tflite", "tflite_int8")
APPLICATIONS = ("nasnet_mobile", "nasnet_large", "pnasnet_mobile", "pnasnet_large")


def _load_model(name: str, weights: str) -> keras.Model:
    from nasnet_keras import applications

    if name in APPLICATIONS:
        constructor = {"nasnet_mobile": applications.NASNetMobile, "nasnet_large": applications.NASNetLarge,
                       "pnasnet_mobile": applications.PNASNetMobile, "pnasnet_large": applications.PNASNetLarge}[name]
        return constructor(weights=None if weights == "none" else weights)
    if not name.endswith(".keras") or not os.path.exists(name):
        raise ValueError(f"--model={name!r}: pass a saved .keras file that exists or one of {', '.join(APPLICATIONS)}.")
    import nasnet_keras.layers  # noqa: F401 -- registers the package's layers for loading

    return keras.saving.load_model(name, compile=False)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m nasnet_keras.export``; returns the exit code (0 written, 1 bad input)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m nasnet_keras.export", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help=f"A .keras file or one of {', '.join(APPLICATIONS)}.")
    parser.add_argument("--weights", default="imagenet", help="For an application: imagenet (default), none or a "
                        "weights file / TF-slim checkpoint.")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="Output file (.tflite) or folder (saved_model).")
    parser.add_argument("--input_shape", default=None, help="h,w,c when the model's input size is unknown.")
    parser.add_argument("--representative", default=None,
                        help="tflite_int8: calibration images (a directory of images, tfds:<name> or a .npy array).")
    parser.add_argument("--num_calibration", type=int, default=100)
    parser.add_argument("--overwrite", action="store_true", help="Replace --out if it exists.")
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not args.overwrite:
        print(f"error: --out={args.out!r} exists; pass --overwrite to replace it.", file=sys.stderr)
        return 1
    if args.format == "tflite_int8" and not args.representative:
        print("error: --format=tflite_int8 needs --representative (a directory of images, tfds:<name> or a .npy "
              "array of model inputs) to calibrate.", file=sys.stderr)
        return 1
    try:
        input_shape = None if args.input_shape is None else tuple(int(d) for d in args.input_shape.split(","))
    except ValueError:
        print(f"error: --input_shape={args.input_shape!r} must be h,w,c, e.g. 224,224,3.", file=sys.stderr)
        return 1
    try:
        _require_tensorflow("python -m nasnet_keras.export")
    except NotTensorFlowBackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    representative = args.representative
    if representative and representative.endswith(".npy"):
        representative = np.load(representative)
    try:
        model = _load_model(args.model, args.weights)
        if args.format == "saved_model":
            export_saved_model(model, args.out, overwrite=args.overwrite)
        else:
            export_tflite(model, args.out, quantize="int8" if args.format == "tflite_int8" else None,
                          representative_data=representative, input_shape=input_shape,
                          num_calibration=args.num_calibration, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.format})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
