MISTAKES = [
    ("the bias left out of forward", "linear.py:Linear.forward", '''
def forward(self, x):
    self.x = x
    return x @ self.weight.data.T
''', "forgetting the bias"),
    ("grads overwritten, not accumulated", "linear.py:Linear.backward", '''
def backward(self, dy):
    self.weight.grad = dy.T @ self.x
    self.bias.grad = dy.sum(axis=0)
    return dy @ self.weight.data
''', "overwriting .grad instead of adding to it"),
    ("bias gradient averaged over the batch", "linear.py:Linear.backward", '''
def backward(self, dy):
    self.weight.grad += dy.T @ self.x
    self.bias.grad += dy.mean(axis=0)
    return dy @ self.weight.data
''', "the mean over the batch instead of the sum"),
    ("weight gradient divided by the batch size", "linear.py:Linear.backward", '''
def backward(self, dy):
    self.weight.grad += dy.T @ self.x / len(dy)
    self.bias.grad += dy.sum(axis=0)
    return dy @ self.weight.data
''', "dividing by the batch size"),
    ("float64 output", "linear.py:Linear.forward", '''
def forward(self, x):
    self.x = x
    return x.astype("float64") @ self.weight.data.T + self.bias.data
''', "dtype float64"),
]

BYPASS = ("linear.py:Linear.forward", '''
def forward(self, x):
    import minidl as md
    layer = md.Linear(x.shape[1], self.weight.data.shape[0])
    layer.weight.data[...] = self.weight.data
    layer.bias.data[...] = self.bias.data
    self.x = x
    return layer.forward(x)
''')
