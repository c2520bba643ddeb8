"""Model zoo: NASNet-A Mobile / Large with the published ImageNet weights, and CIFAR."""

from nasnet_keras.applications.imagenet_utils import decode_predictions, preprocess_input
from nasnet_keras.applications.nasnet import NASNetCIFAR, NASNetLarge, NASNetMobile

__all__ = ["NASNetCIFAR", "NASNetLarge", "NASNetMobile", "decode_predictions", "preprocess_input"]
