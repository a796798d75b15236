MISTAKES = [
    ("alpha not divided by n in backward", "lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    n = self.size
    back = window_sum(dy * self.b / self.s, (n - 1) // 2, n // 2)
    return dy * self.s ** -self.beta - 2 * self.alpha * self.beta * self.a * back
''', "alpha divided by the wrong n"),
    ("alpha divided by the number of channels in backward", "lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    n, C = self.size, dy.shape[1]
    back = window_sum(dy * self.b / self.s, (n - 1) // 2, n // 2)
    return dy * self.s ** -self.beta - 2 * self.alpha * self.beta / C * self.a * back
''', "alpha divided by the wrong n"),
    ("the missing cross term", "lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    return dy * self.s ** -self.beta
''', "the missing cross term"),
    ("forward's window in backward (not mirrored)", "lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    n = self.size
    back = window_sum(dy * self.b / self.s, n // 2, (n - 1) // 2)
    return dy * self.s ** -self.beta - 2 * self.alpha * self.beta / n * self.a * back
''', "the window not mirrored"),
    ("factor 2 missing", "lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    n = self.size
    back = window_sum(dy * self.b / self.s, (n - 1) // 2, n // 2)
    return dy * self.s ** -self.beta - self.alpha * self.beta / n * self.a * back
''', "the factor 2 missing"),
    ("beta missing", "lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    n = self.size
    back = window_sum(dy * self.b / self.s, (n - 1) // 2, n // 2)
    return dy * self.s ** -self.beta - 2 * self.alpha / n * self.a * back
''', "beta missing"),
    ("a instead of b in the sum", "lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    n = self.size
    back = window_sum(dy * self.a / self.s, (n - 1) // 2, n // 2)
    return dy * self.s ** -self.beta - 2 * self.alpha * self.beta / n * self.a * back
''', "a instead of b in the sum"),
    ("float64 gradient", "lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    n = self.size
    a, b, s, g = (v.astype(np.float64) for v in (self.a, self.b, self.s, dy))
    back = window_sum(g * b / s, (n - 1) // 2, n // 2)
    return g * s ** -self.beta - 2 * self.alpha * self.beta / n * a * back
''', "dtype float64"),
]

BYPASS = ("lrn.py:LocalResponseNorm.backward", '''
def backward(self, dy):
    from minidl.kernels.reference import lrn_backward
    return lrn_backward(dy, (self.a, self.s, self.b), self.size, self.alpha, self.beta, self.k)
''')
