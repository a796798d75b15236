"""Exercise 13: Dropout, inverted and the paper's, in training and evaluation, forward and backward.

The mask is random (drawn from the layer's own generator), so the grader checks properties: a training
output is 0 or x * scale, about 1 - p of the units are kept, backward uses forward's mask, a new mask
every call, and the evaluation output is exact.
"""

import numpy as np

from .common import array, close, fail, load, passed, run

NUMBER = "13"
TITLE = "Dropout, inverted and the paper's"
WRITES = "Dropout.forward and Dropout.backward in mydl/dropout.py"
NOTEBOOK = ('06_dropout_and_softmax.ipynb, section "1. Dropout", "The expected activation, by Monte-Carlo", '
            '"Backward: the same mask again", "Two trained networks, equivalent up to a scale"')
MINUTES = 20

SHAPE = (200, 1000)             # 200k units: the kept fraction lands within 0.003 of 1 - p (1 sd ~ 0.001)
TOLERANCE = 0.02
CONFIGS = [("inverted", 0.5), ("inverted", 0.2), ("paper", 0.5), ("paper", 0.2)]   # p = 0.2 tells p from 1 - p


def _nonzero(rng, shape):
    """Values away from 0, so that an output of 0 means a dropped unit."""
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(np.float32)


def _position(mask):
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _training_mistakes(mode, p, kept, x):
    keep = lambda scale: np.where(kept, x * scale, 0.0)
    if mode == "inverted":
        return [("scaling the kept units by (1 - p) instead of by 1 / (1 - p)", keep(1 - p)),
                ("not scaling the kept units by 1 / (1 - p) while training", keep(1.0))]
    return [("scaling the kept units by 1 / (1 - p) while training (the paper's form scales at test time only)",
             keep(1 / (1 - p))),
            ("scaling by (1 - p) while training (the paper's form keeps the kept units as they are)", keep(1 - p))]


