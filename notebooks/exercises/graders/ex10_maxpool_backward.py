"""Exercise 10: MaxPool2D.backward, routing each gradient through the switches (and adding up where
overlapping windows share a maximum)."""

import numpy as np

from minidl.kernels.reference import maxpool_backward, maxpool_forward

from .common import array, close, fail, forward_first, is_mistake, load, passed, run, worst

NUMBER = "10"
TITLE = "Overlapping max-pooling: backward"
WRITES = "MaxPool2D.backward in mydl/pool.py"
NOTEBOOK = "05_maxpool.ipynb, section \"Backward must accumulate\""
MINUTES = 20

ACCUMULATE = ("assigning instead of accumulating (dx[...] = dy instead of dx[...] += dy: an input that is the "
              "maximum of several overlapping windows keeps one window's gradient instead of their sum)")


def _distinct(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _planted(rng, shape):
    """Random floats and two large values: (2, 4) is the maximum of four 3x3/2 windows, (4, 1) of two."""
    x = _distinct(rng, shape)
    x[:, :, 2, 4], x[:, :, 4, 1] = 10, 9
    return x


def _small_integers(rng, shape):
    return rng.integers(0, 3, shape).astype(np.float32)


# (shape (N, C, H, W), window k, stride, how the values are drawn, what the case is)
CASES = [
    ((2, 3, 7, 7), 3, 2, _planted, "the paper's 3x3/2; the input at (2, 4) is the maximum of four windows"),
    ((1, 2, 8, 8), 3, 2, _distinct, "3x3/2 on 8x8, where no window reaches the last row and column; a batch of one"),
    ((2, 2, 9, 9), 2, 2, _distinct, "non-overlapping 2x2/2 on 9x9: no window reaches the last row and column"),
    ((2, 3, 9, 6), 3, 2, _distinct, "a non-square map"),
    ((2, 2, 9, 9), 3, 2, _small_integers, "integer values with ties"),
    ((1, 2, 6, 6), 3, 1, _distinct, "3x3 at stride 1: an input can be the maximum of up to nine windows"),
    ((1, 2, 8, 8), 2, 3, _distinct, "stride 3 larger than the 2x2 window: inputs between the windows"),
]


# -- what typical mistakes give (float64, computed before the learner's code runs) ---------------

def _windows(shape, k, s):
    """(oy, ox, the window's slices) for every output position."""
    oh, ow = (shape[2] - k) // s + 1, (shape[3] - k) // s + 1
    for oy in range(oh):
        for ox in range(ow):
            yield oy, ox, (slice(None), slice(None), slice(oy * s, oy * s + k), slice(ox * s, ox * s + k))


def _one_hot(switches, k):
    """(N, C, OH, OW, k, k): 1 at each window's switch."""
    return (switches[..., None, None] == np.arange(k * k).reshape(k, k)).astype(np.float64)


def _mistakes(x, dy, switches, k, s):
    """What typical mistakes give, in float64, from the right switches."""
    y = maxpool_forward(x, k, s)[0]
    hot = _one_hot(switches, k)
    last_window = np.zeros(x.shape)        # dx[switch] = dy, window after window: the last window wins
    average = np.zeros(x.shape)            # average pooling's backward
    every_tie = np.zeros(x.shape)          # every element equal to the maximum gets the gradient
    for oy, ox, win in _windows(x.shape, k, s):
        g = dy[:, :, oy, ox, None, None]
        mask = hot[:, :, oy, ox] > 0
        last_window[win] = np.where(mask, g, last_window[win])
        average[win] += g / (k * k)
        every_tie[win] += g * (x[win] == y[:, :, oy, ox, None, None])
    oh, ow = dy.shape[2], dy.shape[3]
    last_offset = np.zeros(x.shape)        # offset after offset, region[mask] = dy[mask]: the last offset wins
    overwritten = np.zeros(x.shape)        # offset after offset, region = np.where(mask, dy, 0)
    for i in range(k):
        for j in range(k):
            region = (slice(None), slice(None), slice(i, i + s * oh, s), slice(j, j + s * ow, s))
            mask = switches == i * k + j
            last_offset[region] = np.where(mask, dy, last_offset[region])
            overwritten[region] = np.where(mask, dy, 0)
    return [
        (ACCUMULATE, last_window),
        (ACCUMULATE, last_offset),
        (ACCUMULATE, overwritten),
        ("dividing each gradient among its window (average pooling's backward) instead of sending it to the "
         "maximum", average),
        ("sending the gradient to every element equal to the maximum instead of to the switch (ties go to the "
         "first maximum only)", every_tie),
    ]


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(1010)
    for (n, c, h, w), k, s, draw, about in CASES:
        x = draw(rng, (n, c, h, w))
        dy = rng.standard_normal(((n, c, (h - k) // s + 1, (w - k) // s + 1))).astype(np.float32)
        case = f" (x of shape {x.shape}, MaxPool2D({k}, {s}): {about})"
        x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
        want_y, want_sw = maxpool_forward(x64, k, s)
        want_dx = maxpool_backward(dy64, want_sw, x.shape, k, s)
        mistakes = _mistakes(x64, dy64, want_sw, k, s)
        covered = np.zeros(x.shape, dtype=bool)                  # the inputs some window reaches
        for _, _, win in _windows(x.shape, k, s):
            covered[win] = True

        layer = run(NUMBER, "MaxPool2D(...)", mydl.MaxPool2D, k, s)
        y = forward_first(NUMBER, layer, "MaxPool2D", x.copy(), dy.copy())
        switches = getattr(layer, "switches", None)
        if not (is_mistake(y, want_y, 0, 0) and isinstance(switches, np.ndarray)
                and is_mistake(switches, want_sw, 0, 0)):
            fail(f"MaxPool2D.forward (exercise 09) does not give the right y and switches{case}: grade exercise 09 "
                 "first, backward relies on its switches")

        given = dy.copy()
        dx = run(NUMBER, "MaxPool2D.backward", layer.backward, given)
        what = f"MaxPool2D.backward's dx{case}"
        if not np.array_equal(given, dy):
            fail(f"MaxPool2D.backward changed its input dy{case}: compute a new array instead")
        if isinstance(dx, np.ndarray) and dx.shape != x.shape:
            if dx.shape == dy.shape:
                fail(f"{what} has shape {dx.shape}, the output's shape; it must have the input's shape {x.shape}: "
                     "one gradient for every input, zero where no window's maximum is")
            if dx.shape[2:] == (s * (dy.shape[2] - 1) + k, s * (dy.shape[3] - 1) + k):
                fail(f"{what} has shape {dx.shape}: this is what leaving out the rows and columns no window reaches "
                     f"gives; dx must have the input's shape {x.shape}, with zeros there")
        array(what, dx, x.shape, dy.dtype, "the input's shape (N, C, H, W)")
        if np.any(dx[~covered] != 0):
            position = tuple(int(i) for i in np.argwhere((dx != 0) & ~covered)[0])
            fail(f"{what} is not zero at position {position}, which no window reaches: start dx from np.zeros "
                 "(np.empty leaves whatever was in memory)")

        # where a gradient goes depends on the switches only, so backward is linear in dy
        run(NUMBER, "MaxPool2D.forward", layer.forward, x.copy())
        flipped = run(NUMBER, "MaxPool2D.backward", layer.backward, -dy)
        if not (isinstance(flipped, np.ndarray) and is_mistake(flipped, -dx.astype(np.float64), 1e-5, 1e-6)):
            if isinstance(flipped, np.ndarray) and flipped.shape == dx.shape:
                position, size = worst(flipped, -dx.astype(np.float64))
                fail(f"MaxPool2D.backward(-dy) is not -MaxPool2D.backward(dy){case}: at position {position} they "
                     f"differ by {size:.3g}; this is what recomputing the argmax in backward from dy instead of "
                     "using the switches from forward gives (where each gradient goes must not depend on dy)")
            fail(f"MaxPool2D.backward(-dy) is not -MaxPool2D.backward(dy){case}: where each gradient goes must "
                 "depend only on the switches from forward")
        close(what, dx, want_dx, rtol=1e-5, atol=1e-6, mistakes=mistakes)
    return passed(NUMBER, f"MaxPool2D's dx is right on {len(CASES)} cases (gradients of overlapping windows added "
                          "up, ties to the first maximum, zeros where no window reaches)")
