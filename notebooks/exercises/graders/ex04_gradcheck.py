"""Exercise 04: numerical_gradient (central differences) and check_layer (a random upstream gradient)."""

import numbers

import numpy as np

from .common import array, close, fail, load, passed, run

NUMBER = "04"
TITLE = "Gradient checking by central differences"
WRITES = "numerical_gradient and check_layer in mydl/gradcheck.py"
NOTEBOOK = ('01_layers_and_gradcheck.ipynb, section "Central differences", '
            '"Why the upstream gradient must be random"')
MINUTES = 25

TINY, LARGE = 1e-6, 1e-2        # a correct backward checks at ~1e-9 in float64; these bugs at 0.1 and more
EPS = 1e-3                      # large enough that a one-sided difference (error ~ eps) stands out


# -- numerical_gradient: test functions with known gradients, in float64 ---------------------------

def _function_cases(rng):
    """(f, x, exact gradient, eps or None for the default, what)."""
    c = rng.standard_normal((2, 3, 4))
    d = rng.standard_normal((2, 3, 4)) / 3
    # not separable (the square couples every entry), so an entry left perturbed changes later ones
    f1 = lambda x: float(np.sum(c * np.sin(x)) + 0.5 * np.sum(d * x) ** 2)
    x1 = rng.standard_normal((2, 3, 4))
    yield (f1, x1, c * np.cos(x1) + np.sum(d * x1) * d, EPS,
           "f(x) = sum(C sin x) + (sum(D x))^2 / 2, x of shape (2, 3, 4)")
    f2 = lambda v: float(np.log(np.sum(np.exp(v))))
    v = rng.standard_normal(7)
    yield f2, v, np.exp(v) / np.exp(v).sum(), None, "f(v) = log(sum(exp(v))), v of shape (7,), the default eps"
    a = rng.standard_normal((3, 3))
    f3 = lambda x: float(np.sum(np.tanh(x @ a) ** 2))
    x3 = rng.standard_normal((2, 3))
    t = np.tanh(x3 @ a)
    yield f3, x3, (2 * t * (1 - t ** 2)) @ a.T, None, "f(x) = sum(tanh(x A)^2), x of shape (2, 3), the default eps"


