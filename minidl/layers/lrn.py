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

Both passes run band by band over the rows (``kernels.row_bands``): on the
CPU a band's temporaries stay in the cache through the whole chain of
elementwise operations; every value is computed the same way, so the result
does not depend on the bands.

Shapes: x and y (N, C, H, W); works for any (N, C, H, ...).
"""

from .. import kernels
from ..backend import get_array_module
from ..checks import number, whole
from .base import Layer


class LocalResponseNorm(Layer):
    """``LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)``. Cache: a, s^-beta and s^(-beta-1)."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        who = "LocalResponseNorm"
        self.size = whole(size, who, "size", low=1)
        # s = k + alpha/n * sum a^2 must stay > 0 for s^-beta
        self.alpha, self.beta = number(alpha, who, "alpha", low=0), number(beta, who, "beta", low=0)
        self.k = number(k, who, "k", low=0, low_open=True)
        self.before, self.after = self.size // 2, (self.size - 1) // 2
        self._cache = None

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 3:
            raise ValueError(f"LocalResponseNorm: expected (N, C, H, ...) with spatial axes, got shape {tuple(x.shape)}")
        xp, t = get_array_module(x), x.dtype.type
        y, scale, scale_over_s = xp.empty_like(x), xp.empty_like(x), xp.empty_like(x)
        for rows in kernels.row_bands(x):
            a = x[rows]
            s = kernels.channel_window_sum(a * a, self.before, self.after)
            s *= t(self.alpha / self.size)
            s += t(self.k)
            sb = kernels.neg_power(s, self.beta, out=scale[rows])        # s^-beta
            xp.divide(sb, s, out=scale_over_s[rows])                     # b / s = a * s^(-beta-1)
            xp.multiply(a, sb, out=y[rows])                              # b = a * s^-beta
        self._cache = (x, scale, scale_over_s)
        return y

    def backward(self, dy):
        self._check_cache("_cache")
        x, scale, scale_over_s = self._cache
        self._check_grad(dy, x.shape)
        self._cache = None
        xp, t = get_array_module(x), x.dtype.type
        dx = xp.empty_like(x)
        for rows in kernels.row_bands(x):
            g, a = dy[rows], x[rows]
            # window sums over the i whose window contains j: the mirrored window
            back = kernels.channel_window_sum(g * a * scale_over_s[rows], self.after, self.before)
            d = xp.multiply(g, scale[rows], out=dx[rows])               # g_j * s_j^-beta
            d -= t(2 * self.alpha * self.beta / self.size) * a * back
        return dx

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