def _grade_config(mydl, rng, mode, p):
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    case = f" (mode {mode!r}, p = {p}, x of shape {SHAPE}, float32, training)"
    layer = run(NUMBER, "Dropout(...)", mydl.Dropout, p, mode=mode, seed=13)
    x, dy = _nonzero(rng, SHAPE), _nonzero(rng, SHAPE)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)

    given = x.copy()
    y = array(f"Dropout.forward's output{case}", run(NUMBER, "Dropout.forward", layer.forward, given), SHAPE,
              np.float32)
    if not np.array_equal(given, x):
        fail(f"Dropout.forward changed its input x in place{case}: compute a new array instead")
    kept = y != 0
    fraction = float(kept.mean())
    if abs(fraction - (1 - p)) > TOLERANCE:
        message = (f"Dropout.forward kept {fraction:.1%} of the units{case}; each unit should be kept with "
                   f"probability 1 - p")
        if fraction == 1.0:
            message += ": it dropped none (does it read self.training the right way round?)"
        elif abs(fraction - p) <= TOLERANCE:
            message += ": this is what p used as the keep probability gives (p is the probability of dropping)"
        fail(message)
    if np.array_equal(kept[0], kept[1]) and np.array_equal(kept[0], kept[-1]):
        fail(f"Dropout.forward dropped the same units in every example of the batch{case}: this is what one mask "
             "for the whole batch (drawn with shape x.shape[1:]) gives; draw a mask shaped like x")
    close(f"Dropout.forward's kept units (each output is 0 or x * scale){case}", y, kept * x64 * scale,
          rtol=1e-6, atol=0, mistakes=_training_mistakes(mode, p, kept, x64))

    dx = array(f"Dropout.backward's result (dx){case}", run(NUMBER, "Dropout.backward", layer.backward, dy.copy()),
               SHAPE, np.float32)
    other = (dx != 0) != kept
    if other.any():
        pos = _position(other)
        message = (f"Dropout.backward's dx is {'nonzero' if dx[pos] != 0 else '0'} at position {pos}, where forward "
                   f"{'dropped' if not kept[pos] else 'kept'} the unit{case}")
        if other.mean() > 0.01:
            message += ": this is what a new mask in backward gives (use the mask of the forward pass, kept from it)"
        fail(message)
    close(f"Dropout.backward's result (dx){case}", dx, kept * dy64 * scale, rtol=1e-6, atol=0,
          mistakes=[(f"backward without the factor {scale:g} of forward", kept * dy64)] if scale != 1 else [])

    y2 = run(NUMBER, "Dropout.forward", layer.forward, x.copy())
    kept2 = array(f"Dropout.forward's output{case}", y2, SHAPE, np.float32) != 0
    if np.array_equal(kept, kept2):
        fail(f"Dropout.forward dropped the same units in two calls in a row{case}: this is what the same mask "
             "every call gives (a generator made with a fixed seed inside forward, or a mask kept from the first "
             "call); draw a new mask from self.rng on every forward")

    # evaluation: exact, deterministic, no unit dropped; backward takes the same constant
    case = f" (mode {mode!r}, p = {p}, x of shape {SHAPE}, float32, evaluation: after eval())"
    layer.eval()
    ye = array(f"Dropout.forward's output{case}", run(NUMBER, "Dropout.forward", layer.forward, x.copy()), SHAPE,
               np.float32)
    zeros = float((ye == 0).mean())
    if zeros > 0.01:
        fail(f"Dropout.forward's output is 0 at {zeros:.1%} of the units{case}: this is what dropping units in "
             "evaluation mode gives (after eval(), self.training is False: use every unit)")
    factor = 1.0 if mode == "inverted" else 1 - p
    if mode == "paper":
        mistakes = [("not scaling by (1 - p) at test time in the paper's form", x64)]
    else:
        mistakes = [("scaling by (1 - p) at test time (the inverted form is the identity at test time)",
                     x64 * (1 - p)),
                    ("scaling by 1 / (1 - p) at test time (the inverted form is the identity at test time)",
                     x64 / (1 - p))]
    close(f"Dropout.forward's output{case}", ye, x64 * factor, rtol=1e-6, atol=0, mistakes=mistakes)
    dxe = array(f"Dropout.backward's result (dx){case}", run(NUMBER, "Dropout.backward", layer.backward,
                                                               dy.copy()), SHAPE, np.float32)
    close(f"Dropout.backward's result (dx){case}", dxe, dy64 * factor, rtol=1e-6, atol=0,
          mistakes=[("the mask of the last training forward in backward (backward must use the scale of the "
                     "forward before it)", kept2 * dy64 * scale)])
    layer.train()


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(1313)
    for mode, p in CONFIGS:
        _grade_config(mydl, rng, mode, p)

    # the mask comes from the layer's own generator: two layers made with one seed drop the same units
    x = _nonzero(rng, (2, 3, 4, 5))
    case = f" (two Dropout(0.5, seed=7) layers, x of shape {x.shape}, float32, training)"
    first, second = (run(NUMBER, "Dropout(...)", mydl.Dropout, 0.5, seed=7) for _ in range(2))
    a = array(f"Dropout.forward's output{case}", run(NUMBER, "Dropout.forward", first.forward, x.copy()), x.shape,
              np.float32)
    b = array(f"Dropout.forward's output{case}", run(NUMBER, "Dropout.forward", second.forward, x.copy()), x.shape,
              np.float32)
    if not np.array_equal(a != 0, b != 0):
        fail(f"two Dropout layers made with the same seed dropped different units{case}: draw the mask from "
             "self.rng (made from the seed), not from np.random's global generator")
    return passed(NUMBER, "both forms of dropout are right in training (0 or x * scale, about 1 - p kept, a new mask "
                          "per call and per example) and in evaluation, backward uses forward's mask and scale, "
                          "float32 is kept and the seed makes the masks reproducible")
