"""Exercise 08: Conv2D.backward: dW per group, db, and dx through col2im."""

import re

import numpy as np

from minidl.kernels import reference

from .common import ExerciseFailed, array, close, fail, forward_first, load, passed, run
from .ex06_col2im import coverage, placed_by_offset, placed_by_window
from .ex07_conv_forward import case_text, make_case, new_layer, out_size

NUMBER = "08"
TITLE = "Conv2D.backward: dW, db and dx through col2im"
WRITES = "Conv2D.backward in mydl/conv.py (it uses your col2im and your forward)"
NOTEBOOK = ('02_im2col.ipynb, section "col2im is the adjoint of im2col, not its inverse", "Back to the layer"')
MINUTES = 25

# (what the case tests, x's shape (N, C, H, W), out_channels O, kernel k, stride, pad, groups)
CASES = [
    ("groups=1, padding", (2, 3, 5, 4), 4, 3, 1, 1, 1),
    ("groups=2, stride 2, padding", (2, 4, 7, 6), 6, 3, 2, 1, 2),
    ("a batch of one, groups=2, overlapping windows", (1, 4, 6, 5), 4, 3, 1, 0, 2),
]
# float64, against central differences: small enough for a numerical gradient of every entry
TINY = ("float64, against central differences", (2, 2, 4, 5), 2, 3, 2, 1, 2)


def direct_conv(x, w, b, stride, pad, groups):
    """The formula of notebook 02, offset by offset and group by group (float64): the grader's own forward."""
    n, c, h, wd = x.shape
    o, cg, k, _ = w.shape
    og, oh, ow = o // groups, out_size(h, k, stride, pad), out_size(wd, k, stride, pad)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.zeros((n, o, oh, ow)) + b.reshape(1, o, 1, 1)
    for g in range(groups):
        for i in range(k):
            for j in range(k):
                seen = xpad[:, g * cg:(g + 1) * cg, i:i + stride * oh:stride, j:j + stride * ow:stride]
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", seen, w[g * og:(g + 1) * og, :, i, j])
    return y


def central_differences(loss, arrays, eps=1e-6):
    """d loss / d each entry of each array (changed in place and restored)."""
    grads = []
    for a in arrays:
        grad = np.zeros_like(a)
        for index in np.ndindex(a.shape):
            keep = a[index]
            a[index] = keep + eps
            up = loss()
            a[index] = keep - eps
            down = loss()
            a[index] = keep
            grad[index] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads


def backward_mistakes(x, w, dy, stride, pad, groups):
    """(description, value) of the typical mistakes for dW, db and dx, in float64."""
    n = x.shape[0]
    o, _, k, _ = w.shape
    og = o // groups
    col = reference.im2col(x, k, k, stride, pad).reshape(groups, -1, dy[0, 0].size * n)
    dy_mat = dy.transpose(1, 0, 2, 3).reshape(groups, og, -1)
    wmat = w.reshape(groups, og, -1)
    dw = {"reshaping the transposed product col dY^T to the weight's shape (dW[g] is dY[g] col[g]^T, of shape "
          "(O/G, C/G*k*k))": np.stack([col[g] @ dy_mat[g].T for g in range(groups)]).reshape(w.shape)}
    if groups > 1:
        dw["every group's dY against group 0's columns (group g's outputs against group g's rows of the "
           "column matrix)"] = np.stack([dy_mat[g] @ col[0].T for g in range(groups)]).reshape(w.shape)
    db = {"the mean over the pixels instead of the sum": dy.sum(axis=0).mean(axis=(1, 2)),
          "the mean over the batch and the pixels instead of the sum": dy.mean(axis=(0, 2, 3)),
          "summing over the first image only (db sums over the whole batch)": dy[0].sum(axis=(1, 2))}
    dcol = np.stack([wmat[g].T @ dy_mat[g] for g in range(groups)]).reshape(-1, col.shape[2])
    dx_right = reference.col2im(dcol, x.shape, k, k, stride, pad)
    placing = ("putting W^T dY back in place instead of adding it up (col2im adds; a pixel in several windows "
               "gets the sum)")
    dx = [("dividing by the number of windows covering each pixel (inverting im2col; dx is col2im(W^T dY), "
           "its adjoint)", dx_right / np.maximum(coverage(x.shape, k, k, stride, pad), 1)),
          (placing, placed_by_offset(dcol, x.shape, k, k, stride, pad)),
          (placing, placed_by_window(dcol, x.shape, k, k, stride, pad))]
    return list(dw.items()), list(db.items()), dx


def name_error(message, n, c, o, k, oh, ow, groups):
    """(mistake, why) behind an error Conv2D.backward raised, where its shapes give it away, else None."""
    shapes = {tuple(int(v) for v in s.split(",") if v.strip()) for s in re.findall(r"\(([\d, ]+),?\)", message)}
    if "broadcast" in message and "bias" in message:
        if (o, oh, ow) in shapes:
            return "summing dy over the batch only", "db sums over the batch and every pixel: axes 0, 2 and 3"
        if (n, o) in shapes:
            return "summing dy over the pixels only", "db sums over the batch too: axes 0, 2 and 3"
    size = re.search(r"cannot reshape array of size (\d+)", message)
    if groups > 1 and size and int(size.group(1)) == o * c * k * k:
        return ("computing dW without splitting it by group",
                "every output's dY against all C*k*k rows of the column matrix; group g's outputs go with group g's "
                "rows only")
    return None


