"""Exercise 14: the paper's update rule (Section 5), momentum 0.9 and weight decay 0.0005:

    v <- momentum * v - weight_decay * lr * w - lr * dL/dw
    w <- w + v

v starts at zero, one per parameter. The rate lr may change between steps (the schedule divides it
by 10): it multiplies the gradient and the decay as they enter v, not the whole of v.
"""

import numpy as np


class SGD:
    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0005):
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocities = [np.zeros_like(p.data) for p in self.params]

    def step(self):
        """One update of every parameter (in place) from its .grad."""
        # >>> exercise 14: write SGD.step
        for p, v in zip(self.params, self.velocities):
            v *= self.momentum
            v -= self.weight_decay * self.lr * p.data
            v -= self.lr * p.grad
            p.data += v
        # <<< exercise 14

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0
