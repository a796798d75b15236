"""Loop-based reference implementations used by the tests.

Every function here loops in plain Python over every output element and
computes it straight from the textbook formula, in float64, with no
vectorisation tricks: slow, short and obviously correct. They take and return
NumPy arrays only (tests convert CuPy results with ``minidl.asnumpy``).
"""

import math

import numpy as np


def out_size(size, k, stride, pad=0):
    return (size + 2 * pad - k) // stride + 1


def pad_input(x, pad):
    """Zero-pad the last two axes by ``pad`` on every side (a loop, not np.pad)."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=np.float64)
    for a in range(n):
        for b in range(c):
            for y in range(h):
                for z in range(w):
                    out[a, b, y + pad, z + pad] = x[a, b, y, z]
    return out


# -- convolution -------------------------------------------------------------
def conv2d(x, weight, bias=None, stride=1, pad=0, groups=1):
    """y[n, o, oy, ox] = b[o] + sum_{c in group(o), i, j} w[o, c - c0, i, j] * xpad[n, c, oy*s + i, ox*s + j]."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    assert cg * groups == c and o % groups == 0
    og = o // groups
    xp_ = pad_input(np.asarray(x, dtype=np.float64), pad)
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    y = np.zeros((n, o, oh, ow), dtype=np.float64)
    for a in range(n):
        for oc in range(o):
            g = oc // og
            for oy in range(oh):
                for ox in range(ow):
                    acc = 0.0 if bias is None else float(bias[oc])
                    for ci in range(cg):
                        cin = g * cg + ci
                        for i in range(kh):
                            for j in range(kw):
                                acc += float(weight[oc, ci, i, j]) * xp_[a, cin, oy * stride + i, ox * stride + j]
                    y[a, oc, oy, ox] = acc
    return y


def im2col(x, kh, kw, stride, pad):
    """col[(c, i, j), (oy, ox, n)] = xpad[n, c, oy*stride + i, ox*stride + j].

    Shape (C*kh*kw, OH*OW*N): rows in the order of a weight (O, C, kh, kw)
    reshaped to (O, C*kh*kw), columns running over output pixels, then images
    (the batch innermost).
    """
    n, c, h, w = x.shape
    xp_ = pad_input(np.asarray(x, dtype=np.float64), pad)
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    col = np.zeros((c * kh * kw, oh * ow * n), dtype=np.float64)
    for b in range(c):
        for i in range(kh):
            for j in range(kw):
                row = (b * kh + i) * kw + j
                for a in range(n):
                    for oy in range(oh):
                        for ox in range(ow):
                            col[row, (oy * ow + ox) * n + a] = xp_[a, b, oy * stride + i, ox * stride + j]
    return col


# -- fully connected ---------------------------------------------------------
def linear(x, weight, bias=None):
    """y[n, o] = b[o] + sum_i w[o, i] * x[n, i]."""
    n, fin = x.shape
    o = weight.shape[0]
    y = np.zeros((n, o), dtype=np.float64)
    for a in range(n):
        for oc in range(o):
            acc = 0.0 if bias is None else float(bias[oc])
            for i in range(fin):
                acc += float(weight[oc, i]) * float(x[a, i])
            y[a, oc] = acc
    return y


# -- max pooling ---------------------------------------------------------------
def maxpool(x, k, stride):
    """Returns (y, switches, flat_indices).

    For every output, scan its k x k window in row-major order and keep the
    first maximum (strictly greater replaces). ``switches`` holds i*k + j,
    ``flat_indices`` holds (oy*stride + i) * W + (ox*stride + j).
    """
    n, c, h, w = x.shape
    oh, ow = out_size(h, k, stride), out_size(w, k, stride)
    y = np.zeros((n, c, oh, ow), dtype=np.float64)
    sw = np.zeros((n, c, oh, ow), dtype=np.int64)
    flat = np.zeros((n, c, oh, ow), dtype=np.int64)
    for a in range(n):
        for b in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    best, arg = None, None
                    for i in range(k):
                        for j in range(k):
                            v = float(x[a, b, oy * stride + i, ox * stride + j])
                            if best is None or v > best:
                                best, arg = v, (i, j)
                    y[a, b, oy, ox] = best
                    sw[a, b, oy, ox] = arg[0] * k + arg[1]
                    flat[a, b, oy, ox] = (oy * stride + arg[0]) * w + (ox * stride + arg[1])
    return y, sw, flat


def maxpool_backward(dy, x, k, stride):
    """dx[n, c, argmax of window (oy, ox)] += dy[n, c, oy, ox] (first maximum only)."""
    n, c, h, w = x.shape
    _, sw, _ = maxpool(x, k, stride)
    oh, ow = sw.shape[2:]
    dx = np.zeros((n, c, h, w), dtype=np.float64)
    for a in range(n):
        for b in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    i, j = divmod(int(sw[a, b, oy, ox]), k)
                    dx[a, b, oy * stride + i, ox * stride + j] += float(dy[a, b, oy, ox])
    return dx


# -- local response normalisation ---------------------------------------------
def lrn_window(ch, num_channels, size):
    """Channels j with ch - size//2 <= j <= ch + (size-1)//2, clipped to [0, C-1]."""
    return range(max(0, ch - size // 2), min(num_channels - 1, ch + (size - 1) // 2) + 1)


def channel_window_sum(x, before, after):
    """out[n, c, ...] = sum_{j = max(0, c-before)}^{min(C-1, c+after)} x[n, j, ...]."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape[:2]
    rest = x.shape[2:]
    out = np.zeros_like(x)
    for a in range(n):
        for b in range(c):
            for pos in np.ndindex(*rest):
                acc = 0.0
                for j in range(max(0, b - before), min(c - 1, b + after) + 1):
                    acc += x[(a, j) + pos]
                out[(a, b) + pos] = acc
    return out


def lrn(x, size, alpha, beta, k):
    """b[n, c, y, x] = a[n, c, y, x] / (k + alpha/size * sum_{j in window(c)} a[n, j, y, x]^2) ** beta."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    y = np.zeros_like(x)
    for a in range(n):
        for ch in range(c):
            for yy in range(h):
                for xx in range(w):
                    ssum = 0.0
                    for j in lrn_window(ch, c, size):
                        ssum += x[a, j, yy, xx] ** 2
                    y[a, ch, yy, xx] = x[a, ch, yy, xx] / (k + alpha / size * ssum) ** beta
    return y


# -- softmax cross-entropy -------------------------------------------------------
def softmax_xent(logits, labels):
    """Mean over rows of logsumexp(z) - z[label], each row with math.fsum in float64."""
    z = np.asarray(logits, dtype=np.float64)
    total = []
    for r in range(z.shape[0]):
        row = [float(v) for v in z[r]]
        m = max(row)
        lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
        total.append(lse - row[int(labels[r])])
    return math.fsum(total) / len(total)


def softmax_xent_grad(logits, labels):
    """(softmax(z) - onehot(label)) / N, row by row."""
    z = np.asarray(logits, dtype=np.float64)
    n, kk = z.shape
    g = np.zeros_like(z)
    for r in range(n):
        m = max(z[r])
        e = [math.exp(v - m) for v in z[r]]
        s = math.fsum(e)
        for c in range(kk):
            g[r, c] = (e[c] / s - (1.0 if c == int(labels[r]) else 0.0)) / n
    return g
