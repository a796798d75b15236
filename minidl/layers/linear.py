"""Fully connected layer.

Shapes: x (N, in), weight (out, in) as in PyTorch, bias (out,), y (N, out).

    y = x @ W^T + b

    dW = dy^T @ x        db = sum_n dy        dx = dy @ W
"""

import numpy as np

from ..checks import whole
from .base import Layer, Parameter


class Linear(Layer):
    """``Linear(in_features, out_features, bias=True)``. Cache: the input x."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        in_features = whole(in_features, "Linear", "in_features", low=1)
        out_features = whole(out_features, "Linear", "out_features", low=1)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.zeros((out_features, in_features), dtype=dtype))
        self.bias = Parameter(np.zeros((out_features,), dtype=dtype)) if bias else None
        self._x = None
        self.need_input_grad = True  # False for a first layer: skips dy @ W

    def _shape_hint(self):
        return f"(N, {self.in_features})"

    def forward(self, x):
        self._check_input(x, ndim=2, channels=self.in_features)
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        self._x = x
        return y

    def backward(self, dy):
        self._check_cache("_x")
        self._check_grad(dy, (self._x.shape[0], self.out_features))
        if self.weight.requires_grad:
            self.weight.accumulate(dy.T @ self._x)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(dy.sum(axis=0))
        self._x = None
        return dy @ self.weight.data if self.need_input_grad else None

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias is not None else ", bias=False")
