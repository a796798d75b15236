"""Solution to exercise 01: col2im, the adjoint of im2col."""

# %% exercise
import numpy as np


def col2im(col, x_shape, kh, kw, stride, pad):
    """(C*kh*kw, N*OH*OW) -> (N, C, H, W): every entry of col is added to the pixel it was read from."""
    n, c, h, w = x_shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    # undo im2col's flattening: rows are (c, i, j), columns (n, oy, ox)
    col = col.reshape(c, kh, kw, n, oh, ow)
    # work on the padded image, since that is what im2col read from
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            # offset (i, j) of window (oy, ox) read pixel (oy*stride + i, ox*stride + j);
            # += because with stride < kernel another (i, j) reads the same pixel
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j].transpose(1, 0, 2, 3)
    # the padding is not part of x: what landed there belongs to no input pixel
    return xpad[:, :, pad:pad + h, pad:pad + w]
