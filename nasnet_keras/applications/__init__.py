"""Model zoo: NASNet-A Mobile / Large with the published ImageNet weights, NASNet-A CIFAR, PNASNet-5 Mobile / Large."""

from nasnet_keras.applications.imagenet_utils import decode_predictions, preprocess_input
from nasnet_keras.applications.nasnet import NASNetCIFAR, NASNetLarge, NASNetMobile
from nasnet_keras.applications.pnasnet import PNASNetLarge, PNASNetMobile

__all__ = ["NASNetCIFAR", "NASNetLarge", "NASNetMobile", "PNASNetLarge", "PNASNetMobile", "decode_predictions",
           "preprocess_input"]
