"""Softmax cross-entropy: the mean negative log-probability of the true class.

Shapes: logits z (N, K), labels y (N,) integers in [0, K).

    log p = z - max(z) - log(sum(exp(z - max(z))))    (stable for |z| ~ 1e3)
    L     = -(1/N) * sum_n log p[n, y_n]

    dL/dz = (softmax(z) - onehot(y)) / N
"""

import numpy as np

from ..backend import get_array_module, get_device
from .base import Layer


def log_softmax(z):
    """Numerically stable log-softmax over the last axis."""
    xp = get_array_module(z)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


class SoftmaxCrossEntropy(Layer):
    """``forward(logits, labels) -> float`` mean loss; ``backward() -> dL/dlogits``.

    ``self.loss`` keeps the loss as a 0-d array on the logits' device, for
    code that must not wait for the GPU (``float()`` of it synchronises).
    Cache: the probabilities, the labels, and on a GPU whether they are valid.
    """

    def __init__(self):
        super().__init__()
        self._cache = None
        self.loss = None

    def forward(self, logits, labels):
        self.loss = self.compute(logits, labels)
        valid = self._cache[2]
        if valid is not None and not bool(valid):       # read together with the loss below
            raise ValueError(self._range_error(logits.shape[1], int(labels.min()), int(labels.max())))
        return float(self.loss)

    def compute(self, logits, labels):
        """Like ``forward`` but returns the 0-d array without synchronising."""
        self._check_input(logits, ndim=2, what="logits (N, num_classes)")
        xp = get_array_module(logits)
        if not hasattr(labels, "shape") or labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
            raise ValueError(
                f"SoftmaxCrossEntropy: expected integer labels of shape ({logits.shape[0]},), got "
                f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}"
            )
        if logits.shape[0] == 0:
            raise ValueError("SoftmaxCrossEntropy: an empty batch has no mean loss")
        if get_device(labels) != get_device(logits):
            raise ValueError(
                f"SoftmaxCrossEntropy: labels are on {get_device(labels)} but logits on {get_device(logits)}"
            )
        # Labels outside [0, K) have no loss: NumPy's gather below would raise, CuPy's wraps
        # around silently. Host labels are checked here. Device labels are checked without
        # waiting for the GPU: an invalid one makes the loss and its gradient NaN, and
        # forward(), which reads the loss anyway, raises.
        k = logits.shape[1]
        valid = None
        if xp is np:
            if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= k):
                raise ValueError(self._range_error(k, int(labels.min()), int(labels.max())))
        else:
            valid = ((labels >= 0) & (labels < k)).all()
        logp = log_softmax(logits)
        n = logits.shape[0]
        rows = xp.arange(n)
        loss = -logp[rows, labels].mean()
        if valid is not None:
            loss = xp.where(valid, loss, logits.dtype.type(np.nan))
        self._cache = (xp.exp(logp), labels, valid)
        return loss

    @staticmethod
    def _range_error(k, low, high):
        return f"SoftmaxCrossEntropy: labels must lie in [0, {k}), got values from {low} to {high}"

    def backward(self, dy=None):
        """d(mean loss)/d(logits), optionally scaled by an upstream scalar ``dy``."""
        self._check_cache("_cache")
        p, labels, valid = self._cache
        self._cache = None
        xp = get_array_module(p)
        n = p.shape[0]
        g = p.copy()
        g[xp.arange(n), labels] -= 1
        g *= p.dtype.type(1.0 / n if dy is None else float(dy) / n)
        return g if valid is None else xp.where(valid, g, p.dtype.type(np.nan))
