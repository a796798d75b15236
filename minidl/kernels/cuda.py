"""CuPy implementations of the per-backend primitives, as CUDA kernels.

Each kernel is one thread per output element. col2im and max-pool backward
are written as gathers (one thread per input pixel summing what reaches it),
so they need no atomics and give the same result on every run. Shapes,
layouts and tie-breaking match ``cpu.py`` exactly; the GPU tests compare the
two.

This module imports CuPy at import time; ``minidl.kernels`` imports it only
when it first sees a CuPy array.
"""

import cupy as cp

from .cpu import conv_out_size

_IM2COL = cp.ElementwiseKernel(
    "raw T img, int32 n, int32 c, int32 h, int32 w, int32 out_h, int32 out_w, int32 kh, int32 kw, int32 sy, int32 sx, int32 ph, int32 pw",
    "T col",
    """
    // col is (C, kh, kw, N, out_h, out_w) in C order; img is (N, C, h, w)
    int out_x = i % out_w;
    int out_y = i / out_w % out_h;
    int b = i / (out_w * out_h) % n;
    int kx = i / (out_w * out_h * n) % kw;
    int ky = i / (out_w * out_h * n * kw) % kh;
    int ch = i / (out_w * out_h * n * kw * kh);
    int in_y = ky + out_y * sy - ph;
    int in_x = kx + out_x * sx - pw;
    if (in_y >= 0 && in_y < h && in_x >= 0 && in_x < w) {
        col = img[in_x + w * (in_y + h * (ch + c * b))];
    } else {
        col = 0;
    }
    """,
    "minidl_im2col",
)

_COL2IM = cp.ElementwiseKernel(
    "raw T col, int32 n, int32 c, int32 h, int32 w, int32 out_h, int32 out_w, int32 kh, int32 kw, int32 sy, int32 sx, int32 ph, int32 pw",
    "T img",
    """
    // gather: input pixel (b, ch, y, x) of img (N, C, h, w) sums every entry
    // of col (C, kh, kw, N, out_h, out_w) that was copied from it
    int b = i / (c * h * w);
    int ch = i / (h * w) % c;
    int y = i / w % h + ph;
    int x = i % w + pw;
    int oy0 = max(0, (y - kh + sy) / sy);
    int oy1 = min(out_h, (y + sy) / sy);
    int ox0 = max(0, (x - kw + sx) / sx);
    int ox1 = min(out_w, (x + sx) / sx);
    T val = 0;
    for (int out_y = oy0; out_y < oy1; ++out_y) {
        int ky = y - out_y * sy;
        for (int out_x = ox0; out_x < ox1; ++out_x) {
            int kx = x - out_x * sx;
            val += col[out_x + out_w * (out_y + out_h * (b + n * (kx + kw * (ky + kh * ch))))];
        }
    }
    img = val;
    """,
    "minidl_col2im",
)

_MAXPOOL_FWD = cp.ElementwiseKernel(
    "raw T x, int32 h, int32 w, int32 out_h, int32 out_w, int32 k, int32 s",
    "T y, int8 switches",
    """
    int c0 = i / (out_h * out_w);
    int y0 = (i / out_w % out_h) * s;
    int x0 = (i % out_w) * s;
    const int base = c0 * h * w;
    T m = x[base + y0 * w + x0];
    int arg = 0;
    for (int ky = 0; ky < k; ++ky) {
        for (int kx = 0; kx < k; ++kx) {
            T v = x[base + (y0 + ky) * w + x0 + kx];
            if (v > m) { m = v; arg = ky * k + kx; }   // strict: first max wins ties
        }
    }
    y = m;
    switches = arg;
    """,
    "minidl_maxpool_fwd",
)

_MAXPOOL_BWD = cp.ElementwiseKernel(
    "raw T dy, raw int8 switches, int32 h, int32 w, int32 out_h, int32 out_w, int32 k, int32 s",
    "T dx",
    """
    // gather: input pixel (y, x) sums dy of every window whose switch points at it
    int c0 = i / (h * w);
    int y = i / w % h;
    int x = i % w;
    int oy0 = max(0, (y - k + s) / s);
    int oy1 = min(out_h, y / s + 1);
    int ox0 = max(0, (x - k + s) / s);
    int ox1 = min(out_w, x / s + 1);
    T val = 0;
    for (int oy = oy0; oy < oy1; ++oy) {
        for (int ox = ox0; ox < ox1; ++ox) {
            int o = (c0 * out_h + oy) * out_w + ox;
            if (switches[o] == (y - oy * s) * k + (x - ox * s)) val += dy[o];
        }
    }
    dx = val;
    """,
    "minidl_maxpool_bwd",
)

_CHANNEL_WINDOW_SUM = cp.ElementwiseKernel(
    "raw T x, int32 c, int32 hw, int32 before, int32 after",
    "T out",
    """
    int n = i / (c * hw);
    int ch = i / hw % c;
    int p = i % hw;
    int lo = max(0, ch - before);
    int hi = min(c - 1, ch + after);
    T acc = 0;
    for (int j = lo; j <= hi; ++j) acc += x[(n * c + j) * hw + p];
    out = acc;
    """,
    "minidl_channel_window_sum",
)


def im2col(x, kh, kw, stride, pad):
    x = cp.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    col = cp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    _IM2COL(x, n, c, h, w, oh, ow, kh, kw, stride, stride, pad, pad, col)
    return col.reshape(c * kh * kw, n * oh * ow)


def col2im(col, x_shape, kh, kw, stride, pad):
    col = cp.ascontiguousarray(col)
    n, c, h, w = x_shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    img = cp.empty((n, c, h, w), dtype=col.dtype)
    _COL2IM(col, n, c, h, w, oh, ow, kh, kw, stride, stride, pad, pad, img)
    return img


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
