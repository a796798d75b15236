"""Exercise 01: the fully connected layer.

    y = x @ W^T + b             x (N, in), W (out, in), b (out,), y (N, out)

    dW = dy^T @ x   (out, in)   db = sum over the batch of dy   (out,)   dx = dy @ W   (N, in)
"""

import numpy as np

from .core import Layer, Parameter, he_normal


class Linear(Layer):
    def __init__(self, in_features, out_features, rng=None, dtype=np.float32):
        rng = np.random.default_rng(0) if rng is None else rng
        self.weight = Parameter(he_normal((out_features, in_features), in_features, rng, dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype))
        self.x = None

    def forward(self, x):
        """x (N, in) -> y (N, out); keep x for backward."""
        # >>> exercise 01: write Linear.forward
        self.x = x
        return x @ self.weight.data.T + self.bias.data
        # <<< exercise 01

    def backward(self, dy):
        """dy (N, out) -> dx (N, in); add dW and db to weight.grad and bias.grad."""
        # >>> exercise 01: write Linear.backward
        self.weight.grad += dy.T @ self.x
        self.bias.grad += dy.sum(axis=0)
        return dy @ self.weight.data
        # <<< exercise 01
