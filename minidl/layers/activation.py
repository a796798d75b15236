"""Element-wise nonlinearities.

ReLU (the paper, Section 3.1):  y = max(0, x)      dx = dy * [x > 0]
Tanh (the saturating baseline):  y = tanh(x)        dx = dy * (1 - y^2)
"""

from ..backend import get_array_module
from .base import Layer


class ReLU(Layer):
    """Cache: the mask x > 0 (the gradient at exactly 0 is taken as 0)."""

    def __init__(self):
        super().__init__()
        self._mask = None

    def forward(self, x):
        self._check_input(x)
        self._mask = x > 0
        return x * self._mask

    def backward(self, dy):
        self._check_cache("_mask")
        self._check_grad(dy, self._mask.shape)
        dx = dy * self._mask
        self._mask = None
        return dx


class Tanh(Layer):
    """Cache: the output y."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        self._check_input(x)
        self._y = get_array_module(x).tanh(x)
        return self._y

    def backward(self, dy):
        self._check_cache("_y")
        self._check_grad(dy, self._y.shape)
        y, self._y = self._y, None
        return dy * (1 - y * y)
