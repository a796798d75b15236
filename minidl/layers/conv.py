"""2-D convolution as im2col + matrix multiply, with groups.

Shapes (G = groups, K = C/G * kh * kw, M = N * OH * OW):

    x      (N, C, H, W)
    weight (O, C/G, kh, kw)        bias (O,)
    y      (N, O, OH, OW)          OH = (H + 2*pad - kh) // stride + 1

Each output is a dot product of a kernel with the input patch under it:

    y[n, o, oy, ox] = b[o] + sum_{c in o's group, i, j} W[o, c, i, j] * xpad[n, c, oy*stride + i, ox*stride + j]

im2col copies every patch into a column, so the whole batch is one matrix
product per group (``minidl/kernels/reference.py`` is this, line for line):

    col    = im2col(x)                               (C*kh*kw, M), rows split by group
    Y[g]   = W[g] @ col[g]                           W[g]: (O/G, K), Y[g]: (O/G, M)
    y      = Y viewed as (N, O, OH, OW), + b

Backward, given dy = dL/dy viewed as dY (G, O/G, M):

    dW[g]  = dY[g] @ col[g]^T
    db     = sum of dy over images and pixels
    dcol   = W[g]^T @ dY[g]
    dx     = col2im(dcol)                            (the adjoint of im2col)

With groups=2 each half of the output channels sees only its half of the
input channels: exactly AlexNet's two towers in conv2, conv4 and conv5.

The fast kernels compute the same in bands of output rows, never holding
the whole of col (conv1 at batch 128: 536 MB for one tower), and return y
as a view of a batch-innermost buffer; see ``minidl/kernels/fast.py``.
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

    Cache: what the kernel set keeps for backward (the fast set: the padded input).
    """

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
        self._saved = None
        self._input_shape = None
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
        self._input_shape = x.shape
        if n == 0:                                                      # an empty batch: nothing to compute
            return get_array_module(x).zeros((0, self.out_channels, oh, ow), dtype=x.dtype)
        # Y[g] = W[g] @ im2col(x)[g]
        y, self._saved = kernels.conv2d_forward(x, self.weight.data, self.stride, self.padding, self.groups)
        if self.bias is not None:
            y += self.bias.data.reshape(1, -1, 1, 1)                    # + b[o]
        return y

    def backward(self, dy):
        self._check_cache("_input_shape")
        n, _, h, w = self._input_shape
        self._check_grad(dy, (n,) + self.output_shape(h, w))
        saved, self._saved, self._input_shape = self._saved, None, None
        want_dw = self.weight.requires_grad
        if n == 0:
            dw, dx = None, get_array_module(dy).zeros((0, self.in_channels, h, w), dtype=dy.dtype)
        else:
            # dW[g] = dY[g] @ col[g]^T;  dx = col2im(W[g]^T @ dY[g])
            dw, dx = kernels.conv2d_backward(dy, saved, self.weight.data, self.stride, self.padding, self.groups,
                                             need_dw=want_dw, need_dx=self.need_input_grad)
        if dw is not None:
            self.weight.accumulate(dw)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate(dy.sum(axis=(0, 2, 3)))                # db[o] = sum of dy[:, o]
        return dx if self.need_input_grad else None

    def transpose(self, y, input_shape):
        """``col2im(W^T @ y)`` with this layer's weights and no bias: y (N, O, OH, OW) -> (N, C, H, W).

        The input-gradient operation on its own, for an input of ``input_shape``
        (the deconvnet's "filtering with transposed filters"). Uses no cache.
        """
        n, c, h, w = input_shape
        want = (n,) + self.output_shape(h, w)
        if tuple(getattr(y, "shape", ())) != want or c != self.in_channels:
            raise ValueError(f"Conv2D.transpose: an input of shape {tuple(input_shape)} has outputs of shape "
                             f"{want} (and {self.in_channels} channels), got y of shape "
                             f"{tuple(getattr(y, 'shape', ()))}")
        if n == 0:
            return get_array_module(y).zeros((0, c, h, w), dtype=self.weight.dtype)
        return kernels.conv2d_transpose(y.astype(self.weight.dtype, copy=False), self.weight.data, input_shape,
                                        self.stride, self.padding, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding:
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
