"""Max-pooling with switches (the paper's overlapping pooling: kernel 3, stride 2).

Shapes: x (N, C, H, W) -> y (N, C, OH, OW), OH = (H - k) // stride + 1
(55 -> 27 -> 13 -> 6 for AlexNet). Windows that would run past the edge are
dropped, so trailing rows/columns may be covered by no window.

    y[n, c, oy, ox] = max_{0 <= i, j < k} x[n, c, oy*stride + i, ox*stride + j]

Forward records the *switches*: for every output, where in its window the
maximum was (``i*k + j``; ties go to the first in row-major order).
Backward sends each output gradient to that one input:

    dx[n, c, oy*stride + i*, ox*stride + j*] += dy[n, c, oy, ox]

With stride < k the windows overlap and one input can win several windows,
so contributions must add up (``+=``). The switches also let a deconvnet
unpool activations back to where the maxima came from (``unpool``).
"""

from .. import kernels
from ..backend import get_array_module
from ..checks import whole
from .base import Layer


class MaxPool2D(Layer):
    """``MaxPool2D(kernel_size=3, stride=2)``. Cache: the switches and the input shape."""

    def __init__(self, kernel_size=3, stride=2):
        super().__init__()
        # a switch (the window offset of the maximum) is an int8: k*k <= 127
        self.kernel_size = whole(kernel_size, "MaxPool2D", "kernel_size", low=1, high=11)
        self.stride = whole(stride, "MaxPool2D", "stride", low=1)
        self.switches = None
        self.input_shape = None
        self._unused = False

    def _shape_hint(self):
        return f"(N, C, H, W) with H, W >= {self.kernel_size}"

    def forward(self, x):
        self._check_input(x, ndim=4)
        if x.shape[2] < self.kernel_size or x.shape[3] < self.kernel_size:
            raise ValueError(f"MaxPool2D: expected {self._shape_hint()}, got shape {tuple(x.shape)}")
        y, self.switches = kernels.maxpool_forward(x, self.kernel_size, self.stride)
        self.input_shape = x.shape
        self._unused = True         # backward may use this forward once (the switches stay for unpool)
        return y

    def backward(self, dy):
        self._check_cache("switches")
        if not self._unused:
            raise RuntimeError("MaxPool2D.backward called a second time after one forward: each backward needs a "
                               "forward of its own")
        self._check_grad(dy, self.switches.shape)
        self._unused = False
        return kernels.maxpool_backward(dy, self.switches, self.input_shape, self.kernel_size, self.stride)

    def unpool(self, y):
        """Place ``y`` (shaped like the last output) at the recorded maxima; zeros elsewhere."""
        self._check_cache("switches")
        return kernels.maxpool_backward(y, self.switches, self.input_shape, self.kernel_size, self.stride)

    def switch_indices(self):
        """The switches as flat indices into each input map (``oy*stride+i) * W + (ox*stride+j)``),
        the convention of PyTorch's ``return_indices=True``."""
        self._check_cache("switches")
        xp = get_array_module(self.switches)
        k, s = self.kernel_size, self.stride
        oh, ow = self.switches.shape[2:]
        w = self.input_shape[3]
        sw = self.switches.astype(xp.int64)
        rows = xp.arange(oh).reshape(-1, 1) * s + sw // k
        cols = xp.arange(ow).reshape(1, -1) * s + sw % k
        return rows * w + cols

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
