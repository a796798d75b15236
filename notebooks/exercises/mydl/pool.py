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
        # exercise 09: write MaxPool2D.forward
        raise NotImplementedError("exercise 09: write MaxPool2D.forward")

    def backward(self, dy):
        """dy (N, C, OH, OW) -> dx (N, C, H, W), each gradient sent to its window's switch."""
        # exercise 10: write MaxPool2D.backward
        raise NotImplementedError("exercise 10: write MaxPool2D.backward")
