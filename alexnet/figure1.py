"""The paper's Figure 1: how much faster a CNN trains with ReLUs than with tanh.

The paper (Section 3.1): "A four-layer convolutional neural network with
ReLUs reaches a 25% training error rate on CIFAR-10 six times faster than an
equivalent network with tanh neurons." Each network had its own learning
rate, chosen to make training as fast as possible, and no regularisation.

This module holds the pieces to repeat the experiment at small scale:

- ``four_layer_cnn(activation)``: three convolutions and one fully connected
  layer (four layers with weights), each convolution followed by the
  nonlinearity and an overlapping 3x3/2 max-pool, as a ``minidl.Sequential``.
- ``train_curve(model, images, labels, steps, lr)``: plain minibatch SGD with
  momentum and no weight decay; returns the per-step training error (the
  error on each minibatch, measured by the forward pass that computes its
  gradient, before the update) and the loss.
- ``running_error(errors, window)`` and ``steps_to_error(errors, threshold,
  window)``: the measure. The training error after ``t`` steps is the mean
  error over the last ``window`` minibatches; the network "reaches" the
  threshold at the first step where that mean is at or below it.
- ``lr_sweep(activation, lrs, ...)``: one run per learning rate, the best one
  being the first to reach the threshold.
- ``seed_runs(activation, lr, seeds, ...)``: one run per seed at a fixed rate,
  each seed giving its own initial weights and its own data order.
- ``layer_statistics(model, x)`` and ``LayerProbe(steps)``: saturation,
  measured rather than assumed. Per layer: the share of units whose
  pre-activation has ``|z| > 2`` (where tanh'(z) < 0.071), the mean slope
  f'(z) of the nonlinearity, and the norm of the weight gradient. A
  ``LayerProbe`` passed to ``train_curve`` records them at chosen steps.

A run that diverges (a non-finite loss) stops; its remaining errors are NaN
and it never reaches the threshold.
"""

from __future__ import annotations

import math

import numpy as np

from minidl import init as minit
from minidl.backend import get_array_module
from minidl.layers import Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy, Tanh
from minidl.optim import SGD

__all__ = ["ACTIVATIONS", "four_layer_cnn", "standardize", "train_curve", "running_error", "steps_to_error",
           "lr_sweep", "seed_runs", "layer_names", "layer_statistics", "LayerProbe"]

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh}


def four_layer_cnn(activation="relu", in_channels=1, input_size=28, num_classes=10, widths=(16, 32, 64),
                   init="auto", seed=0, dtype="float32"):
    """A four-layer CNN (three convolutions, one linear layer) with the given nonlinearity.

    Layout, for 1x28x28 inputs and the default widths::

        conv 5x5 pad 2 (16) -> act -> maxpool 3x3/2    16x28x28 -> 16x13x13
        conv 5x5 pad 2 (32) -> act -> maxpool 3x3/2    32x13x13 -> 32x6x6
        conv 3x3 pad 1 (64) -> act -> maxpool 3x3/2    64x6x6   -> 64x2x2
        flatten -> linear (10)                          256 -> 10 logits

    ``activation``: 'relu' or 'tanh' (the only difference between the two nets).
    ``init``: 'auto' (He's N(0, 2/fan_in) for ReLU, Glorot's uniform for tanh: each
    nonlinearity with the fan-in scaling made for it), 'he' or 'xavier' (the same for
    both), or a number: a fixed N(0, std^2) for every layer, the style of the paper's
    era (0.01 in AlexNet). Biases start at 0; the last layer's weights are
    N(0, 0.01^2) so that the first logits are near zero. Parameters are drawn from one generator seeded
    with ``seed``, in layer order, so both activations start from comparable draws.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"four_layer_cnn: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if init == "auto":
        init = "he" if activation == "relu" else "xavier"
    if not (init in ("he", "xavier") or (isinstance(init, (int, float)) and init > 0)):
        raise ValueError(f"four_layer_cnn: init must be 'auto', 'he', 'xavier' or a positive std, got {init!r}")
    if len(widths) != 3:
        raise ValueError(f"four_layer_cnn: widths must give the three convolutions' channels, got {widths}")
    act = ACTIVATIONS[activation]
    layers, ch, size = [], in_channels, input_size
    for width, k in zip(widths, (5, 5, 3)):
        layers += [Conv2D(ch, width, k, padding=k // 2), act(), MaxPool2D(3, 2)]
        ch, size = width, (size - 3) // 2 + 1
        if size < 1:
            raise ValueError(f"four_layer_cnn: input size {input_size} is too small for three 3x3/2 poolings")
    layers += [Flatten(), Linear(ch * size * size, num_classes)]
    model = Sequential(*layers)
    rng = np.random.default_rng(seed)
    for layer in model:
        if isinstance(layer, (Conv2D, Linear)):
            if layer is layers[-1]:
                minit.normal_(layer.weight, 0.01, rng)
            elif init == "he":
                minit.he_normal_(layer.weight, rng)
            elif init == "xavier":
                minit.xavier_uniform_(layer.weight, rng)
            else:
                minit.normal_(layer.weight, float(init), rng)
            minit.constant_(layer.bias, 0.0)
    if np.dtype(dtype) != np.float32:
        model.to(dtype=dtype)
    return model


def standardize(images, dtype=np.float32):
    """uint8 images (N, C, H, W) -> floats with zero mean and unit variance over the whole set."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    mean, std = x.mean(), x.std()
    return ((x - mean) / std).astype(dtype)


