"""Numerical gradient checking.

A layer's backward is checked against central differences of the scalar

    L(x, theta) = sum(forward(x) * G)

where G is a *random* upstream gradient. (With G = 1, i.e. checking
``sum(y)``, a softmax's gradient is identically zero and any bug passes.)

    dL/dv[i] ~ (L(v + eps e_i) - L(v - eps e_i)) / (2 eps)

for the input and every parameter v. The comparison is
``||analytic - numeric|| / max(||analytic||, ||numeric||)`` over the checked
entries. In float64 with eps = 1e-6 a correct backward gives about 1e-9 or
less; an off-by-one window or a missing ``+=`` gives 1e-2 and more.
Run it in float64: ``layer.to(dtype='float64')`` and a float64 input.
"""

from __future__ import annotations

import numpy as np

from .backend import asnumpy, get_array_module
from .checks import number, whole


def relative_error(a, b, floor=1e-12):
    """``||a - b|| / max(||a||, ||b||, floor)``: the floor keeps two zero-ish gradients
    (numerical noise around 0) from reading as a 100% error."""
    a, b = asnumpy(a).astype(np.float64).ravel(), asnumpy(b).astype(np.float64).ravel()
    scale = max(np.linalg.norm(a), np.linalg.norm(b), floor)
    return float(np.linalg.norm(a - b) / scale)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of a scalar function of an array.

    ``grad[i] = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` for every entry i.
    ``f`` takes an array shaped like ``x`` and returns a number. It is called
    on a private copy of ``x`` (perturbed one entry at a time and restored),
    so ``x`` itself is never changed. Returns a float64 NumPy array shaped
    like ``x``. Use float64: in float32 the rounding error of ``f`` divided
    by ``2 eps`` limits the relative error to about 1e-5 at best (eps ~ 1e-2),
    too coarse to tell a right gradient from a slightly wrong one.
    """
    if not hasattr(x, "dtype") or x.dtype.kind != "f":
        raise ValueError(f"numerical_gradient: expected a floating-point array, got {getattr(x, 'dtype', type(x))}")
    work = x.copy()
    flat = work.reshape(-1)  # a view: work is contiguous
    grad = np.empty(work.size)
    for i in range(work.size):
        old = flat[i].copy()
        flat[i] = old + eps
        fp = float(f(work))
        flat[i] = old - eps
        fm = float(f(work))
        flat[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad.reshape(x.shape)


def _entries(size, num_checks, rng):
    if num_checks is None or num_checks >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=num_checks, replace=False))


def gradcheck(layer, x, dy=None, eps=1e-6, seed=0, num_checks=None, check_input=True):
    """Compare ``layer.backward`` with central differences. Returns ``{name: relative error}``.

    ``layer``: anything with ``forward``, ``backward`` and ``named_parameters``
    (a Layer or a whole model). ``x``: a float64 input (NumPy or CuPy).
    ``dy``: the upstream gradient (default: standard normal, seeded).
    ``num_checks``: check only this many random entries of each array (for
    big models); None checks every entry. The result has ``'input'`` and one
    key per parameter name. Random layers (dropout) replay the same masks
    for every evaluation.
    """
    if x.dtype != np.float64:
        raise ValueError(
            f"gradcheck: run it in float64 (got a {x.dtype} input): "
            "layer.to(dtype='float64') and x.astype('float64')"
        )
    eps = number(eps, "gradcheck", "eps", low=0, low_open=True)
    if num_checks is not None:
        num_checks = whole(num_checks, "gradcheck", "num_checks (or None: every entry)", low=1)
    xp = get_array_module(x)
    rng = np.random.default_rng(seed)
    get_state = getattr(layer, "rng_state", lambda: None)
    set_state = getattr(layer, "set_rng_state", lambda s: None)
    state0 = get_state()

    def run(inp):
        if state0:
            set_state(state0)
        return layer.forward(inp)

    y = run(x)
    if dy is None:
        dy = xp.asarray(rng.standard_normal(y.shape))
    params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
    for _, p in params:
        p.grad = None
    dx = layer.backward(dy)

    def loss(inp):
        return float((run(inp) * dy).sum())

    def numeric(arr, idx):
        out = np.empty(len(idx))
        for k, i in enumerate(idx):
            at = np.unravel_index(int(i), arr.shape)     # into arr itself, whatever its memory layout
            old = float(arr[at])
            arr[at] = old + eps
            fp = loss(x)
            arr[at] = old - eps
            fm = loss(x)
            arr[at] = old
            out[k] = (fp - fm) / (2 * eps)
        return out

    errors = {}
    if check_input:
        x = x.copy()
        idx = _entries(x.size, num_checks, rng)
        errors["input"] = relative_error(asnumpy(dx).reshape(-1)[idx], numeric(x, idx))
    for name, p in params:
        if p.data.dtype != np.float64:
            raise ValueError(f"gradcheck: parameter '{name}' is {p.data.dtype}; call layer.to(dtype='float64')")
        if p.grad is None:
            raise AssertionError(f"gradcheck: backward left no gradient in '{name}'")
        idx = _entries(p.data.size, num_checks, rng)
        analytic = asnumpy(p.grad).reshape(-1)[idx]
        errors[name] = relative_error(analytic, numeric(p.data, idx))
    if state0:
        set_state(state0)
    return errors


def gradcheck_loss(criterion, logits, labels, eps=1e-6):
    """Check ``criterion.backward()`` against central differences of its mean loss.

    Returns the relative error of d(loss)/d(logits). ``logits`` must be float64.
    """
    if logits.dtype != np.float64:
        raise ValueError(f"gradcheck_loss: run it in float64 (got {logits.dtype})")
    criterion.forward(logits, labels)
    analytic = criterion.backward()
    z = logits.copy()
    flat = z.reshape(-1)
    num = np.empty(z.size)
    for i in range(z.size):
        old = float(flat[i])
        flat[i] = old + eps
        fp = criterion.forward(z, labels)
        flat[i] = old - eps
        fm = criterion.forward(z, labels)
        flat[i] = old
        num[i] = (fp - fm) / (2 * eps)
    return relative_error(analytic, num)
