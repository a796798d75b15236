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

With groups=2 each half of the output channels sees only its half of the
input channels: exactly AlexNet's two towers in conv2, conv4 and conv5.
"""

import numpy as np

from .. import kernels
from ..backend import get_array_module
from .base import Layer, Parameter


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or v[0] != v[1]:
            raise ValueError(f"Conv2D: only square {name}s are supported, got {v}")
        v = v[0]
    return int(v)


class Conv2D(Layer):
    """``Conv2D(in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True)``.

    Cache: the column matrix of the input (for dW) and the input shape (for dx).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True,
                 dtype=np.float32):
        super().__init__()
        k, stride, padding = _pair(kernel_size, "kernel"), _pair(stride, "stride"), _pair(padding, "padding")
        if min(in_channels, out_channels, k, stride, groups) < 1 or padding < 0:
            raise ValueError(
                f"Conv2D: sizes must be positive, got in={in_channels}, out={out_channels}, "
                f"kernel={k}, stride={stride}, padding={padding}, groups={groups}"
            )
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
        self._col = None
        self._x_shape = None
        # False when nothing below needs dL/dx (the first layer): saves a GEMM and col2im
        self.need_input_grad = True

    def _shape_hint(self):
        return f"(N, {self.in_channels}, H, W) with H, W >= {self.kernel_size - 2 * self.padding}"

    def output_shape(self, h, w):
        return (self.out_channels,
                kernels.conv_out_size(h, self.kernel_size, self.stride, self.padding),
                kernels.conv_out_size(w, self.kernel_size, self.stride, self.padding))

    def forward(self, x):
        self._check_input(x, ndim=4, channels=self.in_channels)
        n, _, h, w = x.shape
        _, oh, ow = self.output_shape(h, w)
        if oh < 1 or ow < 1:
            raise ValueError(f"Conv2D: input {h}x{w} is too small for kernel {self.kernel_size} "
                             f"with padding {self.padding}; expected {self._shape_hint()}")
        g, k = self.groups, self.kernel_size
        col = kernels.im2col(x, k, k, self.stride, self.padding)          # (C*k*k, M)
        wmat = self.weight.data.reshape(g, self.out_channels // g, -1)     # (G, O/G, K)
        y = kernels.group_matmul(wmat, col.reshape(g, -1, col.shape[1]))   # (G, O/G, M)
        y = y.reshape(self.out_channels, oh, ow, n).transpose(3, 0, 1, 2)  # (N, O, OH, OW) view
        if self.bias is not None:
            y += self.bias.data.reshape(1, -1, 1, 1)
        self._col, self._x_shape = col, x.shape
        return y

    def backward(self, dy):
        self._check_cache("_col")
        g, k = self.groups, self.kernel_size
        xp = get_array_module(dy)
        # (O, OH, OW, N) -> (G, O/G, M); no copy when dy has the layout forward produced
        dyg = xp.ascontiguousarray(dy.transpose(1, 2, 3, 0)).reshape(g, self.out_channels // g, -1)
        colg = self._col.reshape(g, -1, self._col.shape[1])              # (G, K, M)
        if self.weight.requires_grad:
            dw = kernels.group_matmul(dyg, colg.transpose(0, 2, 1))       # (G, O/G, K)
            self.weight.accumulate(dw.reshape(self.weight.shape))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(dy.sum(axis=(0, 2, 3)))
        self._col = None
        del colg            # free the columns before dcol, as large, is allocated
        if not self.need_input_grad:
            return None
        wmat = self.weight.data.reshape(g, self.out_channels // g, -1)
        dcol = kernels.group_matmul(wmat.transpose(0, 2, 1), dyg)          # (G, K, M)
        return kernels.col2im(dcol.reshape(-1, dcol.shape[2]), self._x_shape, k, k, self.stride, self.padding)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
