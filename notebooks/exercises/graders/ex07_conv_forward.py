"""Exercise 07: Conv2D.forward with groups, by im2col and one matrix product per group."""

import numpy as np

from minidl.kernels import reference

from .common import array, close, fail, load, passed, run

NUMBER = "07"
TITLE = "Conv2D.forward with groups"
WRITES = "Conv2D.forward in mydl/conv.py (it uses your im2col)"
NOTEBOOK = ('02_im2col.ipynb, section "The matrix product", "Groups: block-diagonal weights, two towers"')
MINUTES = 25

# (what the case tests, x's shape (N, C, H, W), out_channels O, kernel k, stride, pad, groups)
CASES = [
    ("groups=1, padding, a non-square input", (2, 3, 5, 4), 4, 3, 1, 1, 1),
    ("groups=2, the paper's two towers", (2, 4, 6, 6), 6, 3, 1, 1, 2),
    ("groups=4, stride 2, padding", (3, 8, 7, 7), 8, 3, 2, 1, 4),
    ("a batch of one, groups=2, stride 2, a non-square input", (1, 4, 9, 7), 4, 5, 2, 2, 2),
    ("groups=1, a 2x2 kernel with stride 2", (2, 2, 6, 8), 3, 2, 2, 0, 1),
]


def out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def case_text(label, shape, o, k, stride, pad, groups):
    return (f" ({label}: x of shape {shape}, Conv2D({shape[1]}, {o}, {k}, stride={stride}, padding={pad}, "
            f"groups={groups}))")


def make_case(rng, shape, o, k, groups):
    """x, weight and bias in float32; the weight scaled so that outputs are of order 1."""
    c = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((o, c // groups, k, k)) / np.sqrt(c // groups * k * k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    return x, w, b


def new_layer(exercise, mydl, shape, o, k, stride, pad, groups, w, b, dtype=np.float32):
    layer = run(exercise, "Conv2D(...)", mydl.Conv2D, shape[1], o, k, stride=stride, padding=pad, groups=groups,
                dtype=dtype)
    layer.weight.data[...] = w
    layer.bias.data[...] = b
    return layer


def forward_mistakes(x, w, b, stride, pad, groups):
    """(description, output) of the typical mistakes, in float64."""
    n, c = x.shape[:2]
    o, cg, k, _ = w.shape
    og = o // groups
    plain = reference.conv2d_forward(x, w, stride, pad, groups)[0]           # (N, O, OH, OW), no bias
    oh, ow = plain.shape[2:]
    bias = b.reshape(1, o, 1, 1)
    found = [("forgetting the bias", plain)]
    if groups > 1:
        # every group reads group 0's channels: the column block not moved on with the group
        first = np.concatenate([x[:, :cg]] * groups, axis=1)
        found.append(("every group reading group 0's input channels (group g reads channels C/G*g to "
                      "C/G*(g+1)-1)", reference.conv2d_forward(first, w, stride, pad, groups)[0] + bias))
        # col.reshape(-1, G, M): the rows dealt out to the groups in turn instead of in contiguous blocks
        col = reference.im2col(x, k, k, stride, pad)
        dealt = col.reshape(-1, groups, col.shape[1]).transpose(1, 0, 2)
        wmat = w.reshape(groups, og, -1)
        y = np.stack([wmat[g] @ dealt[g] for g in range(groups)]).reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
        found.append(("splitting the column matrix's rows into groups the wrong way (group g's rows are one "
                      "contiguous block: reshape to (G, C/G*k*k, M))", y + bias))
    big_y = plain.transpose(1, 0, 2, 3).reshape(o, -1)                       # Y (O, N*OH*OW)
    reshaped = "reshaping Y (O, N*OH*OW) straight to (N, O, OH, OW) (it is (O, N, OH, OW): transpose it)"
    found.append((reshaped, big_y.reshape(n, o, oh, ow) + bias))
    found.append((reshaped, (big_y + b[:, None]).reshape(n, o, oh, ow)))
    if ow == o:
        found.append(("adding the bias along the last axis (bias[o] goes on every pixel of output map o, "
                      "axis 1)", plain + b))
    return found


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(707)
    for label, shape, o, k, stride, pad, groups in CASES:
        case = case_text(label, shape, o, k, stride, pad, groups)
        n, c, h, w_ = shape
        x, w, b = make_case(rng, shape, o, k, groups)
        x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
        want = reference.conv2d_forward(x64, w64, stride, pad, groups)[0] + b64.reshape(1, o, 1, 1)
        mistakes = forward_mistakes(x64, w64, b64, stride, pad, groups)

        layer = new_layer(NUMBER, mydl, shape, o, k, stride, pad, groups, w, b)
        given = x.copy()
        y = run(NUMBER, "Conv2D.forward", layer.forward, given)
        oh, ow = out_size(h, k, stride, pad), out_size(w_, k, stride, pad)
        if isinstance(y, np.ndarray) and y.shape == (o, n, oh, ow) and n != o:
            fail(f"Conv2D.forward's output has shape {y.shape}; it should be (N, O, OH, OW) = {(n, o, oh, ow)}{case}: "
                 "this is the shape of Y reshaped to (O, N, OH, OW) without the transpose")
        if isinstance(y, np.ndarray) and y.shape == (o, n * oh * ow):
            fail(f"Conv2D.forward's output has shape {y.shape}; it should be (N, O, OH, OW) = {(n, o, oh, ow)}{case}: "
                 "this is the shape of the product Y itself: reshape it to (O, N, OH, OW) and swap axes 0 and 1")
        y = array(f"Conv2D.forward's output{case}", y, (n, o, oh, ow), np.float32, "(N, O, OH, OW)")
        if not np.array_equal(given, x):
            fail(f"Conv2D.forward changed its input x{case}: compute a new array instead")
        close("Conv2D.forward's output", y, want, rtol=1e-4, atol=1e-5, mistakes=mistakes, case=case)
    return passed(NUMBER, f"Conv2D.forward is right on {len(CASES)} cases (groups 1, 2 and 4, stride 2, padding, "
                          "a batch of one, non-square inputs) and keeps float32")
