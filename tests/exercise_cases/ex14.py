MISTAKES = [
    ("PyTorch's form, the rate outside the velocity", "sgd.py:SGD.step", '''
def step(self):
    for p, v in zip(self.params, self.velocities):
        v *= self.momentum
        v += p.grad + self.weight_decay * p.data
        p.data -= self.lr * v
''', "the rate outside the velocity"),
    ("weight decay not scaled by the rate", "sgd.py:SGD.step", '''
def step(self):
    for p, v in zip(self.params, self.velocities):
        v *= self.momentum
        v -= self.weight_decay * p.data
        v -= self.lr * p.grad
        p.data += v
''', "weight decay not multiplied by the learning rate"),
    ("w updated with the old velocity", "sgd.py:SGD.step", '''
def step(self):
    for p, v in zip(self.params, self.velocities):
        p.data += v
        v *= self.momentum
        v -= self.weight_decay * self.lr * p.data
        v -= self.lr * p.grad
''', "the old velocity"),
    ("the update's sign flipped", "sgd.py:SGD.step", '''
def step(self):
    for p, v in zip(self.params, self.velocities):
        v *= self.momentum
        v -= self.weight_decay * self.lr * p.data
        v -= self.lr * p.grad
        p.data -= v
''', "the sign of the update"),
    ("a new array instead of an in-place update", "sgd.py:SGD.step", '''
def step(self):
    for p, v in zip(self.params, self.velocities):
        v *= self.momentum
        v -= self.weight_decay * self.lr * p.data
        v -= self.lr * p.grad
        p.data = p.data + v
''', "update it in place"),
    ("the velocity rebound, not stored", "sgd.py:SGD.step", '''
def step(self):
    for p, v in zip(self.params, self.velocities):
        v = self.momentum * v - self.weight_decay * self.lr * p.data - self.lr * p.grad
        p.data += v
''', "a velocity that does not persist between steps"),
]

BYPASS = ("sgd.py:SGD.step", '''
def step(self):
    from minidl import kernels
    for p, v in zip(self.params, self.velocities):
        kernels.momentum_update(p.data, p.grad, v, self.lr, self.momentum, self.weight_decay)
''')
