"""Per-backend primitives, one function per operation.

Layers call these and never ask which backend they run on: each function
looks at its input and hands it to the NumPy code (``cpu.py``) or the CUDA
kernels (``cuda.py``), which take and return the same shapes and layouts.

    im2col(x, kh, kw, stride, pad)            (N,C,H,W) -> (C*kh*kw, OH*OW*N)
    pad_images(x, pad)                        zero-padded, batch innermost
    column_band_bytes(x)                      how many im2col bytes a convolution builds at once
    col2im(col, x_shape, kh, kw, stride, pad) the adjoint of im2col
    maxpool_forward(x, k, stride)             -> y, switches (int8 window offsets)
    maxpool_backward(dy, switches, x_shape, k, stride)   also unpools
    channel_window_sum(x, before, after)      LRN's sum over neighbouring channels
    row_bands(x)                              cache-sized bands of rows (CPU), the whole array (GPU)
    hash_uniform(shape, seed, counter, xp)    counter-based uniform [0, 1) numbers
    group_matmul(a, b)                        out[g] = a[g] @ b[g] for stacked matrices
    neg_power(s, beta, out=None)              s ** -beta, with a fast path for beta = 0.75
    momentum_update(w, g, v, lr, m, wd)       the SGD step, in place

Process-wide settings (BLAS threads, the allocator) are not kernels: see
``minidl.runtime``.
"""

import numpy as np

from ..backend import get_array_module, is_cupy_array
from . import cpu
from .cpu import conv_out_size

__all__ = [
    "conv_out_size",
    "im2col",
    "col2im",
    "pad_images",
    "column_band_bytes",
    "maxpool_forward",
    "maxpool_backward",
    "channel_window_sum",
    "row_bands",
    "hash_uniform",
    "group_matmul",
    "neg_power",
    "momentum_update",
]


def _impl(x):
    if is_cupy_array(x):
        from . import cuda  # compiled on first use; needs CuPy

        return cuda
    return cpu


def im2col(x, kh, kw, stride, pad):
    return _impl(x).im2col(x, kh, kw, stride, pad)


def col2im(col, x_shape, kh, kw, stride, pad):
    return _impl(col).col2im(col, tuple(x_shape), kh, kw, stride, pad)


def column_band_bytes(x):
    """How many bytes of im2col columns Conv2D builds at once for arrays like ``x``.

    CPU: 16 MiB, so a band's columns are still in the processor's cache when
    the matrix product reads them (measured on a 2-core EPYC: 8 to 32 MiB
    bands ran conv2's and conv3's forward and backward slightly faster than
    whole columns built once and kept). GPU: 512 MiB, so conv1 at batch 128
    is one or two large products rather than dozens of small launches.
    """
    return 512 * 2**20 if is_cupy_array(x) else 16 * 2**20


def pad_images(x, pad):
    """(N, C, H, W) -> zero-padded (N, C, H+2p, W+2p), as a view of a (C, H+2p, W+2p, N) buffer.

    Free when there is no padding and x already has that layout.
    """
    return cpu.to_chwn(x, pad).transpose(3, 0, 1, 2)    # any array module


def maxpool_forward(x, k, stride):
    return _impl(x).maxpool_forward(x, k, stride)


def maxpool_backward(dy, switches, x_shape, k, stride):
    return _impl(dy).maxpool_backward(dy, switches, tuple(x_shape), k, stride)


def channel_window_sum(x, before, after):
    return _impl(x).channel_window_sum(x, before, after)


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


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hash_uniform(shape, seed, counter, xp=np, dtype=np.float32):
    """Uniform numbers in [0, 1) that depend only on (seed, counter, index).

    A SplitMix64 hash of each element's index, keyed by the seed and a call
    counter. The same arguments give the same numbers on NumPy and CuPy, and
    the whole random state is two integers, so dropout masks are reproducible
    across devices and across a checkpoint-and-resume.
    """
    size = int(np.prod(shape, dtype=np.int64))
    key = (np.uint64(seed & 0xFFFFFFFF) << np.uint64(32)) ^ np.uint64(counter & 0xFFFFFFFF)
    z = xp.arange(size, dtype=xp.uint64)
    z += np.uint64((int(key) * int(_GOLDEN)) & 0xFFFFFFFFFFFFFFFF)
    z *= _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    # keep as many top bits as the dtype represents exactly (float16: 11,
    # float32: 24, float64: 53), so the result is < 1 after the cast
    bits = np.finfo(dtype).nmant + 1
    u = (z >> np.uint64(64 - bits)).astype(dtype)
    u *= np.dtype(dtype).type(2.0**-bits)
    return u.reshape(shape)


def group_matmul(a, b, out=None):
    """``out[g] = a[g] @ b[g]`` for a (G, m, k) and b (G, k, n), as G separate 2-D products.

    ``out``: a (G, m, n) array to write into (it may be a slice of a larger
    one whose rows are strided, as long as each row is contiguous).

    NumPy's stacked matmul can be two orders of magnitude slower than the
    same products made one by one (with OpenBLAS threads it was 770 ms
    against 7 ms for a (24 x 100k) @ (100k x 25) product), so the groups
    (at most a handful) are looped over here.
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


def momentum_update(w, g, v, lr, momentum, weight_decay):
    """The paper's SGD step, in place: ``v <- m*v - wd*lr*w - lr*g``, then ``w <- w + v``.

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
