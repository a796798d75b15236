"""Local response normalisation across channels (the paper, Section 3.3).

For channel i at each pixel, with a window of n = size channels around i
(clipped at the first and last channel):

    s_i = k + (alpha / n) * sum_{j in window(i)} a_j^2
    b_i = a_i * s_i^(-beta)

alpha is divided by n, as in the original cuda-convnet code, Caffe and
PyTorch (the paper's formula omits the 1/n), so that
``LocalResponseNorm(5, 1e-4, 0.75, 2.0)`` computes what the original network
computed and what ``torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)`` computes.
The window runs from i - n//2 to i + (n-1)//2 (symmetric for odd n).

Backward. b_i depends on a_j through a_i (j = i) and through s_i (j in
window(i)):

    dL/da_j = g_j * s_j^(-beta)
              - (2 * alpha * beta / n) * a_j * sum_{i : j in window(i)} g_i * b_i / s_i

The inner sum is the same sliding window (mirrored, which for odd n is the
same window) applied to g * b / s = g * a * s^(-beta-1). Forward keeps a,
s^-beta and s^(-beta-1) for it: three arrays the size of the input.

Shapes: x and y (N, C, H, W); works for any (N, C, ...).
"""

from .. import kernels
from .base import Layer


class LocalResponseNorm(Layer):
    """``LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)``. Cache: a, s^-beta and s^(-beta-1)."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        if size < 1:
            raise ValueError(f"LocalResponseNorm: size must be >= 1, got {size}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)
        self.before, self.after = self.size // 2, (self.size - 1) // 2
        self._cache = None

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 3:
            raise ValueError(f"LocalResponseNorm: expected (N, C, ...) with spatial axes, got shape {tuple(x.shape)}")
        t = x.dtype.type
        s = kernels.channel_window_sum(x * x, self.before, self.after)
        s *= t(self.alpha / self.size)
        s += t(self.k)
        scale = kernels.neg_power(s, self.beta)            # s^-beta
        self._cache = (x, scale, scale / s)                # b / s = a * s^(-beta-1)
        return x * scale

    def backward(self, dy):
        self._check_cache("_cache")
        x, scale, scale_over_s = self._cache
        self._cache = None
        t = x.dtype.type
        # window sums over the i whose window contains j: the mirrored window
        back = kernels.channel_window_sum(dy * x * scale_over_s, self.after, self.before)
        return dy * scale - t(2 * self.alpha * self.beta / self.size) * x * back

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
