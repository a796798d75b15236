"""Exercise 09: MaxPool2D.forward, with the switches (where each window's maximum came from)."""

import numpy as np

from minidl.kernels.reference import maxpool_forward

from .common import array, close, fail, load, passed, run

NUMBER = "09"
TITLE = "Overlapping max-pooling: forward and the switches"
WRITES = "MaxPool2D.forward in mydl/pool.py"
NOTEBOOK = "05_maxpool.ipynb, section \"Switches\""
MINUTES = 25


def _distinct(rng, shape):
    """Random floats: no ties anywhere."""
    return rng.standard_normal(shape).astype(np.float32)


def _small_integers(rng, shape):
    """Integer-valued floats from {0, 1, 2}: most windows hold their maximum several times."""
    return rng.integers(0, 3, shape).astype(np.float32)


def _constant(rng, shape):
    """Every window is one big tie (float64, to check that the dtype follows the input)."""
    return np.full(shape, 1.5)


# (shape (N, C, H, W), window k, stride, how the values are drawn, what the case is)
CASES = [
    ((2, 3, 7, 7), 3, 2, _distinct, "the paper's overlapping 3x3 windows at stride 2"),
    ((2, 2, 8, 8), 2, 2, _distinct, "non-overlapping 2x2 windows at stride 2"),
    ((1, 2, 8, 8), 3, 2, _distinct, "3x3/2 on 8x8, where no window reaches the last row and column; a batch of one"),
    ((2, 3, 9, 6), 3, 2, _distinct, "a non-square map"),
    ((2, 2, 9, 9), 3, 2, _small_integers, "integer values with ties"),
    ((1, 1, 5, 7), 3, 2, _constant, "a constant map (every window a tie), float64"),
    ((1, 2, 8, 8), 2, 3, _small_integers, "stride 3 larger than the 2x2 window, with ties"),
]


# -- what typical mistakes give (float64, computed before the learner's code runs) ---------------

def _out_size(size, k, s):
    return (size - k) // s + 1


def _ties_to_last(x, k, s, oh, ow):
    """The switches the reference's walk over the k*k offsets gives with >= instead of >."""
    y = x[:, :, 0:s * oh:s, 0:s * ow:s].copy()
    offset = np.zeros(y.shape, dtype=np.int64)
    for i in range(k):
        for j in range(k):
            v = x[:, :, i:i + s * oh:s, j:j + s * ow:s]
            take = v >= y
            y[take] = v[take]
            offset[take] = i * k + j
    return offset


