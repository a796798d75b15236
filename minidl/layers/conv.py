"""2-D convolution as im2col + matrix multiply, with groups.

Shapes (G = groups, K = C/G * kh * kw, M = OH * OW * N):

    x      (N, C, H, W)
    weight (O, C/G, kh, kw)        bias (O,)
    y      (N, O, OH, OW)          OH = (H + 2*pad - kh) // stride + 1

Forward, one matrix product per group g for the whole batch:

    col    = im2col(x)                               (C*kh*kw, M), rows split by group
    Y[g]   = W[g] @ col[g] + b[g]                    W[g]: (O/G, K), Y[g]: (O/G, M)
    y      = Y viewed as (N, O, OH, OW)

Backward, given dy = dL/dy viewed as dY (G, O/G, M):

    dW[g]  = dY[g] @ col[g]^T
    db     = sum of dy over images and pixels
    dcol   = W[g]^T @ dY[g]
    dx     = col2im(dcol)                            (the adjoint of im2col)

y is returned as a (N, O, OH, OW) view of an (O, OH, OW, N) buffer, the
batch innermost: the layout the kernels work fastest in (see
minidl/kernels/cpu.py), which the next layers keep.

Memory. col repeats each input pixel about (kh / stride)^2 times (conv1:
7x, conv2: 25x; conv1 at batch 128: 536 MB for one tower). So col is never
kept from forward to backward, and never built whole: both passes walk
over *bands* of output rows, building the columns of one band (at most
``kernels.column_band_bytes``: 16 MiB on the CPU), using them and dropping
them. Output rows [r0, r1) read padded input rows
[r0*stride, (r1-1)*stride + kh), so a band's columns are im2col of that
slice of the padded input, and the band's slice of M is contiguous because
M runs over (oy, ox, n) with oy outermost. Per band b:

    Y[:, M_b]   = W @ col_b                          forward
    dW         += dY[:, M_b] @ col_b^T               backward (col_b rebuilt)
    dxpad[rows_b] += col2im(W^T @ dY[:, M_b])        overlapping rows add up

Rebuilding col in backward costs one more im2col; a band's columns stay
in the processor's cache between the copy and the matrix product, which
pays most of it back (see docs/benchmarks.md).

With groups=2 each half of the output channels sees only its half of the
input channels: exactly AlexNet's two towers in conv2, conv4 and conv5.
"""

import numpy as np

from .. import kernels
from ..backend import get_array_module
from ..checks import whole
from .base import Layer, Parameter


def _pair(v, name, low):
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or v[0] != v[1]:
            raise ValueError(f"Conv2D: only square {name}s are supported, got {v}")
        v = v[0]
    return whole(v, "Conv2D", name, low=low)


