"""Dropout (the paper, Section 4.2; p = 0.5 after fc6 and fc7), in two forms.

Each unit is kept with probability 1 - p (mask m_i ~ Bernoulli(1 - p)).

``mode='inverted'`` (the default; what Caffe and PyTorch do): kept units are
scaled by 1 / (1 - p) while training, so the expected output equals the
input, and evaluation is the identity.

    training:   y = x * m / (1 - p)                  dx = dy * m / (1 - p)
    evaluation: y = x                                dx = dy

``mode='paper'`` (the paper's text): kept units are left unscaled while
training, and at test time every output is multiplied by 1 - p (the paper's
"multiply their outputs by 0.5"), the expected training-time output.

    training:   y = x * m                            dx = dy * m
    evaluation: y = x * (1 - p)                      dx = dy * (1 - p)

The two agree in expectation; a net trained one way is the net trained the
other way with the next layer's weights scaled by 1 - p.

The mask comes from ``kernels.hash_uniform(seed, counter)``: the layer's
whole random state is two integers, the same on NumPy and CuPy, saved in
checkpoints so a resumed run draws the masks it would have drawn. Both modes
draw the same masks. Element i of a batch's mask is number i of that call,
so the masks of a sample depend on its row in the batch: a process that
holds rows [r, r + b) of a larger batch (``set_batch_offset(r)``) draws
exactly those rows' masks.
"""

from .. import kernels
from ..backend import get_array_module
from ..checks import number, whole
from .base import Layer

MODES = ("inverted", "paper")


class Dropout(Layer):
    """``Dropout(p=0.5, seed=0, mode='inverted')``; ``mode='paper'`` scales at test time.

    Cache: the factor backward multiplies by (the scaled mask, a scalar, or
    False for the identity).
    """

    def __init__(self, p=0.5, seed=0, mode="inverted"):
        super().__init__()
        p = number(p, "Dropout", "p", low=0, high=1, high_open=True)
        if mode not in MODES:
            raise ValueError(f"Dropout: mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.p = float(p)
        self.mode = mode
        self.seed, self.counter = whole(seed, "Dropout", "seed", low=0), 0
        self.batch_offset = 0      # rows of the global batch before this process's rows
        self._shape = None
        self._scale = None

    def forward(self, x):
        self._check_input(x)
        self._shape = x.shape
        if self.p == 0.0 or (not self.training and self.mode == "inverted"):
            self._scale = False  # identity: backward passes dy through
            return x
        if not self.training:    # the paper's test time: the expected training output
            self._scale = x.dtype.type(1.0 - self.p)
            return x * self._scale
        xp = get_array_module(x)
        per_row = x.size // max(x.shape[0], 1)
        u = kernels.hash_uniform(x.shape, self.seed, self.counter, xp, x.dtype, offset=self.batch_offset * per_row)
        self.counter += 1
        keep = 1.0 if self.mode == "paper" else 1.0 / (1.0 - self.p)
        self._scale = (u >= self.p) * x.dtype.type(keep)
        return x * self._scale

    def backward(self, dy):
        self._check_cache("_scale")
        self._check_grad(dy, self._shape)
        scale, self._scale = self._scale, None
        return dy if scale is False else dy * scale

    def set_batch_offset(self, rows):
        self.batch_offset = whole(rows, "Dropout", "batch offset", low=0)

    def rng_state(self):
        return {"seed": self.seed, "counter": self.counter}

    def set_rng_state(self, state):
        seed, counter = state["seed"], state["counter"]
        for name, v in (("seed", seed), ("counter", counter)):
            # the mask generator hashes them as 64-bit words: anything else is not a state this layer had
            if type(v) is not int or not 0 <= v < 2 ** 63:
                raise ValueError(f"Dropout.set_rng_state: {name} must be a whole number from 0 to 2**63 - 1, got {v!r}")
        self.seed, self.counter = seed, counter

    def extra_repr(self):
        return f"p={self.p}" + (f", mode='{self.mode}'" if self.mode != "inverted" else "")
