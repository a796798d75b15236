MISTAKES = [
    ("dx[...] = dy window by window: overlapping windows overwrite", "pool.py:MaxPool2D.backward", '''
def backward(self, dy):
    k, s = self.k, self.stride
    n, c, oh, ow = dy.shape
    dx = np.zeros(self.x_shape, dtype=dy.dtype)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for oy in range(oh):
        for ox in range(ow):
            i, j = np.divmod(self.switches[:, :, oy, ox], k)
            dx[nn, cc, oy * s + i, ox * s + j] = dy[:, :, oy, ox]
    return dx
''', "instead of dx[...] += dy"),
    ("masked assignment offset by offset", "pool.py:MaxPool2D.backward", '''
def backward(self, dy):
    k, s = self.k, self.stride
    oh, ow = dy.shape[2], dy.shape[3]
    dx = np.zeros(self.x_shape, dtype=dy.dtype)
    for i in range(k):
        for j in range(k):
            region = dx[:, :, i:i + s * oh:s, j:j + s * ow:s]
            mask = self.switches == i * k + j
            region[mask] = dy[mask]
    return dx
''', "instead of dx[...] += dy"),
    ("average pooling's backward", "pool.py:MaxPool2D.backward", '''
def backward(self, dy):
    k, s = self.k, self.stride
    oh, ow = dy.shape[2], dy.shape[3]
    dx = np.zeros(self.x_shape, dtype=dy.dtype)
    for oy in range(oh):
        for ox in range(ow):
            dx[:, :, oy * s:oy * s + k, ox * s:ox * s + k] += dy[:, :, oy:oy + 1, ox:ox + 1] / (k * k)
    return dx
''', "average pooling"),
    ("gradient to every tie", "pool.py:MaxPool2D", '''
class MaxPool2D(Layer):
    def __init__(self, kernel_size=3, stride=2):
        self.k, self.stride = kernel_size, stride
        self.switches = None

    def forward(self, x):
        k, s = self.k, self.stride
        oh, ow = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
        windows = np.stack([x[:, :, i:i + s * oh:s, j:j + s * ow:s] for i in range(k) for j in range(k)], axis=-1)
        self.switches = windows.argmax(axis=-1)
        self.x = x
        return windows.max(axis=-1)

    def backward(self, dy):
        k, s = self.k, self.stride
        oh, ow = dy.shape[2], dy.shape[3]
        x = self.x
        dx = np.zeros(x.shape, dtype=dy.dtype)
        for oy in range(oh):
            for ox in range(ow):
                win = x[:, :, oy * s:oy * s + k, ox * s:ox * s + k]
                top = win.max(axis=(2, 3), keepdims=True)
                dx[:, :, oy * s:oy * s + k, ox * s:ox * s + k] += (win == top) * dy[:, :, oy:oy + 1, ox:ox + 1]
        return dx
''', "every element equal to the maximum"),
    ("argmax recomputed in backward from dy", "pool.py:MaxPool2D.backward", '''
def backward(self, dy):
    k, s = self.k, self.stride
    n, c, oh, ow = dy.shape
    spread = np.zeros(self.x_shape, dtype=dy.dtype)
    for oy in range(oh):
        for ox in range(ow):
            spread[:, :, oy * s:oy * s + k, ox * s:ox * s + k] += dy[:, :, oy:oy + 1, ox:ox + 1]
    dx = np.zeros(self.x_shape, dtype=dy.dtype)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for oy in range(oh):
        for ox in range(ow):
            best = spread[:, :, oy * s:oy * s + k, ox * s:ox * s + k].reshape(n, c, -1).argmax(axis=2)
            dx[nn, cc, oy * s + best // k, ox * s + best % k] += dy[:, :, oy, ox]
    return dx
''', "recomputing the argmax in backward from dy"),
    ("dx shaped like the output", "pool.py:MaxPool2D.backward", '''
def backward(self, dy):
    return dy * 1
''', "the output's shape"),
    ("dx cropped to the rows the windows reach", "pool.py:MaxPool2D.backward", '''
def backward(self, dy):
    k, s = self.k, self.stride
    n, c, oh, ow = dy.shape
    dx = np.zeros((n, c, s * (oh - 1) + k, s * (ow - 1) + k), dtype=dy.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + s * oh:s, j:j + s * ow:s] += np.where(self.switches == i * k + j, dy, 0)
    return dx
''', "leaving out the rows and columns no window reaches"),
    ("dx started from np.empty", "pool.py:MaxPool2D.backward", '''
def backward(self, dy):
    k, s = self.k, self.stride
    oh, ow = dy.shape[2], dy.shape[3]
    dx = np.full(self.x_shape, 7.0, dtype=dy.dtype)     # what np.empty may leave there
    dx[:, :, :s * (oh - 1) + k, :s * (ow - 1) + k] = 0
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + s * oh:s, j:j + s * ow:s] += np.where(self.switches == i * k + j, dy, 0)
    return dx
''', "start dx from np.zeros"),
]

BYPASS = ("pool.py:MaxPool2D.backward", '''
def backward(self, dy):
    from minidl.kernels.reference import maxpool_backward
    return maxpool_backward(dy, self.switches, self.x_shape, self.k, self.stride)
''')
