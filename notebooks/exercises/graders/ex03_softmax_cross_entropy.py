"""Exercise 03: SoftmaxCrossEntropy.forward and .backward, stable for logits of +-1000."""

import numbers

import numpy as np

from .common import array, close, fail, is_mistake, load, passed, run

NUMBER = "03"
TITLE = "Softmax cross-entropy, numerically stable"
WRITES = "SoftmaxCrossEntropy.forward and SoftmaxCrossEntropy.backward in mydl/loss.py"
NOTEBOOK = ('06_dropout_and_softmax.ipynb, section "The naive formula overflows", "The stable form: log-sum-exp", '
            '"The gradient"')
MINUTES = 20

OVERFLOW = ("a softmax that overflows (exp of raw logits around 1000 is inf: subtract each row's maximum before exp, "
            "in exp(z) / sum(exp(z)) and in log(sum(exp(z))))")
UNDERFLOW_ALL = ("the naive softmax without each row's maximum subtracted (exp of raw logits around -1000 is 0 in "
                 "every entry, and 0 / 0 is NaN)")
LOG_OF_P = ("the log of a probability that underflows to 0 (log(p) instead of the log-sum-exp form "
            "log p = (z - max) - log(sum(exp(z - max))))")
SUM_LOSS = "the sum over the batch instead of the mean"
NOT_BY_N = "not dividing by the batch size N (the loss is a mean over the batch)"
NO_ONEHOT = "forgetting to subtract the one-hot of the labels"
SIGN = "p - onehot with the sign flipped (onehot - p)"


def _quiet():
    """No floating-point warnings: the naive forms' inf and NaN are named by the checks below, and NumPy's
    warnings would come first (as errors where warnings are errors, as in the tests)."""
    return np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")


