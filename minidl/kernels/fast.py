"""The fast kernels: the reference algorithms, rearranged for memory and cores.

Each operation computes what ``reference.py`` computes (the tests compare
them); what changes is where the bytes go:

- Batch innermost. A convolution returns a (N, C, H, W) view of a (C, H, W, N)
  buffer, as cuda-convnet did; the layers after it keep that layout, and every
  strided slab the kernels copy has a long contiguous run of N values.
- Bands. A convolution never builds its whole im2col matrix: it builds the
  columns of a band of output rows (16 MiB on the CPU), multiplies them while
  they are in the cache and drops them; backward rebuilds them. LRN runs its
  chain of elementwise operations band by band; pooling works through bands
  of channels.
- Per-group 2-D GEMMs, each written into its slice of the output (``group_matmul``).
- The SGD step in cache-sized blocks, shared among the cores.

The per-device primitives live in ``cpu.py`` (NumPy) and ``cuda.py`` (CUDA
kernels, one thread per output element); this module picks one by the type
of its input, so the same banded algorithms run on both.
"""

import numpy as np

from ..backend import get_array_module, is_cupy_array
from . import cpu
from .cpu import conv_out_size


def _device_kernels(x):
    if is_cupy_array(x):
        from . import cuda  # compiled on first use; needs CuPy

        return cuda
    return cpu


# -- primitives, on whichever device holds the array --------------------------

def im2col(x, kh, kw, stride, pad):
    """(N, C, H, W) -> (C*kh*kw, OH*OW*N), columns ordered (oy, ox, n): the batch innermost."""
    return _device_kernels(x).im2col(x, kh, kw, stride, pad)


def col2im(col, x_shape, kh, kw, stride, pad):
    """The adjoint of ``im2col``; a (N, C, H, W) view of a (C, H, W, N) array."""
    return _device_kernels(col).col2im(col, tuple(x_shape), kh, kw, stride, pad)


def pad_images(x, pad):
    """(N, C, H, W) -> zero-padded (N, C, H+2p, W+2p), as a view of a (C, H+2p, W+2p, N) buffer.

    Free when there is no padding and x already has that layout.
    """
    return cpu.to_chwn(x, pad).transpose(3, 0, 1, 2)    # any array module


def channel_window_sum(x, before, after):
    return _device_kernels(x).channel_window_sum(x, before, after)


def column_band_bytes(x):
    """How many bytes of im2col columns a convolution builds at once for arrays like ``x``.

    CPU: 16 MiB, so a band's columns are still in the processor's cache when
    the matrix product reads them (measured on a 2-core EPYC: 8 to 32 MiB
    bands ran conv2's and conv3's forward and backward slightly faster than
    whole columns built once and kept). GPU: 512 MiB, so conv1 at batch 128
    is one or two large products rather than dozens of small launches.
    """
    return 512 * 2**20 if is_cupy_array(x) else 16 * 2**20


def row_bands(x):
    """Index tuples ``b`` such that the ``x[b]`` cover (N, C, H, ...) once, in bands of H rows.

    CPU: bands of about 2 MiB, so a chain of elementwise operations on a band
    runs in the cache (``cpu.row_bands``). GPU: one band, the whole array, as
    each operation is a single kernel launch over it anyway.
    """
    if x.ndim < 3:
        raise ValueError(f"row_bands: expected (N, C, H, ...), got shape {tuple(x.shape)}")
    if is_cupy_array(x):
        return [(slice(None),) * x.ndim]
    return cpu.row_bands(x)


def group_matmul(a, b, out=None):
    """``out[g] = a[g] @ b[g]`` for a (G, m, k) and b (G, k, n), as G separate 2-D products.

    ``out``: a (G, m, n) array to write into (it may be a slice of a larger
    one whose rows are strided, as long as each row is contiguous).

    A stacked ``np.matmul`` is the one-line alternative. Where NumPy does not
    hand a stacked product to BLAS it is far slower; with NumPy 2.4.6 and
    OpenBLAS 0.3.31 it does for every shape a convolution makes, and the two
    take the same time (notebook 11 measures it). The loop over the groups (at
    most a handful) costs nothing and makes no assumption about strided outputs.
    """
    xp = get_array_module(a, b)
    if out is None:
        out = xp.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=xp.result_type(a, b))
    for g in range(a.shape[0]):
        if xp is np:
            np.matmul(a[g], b[g], out=out[g])   # BLAS writes straight into a strided out
        else:
            out[g] = xp.matmul(a[g], b[g])      # CuPy: no assumption about strided outputs
    return out