def train_curve(model, images, labels, steps, lr, batch_size=64, momentum=0.9, seed=0, probe=None):
    """Train ``model`` with minibatch SGD for ``steps`` steps; return the per-step curves.

    ``images``: float (N, C, H, W) already standardised; ``labels``: ints (N,).
    Minibatches run through a seeded permutation of the data, epoch after
    epoch (the same order for every model given the same seed). No weight
    decay, no dropout, no augmentation: the paper's Figure 1 used no
    regularisation.

    Returns ``{'error': (steps,), 'loss': (steps,)}``, float64 arrays: the
    error rate and mean loss of each minibatch, computed by the forward pass
    that gives that step's gradient (before its update). If the loss becomes
    non-finite the run stops and the remaining entries are NaN.

    ``probe``: None, or a callable ``probe(t, model, x, y)`` called at every
    step ``t`` (0, 1, ...) after the backward pass and before the update: the
    weights are then those after ``t`` updates (``t = 0``: the initial ones)
    and every parameter's ``.grad`` holds the gradient of the minibatch
    ``(x, y)``. It must leave weights and gradients as they are (see
    ``LayerProbe``). Without a probe the run is the same, bit for bit.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"train_curve: {n} images but {len(labels)} labels")
    if not 1 <= batch_size <= n:
        raise ValueError(f"train_curve: batch_size must be in [1, {n}], got {batch_size}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    criterion = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=0.0)
    model.train()
    error = np.full(steps, np.nan)
    loss = np.full(steps, np.nan)
    order, pos = rng.permutation(n), 0
    # a diverging learning rate is an expected outcome of a sweep: no overflow warnings
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            if pos + batch_size > n:
                order, pos = rng.permutation(n), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            x, y = images[idx], labels[idx]
            logits = model.forward(x)
            value = criterion.forward(logits, y)
            if not math.isfinite(value):
                break
            loss[t] = value
            error[t] = float(np.mean(logits.argmax(axis=1) != y))
            opt.zero_grad()
            model.backward(criterion.backward())
            if probe is not None:
                probe(t, model, x, y)
            opt.step()
    return {"error": error, "loss": loss}


def running_error(errors, window=50):
    """Mean of the last ``window`` entries at every step (fewer at the start).

    ``out[t] = mean(errors[max(0, t - window + 1) : t + 1])``; NaN once a NaN
    (a diverged run) enters the window.
    """
    if window < 1:
        raise ValueError(f"running_error: window must be >= 1, got {window}")
    e = np.asarray(errors, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(e)])
    t = np.arange(1, len(e) + 1)
    start = np.maximum(0, t - window)
    return (c[t] - c[start]) / (t - start)


def steps_to_error(errors, threshold=0.25, window=50):
    """The number of steps after which the running training error is first <= ``threshold``.

    Only full windows count (a lucky first minibatch does not), so the answer
    is at least ``window``. Returns None if the threshold is never reached.
    """
    r = running_error(errors, window)[window - 1:]
    hit = np.flatnonzero(r <= threshold)
    return int(hit[0]) + window if hit.size else None


def lr_sweep(activation, lrs, images, labels, steps, threshold=0.25, window=50, batch_size=64, seed=0,
             **model_kwargs):
    """Train one ``four_layer_cnn(activation)`` per learning rate, from the same initial weights.

    Returns ``(best, runs)``: ``runs`` is a list of ``{'lr', 'error', 'loss',
    'steps_to_threshold'}``, one per rate; ``best`` is the run that reached
    the threshold in the fewest steps (ties and runs that never reach it: the
    lower final running error wins).
    """
    runs = [{"lr": float(lr), **_run(activation, lr, seed, images, labels, steps, threshold, window, batch_size,
                                     model_kwargs)} for lr in lrs]

    def key(run):
        reached = run["steps_to_threshold"]
        final = running_error(run["error"], window)[-1]
        return (reached is None, reached if reached is not None else 0, final if np.isfinite(final) else np.inf)

    return min(runs, key=key), runs


def _run(activation, lr, seed, images, labels, steps, threshold, window, batch_size, model_kwargs):
    """One run: ``four_layer_cnn(activation, seed=seed)`` trained with the data order of ``seed``."""
    model = four_layer_cnn(activation, seed=seed, **model_kwargs)
    curve = train_curve(model, images, labels, steps, lr, batch_size=batch_size, seed=seed)
    return {**curve, "steps_to_threshold": steps_to_error(curve["error"], threshold, window)}


def seed_runs(activation, lr, seeds, images, labels, steps, threshold=0.25, window=50, batch_size=64,
              **model_kwargs):
    """Train one ``four_layer_cnn(activation)`` per seed, all at the learning rate ``lr``.

    Seed ``s`` sets both the initial weights (``four_layer_cnn(seed=s)``) and
    the order of the minibatches (``train_curve(seed=s)``), so the runs differ
    in both; seed ``s`` at rate ``lr`` is the same run as ``lr_sweep``'s at
    that rate and seed. Returns a list of ``{'seed', 'error', 'loss',
    'steps_to_threshold'}``, one per seed, in the order given.
    """
    return [{"seed": int(s), **_run(activation, lr, s, images, labels, steps, threshold, window, batch_size,
                                    model_kwargs)} for s in seeds]


# -- saturation, measured ----------------------------------------------------------------
_SLOPES = {ReLU: lambda xp, z: z > 0, Tanh: lambda xp, z: 1 - xp.tanh(z) ** 2}


def layer_names(model):
    """Names for the layers with weights of a ``four_layer_cnn``-like Sequential, in order.

    Convolutions are ``conv1``, ``conv2``, ...; linear layers ``fc1``, ...
    (``fc`` when there is one). A nonlinearity takes the name of the layer
    with weights before it: ``conv1``'s pre-activation is its input.
    """
    fcs = sum(isinstance(m, Linear) for m in model)
    names, nc, nf = [], 0, 0
    for m in model:
        if isinstance(m, Conv2D):
            nc += 1
            names.append(f"conv{nc}")
        elif isinstance(m, Linear):
            nf += 1
            names.append("fc" if fcs == 1 else f"fc{nf}")
    return names


def layer_statistics(model, x, threshold=2.0):
    """Per-layer statistics of ``model`` on the batch ``x``, and the norms of its current weight gradients.

    ``x`` runs forward layer by layer; at each ReLU or Tanh the input ``z``
    (the pre-activation: the output of the layer with weights before it,
    bias included) gives

    - ``saturated[name]``: the share of units with ``|z| > threshold``. For
      tanh and ``threshold = 2``, where tanh'(z) = 1 - tanh(z)^2 < 0.071:
      units that pass back less than a fourteenth of their gradient.
    - ``slope[name]``: the mean of f'(z) over the units: 1 - tanh(z)^2 for
      tanh, the share of units with z > 0 for ReLU. Unit by unit, the
      gradient through the nonlinearity is the upstream one times f'(z).

    and for every layer with weights ``grad_norm[name]``: the Frobenius norm
    of ``weight.grad`` (NaN while there is none). Names come from
    ``layer_names``. The extra forward pass refills the layers' caches but
    changes no weight and no gradient, so a training step can follow it.
    Returns ``{'saturated': {...}, 'slope': {...}, 'grad_norm': {...}}`` of floats.
    """
    names = iter(layer_names(model))
    saturated, slope, grad_norm = {}, {}, {}
    name = None
    with np.errstate(over="ignore", invalid="ignore"):
        for m in model:
            if isinstance(m, (Conv2D, Linear)):
                name = next(names)
                g = m.weight.grad
                grad_norm[name] = math.sqrt(float((g.astype(np.float64) ** 2).sum())) if g is not None else math.nan
            elif type(m) in _SLOPES:
                xp = get_array_module(x)
                z = x.astype(np.float64)
                saturated[name] = float((xp.abs(z) > threshold).mean())
                slope[name] = float(_SLOPES[type(m)](xp, z).mean())
            x = m.forward(x)
    return {"saturated": saturated, "slope": slope, "grad_norm": grad_norm}


class LayerProbe:
    """A ``train_curve`` probe that records ``layer_statistics`` at chosen steps.

    ::

        probe = LayerProbe([0, 10, 100])
        train_curve(model, images, labels, 200, lr, probe=probe)
        probe.steps                          # array([0, 10, 100])
        probe.series("saturated")["conv1"]   # conv1's share of |z| > 2 at those steps

    At step ``t`` (the weights after ``t`` updates) the statistics are those of
    that step's minibatch and its gradient, before the update. Steps a run
    does not reach (it is shorter, or it diverged) are not recorded.
    """

    def __init__(self, steps, threshold=2.0):
        self.at = frozenset(int(t) for t in steps)
        self.threshold = threshold
        self.records = []

    def __call__(self, t, model, x, y):
        if t in self.at:
            self.records.append({"step": int(t), **layer_statistics(model, x, self.threshold)})

    @property
    def steps(self):
        """The steps recorded, in order."""
        return np.array([r["step"] for r in self.records], dtype=np.int64)

    def series(self, key):
        """``{layer name: array over the recorded steps}`` for ``key`` in 'saturated', 'slope', 'grad_norm'."""
        if not self.records:
            return {}
        return {name: np.array([r[key][name] for r in self.records]) for name in self.records[0][key]}
