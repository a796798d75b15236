"""minidl: a small deep-learning framework with hand-written backpropagation.

Every layer is a class with ``forward`` and a hand-written ``backward``; the
same code runs on NumPy (CPU) and CuPy (GPU) through ``minidl.backend``.
"""

from . import init, kernels, layers, optim
from .backend import Device, DeviceUnavailableError, as_device, asnumpy, get_array_module, get_device, to_device
from .gradcheck import gradcheck, gradcheck_loss, relative_error
from .layers import (
    Conv2D, Dropout, Flatten, Layer, Linear, LocalResponseNorm, MaxPool2D, Parameter, ReLU, Sequential,
    SoftmaxCrossEntropy, Tanh,
)
from .optim import SGD, ReduceLROnPlateau, StepLR

__version__ = "0.1.0"

__all__ = [
    "Device", "DeviceUnavailableError", "as_device", "asnumpy", "get_array_module", "get_device", "to_device",
    "Layer", "Parameter", "Sequential", "Conv2D", "Linear", "Flatten", "ReLU", "Tanh", "LocalResponseNorm",
    "MaxPool2D", "Dropout", "SoftmaxCrossEntropy", "SGD", "StepLR", "ReduceLROnPlateau",
    "gradcheck", "gradcheck_loss", "relative_error", "init", "kernels", "layers", "optim",
]
