"""minidl layers: every one a class with forward and a hand-written backward."""

from .activation import ReLU, Tanh
from .base import Layer, Parameter, Sequential
from .conv import Conv2D
from .dropout import Dropout
from .flatten import Flatten
from .linear import Linear
from .loss import SoftmaxCrossEntropy, log_softmax
from .lrn import LocalResponseNorm
from .pool import MaxPool2D

__all__ = [
    "Layer", "Parameter", "Sequential", "Conv2D", "Linear", "Flatten", "ReLU", "Tanh",
    "LocalResponseNorm", "MaxPool2D", "Dropout", "SoftmaxCrossEntropy", "log_softmax",
]
