MISTAKES = [
    ("gradient passed at x == 0", "relu.py:ReLU.forward", '''
def forward(self, x):
    self.mask = x >= 0
    return x * (x > 0)
''', "where x >= 0"),
    ("mask recomputed from dy", "relu.py:ReLU.backward", '''
def backward(self, dy):
    return dy * (dy > 0)
''', "a mask taken from dy"),
    ("forward writes into its input", "relu.py:ReLU.forward", '''
def forward(self, x):
    import numpy as np
    self.mask = x > 0
    return np.maximum(x, 0, out=x)
''', "changed its input x in place"),
    ("float64 output from a float mask", "relu.py:ReLU.forward", '''
def forward(self, x):
    self.mask = (x > 0).astype(float)
    return x * self.mask
''', "dtype float64"),
    ("one mask shared by every ReLU", "relu.py:ReLU.forward", '''
def forward(self, x):
    ReLU.mask = x > 0
    return x * ReLU.mask
''', "one mask shared by every ReLU"),
]

BYPASS = ("relu.py:ReLU.forward", '''
def forward(self, x):
    import minidl as md
    self.mask = x > 0
    return md.ReLU().forward(x)
''')
