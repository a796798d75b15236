"""The given part of mydl: the layer contract (notebook 00, "The layer contract").

A layer's ``forward(x)`` returns its output and keeps what its backward will need; ``backward(dy)``
takes dL/dy, *adds* dL/dparameter to each parameter's ``.grad`` and returns dL/dx. Arrays are NumPy
float32 unless a test says otherwise.
"""

import numpy as np


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape, starts at zero)."""

    def __init__(self, data):
        self.data = data
        self.grad = np.zeros_like(data)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class: finds parameters and sub-layers among the attributes, in the order they were set."""

    training = True

    def named_parameters(self, prefix=""):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            elif isinstance(value, Layer):
                yield from value.named_parameters(f"{prefix}{name}.")
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Layer):
                        yield from item.named_parameters(f"{prefix}{name}.{i}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def layers(self):
        """This layer's direct sub-layers."""
        found = []
        for value in vars(self).values():
            if isinstance(value, Layer):
                found.append(value)
            elif isinstance(value, (list, tuple)):
                found += [item for item in value if isinstance(item, Layer)]
        return found

    def train(self, mode=True):
        """Training mode (dropout drops); ``eval()`` switches it off. Returns self."""
        self.training = mode
        for layer in self.layers():
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad[...] = 0

    def __call__(self, x):
        return self.forward(x)


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse."""

    def __init__(self, *layers):
        self.items = list(layers)

    def __getitem__(self, i):
        return self.items[i]

    def __len__(self):
        return len(self.items)

    def forward(self, x):
        for layer in self.items:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.items):
            dy = layer.backward(dy)
        return dy


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), and back."""

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


def he_normal(shape, fan_in, rng, dtype=np.float32):
    """Weights drawn from N(0, 2 / fan_in): the signal keeps its scale through ReLUs."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


class Towers(Layer):
    """One layer per tower, each on its own tower's channels: channels [0, C/T) go to layers[0],
    [C/T, 2C/T) to layers[1], ... (notebook 07, "LRN stays inside its tower"). A grouped
    convolution does this by itself; a layer that mixes channels, like LRN, needs this wrapper."""

    def __init__(self, *layers):
        self.towers = list(layers)

    def forward(self, x):
        parts = np.split(x, len(self.towers), axis=1)
        return np.concatenate([layer.forward(part) for layer, part in zip(self.towers, parts)], axis=1)

    def backward(self, dy):
        parts = np.split(dy, len(self.towers), axis=1)
        return np.concatenate([layer.backward(part) for layer, part in zip(self.towers, parts)], axis=1)
