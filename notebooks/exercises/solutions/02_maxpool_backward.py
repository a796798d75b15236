"""Solution to exercise 02: the backward pass of overlapping max-pooling."""

# %% exercise
import numpy as np


def maxpool_backward(dy, x, kernel_size=3, stride=2):
    """dy (N, C, OH, OW), x (N, C, H, W) -> dx (N, C, H, W)."""
    n, c, oh, ow = dy.shape
    k = kernel_size
    dx = np.zeros(x.shape, dtype=dy.dtype)
    rows, chans = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")   # (N, C) index grids
    for oy in range(oh):
        for ox in range(ow):
            window = x[:, :, oy * stride:oy * stride + k, ox * stride:ox * stride + k].reshape(n, c, k * k)
            # argmax takes the first maximum in row-major order, as MaxPool2D's switches do
            i, j = np.divmod(window.argmax(axis=2), k)
            # += : with stride < kernel the same input can be the maximum of several windows,
            # and it receives the gradient of each of them
            dx[rows, chans, oy * stride + i, ox * stride + j] += dy[:, :, oy, ox]
    return dx
