"""Exercise 13: dropout (the paper, Section 4.2), in both of its forms.

Each unit is kept with probability 1 - p: mask m = (u >= p), u uniform in [0, 1), a new mask every
forward in training (draw it from self.rng).

    mode "inverted" (Caffe, PyTorch):  training  y = x * m / (1 - p)    dx = dy * m / (1 - p)
                                        evaluation y = x                 dx = dy
    mode "paper" (the paper's text):    training  y = x * m             dx = dy * m
                                        evaluation y = x * (1 - p)       dx = dy * (1 - p)

``self.training`` (set by train() and eval()) says which. Keep the input's dtype.
"""

import numpy as np

from .core import Layer


class Dropout(Layer):
    def __init__(self, p=0.5, mode="inverted", seed=0):
        if mode not in ("inverted", "paper"):
            raise ValueError(f"Dropout: mode must be 'inverted' or 'paper', got {mode!r}")
        self.p, self.mode = p, mode
        self.rng = np.random.default_rng(seed)

    def forward(self, x):
        """Training: drop each unit with probability p (and scale as the mode says); evaluation: as the mode says."""
        # >>> exercise 13: write Dropout.forward
        if self.training:
            keep = (self.rng.random(x.shape) >= self.p).astype(x.dtype)
            self.scale = keep / x.dtype.type(1 - self.p) if self.mode == "inverted" else keep
        else:
            self.scale = x.dtype.type(1.0 if self.mode == "inverted" else 1 - self.p)
        return x * self.scale
        # <<< exercise 13

    def backward(self, dy):
        """dx: the same mask and scale as the forward pass."""
        # >>> exercise 13: write Dropout.backward
        return dy * self.scale
        # <<< exercise 13
