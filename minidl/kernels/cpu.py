"""The fast kernels' NumPy primitives (``fast.py`` builds the operations from them).

Everything is vectorised over the batch, the channels and the pixels; the only
Python loops run over the kh*kw offsets of a kernel window (at most 121 for
AlexNet's conv1), each iteration moving a whole strided slab of the batch.
col2im accumulates the same way rather than with ``np.add.at``, which is an
order of magnitude slower.

Memory layout. Layers see (N, C, H, W) arrays, but a convolution returns a
view of a (C, H, W, N) buffer: the batch innermost, as in cuda-convnet.
Every slab copied here (a strided window of every image) then has a long
contiguous inner run of N values instead of a short row of OW pixels, which
makes these memory-bound loops about twice as fast. Elementwise NumPy ops
keep their input's layout, and so do the kernels below (``order='K'``,
``*_like``), so the layout survives from one convolution to the next.
"""

import os
import threading

import numpy as np

from ..backend import get_array_module
from ..runtime import usable_cores
from .reference import conv_out_size


def to_chwn(x, pad=0):
    """(N, C, H, W) -> a (C, H+2p, W+2p, N) contiguous array, zero-padded.

    Free (a view) when x already has that layout and no padding is asked.
    Written for any array module: CuPy arrays stay on their device.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    src = x.transpose(1, 2, 3, 0)
    if pad == 0:
        return xp.ascontiguousarray(src)
    out = xp.zeros((c, h + 2 * pad, w + 2 * pad, n), dtype=x.dtype)
    out[:, pad:pad + h, pad:pad + w] = src
    return out


def im2col(x, kh, kw, stride, pad):
    """(N, C, H, W) -> columns (C*kh*kw, OH*OW*N).

    Row ``(c, i, j)`` holds input channel c shifted by kernel offset (i, j),
    for every output pixel and image:
    ``col[(c,i,j), (oy,ox,n)] = xpad[n, c, oy*stride + i, ox*stride + j]``.
    The row order matches a weight (O, C, kh, kw) reshaped to (O, C*kh*kw),
    and with the batch inside the columns the convolution of the whole batch
    is one large GEMM (per group) instead of N small ones.
    """
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    if pad == 0 and x.strides[0] == x.itemsize:
        xt = x.transpose(1, 2, 3, 0)                      # already batch innermost: no copy
    else:
        xt = to_chwn(x, pad)                              # (C, Hp, Wp, N)
    col = np.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xt[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return col.reshape(c * kh * kw, oh * ow * n)


def col2im(col, x_shape, kh, kw, stride, pad):
    """The adjoint of im2col: columns (C*kh*kw, OH*OW*N) -> (N, C, H, W).

    Every column entry is added back to the input pixel it was copied from,
    so pixels covered by several windows receive the sum (this is not an
    inverse of im2col). The result is a (N, C, H, W) view of a (C, H, W, N)
    buffer.
    """
    n, c, h, w = x_shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    col = col.reshape(c, kh, kw, oh, ow, n)
    dxpad = np.zeros((c, h + 2 * pad, w + 2 * pad, n), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j]
    return dxpad[:, pad:pad + h, pad:pad + w].transpose(3, 0, 1, 2)


_pool, _pool_pid, _pool_lock = None, None, threading.Lock()


def run_parallel(fn, args_list):
    """``[fn(*a) for a in args_list]``, the first call in this thread and the rest in a shared pool.

    For NumPy work that releases the GIL (ufuncs on large arrays). The pool
    is made on first use, again after a fork (threads do not survive one).
    """
    global _pool, _pool_pid
    if len(args_list) <= 1:
        return [fn(*a) for a in args_list]
    from concurrent.futures import ThreadPoolExecutor

    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < len(args_list) - 1:
            _pool = ThreadPoolExecutor(max_workers=max(len(args_list) - 1, usable_cores() - 1),
                                       thread_name_prefix="minidl-cpu")
            _pool_pid = os.getpid()
        pool = _pool
    futures = [pool.submit(fn, *a) for a in args_list[1:]]
    first = fn(*args_list[0])
    return [first] + [f.result() for f in futures]


def momentum_update(w, g, v, lr, momentum, weight_decay, block=1 << 18, threads=None):
    """``v <- m*v - wd*lr*w - lr*g; w <- w + v`` on contiguous arrays, block by block.

    Four whole-array passes would stream w, g and v through memory about ten
    times; a block of 2^18 values (1 MiB in float32) stays in the cache for
    all four, so each array is read from memory once. ``threads`` (default:
    every usable core) split the blocks into that many runs, updated side by
    side: the step is memory-bound, and two cores draw more bandwidth than
    one. Every value goes through the same operations either way, so the
    result does not depend on ``block`` or ``threads``.
    """
    w, g, v = w.reshape(-1), g.reshape(-1), v.reshape(-1)   # views: the arrays are contiguous
    if w.size == 0:
        return
    nblocks = -(-w.size // block)
    threads = max(1, min(usable_cores() if threads is None else int(threads), nblocks))
    per = -(-nblocks // threads) * block                      # values per thread, whole blocks
    parts = [(w[i:i + per], g[i:i + per], v[i:i + per], lr, momentum, weight_decay, block)
             for i in range(0, w.size, per)]
    run_parallel(_momentum_blocks, parts)


def _momentum_blocks(w, g, v, lr, momentum, weight_decay, block):
    t = w.dtype.type
    m, decay, rate = t(momentum), t(weight_decay * lr), t(lr)
    tmp = np.empty(min(block, w.size), dtype=w.dtype)
    for i in range(0, w.size, block):
        wb, gb, vb = w[i:i + block], g[i:i + block], v[i:i + block]
        tb = tmp[:wb.size]
        vb *= m
        if weight_decay:
            np.multiply(wb, decay, out=tb)
            vb -= tb
        np.multiply(gb, rate, out=tb)
        vb -= tb
        wb += vb


POOL_BAND_BYTES = 4 << 20


def axis_bands(x, axis, nbytes):
    """Slices that cut ``axis`` of x into runs of about ``nbytes`` of x each (at least one index).

    An empty axis gives one slice over all of it.
    """
    length = x.shape[axis]
    per = max(1, nbytes // max(1, x.nbytes // max(length, 1)))
    return [slice(i, min(i + per, length)) for i in range(0, length, per)] or [slice(None)]


def maxpool_forward(x, k, stride):
    """Max over k x k windows, and the switches.

    Returns ``y`` (N, C, OH, OW) and ``switches`` (int8, same shape): the
    position ``i*k + j`` of the maximum inside its window. Ties go to the
    first position in row-major order (strict ``>``), as in the CUDA kernel.

    The k*k passes run over bands of channels of about 4 MiB of ``x``, so
    each band is read from memory once rather than k*k times. With the batch
    innermost a band is one contiguous block of x, y and the switches (bands
    of rows instead made each NumPy pass about twice as slow). conv1's pooling
    at batch 128 went from about 86 to 37 ms on one core of a 2-core EPYC.
    """
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, k, stride, 0), conv_out_size(w, k, stride, 0)
    y = np.empty_like(x, shape=(n, c, oh, ow))               # keeps x's memory layout
    switches = np.zeros_like(y, dtype=np.int8)
    bands = axis_bands(x, 1, POOL_BAND_BYTES)
    better = np.empty_like(y[:, bands[0]], dtype=bool)
    step = np.empty_like(better, dtype=np.int8)
    for band in bands:
        xb, yb, sb = x[:, band], y[:, band], switches[:, band]
        _maxpool_band(xb, yb, sb, better[:, :yb.shape[1]], step[:, :yb.shape[1]], k, stride)
    return y, switches


def _maxpool_band(x, y, switches, better, step, k, stride):
    oh, ow = y.shape[2], y.shape[3]
    np.copyto(y, x[:, :, 0:stride * oh:stride, 0:stride * ow:stride])
    for i in range(k):
        for j in range(k):
            if i == 0 and j == 0:
                continue
            v = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            np.greater(v, y, out=better)
            np.maximum(y, v, out=y)
            # switches = where(better, i*k + j, switches), as int8 arithmetic (a masked
            # copyto is ~40x slower when the mask is dense): offsets only grow along
            # this loop, so every switch so far is below i*k + j and a max replaces it
            np.multiply(better.view(np.int8), np.int8(i * k + j), out=step)
            np.maximum(switches, step, out=switches)


def maxpool_backward(dy, switches, x_shape, k, stride):
    """Route each output gradient to the input at its switch.

    Windows overlap when stride < k, so one input can be the maximum of
    several windows: contributions are accumulated (``+=``), never assigned.
    The same routine unpools activations for a deconvnet. Runs over the same
    bands of channels as the forward pass (about 4 MiB of dx each), so a
    band of dx stays in the cache through its k*k accumulations.
    """
    n, c, h, w = x_shape
    oh, ow = dy.shape[2], dy.shape[3]
    dx = np.zeros_like(dy, shape=x_shape)  # same memory layout as dy
    bands = axis_bands(dx, 1, POOL_BAND_BYTES)
    hit = np.empty_like(switches[:, bands[0]], dtype=bool)
    routed = np.empty_like(dy[:, bands[0]])
    for band in bands:
        dyb, sb, dxb = dy[:, band], switches[:, band], dx[:, band]
        hb, rb = hit[:, :dyb.shape[1]], routed[:, :dyb.shape[1]]
        for i in range(k):
            for j in range(k):
                np.equal(sb, i * k + j, out=hb)
                np.multiply(dyb, hb, out=rb)
                dxb[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += rb
    return dx


ROW_BAND_BYTES = 2 << 20


def row_bands(x):
    """Index tuples that cut (N, C, H, ...) into bands of whole H rows of about 2 MiB each.

    For memory-bound chains of elementwise operations (LRN): each band's
    temporaries stay in the cache from one operation to the next instead of
    going out to memory and back between them. LRN's forward and backward at
    conv1's size, batch 128 (128, 48, 55, 55), went from about 300 ms to 170 to
    200 ms on one core of a 2-core EPYC (1 and 2 MiB bands did best), with
    bit-identical results, since every value goes through the same operations.
    """
    return [(slice(None), slice(None), rows) for rows in axis_bands(x, 2, ROW_BAND_BYTES)]


def channel_window_sum(x, before, after):
    """``out[:, c] = sum(x[:, j] for j in [c - before, c + after])``, clipped to the channels.

    Shift-and-add along axis 1 of (N, C, ...): one slab addition per offset.
    """
    out = x.copy(order="K")
    for d in range(1, before + 1):
        out[:, d:] += x[:, :-d] if d < x.shape[1] else x[:, :0]
    for d in range(1, after + 1):
        out[:, :-d if d < x.shape[1] else 0] += x[:, d:]
    return out
