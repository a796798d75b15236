"""Exercise 14: SGD.step, the paper's momentum and weight-decay rule, with a rate that changes."""

import numpy as np

from .common import array, close, fail, load, passed, run

NUMBER = "14"
TITLE = "SGD: the paper's update rule"
WRITES = "SGD.step in mydl/sgd.py"
NOTEBOOK = '07_two_towers.ipynb, section "5. The paper\'s initialisation and update rule, checked"'
MINUTES = 15

SHAPES = [(4, 3), (3,), (2, 3, 2, 2)]
STEPS = 5
DROP_AFTER = 2                  # the rate is divided by 10 after this step, as the paper's schedule does
# (lr, momentum, weight decay): the paper's, then exaggerated ones that make every term large
SETTINGS = [(0.01, 0.9, 0.0005), (0.2, 0.5, 0.1)]


def _paper(w, v, g, lr, m, wd):
    v = m * v - wd * lr * w - lr * g
    return w + v, v


def _rate_outside(w, u, g, lr, m, wd):
    """PyTorch's form: the velocity holds plain gradients, the current rate scales all of it."""
    u = m * u + g + wd * w
    return w - lr * u, u


def _decay_not_by_rate(w, v, g, lr, m, wd):
    v = m * v - wd * w - lr * g
    return w + v, v


def _old_velocity(w, v, g, lr, m, wd):
    return w + v, m * v - wd * lr * w - lr * g


def _sign(w, v, g, lr, m, wd):
    v = m * v - wd * lr * w - lr * g
    return w - v, v


def _no_momentum(w, v, g, lr, m, wd):
    v = -wd * lr * w - lr * g
    return w + v, v


MISTAKES = [
    ("the rate outside the velocity, PyTorch's form v = m v + g + wd w, w -= lr v (momentum applied after weight "
     "decay, before the rate: equal to the paper's rule while the rate is constant, different once it changes)",
     _rate_outside),
    ("weight decay not multiplied by the learning rate", _decay_not_by_rate),
    ("updating w with the old velocity (w += v before v is updated)", _old_velocity),
    ("the sign of the update flipped (w moves up the gradient)", _sign),
    ("a velocity that does not persist between steps (no momentum: v = ... rebinds a name instead of updating "
     "self.velocities in place)", _no_momentum),
]


def _trajectory(rule, start, grads, rates, m, wd):
    """The weights after each step, in float64: trajectory[step][parameter]."""
    w = [s.astype(np.float64) for s in start]
    v = [np.zeros_like(s) for s in w]
    out = []
    for step_grads, lr in zip(grads, rates):
        for i, g in enumerate(step_grads):
            w[i], v[i] = rule(w[i], v[i], g.astype(np.float64), lr, m, wd)
        out.append([a.copy() for a in w])
    return out


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(1414)
    for lr, m, wd in SETTINGS:
        start = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(STEPS)]
        rates = [lr if step < DROP_AFTER else lr / 10 for step in range(STEPS)]
        want = _trajectory(_paper, start, grads, rates, m, wd)
        wrong = [(description, _trajectory(rule, start, grads, rates, m, wd)) for description, rule in MISTAKES]

        params = [run(NUMBER, "Parameter(...)", mydl.Parameter, s.copy()) for s in start]
        arrays = [p.data for p in params]
        defaults = (m, wd) == (0.9, 0.0005)
        kwargs = {} if defaults else {"momentum": m, "weight_decay": wd}
        sgd = run(NUMBER, "SGD(...)", mydl.SGD, params, lr, **kwargs)
        settings = (f"lr {lr:g} for steps 1-{DROP_AFTER}, then {lr / 10:g}; momentum {m:g}, weight decay {wd:g}"
                    f"{' (the defaults)' if defaults else ''}; {len(SHAPES)} float32 parameters")
        for step in range(STEPS):
            sgd.lr = rates[step]                     # what a schedule does between steps
            for p, g in zip(params, grads[step]):
                p.grad[...] = g
            run(NUMBER, "SGD.step", sgd.step)
            for i, p in enumerate(params):
                case = f" (after step {step + 1}; {settings})"
                what = f"parameter {i}'s data (shape {SHAPES[i]})"
                if p.data is not arrays[i]:
                    fail(f"SGD.step replaced {what} with a new array{case}: update it in place (p.data += v), "
                         "code that holds the array (a layer, a view of it) would not see a new one")
                array(f"{what}{case}", p.data, SHAPES[i], np.float32)
                close(what, p.data, want[step][i], rtol=1e-5, atol=1e-6, case=case,
                      mistakes=[(description, trajectory[step][i]) for description, trajectory in wrong])
    return passed(NUMBER, f"SGD.step follows the paper's rule over {STEPS} steps with the rate divided by 10 after "
                          f"step {DROP_AFTER}, with the paper's settings and exaggerated ones, in place, in float32")
