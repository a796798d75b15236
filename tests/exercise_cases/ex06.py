_HEAD = '''
def col2im(col, x_shape, kh, kw, stride, pad):
    n, c, h, w = x_shape
    oh, ow = conv_out_size(h, kh, stride, pad), conv_out_size(w, kw, stride, pad)
'''

MISTAKES = [
    ("overwriting where windows overlap", "im2col.py:col2im", _HEAD + '''
    col = col.reshape(c, kh, kw, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] = col[:, i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, pad:pad + h, pad:pad + w]
''', "overwriting (=) instead of adding (+=)"),
    ("overwriting, window by window", "im2col.py:col2im", _HEAD + '''
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                patch = col[:, (b * oh + oy) * ow + ox].reshape(c, kh, kw)
                xpad[b, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw] = patch
    return xpad[:, :, pad:pad + h, pad:pad + w]
''', "overwriting (=) instead of adding (+=)"),
    ("padding not cropped", "im2col.py:col2im", _HEAD + '''
    col = col.reshape(c, kh, kw, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j].transpose(1, 0, 2, 3)
    return xpad
''', "leaving the padding on"),
    ("inverting: averaging the overlaps", "im2col.py:col2im", _HEAD + '''
    col = col.reshape(c, kh, kw, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    count = np.zeros_like(xpad)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j].transpose(1, 0, 2, 3)
            count[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += 1
    return (xpad / np.maximum(count, 1))[:, :, pad:pad + h, pad:pad + w]
''', "dividing by the number of windows"),
    ("rows read in the order (i, j, c)", "im2col.py:col2im", _HEAD + '''
    col = col.reshape(kh, kw, c, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, pad:pad + h, pad:pad + w]
''', "rows of col in the order (i, j, c)"),
    ("columns read in the order (oy, ox, n)", "im2col.py:col2im", _HEAD + '''
    col = col.reshape(c, kh, kw, oh, ow, n)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j].transpose(3, 0, 1, 2)
    return xpad[:, :, pad:pad + h, pad:pad + w]
''', "columns of col in the order (oy, ox, n)"),
    ("padding cut off one side only", "im2col.py:col2im", _HEAD + '''
    col = col.reshape(c, kh, kw, n, oh, ow)
    xpad = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, i, j].transpose(1, 0, 2, 3)
    return xpad[:, :, :h, :w]
''', "cutting the padding off one side only"),
]

BYPASS = ("im2col.py:col2im", '''
def col2im(col, x_shape, kh, kw, stride, pad):
    from minidl.kernels import reference
    return reference.col2im(col, x_shape, kh, kw, stride, pad)
''')
