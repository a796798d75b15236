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
    Cache: the probabilities and the labels.
    """

    def __init__(self):
        super().__init__()
        self._cache = None
        self.loss = None

    def forward(self, logits, labels):
        self.loss = self.compute(logits, labels)
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
        if get_device(labels) != get_device(logits):
            raise ValueError(
                f"SoftmaxCrossEntropy: labels are on {get_device(labels)} but logits on {get_device(logits)}"
            )
        # Range check on the host only: on a GPU it would stall every step.
        if xp is np and labels.size and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
            raise ValueError(
                f"SoftmaxCrossEntropy: labels must lie in [0, {logits.shape[1]}), "
                f"got values from {int(labels.min())} to {int(labels.max())}"
            )
        logp = log_softmax(logits)
        n = logits.shape[0]
        rows = xp.arange(n)
        loss = -logp[rows, labels].mean()
        self._cache = (xp.exp(logp), labels)
        return loss

    def backward(self, dy=None):
        """d(mean loss)/d(logits), optionally scaled by an upstream scalar ``dy``."""
        self._check_cache("_cache")
        p, labels = self._cache
        self._cache = None
        xp = get_array_module(p)
        n = p.shape[0]
        g = p.copy()
        g[xp.arange(n), labels] -= 1
        g *= p.dtype.type(1.0 / n if dy is None else float(dy) / n)
        return g
