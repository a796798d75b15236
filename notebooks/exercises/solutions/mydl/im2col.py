"""Exercises 05 and 06: convolution's unrolling (notebook 02) and its adjoint.

im2col: x (N, C, H, W) -> col (C*kh*kw, N*OH*OW), OH = (H + 2 pad - kh) // stride + 1 (OW alike),

    col[(c, i, j), (n, oy, ox)] = xpad[n, c, oy*stride + i, ox*stride + j]

rows in the order (c, i, j), columns in the order (n, oy, ox); xpad is x with ``pad`` zeros on each
side of H and W. Then ``W.reshape(O, C*kh*kw) @ col`` is the convolution.

col2im: col (C*kh*kw, N*OH*OW) -> (N, C, H, W), the adjoint: every entry of col is *added* to the
pixel it was read from (a pixel seen by several windows receives their sum; padding is cut off), so
that sum(im2col(x) * col) == sum(x * col2im(col)) for every x and col.
"""

import numpy as np


def conv_out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def im2col(x, kh, kw, stride, pad):
    """(N, C, H, W) -> (C*kh*kw, N*OH*OW), in x's dtype."""
    # >>> exercise 05: write im2col
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]     # (N, C, OH, OW)
            col[:, i, j] = window.transpose(1, 0, 2, 3)
    return col.reshape(c * kh * kw, n * oh * ow)
    # <<< exercise 05


def col2im(col, x_shape, kh, kw, stride, pad):
    """(C*kh*kw, N*OH*OW) -> x_shape (N, C, H, W): the adjoint of im2col, in col's dtype."""
    # >>> exercise 06: write col2im
    n, c, h, w = x_shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    col = col.reshape(c, kh, kw, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, pad:pad + h, pad:pad + w]
    # <<< exercise 06
