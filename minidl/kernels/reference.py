"""The reference kernels: each operation as the textbook writes it, whole arrays, nothing else.

Select them with ``minidl.kernels.use("reference")`` (or ``MINIDL_KERNELS=reference``)
to step through what a layer computes; the fast kernels (``fast.py``) compute
the same numbers, up to float rounding, and the tests hold both to the same
checks. Written with the input's array module, so they run on NumPy and CuPy.

Layout: plain (N, C, H, W) everywhere. im2col's columns run over (n, oy, ox)
in that order, so a convolution's output is its GEMM result reshaped.
"""

from ..backend import get_array_module


def conv_out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


# -- convolution: im2col, then one matrix product per group -----------------

def im2col(x, kh, kw, stride, pad):
    """(N, C, H, W) -> col (C*kh*kw, N*OH*OW).

    ``col[(c, i, j), (n, oy, ox)] = xpad[n, c, oy*stride + i, ox*stride + j]``:
    row (c, i, j) is channel c seen through kernel offset (i, j) at every
    output pixel, so ``W.reshape(O, C*kh*kw) @ col`` is the convolution.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    xpad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]   # (N, C, OH, OW)
            col[:, i, j] = window.transpose(1, 0, 2, 3)
    return col.reshape(c * kh * kw, n * oh * ow)


def col2im(col, x_shape, kh, kw, stride, pad):
    """The adjoint of im2col: every entry of col is added back to the pixel it came from.

    Pixels seen by several windows receive the sum, so this is not an inverse.
    """
    xp = get_array_module(col)
    n, c, h, w = x_shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    col = col.reshape(c, kh, kw, n, oh, ow)
    xpad = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, pad:pad + h, pad:pad + w]


def conv2d_forward(x, w, stride, pad, groups):
    """y (N, O, OH, OW) = W (*) x, no bias: ``Y[g] = W[g] @ col[g]`` for each group g.

    Returns y and what backward needs: the input's shape and the columns.
    """
    xp = get_array_module(x)
    n = x.shape[0]
    o, _, kh, kw = w.shape
    oh, ow = conv_out_size(x.shape[2], kh, stride, pad), conv_out_size(x.shape[3], kw, stride, pad)
    col = im2col(x, kh, kw, stride, pad).reshape(groups, -1, n * oh * ow)   # (G, K, M): rows by group
    wmat = w.reshape(groups, o // groups, -1)                               # (G, O/G, K)
    y = xp.stack([wmat[g] @ col[g] for g in range(groups)])                 # (G, O/G, M)
    return y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3), (x.shape, col)


def conv2d_transpose(dy, w, x_shape, stride, pad, groups):
    """dx = col2im(W[g]^T @ dY[g]): the input gradient of a convolution (a deconvnet's "conv^T")."""
    xp = get_array_module(dy)
    o, _, kh, kw = w.shape
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(groups, o // groups, -1)     # (G, O/G, M)
    wmat = w.reshape(groups, o // groups, -1)                               # (G, O/G, K)
    dcol = xp.stack([wmat[g].T @ dy_mat[g] for g in range(groups)])         # (G, K, M)
    return col2im(dcol.reshape(-1, dcol.shape[2]), x_shape, kh, kw, stride, pad)


def conv2d_backward(dy, saved, w, stride, pad, groups, need_dw=True, need_dx=True):
    """dW[g] = dY[g] @ col[g]^T and dx = col2im(W[g]^T @ dY[g]). Returns (dW or None, dx or None)."""
    xp = get_array_module(dy)
    x_shape, col = saved
    o = w.shape[0]
    dw = dx = None
    if need_dw:
        dy_mat = dy.transpose(1, 0, 2, 3).reshape(groups, o // groups, -1)  # (G, O/G, M)
        dw = xp.stack([dy_mat[g] @ col[g].T for g in range(groups)]).reshape(w.shape)
    if need_dx:
        dx = conv2d_transpose(dy, w, x_shape, stride, pad, groups)
    return dw, dx


# -- max-pooling: k*k maxima and their switches ------------------------------

def maxpool_forward(x, k, stride):
    """y = the maximum of each k x k window; switches (int8) = its offset i*k + j in the window.

    Walk the k*k offsets; an offset whose value is strictly larger takes over,
    so ties go to the first offset in row-major order.
    """
    xp = get_array_module(x)
    oh, ow = conv_out_size(x.shape[2], k, stride, 0), conv_out_size(x.shape[3], k, stride, 0)
    y = x[:, :, 0:stride * oh:stride, 0:stride * ow:stride].copy()          # offset (0, 0)
    switches = xp.zeros(y.shape, dtype=xp.int8)
    for i in range(k):
        for j in range(k):
            v = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            better = v > y
            y[better] = v[better]
            switches[better] = i * k + j
    return y, switches


def maxpool_backward(dy, switches, x_shape, k, stride):
    """dx[window's switch] += dy: each output's gradient goes to its maximum.

    Overlapping windows (stride < k) can share a maximum, hence ``+=``.
    """
    xp = get_array_module(dy)
    oh, ow = dy.shape[2], dy.shape[3]
    dx = xp.zeros(x_shape, dtype=dy.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += xp.where(switches == i * k + j, dy, 0)
    return dx


# -- local response normalisation --------------------------------------------

def channel_window_sum(x, before, after):
    """``out[:, c] = x[:, c - before] + ... + x[:, c + after]``, the window clipped to the channels."""
    xp = get_array_module(x)
    out = xp.zeros_like(x)
    for c in range(x.shape[1]):
        out[:, c] = x[:, max(0, c - before):c + after + 1].sum(axis=1)
    return out


def lrn_forward(x, size, alpha, beta, k):
    """s = k + alpha/n * window_sum(a^2);  b = a * s^-beta. Returns b and (a, s, b)."""
    s = k + alpha / size * channel_window_sum(x * x, size // 2, (size - 1) // 2)
    y = x * s ** -beta
    return y, (x, s, y)


def lrn_backward(dy, saved, size, alpha, beta, k):
    """da_j = g_j s_j^-beta - (2 alpha beta / n) a_j * sum_{i: j in window(i)} g_i b_i / s_i.

    The i whose window holds j form the mirrored window around j.
    """
    x, s, y = saved
    back = channel_window_sum(dy * y / s, (size - 1) // 2, size // 2)
    return dy * s ** -beta - 2 * alpha * beta / size * x * back


# -- the paper's SGD step ----------------------------------------------------

def momentum_update(w, g, v, lr, momentum, weight_decay):
    """v <- m v - wd lr w - lr g;  w <- w + v, in place."""
    v[...] = momentum * v - weight_decay * lr * w - lr * g
    w += v
