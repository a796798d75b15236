"""Exercise 02: the rectified linear unit, the paper's nonlinearity (Section 3.1).

    y = max(x, 0)               dx = dy where x > 0, else 0          any shape
"""

from .core import Layer


class ReLU(Layer):
    def forward(self, x):
        """y = max(x, 0); keep what backward needs."""
        # exercise 02: write ReLU.forward
        raise NotImplementedError("exercise 02: write ReLU.forward")

    def backward(self, dy):
        """dx = dy where the input was positive, 0 elsewhere."""
        # exercise 02: write ReLU.backward
        raise NotImplementedError("exercise 02: write ReLU.backward")
