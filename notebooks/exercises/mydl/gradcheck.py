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
    # exercise 04: write numerical_gradient
    raise NotImplementedError("exercise 04: write numerical_gradient")


def check_layer(layer, x, seed=0, eps=1e-6):
    """Relative errors of ``layer.backward`` against central differences: {"x": e, "weight": e, ...}.

    Draw a random G shaped like the output, take L = sum(forward(input) * G), and compare
    backward(G) with numerical_gradient of L for the input and for every parameter (keeping each
    parameter's data as you found it). Clear the parameters' grads before the backward you compare.
    """
    # exercise 04: write check_layer
    raise NotImplementedError("exercise 04: write check_layer")
