"""Flatten: (N, C, H, W) -> (N, C*H*W), in C order (channel, then row, then column)."""

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
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        self._check_cache("_shape")
        return dy.reshape(self._shape)
