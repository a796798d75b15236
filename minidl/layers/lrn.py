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
same window) applied to g * b / s. ``minidl/kernels/reference.py`` computes
both passes exactly as written here; the fast kernels run the same chain of
elementwise operations band by band over the rows, so each band stays in
the processor's cache (``minidl/kernels/fast.py``).

Shapes: x and y (N, C, H, W); works for any (N, C, H, ...).
"""

from .. import kernels
from ..checks import number, whole
from .base import Layer


class LocalResponseNorm(Layer):
    """``LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)``. Cache: what the kernel set keeps
    for backward (a and two arrays derived from s, each the size of the input)."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        who = "LocalResponseNorm"
        self.size = whole(size, who, "size", low=1)
        # s = k + alpha/n * sum a^2 must stay > 0 for s^-beta
        self.alpha, self.beta = number(alpha, who, "alpha", low=0), number(beta, who, "beta", low=0)
        self.k = number(k, who, "k", low=0, low_open=True)
        self.before, self.after = self.size // 2, (self.size - 1) // 2
        self._cache = None
        self._input_shape = None

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 3:
            raise ValueError(f"LocalResponseNorm: expected (N, C, H, ...) with spatial axes, got shape {tuple(x.shape)}")
        # s = k + alpha/n * window_sum(a^2);  b = a * s^-beta
        y, self._cache = kernels.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        self._input_shape = x.shape
        return y

    def backward(self, dy):
        self._check_cache("_cache")
        self._check_grad(dy, self._input_shape)
        saved, self._cache = self._cache, None
        # da_j = g_j s_j^-beta - (2 alpha beta / n) a_j * mirrored_window_sum(g b / s)_j
        return kernels.lrn_backward(dy, saved, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