def neg_power(s, beta, out=None):
    """``s ** -beta`` (s > 0), into ``out`` if given. For LRN's beta = 0.75 it is
    1/sqrt(s * sqrt(s)), several times faster than a general power."""
    xp = get_array_module(s)
    if beta == 0.75:
        r = xp.sqrt(s, out=out)
        r *= s
        xp.sqrt(r, out=r)
        return xp.reciprocal(r, out=r)
    return xp.power(s, s.dtype.type(-beta), out=out)


# -- convolution in bands of output rows -------------------------------------
#
# Output rows [r0, r1) read padded input rows [r0*stride, (r1-1)*stride + kh),
# so a band's columns are im2col of that slice of the padded input, and the
# band's slice of the columns' M = OH*OW*N axis is contiguous (oy outermost).
# Per band b:
#
#     Y[:, M_b]      = W @ col_b                      forward
#     dW            += dY[:, M_b] @ col_b^T            backward (col_b rebuilt)
#     dxpad[rows_b] += col2im(W^T @ dY[:, M_b])        overlapping rows add up
#
# The columns repeat each pixel about (kh / stride)^2 times (conv1 at batch
# 128: 536 MB for one tower), so they are never kept from forward to backward.

# Largest column matrix built at once, in bytes (at least one output row always is);
# None: the device's choice, ``column_band_bytes``.
CONV_BAND_BYTES = None


