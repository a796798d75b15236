MISTAKES = [
    ("alpha not divided by n (the paper's printed formula)", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n = self.size
    self.a = x
    self.s = self.k + self.alpha * window_sum(x * x, n // 2, (n - 1) // 2)
    self.b = x * self.s ** -self.beta
    return self.b
''', "alpha not divided by n"),
    ("alpha divided by the number of channels", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n = self.size
    self.a = x
    self.s = self.k + self.alpha / x.shape[1] * window_sum(x * x, n // 2, (n - 1) // 2)
    self.b = x * self.s ** -self.beta
    return self.b
''', "divided by the number of channels C"),
    ("alpha divided by the clipped window's length", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n, C = self.size, x.shape[1]
    self.a = x
    self.s = np.empty_like(x)
    for i in range(C):
        lo, hi = max(0, i - n // 2), min(C, i + (n - 1) // 2 + 1)
        self.s[:, i] = self.k + self.alpha / (hi - lo) * (x[:, lo:hi] ** 2).sum(axis=1)
    self.b = x * self.s ** -self.beta
    return self.b
''', "clipped window's length"),
    ("window wrapped with np.roll", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n = self.size
    sq = x * x
    total = sum(np.roll(sq, -d, axis=1) for d in range(-(n // 2), (n - 1) // 2 + 1))
    self.a = x
    self.s = self.k + self.alpha / n * total
    self.b = x * self.s ** -self.beta
    return self.b
''', "wrapped around the channels"),
    ("even window centred the wrong way", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n = self.size
    self.a = x
    self.s = self.k + self.alpha / n * window_sum(x * x, (n - 1) // 2, n // 2)
    self.b = x * self.s ** -self.beta
    return self.b
''', "centred the wrong way"),
    ("symmetric window n//2 each side", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n = self.size
    self.a = x
    self.s = self.k + self.alpha / n * window_sum(x * x, n // 2, n // 2)
    self.b = x * self.s ** -self.beta
    return self.b
''', "n + 1 channels for an even n"),
    ("sum of a instead of a^2", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n = self.size
    self.a = x
    self.s = self.k + self.alpha / n * window_sum(x, n // 2, (n - 1) // 2)
    self.b = x * self.s ** -self.beta
    return self.b
''', "the sum of a instead of the sum of a^2"),
    ("beta's sign", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n = self.size
    self.a = x
    self.s = self.k + self.alpha / n * window_sum(x * x, n // 2, (n - 1) // 2)
    self.b = x * self.s ** self.beta
    return self.b
''', "beta's sign"),
    ("float64 output", "lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    n = self.size
    self.a = x.astype(np.float64)
    self.s = self.k + self.alpha / n * window_sum(self.a ** 2, n // 2, (n - 1) // 2)
    self.b = self.a * self.s ** -self.beta
    return self.b
''', "dtype float64"),
]

BYPASS = ("lrn.py:LocalResponseNorm.forward", '''
def forward(self, x):
    from minidl.kernels.reference import lrn_forward
    self.b, (self.a, self.s, _) = lrn_forward(x, self.size, self.alpha, self.beta, self.k)
    return self.b
''')
