"""The fast kernels' CuPy primitives, as CUDA kernels (``fast.py`` builds the operations from them).

Each kernel is one thread per output element. col2im and max-pool backward
are written as gathers (one thread per input pixel summing what reaches it),
so they need no atomics and give the same result on every run. Shapes,
layouts and tie-breaking match ``cpu.py`` exactly; the GPU tests compare the
two.

This module imports CuPy at import time; ``minidl.kernels`` imports it only
when it first sees a CuPy array.
"""

import cupy as cp

from .reference import conv_out_size
from .cuda_src import KERNELS

_IM2COL, _COL2IM, _MAXPOOL_FWD, _MAXPOOL_BWD, _CHANNEL_WINDOW_SUM = (
    cp.ElementwiseKernel(*KERNELS[name])
    for name in ("im2col", "col2im", "maxpool_fwd", "maxpool_bwd", "channel_window_sum")
)


def im2col(x, kh, kw, stride, pad):
    n, c, h, w = x.shape
    xt = cp.ascontiguousarray(x.transpose(1, 2, 3, 0))     # (C, H, W, N), as on the CPU
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    col = cp.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    _IM2COL(xt, n, c, h, w, oh, ow, kh, kw, stride, stride, pad, pad, col)
    return col.reshape(c * kh * kw, oh * ow * n)


def col2im(col, x_shape, kh, kw, stride, pad):
    col = cp.ascontiguousarray(col)
    n, c, h, w = x_shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    img = cp.empty((c, h, w, n), dtype=col.dtype)
    _COL2IM(col, n, c, h, w, oh, ow, kh, kw, stride, stride, pad, pad, img)
    return img.transpose(3, 0, 1, 2)


def maxpool_forward(x, k, stride):
    x = cp.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, k, stride, 0), conv_out_size(w, k, stride, 0)
    y = cp.empty((n, c, oh, ow), dtype=x.dtype)
    switches = cp.empty((n, c, oh, ow), dtype=cp.int8)
    _MAXPOOL_FWD(x, h, w, oh, ow, k, stride, y, switches)
    return y, switches


def maxpool_backward(dy, switches, x_shape, k, stride):
    dy = cp.ascontiguousarray(dy)
    switches = cp.ascontiguousarray(switches)
    n, c, h, w = x_shape
    dx = cp.empty(x_shape, dtype=dy.dtype)
    _MAXPOOL_BWD(dy, switches, h, w, dy.shape[2], dy.shape[3], k, stride, dx)
    return dx


def channel_window_sum(x, before, after):
    x = cp.ascontiguousarray(x)
    c = x.shape[1]
    hw = x.size // (x.shape[0] * c) if x.size else 0
    out = cp.empty_like(x)
    _CHANNEL_WINDOW_SUM(x, c, hw, before, after, out)
    return out
