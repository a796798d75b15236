"""Exercise 04: a gradient checker by central differences.

    df/dx[i] ~ (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)       error O(eps^2); one-sided: O(eps)

A layer is checked through the scalar L = sum(forward(x) * G) with a *random* G: dL/dy = G, so
backward(G) must give dL/dx and each dL/dparameter. (With G = 1 some wrong backwards pass.)
Work in float64.
"""

import numpy as np


def relative_error(a, b):
    """||a - b|| / max(||a||, ||b||, 1e-12)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-12))


def numerical_gradient(f, x, eps=1e-6):
    """The central-difference gradient of the scalar f(x) at x, shaped like x (float64).

    f takes an array shaped like x and returns a number. Leave x as you found it.
    """
    # >>> exercise 04: write numerical_gradient
    work = x.astype(np.float64)              # a copy: x itself is never touched
    flat = work.reshape(-1)
    grad = np.zeros(work.size)
    for i in range(work.size):
        old = flat[i]
        flat[i] = old + eps
        up = float(f(work))
        flat[i] = old - eps
        down = float(f(work))
        flat[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad.reshape(x.shape)
    # <<< exercise 04


def check_layer(layer, x, seed=0, eps=1e-6):
    """Relative errors of ``layer.backward`` against central differences: {"x": e, "weight": e, ...}.

    Draw a random G shaped like the output, take L = sum(forward(input) * G), and compare
    backward(G) with numerical_gradient of L for the input and for every parameter (keeping each
    parameter's data as you found it). Clear the parameters' grads before the backward you compare.
    """
    # >>> exercise 04: write check_layer
    x = np.asarray(x, dtype=np.float64)
    g = np.random.default_rng(seed).standard_normal(layer.forward(x.copy()).shape)
    for p in layer.parameters():
        p.grad[...] = 0
    layer.forward(x.copy())
    errors = {"x": relative_error(layer.backward(g), numerical_gradient(lambda v: np.sum(layer.forward(v) * g), x, eps))}
    for name, p in layer.named_parameters():
        analytic = p.grad.copy()
        saved = p.data.copy()

        def loss(value, p=p):
            p.data = value
            return np.sum(layer.forward(x.copy()) * g)

        numeric = numerical_gradient(loss, saved, eps)
        p.data = saved
        errors[name] = relative_error(analytic, numeric)
    return errors
    # <<< exercise 04