class Conv2D(Layer):
    """``Conv2D(in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True)``.

    Cache: the zero-padded input (the columns are rebuilt from it in backward).
    """

    # Largest column matrix built at once, in bytes (at least one output row is always built);
    # None: the backend's choice, kernels.column_band_bytes.
    band_bytes = None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True,
                 dtype=np.float32):
        super().__init__()
        k, stride, padding = _pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1), \
            _pair(padding, "padding", 0)
        in_channels = whole(in_channels, "Conv2D", "in_channels", low=1)
        out_channels = whole(out_channels, "Conv2D", "out_channels", low=1)
        groups = whole(groups, "Conv2D", "groups", low=1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2D: in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must both be divisible by groups ({groups})"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = k, stride, padding, groups
        # Initialised to zero here; minidl.init and the model builders set real values.
        self.weight = Parameter(np.zeros((out_channels, in_channels // groups, k, k), dtype=dtype))
        self.bias = Parameter(np.zeros((out_channels,), dtype=dtype)) if bias else None
        self._xpad = None
        # False when nothing below needs dL/dx (the first layer): saves a GEMM and col2im
        self.need_input_grad = True

    def _shape_hint(self):
        return f"(N, {self.in_channels}, H, W) with H, W >= {self.kernel_size - 2 * self.padding}"

    def output_shape(self, h, w):
        return (self.out_channels,
                kernels.conv_out_size(h, self.kernel_size, self.stride, self.padding),
                kernels.conv_out_size(w, self.kernel_size, self.stride, self.padding))

    def _bands(self, xpad):
        """Yield (first, last + 1) output row, and the padded input rows they read, band by band."""
        n, c, hp, wp = xpad.shape
        k, s = self.kernel_size, self.stride
        oh, ow = kernels.conv_out_size(hp, k, s, 0), kernels.conv_out_size(wp, k, s, 0)
        row_bytes = c * k * k * ow * n * xpad.dtype.itemsize     # one output row's columns
        budget = self.band_bytes if self.band_bytes is not None else kernels.column_band_bytes(xpad)
        rows = max(1, budget // row_bytes)
        for r0 in range(0, oh, rows):
            r1 = min(oh, r0 + rows)
            yield r0, r1, xpad[:, :, r0 * s:(r1 - 1) * s + k]

    def forward(self, x):
        self._check_input(x, ndim=4, channels=self.in_channels)
        n, _, h, w = x.shape
        _, oh, ow = self.output_shape(h, w)
        if oh < 1 or ow < 1:
            raise ValueError(f"Conv2D: input {h}x{w} is too small for kernel {self.kernel_size} "
                             f"with padding {self.padding}; expected {self._shape_hint()}")
        xp = get_array_module(x)
        g, k, s = self.groups, self.kernel_size, self.stride
        xpad = kernels.pad_images(x, self.padding)                      # (N, C, H+2p, W+2p)
        if n == 0:                                                      # an empty batch: nothing to compute
            self._xpad = xpad
            return xp.zeros((0, self.out_channels, oh, ow), dtype=x.dtype)
        wmat = self.weight.data.reshape(g, self.out_channels // g, -1)  # (G, O/G, K)
        y = xp.empty((g, self.out_channels // g, oh * ow * n), dtype=x.dtype)
        m = ow * n                                                      # columns per output row
        for r0, r1, band in self._bands(xpad):
            col = kernels.im2col(band, k, k, s, 0)                      # (C*k*k, (r1-r0)*m)
            kernels.group_matmul(wmat, col.reshape(g, -1, col.shape[1]), out=y[:, :, r0 * m:r1 * m])
            del col                                                     # before the next band's
        y = y.reshape(self.out_channels, oh, ow, n).transpose(3, 0, 1, 2)  # (N, O, OH, OW) view
        if self.bias is not None:
            y += self.bias.data.reshape(1, -1, 1, 1)
        self._xpad = xpad
        return y

    def backward(self, dy):
        self._check_cache("_xpad")
        xpad, p = self._xpad, self.padding
        n, _, hp, wp = xpad.shape
        g, k, s = self.groups, self.kernel_size, self.stride
        self._check_grad(dy, (n, self.out_channels, kernels.conv_out_size(hp, k, s, 0),
                              kernels.conv_out_size(wp, k, s, 0)))
        self._xpad = None
        xp = get_array_module(dy)
        if n == 0:
            return xp.zeros((0, self.in_channels, hp - 2 * p, wp - 2 * p), dtype=dy.dtype) \
                if self.need_input_grad else None
        # (O, OH, OW, N) -> (G, O/G, M); no copy when dy has the layout forward produced
        dyg = xp.ascontiguousarray(dy.transpose(1, 2, 3, 0)).reshape(g, self.out_channels // g, -1)
        m = dy.shape[3] * n
        wmat = self.weight.data.reshape(g, self.out_channels // g, -1)
        want_dw = self.weight.requires_grad
        dw = xp.zeros_like(wmat) if want_dw else None
        dxpad = None
        for r0, r1, band in self._bands(xpad):
            dyb = dyg[:, :, r0 * m:r1 * m]                               # (G, O/G, Mb)
            if want_dw:
                col = kernels.im2col(band, k, k, s, 0)                   # rebuilt, as in forward
                dw += kernels.group_matmul(dyb, col.reshape(g, -1, col.shape[1]).transpose(0, 2, 1))
                del col
            if self.need_input_grad:
                dcol = kernels.group_matmul(wmat.transpose(0, 2, 1), dyb)   # (G, K, Mb)
                dband = kernels.col2im(dcol.reshape(-1, dcol.shape[2]), band.shape, k, k, s, 0)
                del dcol
                if dxpad is None and band.shape[2] == xpad.shape[2]:     # one band, every input row
                    dxpad = dband
                else:
                    if dxpad is None:                                    # batch innermost, like xpad
                        dxpad = xp.zeros(xpad.shape[1:] + (n,), dtype=dy.dtype).transpose(3, 0, 1, 2)
                    dxpad[:, :, r0 * s:(r1 - 1) * s + k] += dband
        if want_dw:
            self.weight.accumulate(dw.reshape(self.weight.shape))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(dy.sum(axis=(0, 2, 3)))
        if not self.need_input_grad:
            return None
        return dxpad[:, :, p:hp - p, p:wp - p]

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