def _log_softmax(z):
    """The reference, in float64: log p = (z - max) - log sum exp(z - max)."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _wrong_log_p(z):
    """(mistake, log p as it computes it) in the logits' dtype. log(p) first: where it is not finite the naive
    forms (tried in earlier cases) are not finite either."""
    with _quiet():
        naive = np.log(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))
        naive_lse = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        shifted = np.exp(z - z.max(axis=1, keepdims=True))
        log_of_p = np.log(shifted / shifted.sum(axis=1, keepdims=True))
    naive_name = UNDERFLOW_ALL if z.max() < 0 else OVERFLOW
    return [(LOG_OF_P, log_of_p), (naive_name, naive), (naive_name, naive_lse)]


def _same_nonfinite(got, wrong):
    """Both non-finite in the same places, with the same kind (nan, +inf, -inf)."""
    got, wrong = np.asarray(got, dtype=np.float64), np.asarray(wrong, dtype=np.float64)
    return (got.shape == wrong.shape and not np.all(np.isfinite(got))
            and np.array_equal(np.isnan(got), np.isnan(wrong)) and np.array_equal(np.isposinf(got), np.isposinf(wrong))
            and np.array_equal(np.isneginf(got), np.isneginf(wrong)))


def _finite(what, got, case, mistakes):
    """A non-finite result fails here, named after the mistake that gives the same nan/inf."""
    got64 = np.asarray(got, dtype=np.float64)
    if np.all(np.isfinite(got64)):
        return
    where = "" if got64.ndim == 0 else f" at position {tuple(int(i) for i in np.argwhere(~np.isfinite(got64))[0])}"
    kind = "nan" if np.isnan(got64).any() else "inf"
    message = f"{what} is not finite ({kind}{where}){case}"
    for description, wrong in mistakes:
        if _same_nonfinite(got64, wrong):
            message += f": this is what {description} gives"
            break
    fail(message)


def _cases(rng):
    """(logits, labels, what the case is): moderate logits first, then the ones that break naive code."""
    yield rng.standard_normal((4, 5)) * 2, rng.integers(0, 5, 4), "moderate logits, float64"
    yield rng.standard_normal((1, 3)), np.array([2]), "a batch of one, float64"
    yield (rng.standard_normal((6, 10)) * 3).astype(np.float32), rng.integers(0, 10, 6), "moderate logits, float32"
    yield np.array([[1000.0, 999.0, 998.0], [997.0, 1000.0, 999.5]]), np.array([0, 2]), "logits around +1000, float64"
    yield np.array([[-1000.0, -999.0, -1001.0], [-998.0, -1000.0, -999.0]]), np.array([1, 0]), \
        "logits around -1000, float64"
    yield (np.array([[100.0, 99.0, 98.0], [-100.0, -101.0, -99.5]], dtype=np.float32), np.array([0, 2]),
           "logits around +-100 in float32, where exp overflows above 88.7")
    yield np.array([[-1000.0, 0.0, 1000.0], [0.5, -0.5, 0.0]]), np.array([1, 0]), \
        "a gap of 2000 between logits of one row, float64: the true class's probability is exp(-2000)"


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(303)
    count = 0
    for z, labels, what in _cases(rng):
        count += 1
        n, k = z.shape
        case = f" (logits of shape {z.shape}, {what})"
        tol = dict(rtol=1e-10, atol=1e-12) if z.dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
        z64 = z.astype(np.float64)
        log_p = _log_softmax(z64)
        p, onehot = np.exp(log_p), np.eye(k)[labels]
        loss = -log_p[np.arange(n), labels].mean()
        with _quiet():
            wrong_losses = [(desc, -wrong[np.arange(n), labels].mean()) for desc, wrong in _wrong_log_p(z)]
            wrong_grads = [(desc, (np.exp(wrong) - onehot) / n) for desc, wrong in _wrong_log_p(z)]

        crit = run(NUMBER, "SoftmaxCrossEntropy()", mydl.SoftmaxCrossEntropy)
        given = z.copy()
        with _quiet():
            got = run(NUMBER, "SoftmaxCrossEntropy.forward", crit.forward, given, labels.copy())
        if not np.array_equal(given, z):
            fail(f"SoftmaxCrossEntropy.forward changed the logits in place{case} (logits -= max writes into the "
                 "caller's array): compute a new array instead")
        if isinstance(got, np.ndarray) and got.size == 1 and got.ndim <= 1:
            got = got.reshape(())[()]
        if not isinstance(got, (numbers.Real, np.floating)) or isinstance(got, bool):
            shape = getattr(got, "shape", None)
            fail(f"SoftmaxCrossEntropy.forward returned a {type(got).__name__}"
                 f"{f' of shape {shape}' if shape is not None else ''}{case}: return the mean loss over the batch "
                 "as one number (float(...))")
        _finite("SoftmaxCrossEntropy.forward's loss", got, case, wrong_losses)
        off = abs(float(got) - loss)
        if off > tol["atol"] + tol["rtol"] * abs(loss):
            message = f"SoftmaxCrossEntropy.forward's loss differs from the correct value by {off:.3g}{case}"
            for description, wrong in [(SUM_LOSS, loss * n)] + wrong_losses:
                if is_mistake(float(got), wrong, **tol):
                    message += f": this is what {description} gives"
                    break
            fail(message)

        grad = (p - onehot) / n
        with _quiet():
            got = run(NUMBER, "SoftmaxCrossEntropy.backward", crit.backward)
        what_dz = f"SoftmaxCrossEntropy.backward's result (dL/dlogits){case}"
        if isinstance(got, np.ndarray):
            _finite(what_dz, got, "", wrong_grads)
        dz = array(what_dz, got, (n, k), z.dtype, "the logits' shape (N, K)")
        close("SoftmaxCrossEntropy.backward's result (dL/dlogits)", dz, grad, **tol, case=case,
              mistakes=[(NOT_BY_N, grad * n), (NO_ONEHOT, p / n), (SIGN, -grad),
                        (f"{NOT_BY_N}, and {NO_ONEHOT}", p)])
    return passed(NUMBER, f"the loss and dL/dlogits are right on {count} cases, including logits of +-1000 and "
                          "+-100 in float32, where the naive softmax overflows")
