"""Exercises 07 and 08: 2-D convolution with groups, by im2col and one matrix product per group.

x (N, C, H, W), weight (O, C/G, kh, kw), bias (O,), y (N, O, OH, OW); G = groups divides C and O.
Group g's outputs O/G * g ... O/G * (g + 1) - 1 read only its inputs C/G * g ... C/G * (g + 1) - 1
(two groups are the paper's two towers).

    col = im2col(x)  (C*kh*kw, M), M = N*OH*OW;  its rows split into G blocks col[g]  (C/G*kh*kw, M)
    Y[g] = W[g] @ col[g]        W[g] = weight[g's outputs].reshape(O/G, C/G*kh*kw)
    y = Y reshaped to (O, N, OH, OW), transposed to (N, O, OH, OW), plus bias[o] on every pixel of map o

    dW[g] = dY[g] @ col[g]^T     db[o] = sum of dy[:, o] over N, OH, OW
    dx = col2im(dcol), dcol[g] = W[g]^T @ dY[g]
"""

import numpy as np

from .core import Layer, Parameter, he_normal
from .im2col import col2im, conv_out_size, im2col


class Conv2D(Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, rng=None,
                 dtype=np.float32):
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2D: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        rng = np.random.default_rng(0) if rng is None else rng
        fan_in = in_channels // groups * kernel_size * kernel_size
        self.weight = Parameter(he_normal((out_channels, in_channels // groups, kernel_size, kernel_size),
                                          fan_in, rng, dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype=dtype))
        self.stride, self.padding, self.groups = stride, padding, groups

    def forward(self, x):
        """x (N, C, H, W) -> y (N, O, OH, OW); keep what backward needs."""
        # exercise 07: write Conv2D.forward
        raise NotImplementedError("exercise 07: write Conv2D.forward")

    def backward(self, dy):
        """dy (N, O, OH, OW) -> dx (N, C, H, W); add dW and db to the parameters' grads."""
        # exercise 08: write Conv2D.backward
        raise NotImplementedError("exercise 08: write Conv2D.backward")