def conv_bands(padded_shape, k, stride, itemsize, x):
    """(r0, r1) output-row ranges of at most ``CONV_BAND_BYTES`` of columns each, covering every row."""
    n, c, hp, wp = padded_shape
    oh, ow = conv_out_size(hp, k, stride, 0), conv_out_size(wp, k, stride, 0)
    row_bytes = c * k * k * ow * n * itemsize                   # one output row's columns
    budget = CONV_BAND_BYTES if CONV_BAND_BYTES is not None else column_band_bytes(x)
    rows = max(1, budget // row_bytes)
    return [(r0, min(oh, r0 + rows)) for r0 in range(0, oh, rows)]


def _input_rows(r0, r1, k, stride):
    return slice(r0 * stride, (r1 - 1) * stride + k)


def conv2d_forward(x, w, stride, pad, groups):
    """y = W (*) x, no bias; returns y (batch innermost) and the padded input for backward."""
    xp = get_array_module(x)
    n = x.shape[0]
    o, _, k, _ = w.shape
    xpad = pad_images(x, pad)                                       # (N, C, H+2p, W+2p)
    oh, ow = conv_out_size(xpad.shape[2], k, stride, 0), conv_out_size(xpad.shape[3], k, stride, 0)
    wmat = w.reshape(groups, o // groups, -1)                       # (G, O/G, K)
    y = xp.empty((groups, o // groups, oh * ow * n), dtype=x.dtype)
    m = ow * n                                                      # columns per output row
    for r0, r1 in conv_bands(xpad.shape, k, stride, x.dtype.itemsize, x):
        col = im2col(xpad[:, :, _input_rows(r0, r1, k, stride)], k, k, stride, 0)   # (C*k*k, (r1-r0)*m)
        group_matmul(wmat, col.reshape(groups, -1, col.shape[1]), out=y[:, :, r0 * m:r1 * m])
        del col                                                     # before the next band's
    return y.reshape(o, oh, ow, n).transpose(3, 0, 1, 2), xpad     # (N, O, OH, OW) view


def _conv_backward(dy, xpad, padded_shape, w, stride, pad, groups, need_dw, need_dx):
    xp = get_array_module(dy)
    n, _, hp, wp = padded_shape
    o, _, k, _ = w.shape
    # (O, OH, OW, N) -> (G, O/G, M); no copy when dy has the layout forward produced
    dyg = xp.ascontiguousarray(dy.transpose(1, 2, 3, 0)).reshape(groups, o // groups, -1)
    m = dy.shape[3] * n
    wmat = w.reshape(groups, o // groups, -1)
    dw = xp.zeros_like(wmat) if need_dw else None
    dxpad = None
    for r0, r1 in conv_bands(padded_shape, k, stride, dy.dtype.itemsize, dy):
        rows = _input_rows(r0, r1, k, stride)
        band_shape = (n, padded_shape[1], rows.stop - rows.start, wp)
        dyb = dyg[:, :, r0 * m:r1 * m]                               # (G, O/G, Mb)
        if need_dw:
            col = im2col(xpad[:, :, rows], k, k, stride, 0)         # rebuilt, as in forward
            dw += group_matmul(dyb, col.reshape(groups, -1, col.shape[1]).transpose(0, 2, 1))
            del col
        if need_dx:
            dcol = group_matmul(wmat.transpose(0, 2, 1), dyb)        # (G, K, Mb)
            dband = col2im(dcol.reshape(-1, dcol.shape[2]), band_shape, k, k, stride, 0)
            del dcol
            if dxpad is None and band_shape[2] == hp:                # one band, every input row
                dxpad = dband
            else:
                if dxpad is None:                                    # batch innermost, like xpad
                    dxpad = xp.zeros(padded_shape[1:] + (n,), dtype=dy.dtype).transpose(3, 0, 1, 2)
                dxpad[:, :, rows] += dband
    dx = dxpad[:, :, pad:hp - pad, pad:wp - pad] if need_dx else None
    return (dw.reshape(w.shape) if need_dw else None), dx


def conv2d_backward(dy, xpad, w, stride, pad, groups, need_dw=True, need_dx=True):
    """(dW or None, dx or None), band by band."""
    return _conv_backward(dy, xpad, xpad.shape, w, stride, pad, groups, need_dw, need_dx)


def conv2d_transpose(dy, w, x_shape, stride, pad, groups):
    """The input gradient alone, for an input of shape ``x_shape``."""
    n, c, h, wd = x_shape
    return _conv_backward(dy, None, (n, c, h + 2 * pad, wd + 2 * pad), w, stride, pad, groups, False, True)[1]


# -- max-pooling ---------------------------------------------------------------

def maxpool_forward(x, k, stride):
    return _device_kernels(x).maxpool_forward(x, k, stride)


def maxpool_backward(dy, switches, x_shape, k, stride):
    return _device_kernels(dy).maxpool_backward(dy, switches, tuple(x_shape), k, stride)


# -- local response normalisation, band by band --------------------------------
#
# A band's temporaries stay in the cache through the whole chain of
# elementwise operations; every value is computed the same way, so the
# result does not depend on the bands. Forward keeps a, s^-beta and
# s^(-beta-1) = (b / s) / a for backward.

def lrn_forward(x, size, alpha, beta, k):
    xp, t = get_array_module(x), x.dtype.type
    y, scale, scale_over_s = xp.empty_like(x), xp.empty_like(x), xp.empty_like(x)
    for rows in row_bands(x):
        a = x[rows]
        s = channel_window_sum(a * a, size // 2, (size - 1) // 2)
        s *= t(alpha / size)
        s += t(k)
        sb = neg_power(s, beta, out=scale[rows])                    # s^-beta
        xp.divide(sb, s, out=scale_over_s[rows])                     # s^(-beta-1)
        xp.multiply(a, sb, out=y[rows])                              # b = a * s^-beta
    return y, (x, scale, scale_over_s)


def lrn_backward(dy, saved, size, alpha, beta, k):
    x, scale, scale_over_s = saved
    xp, t = get_array_module(x), x.dtype.type
    dx = xp.empty_like(x)
    for rows in row_bands(x):
        g, a = dy[rows], x[rows]
        # window sums over the i whose window contains j: the mirrored window
        back = channel_window_sum(g * a * scale_over_s[rows], (size - 1) // 2, size // 2)
        d = xp.multiply(g, scale[rows], out=dx[rows])               # g_j * s_j^-beta
        d -= t(2 * alpha * beta / size) * a * back
    return dx


# -- the SGD step ----------------------------------------------------------------

def momentum_update(w, g, v, lr, momentum, weight_decay):
    """``v <- m*v - wd*lr*w - lr*g``, then ``w <- w + v``, in place.

    On the CPU the arrays are updated in cache-sized blocks (``cpu.momentum_update``),
    about twice as fast for AlexNet's 61M parameters as whole-array passes, and
    the blocks are shared out among the usable cores (fc6's update: 52 ms on one
    core, 32 ms on two, on a 2-core EPYC); every value goes through the same
    operations, so the result is bit-identical.
    """
    if not is_cupy_array(w) and all(a.flags.c_contiguous for a in (w, g, v)):
        return cpu.momentum_update(w, g, v, lr, momentum, weight_decay)
    t = w.dtype.type
    v *= t(momentum)
    if weight_decay:
        v -= t(weight_decay * lr) * w
    v -= t(lr) * g
    w += v
