_HEAD = '''
def im2col(x, kh, kw, stride, pad):
    n, c, h, w = x.shape
'''

MISTAKES = [
    ("rows ordered (i, j, c)", "im2col.py:im2col", _HEAD + '''
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.empty((kh, kw, c, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[i, j] = xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride].transpose(1, 0, 2, 3)
    return col.reshape(c * kh * kw, n * oh * ow)
''', "rows in the order (i, j, c)"),
    ("columns ordered (oy, ox, n)", "im2col.py:im2col", _HEAD + '''
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride].transpose(1, 2, 3, 0)
    return col.reshape(c * kh * kw, n * oh * ow)
''', "columns in the order (oy, ox, n)"),
    ("padding forgotten", "im2col.py:im2col", _HEAD + '''
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    col = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, i, j] = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride].transpose(1, 0, 2, 3)
    return col.reshape(c * kh * kw, n * oh * ow)
''', "forgetting the padding"),
    ("output size without the stride, patch by patch", "im2col.py:im2col", _HEAD + '''
    oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.zeros((c * kh * kw, n * oh * ow), dtype=x.dtype)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                patch = xpad[b, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]
                if patch.shape == (c, kh, kw):
                    col[:, (b * oh + oy) * ow + ox] = patch.ravel()
    return col
''', "ignores the stride"),
    ("a float64 column matrix", "im2col.py:im2col", _HEAD + '''
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    col = np.zeros((c * kh * kw, n * oh * ow))
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                patch = xpad[b, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]
                col[:, (b * oh + oy) * ow + ox] = patch.ravel()
    return col
''', "dtype float64"),
]

BYPASS = ("im2col.py:im2col", '''
def im2col(x, kh, kw, stride, pad):
    from minidl.kernels import reference
    return reference.im2col(x, kh, kw, stride, pad)
''')
