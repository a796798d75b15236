"""Flatten: (N, C, H, W) -> (N, C*H*W), in C order (channel, then row, then column)."""

import numpy as np

from .base import Layer


class Flatten(Layer):
    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 2:
            raise ValueError(f"Flatten: expected at least (N, ...), got shape {tuple(x.shape)}")
        self._shape = x.shape
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))   # not -1: N may be 0

    def backward(self, dy):
        self._check_cache("_shape")
        n = self._shape[0]
        self._check_grad(dy, (n, int(np.prod(self._shape[1:]))))
        shape, self._shape = self._shape, None      # used up: a second backward needs a new forward
        return dy.reshape(shape)
