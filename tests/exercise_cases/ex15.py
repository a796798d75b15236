"""Mistakes in the capstone, caught before any training: by the structure, and by a probe model
that records what train does."""

MISTAKES = [
    ('conv2 reads both towers', "mini.py:build_mini", '''
def build_mini(seed=0):
    """The network above as one Sequential, with weights drawn from np.random.default_rng(seed)."""
    rng = np.random.default_rng(seed)

    def lrn():
        return Towers(LocalResponseNorm(5, 1e-4, 0.75, 2.0), LocalResponseNorm(5, 1e-4, 0.75, 2.0))

    return Sequential(
        Conv2D(1, 32, 5, padding=2, rng=rng), ReLU(), lrn(), MaxPool2D(3, 2),
        Conv2D(32, 64, 5, padding=2, rng=rng), ReLU(), lrn(), MaxPool2D(3, 2),
        Conv2D(64, 96, 3, padding=1, rng=rng), ReLU(),
        Conv2D(96, 96, 3, padding=1, groups=2, rng=rng), ReLU(),
        Conv2D(96, 64, 3, padding=1, groups=2, rng=rng), ReLU(), MaxPool2D(3, 2),
        Flatten(),
        Linear(64 * 2 * 2, 1024, rng=rng), ReLU(), Dropout(0.5, seed=seed + 1),
        Linear(1024, 1024, rng=rng), ReLU(), Dropout(0.5, seed=seed + 2),
        Linear(1024, 10, rng=rng),
    )
''', "each kernel must read its own tower's 16 maps (groups=2)"),
    ('one LRN across both towers', "mini.py:build_mini", '''
def build_mini(seed=0):
    """The network above as one Sequential, with weights drawn from np.random.default_rng(seed)."""
    rng = np.random.default_rng(seed)

    def lrn():
        return LocalResponseNorm(5, 1e-4, 0.75, 2.0)

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
''', 'LRN stays inside its tower'),
    ('gradients never cleared between steps', "mini.py:train", '''
def train(model, images, labels, epochs=2, batch_size=32, lr=0.02, seed=0):
    """Train in place; return the mean training loss of each epoch (a list of floats)."""
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
            total += criterion.forward(model.forward(images[batch]), labels[batch]) * len(batch)
            model.backward(criterion.backward())
            sgd.step()
        losses.append(total / len(images))
    return losses
''', 'zero_grad'),
    ('the same order every epoch', "mini.py:train", '''
def train(model, images, labels, epochs=2, batch_size=32, lr=0.02, seed=0):
    """Train in place; return the mean training loss of each epoch (a list of floats)."""
    rng = np.random.default_rng(seed)
    sgd = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    criterion = SoftmaxCrossEntropy()
    model.train()
    losses = []
    for _ in range(epochs):
        order = np.arange(len(images))
        total = 0.0
        for start in range(0, len(images), batch_size):
            batch = order[start:start + batch_size]
            sgd.zero_grad()
            total += criterion.forward(model.forward(images[batch]), labels[batch]) * len(batch)
            model.backward(criterion.backward())
            sgd.step()
        losses.append(total / len(images))
    return losses
''', 'same order'),
    ('training mode never switched on', "mini.py:train", '''
def train(model, images, labels, epochs=2, batch_size=32, lr=0.02, seed=0):
    """Train in place; return the mean training loss of each epoch (a list of floats)."""
    rng = np.random.default_rng(seed)
    sgd = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    criterion = SoftmaxCrossEntropy()
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
''', 'evaluation mode'),
]

BYPASS = ("mini.py:build_mini", '''
def build_mini(seed=0):
    from alexnet.configs import get_config
    from alexnet.model import AlexNet
    return AlexNet(get_config("mini"), num_classes=10)
''')
