MISTAKES = [
    ("inverted mode scaled by (1 - p)", "dropout.py:Dropout.forward", '''
def forward(self, x):
    if self.training:
        keep = (self.rng.random(x.shape) >= self.p).astype(x.dtype)
        self.scale = keep * x.dtype.type(1 - self.p) if self.mode == "inverted" else keep
    else:
        self.scale = x.dtype.type(1.0 if self.mode == "inverted" else 1 - self.p)
    return x * self.scale
''', "scaling the kept units by (1 - p) instead of by 1 / (1 - p)"),
    ("paper mode not scaled at test time", "dropout.py:Dropout.forward", '''
def forward(self, x):
    if self.training:
        keep = (self.rng.random(x.shape) >= self.p).astype(x.dtype)
        self.scale = keep / x.dtype.type(1 - self.p) if self.mode == "inverted" else keep
    else:
        self.scale = x.dtype.type(1.0)
    return x * self.scale
''', "not scaling by (1 - p) at test time"),
    ("a fresh mask in backward", "dropout.py:Dropout.backward", '''
def backward(self, dy):
    if not self.training:
        return dy * self.scale
    keep = (self.rng.random(dy.shape) >= self.p).astype(dy.dtype)
    return dy * keep / dy.dtype.type(1 - self.p) if self.mode == "inverted" else dy * keep
''', "a new mask in backward"),
    ("p used as the keep probability", "dropout.py:Dropout.forward", '''
def forward(self, x):
    if self.training:
        keep = (self.rng.random(x.shape) < self.p).astype(x.dtype)
        self.scale = keep / x.dtype.type(1 - self.p) if self.mode == "inverted" else keep
    else:
        self.scale = x.dtype.type(1.0 if self.mode == "inverted" else 1 - self.p)
    return x * self.scale
''', "p used as the keep probability"),
    ("dropping in evaluation mode", "dropout.py:Dropout.forward", '''
def forward(self, x):
    keep = (self.rng.random(x.shape) >= self.p).astype(x.dtype)
    self.scale = keep / x.dtype.type(1 - self.p) if self.mode == "inverted" else keep
    return x * self.scale
''', "dropping units in evaluation mode"),
    ("float64 from a bool mask divided by a float", "dropout.py:Dropout.forward", '''
def forward(self, x):
    if self.training:
        keep = self.rng.random(x.shape) >= self.p
        self.scale = keep / (1 - self.p) if self.mode == "inverted" else keep
    else:
        self.scale = 1.0 if self.mode == "inverted" else 1 - self.p
    return x * self.scale
''', "dtype float64"),
    ("a generator re-seeded in every forward", "dropout.py:Dropout.forward", '''
def forward(self, x):
    if self.training:
        keep = (np.random.default_rng(0).random(x.shape) >= self.p).astype(x.dtype)
        self.scale = keep / x.dtype.type(1 - self.p) if self.mode == "inverted" else keep
    else:
        self.scale = x.dtype.type(1.0 if self.mode == "inverted" else 1 - self.p)
    return x * self.scale
''', "the same mask every call"),
    ("one mask for the whole batch", "dropout.py:Dropout.forward", '''
def forward(self, x):
    if self.training:
        keep = (self.rng.random(x.shape[1:]) >= self.p).astype(x.dtype)
        self.scale = keep / x.dtype.type(1 - self.p) if self.mode == "inverted" else keep
    else:
        self.scale = x.dtype.type(1.0 if self.mode == "inverted" else 1 - self.p)
    return x * self.scale
''', "one mask for the whole batch"),
]

BYPASS = ("dropout.py:Dropout.forward", '''
def forward(self, x):
    import minidl as md
    layer = md.Dropout(self.p, mode=self.mode).train(self.training)
    y = layer.forward(x)
    self.scale = y / x
    return y
''')
