"""Solution to exercise 05: a small two-tower net, trained on Fashion-MNIST."""

# %% exercise
import numpy as np

import minidl as md


def build_two_tower_net(seed=0):
    """(N, 1, 28, 28) -> (N, 10) logits; channels [0, C/2) are tower 0, [C/2, C) tower 1."""
    model = md.Sequential(
        # conv1 reads the whole image for both towers: maps 0-3 are tower 0's, 4-7 tower 1's
        md.Conv2D(1, 8, kernel_size=5, padding=2), md.ReLU(), md.MaxPool2D(3, 2),       # 8 x 13 x 13
        # conv2: each tower reads only its own four maps (groups=2)
        md.Conv2D(8, 16, kernel_size=3, padding=1, groups=2), md.ReLU(),
        # conv3, the exchange: every kernel reads both towers' maps (groups=1)
        md.Conv2D(16, 16, kernel_size=3, padding=1), md.ReLU(), md.MaxPool2D(3, 2),     # 16 x 6 x 6
        # conv4: separate towers again
        md.Conv2D(16, 16, kernel_size=3, padding=1, groups=2), md.ReLU(),
        md.Flatten(), md.Linear(16 * 6 * 6, 10),
    )
    model[0].need_input_grad = False          # nothing needs the gradient of the image: skip it
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            md.init.he_normal_(p, rng=rng)    # std sqrt(2 / fan_in) keeps the signal's scale through ReLUs
    return model


# %% exercise
def train(model, images, labels, epochs=3, batch_size=32, lr=0.01, seed=0):
    """Mini-batch SGD with the paper's rule; returns the mean training loss of each epoch."""
    rng = np.random.default_rng(seed)
    sgd = md.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    criterion = md.SoftmaxCrossEntropy()
    model.train()
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(images))  # a new order every epoch
        total = 0.0
        for start in range(0, len(images), batch_size):
            batch = order[start:start + batch_size]
            sgd.zero_grad()                   # backward adds to .grad: clear last batch's first
            total += criterion.forward(model.forward(images[batch]), labels[batch]) * len(batch)
            model.backward(criterion.backward())
            sgd.step()
        losses.append(total / len(images))
    return losses
