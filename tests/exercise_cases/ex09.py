MISTAKES = [
    ("output size rounded up: a last, truncated window", "pool.py:MaxPool2D.forward", '''
def forward(self, x):
    import math
    k, s = self.k, self.stride
    n, c, h, w = x.shape
    oh, ow = math.ceil((h - k) / s) + 1, math.ceil((w - k) / s) + 1
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    self.switches = np.empty((n, c, oh, ow), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            win = x[:, :, oy * s:oy * s + k, ox * s:ox * s + k]
            flat = win.reshape(n, c, -1)
            y[:, :, oy, ox] = flat.max(axis=2)
            self.switches[:, :, oy, ox] = flat.argmax(axis=2)
    self.x_shape = x.shape
    return y
''', "rounded up"),
    ("ties sent to the last maximum", "pool.py:MaxPool2D.forward", '''
def forward(self, x):
    k, s = self.k, self.stride
    oh, ow = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    y = x[:, :, 0:s * oh:s, 0:s * ow:s].copy()
    self.switches = np.zeros(y.shape, dtype=np.int64)
    for i in range(k):
        for j in range(k):
            v = x[:, :, i:i + s * oh:s, j:j + s * ow:s]
            better = v >= y
            y[better] = v[better]
            self.switches[better] = i * k + j
    self.x_shape = x.shape
    return y
''', "ties to the last maximum instead of the first"),
    ("switches as flat indices into the image (PyTorch's convention)", "pool.py:MaxPool2D.forward", '''
def forward(self, x):
    k, s = self.k, self.stride
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    self.switches = np.empty((n, c, oh, ow), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            flat = x[:, :, oy * s:oy * s + k, ox * s:ox * s + k].reshape(n, c, -1)
            best = flat.argmax(axis=2)
            y[:, :, oy, ox] = flat.max(axis=2)
            self.switches[:, :, oy, ox] = (oy * s + best // k) * w + ox * s + best % k
    self.x_shape = x.shape
    return y
''', "flat indices into the image"),
    ("offset formula i*stride + j", "pool.py:MaxPool2D.forward", '''
def forward(self, x):
    k, s = self.k, self.stride
    oh, ow = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    y = x[:, :, 0:s * oh:s, 0:s * ow:s].copy()
    self.switches = np.zeros(y.shape, dtype=np.int64)
    for i in range(k):
        for j in range(k):
            v = x[:, :, i:i + s * oh:s, j:j + s * ow:s]
            better = v > y
            y[better] = v[better]
            self.switches[better] = i * s + j
    self.x_shape = x.shape
    return y
''', "i*stride + j"),
    ("the maximum of the whole image in every window", "pool.py:MaxPool2D.forward", '''
def forward(self, x):
    k, s = self.k, self.stride
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    self.switches = np.zeros((n, c, oh, ow), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            y[:, :, oy, ox] = x.max(axis=(2, 3))
    self.x_shape = x.shape
    return y
''', "the maximum over the whole image"),
    ("np.argmax over the channel axis", "pool.py:MaxPool2D.forward", '''
def forward(self, x):
    k, s = self.k, self.stride
    oh, ow = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    windows = np.stack([x[:, :, i:i + s * oh:s, j:j + s * ow:s] for i in range(k) for j in range(k)], axis=-1)
    self.switches = windows.argmax(axis=1)
    self.x_shape = x.shape
    return windows.max(axis=-1)
''', "np.argmax over the wrong axis"),
    ("switches as (row, col) pairs", "pool.py:MaxPool2D.forward", '''
def forward(self, x):
    k, s = self.k, self.stride
    oh, ow = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    windows = np.stack([x[:, :, i:i + s * oh:s, j:j + s * ow:s] for i in range(k) for j in range(k)], axis=-1)
    best = windows.argmax(axis=-1)
    self.switches = np.stack([best // k, best % k], axis=-1)
    self.x_shape = x.shape
    return windows.max(axis=-1)
''', "(row, col) pairs"),
    ("float64 output", "pool.py:MaxPool2D.forward", '''
def forward(self, x):
    k, s = self.k, self.stride
    oh, ow = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    windows = np.stack([x[:, :, i:i + s * oh:s, j:j + s * ow:s] for i in range(k) for j in range(k)], axis=-1)
    self.switches = windows.argmax(axis=-1)
    self.x_shape = x.shape
    return windows.max(axis=-1).astype(np.float64)
''', "dtype float64"),
]

BYPASS = ("pool.py:MaxPool2D.forward", '''
def forward(self, x):
    from minidl.kernels.reference import maxpool_forward
    y, self.switches = maxpool_forward(x, self.k, self.stride)
    self.x_shape = x.shape
    return y
''')
