"""Exercise 15, the capstone: the two-tower `mini` AlexNet from your own layers, trained.

The network (alexnet's `mini` preset: the paper's structure at Fashion-MNIST scale), for
(N, 1, 28, 28) images and 10 classes. "own": each tower reads only its own maps (groups=2);
"both": every kernel reads both towers' maps (groups=1).

    conv1  32 kernels 5x5, padding 2, reads the image   ReLU, LRN in each tower, max-pool 3/2   28 -> 13
    conv2  64 kernels 5x5, padding 2, own                ReLU, LRN in each tower, max-pool 3/2   13 -> 6
    conv3  96 kernels 3x3, padding 1, both               ReLU
    conv4  96 kernels 3x3, padding 1, own                ReLU
    conv5  64 kernels 3x3, padding 1, own                ReLU, max-pool 3/2                       6 -> 2
    fc6    1024 units (from 64*2*2)                      ReLU, dropout 0.5
    fc7    1024 units                                    ReLU, dropout 0.5
    fc8    10 logits

LRN: size 5, alpha 1e-4, beta 0.75, k 2. Weights: He initialisation (core.he_normal, which your
Conv2D and Linear already use), biases zero.

Training: mini-batch SGD with the paper's rule (momentum 0.9, weight decay 0.0005), softmax
cross-entropy, a new random order of the images every epoch.
"""

import numpy as np

from .conv import Conv2D
from .core import Flatten, Sequential, Towers
from .dropout import Dropout
from .linear import Linear
from .loss import SoftmaxCrossEntropy
from .lrn import LocalResponseNorm
from .pool import MaxPool2D
from .relu import ReLU
from .sgd import SGD


def build_mini(seed=0):
    """The network above as one Sequential, with weights drawn from np.random.default_rng(seed)."""
    # >>> exercise 15: write build_mini
    rng = np.random.default_rng(seed)

    def lrn():
        return Towers(LocalResponseNorm(5, 1e-4, 0.75, 2.0), LocalResponseNorm(5, 1e-4, 0.75, 2.0))

    return Sequential(
        Conv2D(1, 32, 5, padding=2, rng=rng), ReLU(), lrn(), MaxPool2D(3, 2),
        Conv2D(32, 64, 5, padding=2, groups=2, rng=rng), ReLU(), lrn(), MaxPool2D(3, 2),
        Conv2D(64, 96, 3, padding=1, rng=rng), ReLU(),
        Conv2D(96, 96, 3, padding=1, groups=2, rng=rng), ReLU(),
        Conv2D(96, 64, 3, padding=1, groups=2, rng=rng), ReLU(), MaxPool2D(3, 2),
        Flatten(),
        Linear(64 * 2 * 2, 1024, rng=rng), ReLU(), Dropout(0.5, seed=seed + 1),
        Linear(1024, 1024, rng=rng), ReLU(), Dropout(0.5, seed=seed + 2),
        Linear(1024, 10, rng=rng),
    )
    # <<< exercise 15


def train(model, images, labels, epochs=2, batch_size=32, lr=0.02, seed=0):
    """Train in place; return the mean training loss of each epoch (a list of floats)."""
    # >>> exercise 15: write train
    rng = np.random.default_rng(seed)
    sgd = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    criterion = SoftmaxCrossEntropy()
    model.train()
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(images))
        total = 0.0
        for start in range(0, len(images), batch_size):
            batch = order[start:start + batch_size]
            sgd.zero_grad()
            total += criterion.forward(model.forward(images[batch]), labels[batch]) * len(batch)
            model.backward(criterion.backward())
            sgd.step()
        losses.append(total / len(images))
    return losses
    # <<< exercise 15


def accuracy(model, images, labels, batch_size=500):
    """Top-1 accuracy in evaluation mode (dropout off); leaves the model in evaluation mode."""
    model.eval()
    predicted = np.concatenate([model.forward(images[s:s + batch_size]).argmax(axis=1)
                                for s in range(0, len(images), batch_size)])
    return float((predicted == labels).mean())
