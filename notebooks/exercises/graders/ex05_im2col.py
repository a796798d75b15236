"""Exercise 05: im2col, a convolution's input unrolled into a column matrix."""

import numpy as np

from minidl.kernels import reference

from .common import array, close, fail, load, passed, run

NUMBER = "05"
TITLE = "im2col: a convolution's input as a column matrix"
WRITES = "im2col in mydl/im2col.py"
NOTEBOOK = "02_im2col.ipynb, section \"A tiny image, unrolled\""
MINUTES = 25

# (what the case tests, x's shape (N, C, H, W), kh, kw, stride, pad); exercise 06 grades col2im on them too
CASES = [
    ("windows that do not overlap", (1, 1, 4, 4), 2, 2, 2, 0),
    ("overlapping windows", (1, 1, 4, 4), 3, 3, 1, 0),
    ("padding", (1, 2, 4, 5), 3, 3, 1, 1),
    ("a kernel that is not square", (1, 2, 5, 6), 2, 3, 1, 0),
    ("a stride larger than the kernel", (1, 1, 8, 8), 2, 2, 3, 0),
    ("a batch of several images with several channels", (3, 2, 5, 6), 3, 3, 2, 1),
    ("a non-square kernel with stride and padding", (2, 3, 7, 6), 3, 2, 2, 1),
]


def out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def case_text(label, shape, kh, kw, stride, pad):
    return f" ({label}: x of shape {shape}, kh={kh}, kw={kw}, stride={stride}, pad={pad})"


# -- what the typical mistakes give, from the right column matrix (C*kh*kw, N*OH*OW) ----------------

def rows_ijc(col, c, kh, kw):
    """Rows in the order (i, j, c): the channel runs fastest."""
    return col.reshape(c, kh, kw, -1).transpose(1, 2, 0, 3).reshape(col.shape)


def rows_cji(col, c, kh, kw):
    """Rows in the order (c, j, i): the kernel offsets transposed."""
    return col.reshape(c, kh, kw, -1).transpose(0, 2, 1, 3).reshape(col.shape)


def columns_oyoxn(col, n, oh, ow):
    """Columns in the order (oy, ox, n): the image index runs fastest."""
    return col.reshape(-1, n, oh, ow).transpose(0, 2, 3, 1).reshape(col.shape)


def wrong_shapes(shape, kh, kw, stride, pad):
    """(shape, the mistake that gives it) for shapes that name a mistake."""
    n, c, h, w = shape
    k = c * kh * kw
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    return [
        ((k, n * out_size(h, kh, stride, 0) * out_size(w, kw, stride, 0)),
         "forgetting the padding (the output size and the windows use x padded with pad zeros on each side)"),
        ((k, n * (h + 2 * pad - kh + 1) * (w + 2 * pad - kw + 1)),
         "an output size that ignores the stride (H + 2 pad - kh + 1 instead of (H + 2 pad - kh) // stride + 1)"),
        ((k, n * ((h + 2 * pad - kh) // stride) * ((w + 2 * pad - kw) // stride)),
         "an output size without the + 1 ((H + 2 pad - kh) // stride + 1 windows fit)"),
        ((k, n * out_size(h, kw, stride, pad) * out_size(w, kh, stride, pad)),
         "kh and kw swapped (kh runs down H, kw across W)"),
        ((n * oh * ow, k), "the transpose (one row per (c, i, j), one column per output pixel (n, oy, ox))"),
        ((n * k, oh * ow), "the batch in the rows (the columns run over (n, oy, ox), image after image)"),
    ]


def check_shape(what, got, shape, kh, kw, stride, pad, dtype, case):
    """Type, shape (naming the mistake a wrong shape comes from) and dtype of im2col's result."""
    n, c, h, w = shape
    want = (c * kh * kw, n * out_size(h, kh, stride, pad) * out_size(w, kw, stride, pad))
    if isinstance(got, np.ndarray) and got.shape != want:
        for wrong, description in wrong_shapes(shape, kh, kw, stride, pad):
            if got.shape == wrong:
                fail(f"{what} has shape {got.shape}; it should be (C*kh*kw, N*OH*OW) = {want}{case}: "
                     f"this is the shape that {description} gives")
    return array(what + case, got, want, dtype, "(C*kh*kw, N*OH*OW)")


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(505)
    for label, shape, kh, kw, stride, pad in CASES:
        case = case_text(label, shape, kh, kw, stride, pad)
        n, c, h, w = shape
        oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
        x = rng.standard_normal(shape).astype(np.float32)
        want = reference.im2col(x.astype(np.float64), kh, kw, stride, pad)
        mistakes = [("rows in the order (i, j, c) instead of (c, i, j)", rows_ijc(want, c, kh, kw)),
                    ("rows in the order (c, j, i) instead of (c, i, j)", rows_cji(want, c, kh, kw)),
                    ("columns in the order (oy, ox, n) instead of (n, oy, ox)", columns_oyoxn(want, n, oh, ow))]

        given = x.copy()
        col = run(NUMBER, "im2col", mydl.im2col, given, kh, kw, stride, pad)
        col = check_shape("im2col's result", col, shape, kh, kw, stride, pad, np.float32, case)
        if not np.array_equal(given, x):
            fail(f"im2col changed its input x{case}: read from it (or from a padded copy), never write to it")
        close("im2col's result", col, want, rtol=0, atol=0, mistakes=mistakes, case=case)

    # the dtype follows x: float64 in, float64 out
    label, shape, kh, kw, stride, pad = CASES[2]
    case = case_text("float64 input", shape, kh, kw, stride, pad)
    x = rng.standard_normal(shape)
    want = reference.im2col(x, kh, kw, stride, pad)
    col = check_shape("im2col's result", run(NUMBER, "im2col", mydl.im2col, x.copy(), kh, kw, stride, pad),
                      shape, kh, kw, stride, pad, np.float64, case)
    close("im2col's result", col, want, rtol=0, atol=0, case=case)
    return passed(NUMBER, f"im2col is right on {len(CASES)} cases (overlap, padding, kh != kw, stride > kernel, "
                          "a batch with channels) and keeps float32 and float64")
