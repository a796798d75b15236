"""NumPy implementations of the per-backend primitives.

Everything is vectorised over the batch, the channels and the pixels; the only
Python loops run over the kh*kw offsets of a kernel window (at most 121 for
AlexNet's conv1), each iteration moving a whole strided slab of the batch.
col2im accumulates the same way rather than with ``np.add.at``, which is an
order of magnitude slower.
"""

import numpy as np


def conv_out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def pad2d(x, pad):
    """Zero-pad the last two axes of (N, C, H, W) by ``pad`` on every side."""
    if pad == 0:
        return x
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


def im2col(x, kh, kw, stride, pad):
    """(N, C, H, W) -> columns (C*kh*kw, N*OH*OW).

    Row ``(c, i, j)`` holds input channel c shifted by kernel offset (i, j),
    for every image and output pixel:
    ``col[(c,i,j), (n,oy,ox)] = xpad[n, c, oy*stride + i, ox*stride + j]``.
    The row order matches a weight (O, C, kh, kw) reshaped to (O, C*kh*kw),
    and with the batch inside the columns the convolution of the whole batch
    is one large GEMM (per group) instead of N small ones.
    """
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    # (C, N, H, W): free when x came from a conv (whose output is laid out so)
    xt = np.ascontiguousarray(pad2d(x, pad).transpose(1, 0, 2, 3))
    col = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xt[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return col.reshape(c * kh * kw, n * oh * ow)


def col2im(col, x_shape, kh, kw, stride, pad):
    """The adjoint of im2col: columns (C*kh*kw, N*OH*OW) -> (N, C, H, W).

    Every column entry is added back to the input pixel it was copied from,
    so pixels covered by several windows receive the sum (this is not an
    inverse of im2col). The result is a (N, C, H, W) view of a (C, N, H, W)
    buffer.
    """
    n, c, h, w = x_shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    col = col.reshape(c, kh, kw, n, oh, ow)
    dxpad = np.zeros((c, n, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j]
    return dxpad[:, :, pad:pad + h, pad:pad + w].transpose(1, 0, 2, 3)


def maxpool_forward(x, k, stride):
    """Max over k x k windows, and the switches.

    Returns ``y`` (N, C, OH, OW) and ``switches`` (int8, same shape): the
    position ``i*k + j`` of the maximum inside its window. Ties go to the
    first position in row-major order (strict ``>``), as in the CUDA kernel.
    """
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, k, stride, 0), conv_out_size(w, k, stride, 0)
    y = x[:, :, 0:stride * oh:stride, 0:stride * ow:stride].copy(order="K")  # keep x's memory layout
    switches = np.zeros(y.shape, dtype=np.int8)
    for i in range(k):
        for j in range(k):
            if i == 0 and j == 0:
                continue
            v = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            better = v > y
            np.copyto(y, v, where=better)
            np.copyto(switches, i * k + j, where=better, casting="unsafe")
    return y, switches


def maxpool_backward(dy, switches, x_shape, k, stride):
    """Route each output gradient to the input at its switch.

    Windows overlap when stride < k, so one input can be the maximum of
    several windows: contributions are accumulated (``+=``), never assigned.
    The same routine unpools activations for a deconvnet.
    """
    n, c, h, w = x_shape
    oh, ow = dy.shape[2], dy.shape[3]
    dx = np.zeros_like(dy, shape=x_shape)  # same memory layout as dy
    zero = dy.dtype.type(0)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += np.where(switches == i * k + j, dy, zero)
    return dx


def channel_window_sum(x, before, after):
    """``out[:, c] = sum(x[:, j] for j in [c - before, c + after])``, clipped to the channels.

    Shift-and-add along axis 1 of (N, C, ...): one slab addition per offset.
    """
    out = x.copy()
    for d in range(1, before + 1):
        out[:, d:] += x[:, :-d] if d < x.shape[1] else x[:, :0]
    for d in range(1, after + 1):
        out[:, :-d if d < x.shape[1] else 0] += x[:, d:]
    return out
