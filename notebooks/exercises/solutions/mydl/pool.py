"""Exercises 09 and 10: overlapping max-pooling with switches (the paper's 3x3 windows, stride 2).

x (N, C, H, W) -> y (N, C, OH, OW), OH = (H - k) // stride + 1 (no padding; a window never runs past
the edge).

    y[n, c, oy, ox] = max over 0 <= i, j < k of x[n, c, oy*stride + i, ox*stride + j]
    switches[n, c, oy, ox] = i*k + j of that maximum (an integer array shaped like y);
                             on a tie, the first in row-major order (smallest i*k + j)

    dx[n, c, oy*stride + i, ox*stride + j] += dy[n, c, oy, ox]   for the (i, j) of the switch

With stride < k the windows overlap: one input can be the maximum of several windows and must
receive the sum of their gradients.
"""

import numpy as np

from .core import Layer
from .im2col import conv_out_size


class MaxPool2D(Layer):
    def __init__(self, kernel_size=3, stride=2):
        self.k, self.stride = kernel_size, stride
        self.switches = None

    def forward(self, x):
        """x (N, C, H, W) -> y (N, C, OH, OW); record self.switches (and what else backward needs)."""
        # >>> exercise 09: write MaxPool2D.forward
        k, s = self.k, self.stride
        oh, ow = conv_out_size(x.shape[2], k, s, 0), conv_out_size(x.shape[3], k, s, 0)
        y = x[:, :, 0:s * oh:s, 0:s * ow:s].copy()            # offset (0, 0) first
        self.switches = np.zeros(y.shape, dtype=np.int64)
        for i in range(k):
            for j in range(k):
                v = x[:, :, i:i + s * oh:s, j:j + s * ow:s]       # every window's element (i, j)
                better = v > y                                   # strictly: ties keep the first
                y = np.where(better, v, y)
                self.switches = np.where(better, i * k + j, self.switches)
        self.x_shape = x.shape
        return y
        # <<< exercise 09

    def backward(self, dy):
        """dy (N, C, OH, OW) -> dx (N, C, H, W), each gradient sent to its window's switch."""
        # >>> exercise 10: write MaxPool2D.backward
        k, s = self.k, self.stride
        oh, ow = dy.shape[2], dy.shape[3]
        dx = np.zeros(self.x_shape, dtype=dy.dtype)
        for i in range(k):
            for j in range(k):
                dx[:, :, i:i + s * oh:s, j:j + s * ow:s] += np.where(self.switches == i * k + j, dy, 0)
        return dx
        # <<< exercise 10
