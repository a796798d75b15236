"""Exercise 06: col2im, the adjoint of im2col (not its inverse)."""

import numpy as np

from minidl.kernels import reference

from .common import array, close, fail, load, passed, run
from .ex05_im2col import CASES, case_text, out_size

NUMBER = "06"
TITLE = "col2im: the adjoint of im2col"
WRITES = "col2im in mydl/im2col.py"
NOTEBOOK = "02_im2col.ipynb, section \"col2im is the adjoint of im2col, not its inverse\""
MINUTES = 20


# -- what the typical mistakes give (float64, from the column matrix) -------------------------------

def placed_by_offset(col, x_shape, kh, kw, stride, pad):
    """'=' instead of '+=' in a loop over the kernel offsets (i, j): the last offset that reaches a
    pixel wins."""
    n, c, h, w = x_shape
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    col = col.reshape(c, kh, kw, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] = col[:, i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, pad:pad + h, pad:pad + w]


def placed_by_window(col, x_shape, kh, kw, stride, pad):
    """'=' instead of '+=' in a loop over the windows (n, oy, ox): the last window wins."""
    n, c, h, w = x_shape
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                patch = col[:, (b * oh + oy) * ow + ox].reshape(c, kh, kw)
                xpad[b, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw] = patch
    return xpad[:, :, pad:pad + h, pad:pad + w]


def coverage(x_shape, kh, kw, stride, pad):
    """How many windows read each pixel: col2im(im2col(1))."""
    ones = np.ones(x_shape)
    return reference.col2im(reference.im2col(ones, kh, kw, stride, pad), x_shape, kh, kw, stride, pad)


def cropped_one_side(col, x_shape, kh, kw, stride, pad):
    """The padded image cut to (H, W) from its top-left corner: the padding cut off one side only."""
    n, c, h, w = x_shape
    padded = reference.col2im(col, (n, c, h + 2 * pad, w + 2 * pad), kh, kw, stride, 0)
    return padded[:, :, :h, :w]


def mistakes_for(col, x_shape, kh, kw, stride, pad):
    n, c, h, w = x_shape
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    want = reference.col2im(col, x_shape, kh, kw, stride, pad)
    overwrite = "overwriting (=) instead of adding (+=) where windows overlap"
    found = [
        (overwrite, placed_by_offset(col, x_shape, kh, kw, stride, pad)),
        (overwrite, placed_by_window(col, x_shape, kh, kw, stride, pad)),
        ("dividing by the number of windows covering each pixel (that undoes im2col where it can; "
         "the adjoint adds and does not divide)", want / np.maximum(coverage(x_shape, kh, kw, stride, pad), 1)),
        ("reading the rows of col in the order (i, j, c) instead of (c, i, j)",
         reference.col2im(_rows_from_ijc(col, c, kh, kw), x_shape, kh, kw, stride, pad)),
        ("reading the columns of col in the order (oy, ox, n) instead of (n, oy, ox)",
         reference.col2im(_columns_from_oyoxn(col, n, oh, ow), x_shape, kh, kw, stride, pad)),
    ]
    if pad:
        found.append(("cutting the padding off one side only (it is pad rows and columns on each side)",
                      cropped_one_side(col, x_shape, kh, kw, stride, pad)))
    return found


def _rows_from_ijc(col, c, kh, kw):
    """The column matrix that col2im sees when it reads row (i, j, c) as if it were row (c, i, j)."""
    return col.reshape(kh, kw, c, -1).transpose(2, 0, 1, 3).reshape(col.shape)


def _columns_from_oyoxn(col, n, oh, ow):
    """The column matrix that col2im sees when it reads column (oy, ox, n) as if it were (n, oy, ox)."""
    return col.reshape(-1, oh, ow, n).transpose(0, 3, 1, 2).reshape(col.shape)


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(606)
    for label, shape, kh, kw, stride, pad in CASES:
        n, c, h, w = shape
        case = case_text(label, shape, kh, kw, stride, pad).replace("x of shape", "x_shape")
        m = n * out_size(h, kh, stride, pad) * out_size(w, kw, stride, pad)
        col = rng.standard_normal((c * kh * kw, m)).astype(np.float32)
        col64 = col.astype(np.float64)
        want = reference.col2im(col64, shape, kh, kw, stride, pad)
        mistakes = mistakes_for(col64, shape, kh, kw, stride, pad)
        # the adjoint identity <im2col(x), c> = <x, col2im(c)>, its left side computed here
        x = rng.standard_normal(shape)
        lhs = float(np.sum(reference.im2col(x, kh, kw, stride, pad) * col64))

        given = col.copy()
        got = run(NUMBER, "col2im", mydl.col2im, given, shape, kh, kw, stride, pad)
        if isinstance(got, np.ndarray) and pad and got.shape == (n, c, h + 2 * pad, w + 2 * pad):
            fail(f"col2im's result has shape {got.shape}; it should be x_shape = {shape}{case}: this is the shape "
                 "that leaving the padding on gives: cut pad rows and columns off each side")
        array(f"col2im's result{case}", got, shape, np.float32, "x_shape")
        if not np.array_equal(given, col):
            fail(f"col2im changed its input col{case}: add into a new array instead")
        close("col2im's result", got, want, rtol=1e-5, atol=1e-5, mistakes=mistakes, case=case)
        rhs = float(np.sum(x * got.astype(np.float64)))
        if abs(lhs - rhs) > 1e-4 * max(1.0, abs(lhs)):
            fail(f"col2im is not the adjoint of im2col{case}: <im2col(x), c> and <x, col2im(c)> differ by "
                 f"{abs(lhs - rhs):.3g} for a random x and c")

    # the dtype follows col: float64 in, float64 out
    label, shape, kh, kw, stride, pad = CASES[5]
    n, c, h, w = shape
    case = case_text("float64 input", shape, kh, kw, stride, pad).replace("x of shape", "x_shape")
    col = rng.standard_normal((c * kh * kw, n * out_size(h, kh, stride, pad) * out_size(w, kw, stride, pad)))
    want = reference.col2im(col, shape, kh, kw, stride, pad)
    got = array(f"col2im's result{case}", run(NUMBER, "col2im", mydl.col2im, col.copy(), shape, kh, kw, stride, pad),
                shape, np.float64, "x_shape")
    close("col2im's result", got, want, rtol=1e-12, atol=1e-12, case=case)
    return passed(NUMBER, f"col2im matches the adjoint of im2col on {len(CASES)} cases (overlap, padding, kh != kw, "
                          "stride > kernel, a batch with channels) and keeps float32 and float64")