def backward(layer, dy, case, dims):
    try:
        return run(NUMBER, "Conv2D.backward", layer.backward, dy)
    except ExerciseFailed as failure:
        named = name_error(str(failure), *dims)
        if named:
            fail(f"{failure}{case}: this is what {named[0]} gives ({named[1]})")
        raise


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(808)
    for label, shape, o, k, stride, pad, groups in CASES:
        case = case_text(label, shape, o, k, stride, pad, groups)
        n, c, h, wd = shape
        oh, ow = out_size(h, k, stride, pad), out_size(wd, k, stride, pad)
        x, w, b = make_case(rng, shape, o, k, groups)
        dy = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
        x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
        y_want, saved = reference.conv2d_forward(x64, w64, stride, pad, groups)
        y_want = y_want + b.astype(np.float64).reshape(1, o, 1, 1)
        dw_want, dx_want = reference.conv2d_backward(dy64, saved, w64, stride, pad, groups)
        db_want = dy64.sum(axis=(0, 2, 3))
        dw_mistakes, db_mistakes, dx_mistakes = backward_mistakes(x64, w64, dy64, stride, pad, groups)
        dims = (n, c, o, k, oh, ow, groups)
        layer = new_layer(NUMBER, mydl, shape, o, k, stride, pad, groups, w, b)
        y = forward_first(NUMBER, layer, "Conv2D", x.copy(), dy.copy())
        if not (isinstance(y, np.ndarray) and y.shape == y_want.shape and np.allclose(y, y_want, 1e-4, 1e-5)):
            fail(f"Conv2D.forward's output is not right{case}: backward needs a right forward, grade exercise 07 first")
        given = dy.copy()
        dx = backward(layer, given, case, dims)
        array(f"Conv2D.backward's result (dx, the gradient with respect to x){case}", dx, shape, np.float32,
              "(N, C, H, W), x's shape")
        if not np.array_equal(given, dy):
            fail(f"Conv2D.backward changed its input dy{case}: compute new arrays instead")
        array(f"weight.grad{case}", layer.weight.grad, w.shape, np.float32, "(O, C/G, k, k), the weight's shape")
        if isinstance(layer.bias.grad, np.ndarray) and layer.bias.grad.shape == (o, oh, ow):
            fail(f"bias.grad has shape {layer.bias.grad.shape}; it should be (O,) = {(o,)}{case}: this is the shape "
                 "that summing dy over the batch only gives (db sums over the batch and every pixel: axes 0, 2 and 3)")
        array(f"bias.grad{case}", layer.bias.grad, (o,), np.float32, "(O,)")

        close("weight.grad (dW, the gradient with respect to the weight)", layer.weight.grad, dw_want,
              rtol=1e-4, atol=1e-4, mistakes=dw_mistakes, case=case)
        close("bias.grad (db, the gradient with respect to the bias)", layer.bias.grad, db_want,
              rtol=1e-4, atol=1e-4, mistakes=db_mistakes, case=case)
        close("Conv2D.backward's result (dx)", dx, dx_want, rtol=1e-4, atol=1e-4, mistakes=dx_mistakes, case=case)

        # a second forward and backward must add to the grads, not replace them
        forward_first(NUMBER, layer, "Conv2D", x.copy(), dy.copy())
        backward(layer, dy.copy(), case, dims)
        overwrite = "overwriting .grad instead of adding to it (= instead of +=)"
        close("weight.grad after two backward passes", layer.weight.grad, 2 * dw_want, rtol=1e-4, atol=1e-4,
              mistakes=[(overwrite, dw_want)], case=case)
        close("bias.grad after two backward passes", layer.bias.grad, 2 * db_want, rtol=1e-4, atol=1e-4,
              mistakes=[(overwrite, db_want)], case=case)

    # float64, against central differences of loss = sum(y * dy) through the grader's own forward
    label, shape, o, k, stride, pad, groups = TINY
    case = case_text(label, shape, o, k, stride, pad, groups)
    n, c, h, wd = shape
    oh, ow = out_size(h, k, stride, pad), out_size(wd, k, stride, pad)
    x, w, b = (a.astype(np.float64) for a in make_case(rng, shape, o, k, groups))
    dy = rng.standard_normal((n, o, oh, ow))
    wants = central_differences(lambda: float(np.sum(direct_conv(x, w, b, stride, pad, groups) * dy)), [w, b, x])
    dw_mistakes, db_mistakes, dx_mistakes = backward_mistakes(x, w, dy, stride, pad, groups)
    layer = new_layer(NUMBER, mydl, shape, o, k, stride, pad, groups, w, b, dtype=np.float64)
    forward_first(NUMBER, layer, "Conv2D", x.copy(), dy.copy())
    dx = backward(layer, dy.copy(), case, (n, c, o, k, oh, ow, groups))
    array(f"Conv2D.backward's result (dx){case}", dx, shape, np.float64, "(N, C, H, W), x's shape")
    for what, got, want, mistakes in [("weight.grad (dW)", layer.weight.grad, wants[0], dw_mistakes),
                                      ("bias.grad (db)", layer.bias.grad, wants[1], db_mistakes),
                                      ("Conv2D.backward's result (dx)", dx, wants[2], dx_mistakes)]:
        close(what, array(f"{what}{case}", got, want.shape, np.float64), want, rtol=1e-6, atol=1e-7,
              mistakes=mistakes, case=case)
    return passed(NUMBER, f"Conv2D.backward's dW, db and dx are right on {len(CASES)} cases (groups 1 and 2, stride 2, "
                          "padding, a batch of one) and against central differences in float64, and backward adds "
                          "to .grad")
