"""Weight initialisers.

Values are drawn on the host from a ``numpy.random.Generator`` and then
copied to the parameter's device, so a given seed gives the same network on
the CPU and on any GPU.

- ``normal_(p, std)``: N(0, std^2); the paper uses std 0.01 everywhere.
- ``constant_(p, value)``: the paper's biases (1 in conv2/4/5, fc6, fc7; else 0).
- ``he_normal_(p)``: N(0, 2 / fan_in), for ReLU nets (He et al., 2015).
- ``xavier_uniform_(p)``: U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010).

fan_in of a conv weight (O, C/G, kh, kw) is C/G * kh * kw; of a linear weight (O, I), I.
"""

import math

import numpy as np

from .backend import to_device
from .checks import number


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _assign(p, values):
    p.data = to_device(values.astype(p.dtype, copy=False), p.device)
    return p


def fans(shape):
    """(fan_in, fan_out) of a weight of the given shape."""
    if len(shape) < 2:
        raise ValueError(f"fans: need a weight with at least 2 dims, got shape {tuple(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def normal_(p, std, rng=None, mean=0.0):
    std, mean = number(std, "normal_", "std", low=0), number(mean, "normal_", "mean")
    return _assign(p, _rng(rng).normal(mean, std, size=p.shape))


def constant_(p, value):
    return _assign(p, np.full(p.shape, number(value, "constant_", "value"), dtype=np.float64))


def he_normal_(p, rng=None):
    fan_in, _ = fans(p.shape)
    return normal_(p, math.sqrt(2.0 / fan_in), rng)


def xavier_uniform_(p, rng=None):
    fan_in, fan_out = fans(p.shape)
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return _assign(p, _rng(rng).uniform(-a, a, size=p.shape))
