"""The one check, and the one error, of the parts of the package that run on the TensorFlow backend only.

The zoo (genotypes, layers, builder, applications, weights) runs on every Keras 3 backend. `model_cost`
traces with TensorFlow, `nasnet_keras.export` converts with TensorFlow's converters, and the search and
training CLIs use `tf.data`, `tf.distribute` and TensorFlow child processes: on JAX or PyTorch they stop
with `NotTensorFlowBackendError` before doing anything.
"""

import keras


class NotTensorFlowBackendError(RuntimeError):
    """Something that needs TensorFlow was called while Keras runs on another backend."""


def require_tensorflow_backend(what: str, workaround: str = "") -> None:
    """Raises `NotTensorFlowBackendError` unless Keras runs on the TensorFlow backend.

    Args:
        what: what needs TensorFlow, as the message's subject (e.g. ``"model_cost"``).
        workaround: optional sentence appended to the message (e.g. how to
            move a model to a TensorFlow process).
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise NotTensorFlowBackendError(
            f"{what} needs the TensorFlow Keras backend, but Keras runs on {backend!r}. Set "
            f"KERAS_BACKEND=tensorflow (or unset it).{' ' + workaround if workaround else ''}")
