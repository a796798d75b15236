"""mydl: the deep-learning framework you write in the exercises, one piece per notebook.

core.py is given (the layer contract: Parameter, Layer, Sequential, Flatten, He initialisation);
everything else is yours. Each exercise leaves one block marked ``exercise NN`` to write.
"""

from .core import Flatten, Layer, Parameter, Sequential, Towers, he_normal
from .linear import Linear
from .relu import ReLU
from .loss import SoftmaxCrossEntropy
from .gradcheck import check_layer, numerical_gradient, relative_error
from .im2col import col2im, conv_out_size, im2col
from .conv import Conv2D
from .pool import MaxPool2D
from .lrn import LocalResponseNorm
from .dropout import Dropout
from .sgd import SGD
from .mini import accuracy, build_mini, train

__all__ = [
    "Parameter", "Layer", "Sequential", "Flatten", "Towers", "he_normal", "Linear", "ReLU", "SoftmaxCrossEntropy",
    "numerical_gradient", "relative_error", "check_layer", "im2col", "col2im", "conv_out_size", "Conv2D",
    "MaxPool2D", "LocalResponseNorm", "Dropout", "SGD", "build_mini", "train", "accuracy",
]
