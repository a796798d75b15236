"""Exercise 12: LocalResponseNorm.backward: the direct term, the cross term through every window that
holds a channel (the mirrored window), and alpha divided by n as in forward."""

import numpy as np

from minidl.kernels.reference import lrn_backward, lrn_forward

from .common import array, close, fail, forward_first, load, passed, run

NUMBER = "12"
TITLE = "Local response normalisation: backward"
WRITES = "LocalResponseNorm.backward in mydl/lrn.py"
NOTEBOOK = "04_lrn.ipynb, section \"The gradient, step by step\", \"Why the check uses a large $\\alpha$\""
MINUTES = 30

# (shape (N, C, H, W), size n, alpha, beta, k, dtype, what the case is). A large alpha: with the paper's
# 1e-4 the cross term is too small next to the direct term for a bug in it to show.
CASES = [
    ((2, 7, 3, 4), 5, 1.0, 0.75, 2.0, np.float32, "an odd window"),
    ((2, 6, 2, 3), 4, 1.0, 0.75, 2.0, np.float32, "an even window, whose mirror is 1 channel before and 2 after"),
    ((1, 3, 2, 2), 5, 2.0, 0.75, 1.0, np.float32, "3 channels, fewer than the window; a batch of one"),
    ((2, 5, 2, 2), 6, 0.5, 0.5, 1.0, np.float32, "an even window wider than the 5 channels, beta 0.5"),
    ((1, 5, 2, 3), 4, 1.5, 0.75, 2.0, np.float64, "float64, also checked against central differences"),
]


def window_sum(x, before, after):
    """out[:, c] = x[:, c - before] + ... + x[:, c + after], clipped to the channels (float64)."""
    out = np.zeros_like(x)
    for c in range(x.shape[1]):
        out[:, c] = x[:, max(0, c - before):c + after + 1].sum(axis=1)
    return out


def central_differences(a, g, n, alpha, beta, k, h=1e-5):
    """d(sum(g * b))/da by central differences, with this grader's own forward (float64)."""
    def loss(v):
        s = k + alpha / n * window_sum(v * v, n // 2, (n - 1) // 2)
        return float(np.sum(g * v * s ** -beta))
    grad = np.zeros_like(a)
    for index in np.ndindex(a.shape):
        plus, minus = a.copy(), a.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (loss(plus) - loss(minus)) / (2 * h)
    return grad


def _mistakes(a, g, n, alpha, beta, k):
    """What typical mistakes give, in float64, with the right forward."""
    before, after = n // 2, (n - 1) // 2
    s = k + alpha / n * window_sum(a * a, before, after)
    b = a * s ** -beta
    direct = g * s ** -beta
    t = g * b / s
    mirrored = window_sum(t, after, before)
    lengths = window_sum(np.ones_like(a), before, after)          # |W(i)|, clipped
    mirrored_lengths = window_sum(np.ones_like(a), after, before)
    cross = lambda coefficient, inner=mirrored, front=a: coefficient * front * inner   # noqa: E731
    wrong_n = "alpha divided by the wrong n in backward (forward and backward must both use alpha / n, n = size)"
    return [
        (wrong_n, direct - cross(2 * alpha * beta)),
        (wrong_n, direct - cross(2 * alpha * beta / a.shape[1])),
        (wrong_n, direct - cross(2 * alpha * beta / mirrored_lengths)),
        (wrong_n, direct - cross(2 * alpha * beta, window_sum(t / lengths, after, before))),
        ("the missing cross term (only g * s^-beta: every b_i in whose window a_j lies depends on a_j too)", direct),
        ("the window not mirrored for an even n (backward sums over the i whose window holds j: "
         "j - (n-1)//2 ... j + n//2, not forward's window)", direct - cross(2 * alpha * beta / n,
                                                                          window_sum(t, before, after))),
        ("the factor 2 missing from the cross term (d(a^2)/da = 2a)", direct - cross(alpha * beta / n)),
        ("beta missing from the cross term", direct - cross(2 * alpha / n)),
        ("a instead of b in the sum (g_i * a_i / s_i instead of g_i * b_i / s_i)",
         direct - cross(2 * alpha * beta / n, window_sum(g * a / s, after, before))),
        ("adding the cross term instead of subtracting it", direct + cross(2 * alpha * beta / n)),
        ("b_j instead of a_j in front of the sum", direct - cross(2 * alpha * beta / n, front=b)),
    ]


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(1212)
    for shape, n, alpha, beta, k, dtype, about in CASES:
        x = (2 * rng.standard_normal(shape)).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        case = f" (x of shape {x.shape}, LocalResponseNorm(size={n}, alpha={alpha:g}, beta={beta:g}, k={k:g}): {about})"
        x64, g64 = x.astype(np.float64), g.astype(np.float64)
        want_b, saved = lrn_forward(x64, n, alpha, beta, k)
        want = lrn_backward(g64, saved, n, alpha, beta, k)
        mistakes = _mistakes(x64, g64, n, alpha, beta, k)
        numeric = central_differences(x64, g64, n, alpha, beta, k) if dtype == np.float64 else None
        tolerance = dict(rtol=1e-8, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)

        layer = run(NUMBER, "LocalResponseNorm(...)", mydl.LocalResponseNorm, n, alpha, beta, k)
        b = forward_first(NUMBER, layer, "LocalResponseNorm", x.copy(), g.copy())
        if not (isinstance(b, np.ndarray) and b.shape == x.shape
                and np.allclose(b.astype(np.float64), want_b, rtol=1e-4, atol=1e-6)):
            fail(f"LocalResponseNorm.forward (exercise 11) does not give the right output{case}: grade exercise 11 "
                 "first, backward relies on what it keeps")

        given = g.copy()
        da = run(NUMBER, "LocalResponseNorm.backward", layer.backward, given)
        what = f"LocalResponseNorm.backward's result (the gradient with respect to a){case}"
        if not np.array_equal(given, g):
            fail(f"LocalResponseNorm.backward changed its input dy{case}: compute a new array instead")
        array(what, da, x.shape, dtype, "x's shape (N, C, H, W)")
        close(what, da, want, mistakes=mistakes, **tolerance)
        if numeric is not None:
            close(f"{what}, against central differences of the formula", da, numeric, rtol=1e-6, atol=1e-8,
                  mistakes=mistakes)
    return passed(NUMBER, f"LocalResponseNorm's gradient is right on {len(CASES)} cases (odd and even windows, "
                          "fewer channels than the window, large alpha) and agrees with central differences")
