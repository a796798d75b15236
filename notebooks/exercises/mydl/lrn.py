"""Exercises 11 and 12: local response normalisation across channels (the paper, Section 3.3).

x = a (N, C, H, W) -> b, same shape. For channel i, with n = size channels in its window
from i - n//2 to i + (n-1)//2, clipped to 0 ... C-1:

    s_i = k + (alpha / n) * sum over j in window(i) of a_j^2          (alpha divided by n, as Caffe,
    b_i = a_i * s_i^(-beta)                                            cuda-convnet and PyTorch do)

    dL/da_j = g_j * s_j^(-beta)
              - (2 * alpha * beta / n) * a_j * sum over {i : j in window(i)} of g_i * b_i / s_i

where g = dL/db. The set {i : j in window(i)} runs from j - (n-1)//2 to j + n//2 (the mirrored
window; for odd n the same as window(j)).
"""

import numpy as np

from .core import Layer


def window_sum(x, before, after):
    """out[:, c] = x[:, c - before] + ... + x[:, c + after], the window clipped to the channels."""
    out = np.zeros_like(x)
    for c in range(x.shape[1]):
        out[:, c] = x[:, max(0, c - before):c + after + 1].sum(axis=1)
    return out


class LocalResponseNorm(Layer):
    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        """a (N, C, H, W) -> b; keep what backward needs."""
        # exercise 11: write LocalResponseNorm.forward
        raise NotImplementedError("exercise 11: write LocalResponseNorm.forward")

    def backward(self, dy):
        """g = dL/db -> dL/da."""
        # exercise 12: write LocalResponseNorm.backward
        raise NotImplementedError("exercise 12: write LocalResponseNorm.backward")