def _by_differences(f, x, eps, kind):
    """What a learner's loop gives: the right one and the typical wrong ones."""
    work = x.astype(np.float64)
    flat = work.reshape(-1)
    grad = np.zeros(work.size)
    base = f(work)
    for i in range(work.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(work)
        flat[i] = old - eps
        down = f(work)
        if kind != "not restored":
            flat[i] = old
        if kind == "one-sided":
            grad[i] = (up - base) / eps
        elif kind == "by eps":
            grad[i] = (up - down) / eps
        else:
            grad[i] = (up - down) / (2 * eps)
    return grad.reshape(x.shape)


def _shaped(f, shape):
    """f, refusing an argument that is not shaped like x (the docstring promises f one shaped like x)."""
    def checked(v):
        if getattr(v, "shape", None) != shape:
            fail(f"numerical_gradient called f with {type(v).__name__} of shape {getattr(v, 'shape', None)}, not "
                 f"x's shape {shape}: perturb a copy of x shaped like x (index it through a flat view)")
        return f(v)
    return checked


def _grade_numerical_gradient(mydl, rng):
    for f, x, exact, eps, what in _function_cases(rng):
        case = f" ({what})"
        kwargs = {} if eps is None else {"eps": eps}
        e = 1e-6 if eps is None else eps
        mistakes = [("a one-sided difference (f(x + eps) - f(x)) / eps", _by_differences(f, x, e, "one-sided")),
                    ("dividing by eps instead of 2 * eps", _by_differences(f, x, e, "by eps")),
                    ("not restoring the perturbed entry before the next one", _by_differences(f, x, e, "not restored"))]
        given = x.copy()
        got = run(NUMBER, "numerical_gradient", mydl.numerical_gradient, _shaped(f, x.shape), given, **kwargs)
        grad = array(f"numerical_gradient's result{case}", got, x.shape, np.float64, "x's shape")
        tol = dict(rtol=1e-6, atol=2e-6) if eps else dict(rtol=1e-6, atol=1e-8)
        close("numerical_gradient's result", grad, exact, **tol, case=case, mistakes=mistakes)
        if not np.array_equal(given, x):
            where = tuple(int(i) for i in np.argwhere(given != x)[0])
            size = float(np.abs(given - x).max())
            fail(f"numerical_gradient changed x{case}: entry {where} is off by up to {size:.3g} after the call: "
                 + ("restore each entry to the value you saved (adding eps and subtracting it again leaves rounding "
                    "errors), or perturb a copy" if size < e / 10 else "restore each entry, or perturb a copy"))


# -- check_layer: small layers built here on the learner's Layer and Parameter ----------------------

def _test_layers(core):
    Layer, Parameter = core.Layer, core.Parameter

    class Dense(Layer):
        """y = tanh(x W^T + b), with a correct backward."""

        def __init__(self, w, b):
            self.weight = Parameter(w.copy())
            self.bias = Parameter(b.copy())

        def forward(self, x):
            self.x = x
            self.y = np.tanh(x @ self.weight.data.T + self.bias.data)
            return self.y

        def backward(self, dy):
            dz = dy * (1 - self.y ** 2)
            self.weight.grad += dz.T @ self.x
            self.bias.grad += dz.sum(axis=0)
            return dz @ self.weight.data

    class WrongWeight(Dense):
        """weight.grad leaves out tanh' (dy where dz belongs); dx and bias.grad are right."""

        def backward(self, dy):
            dz = dy * (1 - self.y ** 2)
            self.weight.grad += dy.T @ self.x
            self.bias.grad += dz.sum(axis=0)
            return dz @ self.weight.data

    class OnesOnly(Dense):
        """y = x W^T + b, whose dx replaces each row of dy by its mean: dy W when dy is all ones, wrong otherwise."""

        def forward(self, x):
            self.x = x
            return x @ self.weight.data.T + self.bias.data

        def backward(self, dy):
            self.weight.grad += dy.T @ self.x
            self.bias.grad += dy.sum(axis=0)
            return dy.mean(axis=1, keepdims=True) * self.weight.data.sum(axis=0)

    return Dense, WrongWeight, OnesOnly


def _check(check_layer, layer, x, case):
    """check_layer's result for ``layer``, after checking that it left x and the parameters as they were."""
    saved = {name: p.data.copy() for name, p in layer.named_parameters()}
    given = x.copy()
    errors = run(NUMBER, "check_layer", check_layer, layer, given)
    if not np.array_equal(given, x):
        fail(f"check_layer changed its input x{case}: work on a copy")
    for name, p in layer.named_parameters():
        if p.data.shape != saved[name].shape or not np.array_equal(p.data, saved[name]):
            fail(f"check_layer changed the layer's parameter {name!r}{case}: put back each parameter's data as "
                 "you found it (the model is still in use after the check)")
    if not isinstance(errors, dict):
        fail(f"check_layer returned a {type(errors).__name__}{case}: return a dict {{'x': error, 'weight': error, "
             "...}}, one entry for the input and one per parameter name")
    want = ["x"] + list(saved)
    if sorted(errors) != sorted(want):
        fail(f"check_layer returned the keys {sorted(errors)}{case}; they should be {sorted(want)} (the input, "
             "then each name from layer.named_parameters())")
    for name in want:
        e = errors[name]
        if isinstance(e, np.ndarray) and e.size == 1:
            e = e.reshape(())[()]
        if not isinstance(e, (numbers.Real, np.floating)) or not np.isfinite(float(e)):
            fail(f"check_layer's error for {name!r} is {e!r}{case}: it should be one finite number, the "
                 "relative error")
        errors[name] = float(e)
    return errors


def _grade_check_layer(mydl, rng):
    Dense, WrongWeight, OnesOnly = _test_layers(mydl.core)
    n, fin, fout = 3, 4, 3
    w, b = rng.standard_normal((fout, fin)), rng.standard_normal(fout) * 0.5
    x = rng.standard_normal((n, fin))
    shapes = f"x of shape {(n, fin)}, float64, weight {(fout, fin)}, bias {(fout,)}"

    case = f" (a correct layer y = tanh(x W^T + b), {shapes})"
    errors = _check(mydl.check_layer, Dense(w, b), x, case)
    for name, e in errors.items():
        if not e < TINY:
            hint = ""
            if name != "x" and abs(e - 1) < 1e-6:
                hint = (": a relative error of exactly 1 means a numerical gradient of zero, what a loss function "
                        "that ignores the perturbed array numerical_gradient passes it gives (put it into the "
                        "parameter's data before forward)")
            fail(f"check_layer reports a relative error of {e:.2g} for {name!r} on a layer whose backward is "
                 f"correct{case}; it should be below {TINY:g}{hint}")

    case = f" (a correct layer y = tanh(x W^T + b) whose grads held other values before the check, {shapes})"
    layer = Dense(w, b)
    for p in layer.parameters():
        p.grad[...] = rng.standard_normal(p.grad.shape)
    errors = _check(mydl.check_layer, layer, x, case)
    for name, e in errors.items():
        if not e < TINY:
            fail(f"check_layer reports a relative error of {e:.2g} for {name!r} on a correct layer{case}, "
                 "while it reported a tiny one with the grads at zero: this is what not clearing the parameters' "
                 "grads before the backward it compares gives (backward adds to .grad)")

    case = f" (a layer whose weight.grad leaves out tanh', {shapes})"
    errors = _check(mydl.check_layer, WrongWeight(w, b), x, case)
    if not errors["weight"] > LARGE:
        fail(f"check_layer reports a relative error of {errors['weight']:.2g} for 'weight' on a layer whose weight "
             f"gradient is wrong{case}; the error should be large (above {LARGE:g})")
    for name in ("x", "bias"):
        if not errors[name] < TINY:
            fail(f"check_layer reports a relative error of {errors[name]:.2g} for {name!r}{case}, whose {name} "
                 f"gradient is correct; it should be below {TINY:g}")

    case = (f" (a layer y = x W^T + b whose backward replaces each row of dy by its mean: right only for an "
            f"upstream gradient of ones, {shapes})")
    errors = _check(mydl.check_layer, OnesOnly(w, b), x, case)
    if not errors["x"] > LARGE:
        fail(f"check_layer reports a relative error of {errors['x']:.2g} for 'x'{case}; the error should be large "
             f"(above {LARGE:g})" + (": this is what an upstream gradient of ones (L = sum(y)) gives, which sees "
                                    "only the sums of the derivatives: draw G at random" if errors["x"] < TINY else ""))


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(404)
    _grade_numerical_gradient(mydl, rng)
    _grade_check_layer(mydl, rng)
    return passed(NUMBER, "numerical_gradient matches three known gradients and leaves x alone; check_layer passes "
                          "a correct layer, clears the grads, catches a wrong weight gradient and a backward that "
                          "is right only for an upstream gradient of ones, and leaves the parameters as they were")
