"""Solution to exercise 03: the backward pass of local response normalisation."""

# %% exercise
import numpy as np  # noqa: F401  (the notebook's namespace has it too)
from minidl.kernels.reference import channel_window_sum


def lrn_backward(dy, a, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """dy, a (N, C, H, W) -> da (N, C, H, W), for b_i = a_i * s_i^-beta, s_i = k + alpha/n * sum_window a_j^2."""
    before, after = size // 2, (size - 1) // 2
    # the forward pass again: minidl divides alpha by n (cuda-convnet's, Caffe's and PyTorch's convention)
    s = k + alpha / size * channel_window_sum(a * a, before, after)
    b = a * s ** -beta
    # direct term: b_j depends on a_j through its numerator
    direct = dy * s ** -beta
    # cross term: a_j is in the window of every i from j - after to j + before (the mirrored window),
    # with ds_i/da_j = 2 alpha/n a_j and db_i/ds_i = -beta b_i / s_i
    cross = channel_window_sum(dy * b / s, after, before)
    return direct - 2 * alpha * beta / size * a * cross
