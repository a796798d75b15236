"""Exercise 11: LocalResponseNorm.forward, across channels, with alpha divided by n (as the 2012 code,
Caffe and PyTorch do)."""

import numpy as np

from minidl.kernels.reference import lrn_forward

from .common import array, close, fail, is_mistake, load, passed, run

NUMBER = "11"
TITLE = "Local response normalisation: forward"
WRITES = "LocalResponseNorm.forward in mydl/lrn.py"
NOTEBOOK = "04_lrn.ipynb, section \"The formula, and the layer\", \"$\\alpha$ or $\\alpha/n$: who does what\""
MINUTES = 20


def _after_relu(rng, shape):
    """What LRN sees in AlexNet: ReLU outputs, zero or positive."""
    return np.maximum(2 * rng.standard_normal(shape), 0).astype(np.float32)


def _signed(rng, shape):
    return (2 * rng.standard_normal(shape)).astype(np.float32)


def _paper(rng, shape):
    """The paper's alpha needs activations in the tens to matter; float64 to check the dtype follows x."""
    return 30 * rng.standard_normal(shape)


# (shape (N, C, H, W), size n, alpha, beta, k, how x is drawn, what the case is). A large alpha makes
# the sum matter: with the paper's 1e-4 most mistakes change the output by less than float32 rounding.
CASES = [
    ((2, 7, 3, 4), 5, 1.0, 0.75, 2.0, _after_relu, "an odd window on ReLU outputs"),
    ((2, 6, 2, 3), 4, 2.0, 0.75, 2.0, _signed, "an even window: 2 channels before, 1 after"),
    ((1, 3, 2, 2), 5, 1.5, 0.75, 1.0, _signed, "3 channels, fewer than the window; a batch of one"),
    ((2, 4, 2, 3), 6, 0.5, 0.5, 1.0, _signed, "an even window wider than the 4 channels"),
    ((1, 8, 3, 3), 5, 1e-4, 0.75, 2.0, _paper, "the paper's settings, float64"),
]


def window_sum(x, before, after):
    """out[:, c] = x[:, c - before] + ... + x[:, c + after], clipped to the channels (float64)."""
    out = np.zeros_like(x)
    for c in range(x.shape[1]):
        out[:, c] = x[:, max(0, c - before):c + after + 1].sum(axis=1)
    return out


def wrapped_sum(x, before, after):
    """The same window wrapped around the channels (np.roll) instead of clipped."""
    channels = np.arange(x.shape[1])
    return sum(x[:, (channels + d) % x.shape[1]] for d in range(-before, after + 1))


def _mistakes(a, n, alpha, beta, k):
    """What typical mistakes give, in float64."""
    sq = a * a
    before, after = n // 2, (n - 1) // 2
    total = window_sum(sq, before, after)
    lengths = window_sum(np.ones_like(a), before, after)      # the clipped window's length at each channel
    out = lambda s: a * s ** -beta                             # noqa: E731
    return [
        ("alpha not divided by n (the formula as the paper prints it; this layer uses alpha / n with n = size)",
         out(k + alpha * total)),
        ("alpha divided by the number of channels C instead of by n = size", out(k + alpha / a.shape[1] * total)),
        ("alpha divided by the clipped window's length at the edge channels instead of by n = size",
         out(k + alpha / lengths * total)),
        ("a window wrapped around the channels (np.roll) instead of clipped at the first and last channel",
         out(k + alpha / n * wrapped_sum(sq, before, after))),
        ("an even window centred the wrong way (n//2 channels after instead of before)",
         out(k + alpha / n * window_sum(sq, after, before))),
        ("the window i - n//2 ... i + n//2 (n + 1 channels for an even n)",
         out(k + alpha / n * window_sum(sq, before, before))),
        ("the sum of a instead of the sum of a^2", out(k + alpha / n * window_sum(a, before, after))),
        ("b = a * s^beta instead of a * s^-beta (beta's sign)", a * (k + alpha / n * total) ** beta),
    ]


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(1111)
    for shape, n, alpha, beta, k, draw, about in CASES:
        x = draw(rng, shape)
        case = f" (x of shape {x.shape}, LocalResponseNorm(size={n}, alpha={alpha:g}, beta={beta:g}, k={k:g}): {about})"
        x64 = x.astype(np.float64)
        want = lrn_forward(x64, n, alpha, beta, k)[0]
        with np.errstate(invalid="ignore", divide="ignore"):      # a negative sum of a: NaN, as the mistake gives
            mistakes = _mistakes(x64, n, alpha, beta, k)
        tolerance = dict(rtol=1e-10, atol=1e-12) if x.dtype == np.float64 else dict(rtol=1e-4, atol=1e-6)

        layer = run(NUMBER, "LocalResponseNorm(...)", mydl.LocalResponseNorm, n, alpha, beta, k)
        given = x.copy()
        b = run(NUMBER, "LocalResponseNorm.forward", layer.forward, given)
        if not np.array_equal(given, x):
            fail(f"LocalResponseNorm.forward changed its input x{case}: compute a new array instead")
        if isinstance(b, np.ndarray) and b.shape == x.shape and b.dtype == x.dtype and not np.all(np.isfinite(b)):
            finite = np.isfinite(b)
            for description, wrong in mistakes:          # NaN where a wrong formula gives NaN, its values elsewhere
                if np.array_equal(finite, np.isfinite(wrong)) and is_mistake(b[finite], wrong[finite], 1e-4, 1e-6):
                    fail(f"LocalResponseNorm.forward's output has non-finite values (NaN or inf){case}: this is "
                         f"what {description} gives")
        array(f"LocalResponseNorm.forward's output{case}", b, x.shape, x.dtype, "x's shape (N, C, H, W)")
        close(f"LocalResponseNorm.forward's output{case}", b, want, mistakes=mistakes, **tolerance)
    return passed(NUMBER, f"LocalResponseNorm's output is right on {len(CASES)} cases (odd and even windows, fewer "
                          "channels than the window, alpha / n, float32 and float64 kept)")