def _wrong_shapes(n, c, h, w, k, s):
    """Output shapes that a wrong output size gives, each with its description."""
    ceil = (n, c, -(-(h - k) // s) + 1, -(-(w - k) // s) + 1)
    padded = (n, c, _out_size(h + 2 * (k // 2), k, s), _out_size(w + 2 * (k // 2), k, s))
    return [
        (ceil, "the output size rounded up (ceil((H - k) / stride) + 1, a last window that runs past the edge)"),
        (padded, "padding the map before pooling (one window too many)"),
        ((n, c, h // s, w // s), "H // stride windows instead of (H - k) // stride + 1"),
        ((n, c), "the maximum over the whole image"),
        ((n, c, 1, 1), "the maximum over the whole image"),
    ]


def _argmax_shapes(n, c, oh, ow, k):
    """Shapes np.argmax gives over a wrong axis of the stacked windows, in the usual layouts."""
    shapes = set()
    for stacked in ((n, c, oh, ow, k * k), (k * k, n, c, oh, ow), (n, c, oh, ow, k, k), (k, k, n, c, oh, ow)):
        for axis in range(len(stacked)):
            shapes.add(stacked[:axis] + stacked[axis + 1:])
    shapes.discard((n, c, oh, ow))
    return shapes


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(909)
    for (n, c, h, w), k, s, draw, about in CASES:
        x = draw(rng, (n, c, h, w))
        oh, ow = _out_size(h, k, s), _out_size(w, k, s)
        case = f" (x of shape {x.shape}, MaxPool2D({k}, {s}): {about})"
        x64 = x.astype(np.float64)
        want_y, want_sw = maxpool_forward(x64, k, s)
        want_sw = want_sw.astype(np.int64)
        last_sw = _ties_to_last(x64, k, s, oh, ow)
        rows, cols = np.divmod(want_sw, k)
        oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
        in_image = (oy * s + rows) * w + (ox * s + cols)
        whole = np.broadcast_to(x64.max(axis=(2, 3), keepdims=True), want_y.shape)

        layer = run(NUMBER, "MaxPool2D(...)", mydl.MaxPool2D, k, s)
        given = x.copy()
        y = run(NUMBER, "MaxPool2D.forward", layer.forward, given)
        if not np.array_equal(given, x):
            fail(f"MaxPool2D.forward changed its input x{case}: compute a new array instead")
        if isinstance(y, np.ndarray) and y.shape != want_y.shape:
            for shape, description in _wrong_shapes(n, c, h, w, k, s):
                if y.shape == shape:
                    fail(f"MaxPool2D.forward's output has shape {y.shape}; it should be (N, C, OH, OW) = "
                         f"{want_y.shape} with OH = (H - k) // stride + 1{case}: this is what {description} gives")
        array(f"MaxPool2D.forward's output{case}", y, want_y.shape, x.dtype,
              "(N, C, OH, OW) with OH = (H - k) // stride + 1")
        close(f"MaxPool2D.forward's output{case}", y, want_y, rtol=0, atol=0,
              mistakes=[("the maximum over the whole image instead of over each window", whole)])

        sw = getattr(layer, "switches", None)
        what = f"self.switches{case}"
        if sw is None:
            fail(f"{what} is None: forward must record the switches there, an integer array shaped like y")
        if isinstance(sw, (tuple, list)) and len(sw) == 2:
            fail(f"{what} is a pair of arrays: this is what (row, col) pairs give; record one integer i*k + j "
                 "per output instead")
        if not isinstance(sw, np.ndarray):
            fail(f"{what} is a {type(sw).__name__}, not a NumPy array shaped like y")
        if sw.shape != want_y.shape:
            if sw.ndim == 0:
                fail(f"{what} is a single number: this is what np.argmax without an axis gives (the position "
                     "of the maximum of the whole array); take it over each window's k*k offsets")
            if sw.shape in ((n, c, oh, ow, 2), (2, n, c, oh, ow)):
                fail(f"{what} has shape {sw.shape}; it should be shaped like y, {want_y.shape}: this is what "
                     "(row, col) pairs give; record one integer i*k + j per output instead")
            if sw.shape in _argmax_shapes(n, c, oh, ow, k):
                fail(f"{what} has shape {sw.shape}; it should be shaped like y, {want_y.shape}: this is what "
                     "np.argmax over the wrong axis gives; take it over the axis of each window's k*k offsets")
            fail(f"{what} has shape {sw.shape}; it should be shaped like y, {want_y.shape}")
        if sw.dtype.kind not in "iu":
            fail(f"{what} has dtype {sw.dtype}; it should hold integers (i*k + j of each window's maximum)")
        close(what, sw, want_sw, rtol=0, atol=0, mistakes=[
            ("sending ties to the last maximum instead of the first (>= instead of >)", last_sw),
            ("flat indices into the image instead of offsets i*k + j inside the window", in_image),
            ("flat indices into the image instead of offsets i*k + j inside the window",
             in_image + (np.arange(n * c).reshape(n, c, 1, 1) * h * w)),
            ("the offset formula i*stride + j instead of i*k + j", rows * s + cols),
            ("the offsets in column-major order, i + j*k instead of i*k + j", rows + cols * k),
        ])
    return passed(NUMBER, f"MaxPool2D's output and switches are right on {len(CASES)} cases (overlapping and not, "
                          "edges no window reaches, non-square maps, ties to the first maximum)")

