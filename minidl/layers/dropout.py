"""Inverted dropout (the paper, Section 4.2; p = 0.5 after fc6 and fc7).

Training: each unit is kept with probability 1 - p and kept units are scaled
by 1 / (1 - p), so the expected output equals the input; evaluation: the
identity. (The paper kept units unscaled and halved the outputs at test
time; the two agree in expectation.)

    y = x * m / (1 - p),   m_i ~ Bernoulli(1 - p)        dx = dy * m / (1 - p)

The mask comes from ``kernels.hash_uniform(seed, counter)``: the layer's
whole random state is two integers, the same on NumPy and CuPy, saved in
checkpoints so a resumed run draws the masks it would have drawn.
"""

from .. import kernels
from ..backend import get_array_module
from .base import Layer


class Dropout(Layer):
    """``Dropout(p=0.5, seed=0)``. Cache: the scaled mask."""

    def __init__(self, p=0.5, seed=0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)
        self.seed, self.counter = int(seed), 0
        self._scale = None

    def forward(self, x):
        self._check_input(x)
        if not self.training or self.p == 0.0:
            self._scale = False  # identity: backward passes dy through
            return x
        xp = get_array_module(x)
        u = kernels.hash_uniform(x.shape, self.seed, self.counter, xp, x.dtype)
        self.counter += 1
        self._scale = (u >= self.p) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self._scale

    def backward(self, dy):
        self._check_cache("_scale")
        scale, self._scale = self._scale, None
        return dy if scale is False else dy * scale

    def rng_state(self):
        return {"seed": self.seed, "counter": self.counter}

    def set_rng_state(self, state):
        self.seed, self.counter = int(state["seed"]), int(state["counter"])

    def extra_repr(self):
        return f"p={self.p}"
