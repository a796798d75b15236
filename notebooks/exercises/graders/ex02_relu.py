"""Exercise 02: ReLU.forward and ReLU.backward."""

import numpy as np

from .common import array, close, fail, load, passed, run

NUMBER = "02"
TITLE = "ReLU: forward and backward"
WRITES = "ReLU.forward and ReLU.backward in mydl/relu.py"
NOTEBOOK = "01_layers_and_gradcheck.ipynb, section \"ReLU\""
MINUTES = 10

# shapes of every rank a ReLU meets (after Linear, after Conv2D), a batch of one, and float64 (gradient checks)
CASES = [((2, 6), np.float32), ((1, 7), np.float32), ((3, 4, 5), np.float32), ((2, 3, 4, 4), np.float32),
         ((5, 8), np.float64)]

AT_ZERO = "passing the gradient where x >= 0 (the derivative at exactly x == 0 is taken as 0: use x > 0)"
FROM_DY = "a mask taken from dy instead of from forward's input (dy > 0 says nothing about x)"


def _input(rng, shape, dtype):
    """Random values with exact zeros among them: the kink is where >= and > differ."""
    x = rng.standard_normal(shape)
    x.reshape(-1)[::4] = 0.0
    return x.astype(dtype)


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(202)
    for shape, dtype in CASES:
        name = np.dtype(dtype).name
        case = f" (x of shape {shape}, {name}, some entries exactly 0)"
        relu = run(NUMBER, "ReLU()", mydl.ReLU)
        x = _input(rng, shape, dtype)
        x64 = x.astype(np.float64)
        given = x.copy()
        y = array(f"ReLU.forward's output{case}", run(NUMBER, "ReLU.forward", relu.forward, given), shape, dtype)
        if not np.array_equal(given, x):
            fail(f"ReLU.forward changed its input x in place{case} (np.maximum(x, 0, out=x) or x[x < 0] = 0 "
                 "write into the caller's array): compute a new array instead")
        close(f"ReLU.forward's output{case}", y, np.maximum(x64, 0), rtol=0, atol=0)

        dy = rng.standard_normal(shape).astype(dtype)
        dy64 = dy.astype(np.float64)
        dx = array(f"ReLU.backward's result (the gradient with respect to x){case}",
                   run(NUMBER, "ReLU.backward", relu.backward, dy.copy()), shape, dtype)
        close(f"ReLU.backward's result (the gradient with respect to x){case}", dx, dy64 * (x64 > 0),
              rtol=0, atol=0, mistakes=[(AT_ZERO, dy64 * (x64 >= 0)), (FROM_DY, dy64 * (dy64 > 0))])

    # two ReLUs in one network: each backward must use the mask of its own forward
    shape = (3, 5)
    case = (f" (two ReLU layers, x of shape {shape}: first.forward(a), second.forward(b), second.backward, "
            "first.backward)")
    first, second = run(NUMBER, "ReLU()", mydl.ReLU), run(NUMBER, "ReLU()", mydl.ReLU)
    a, b = _input(rng, shape, np.float32), _input(rng, shape, np.float32)
    run(NUMBER, "ReLU.forward", first.forward, a.copy())
    run(NUMBER, "ReLU.forward", second.forward, b.copy())
    dy = rng.standard_normal(shape).astype(np.float32)
    dy64 = dy.astype(np.float64)
    dxb = run(NUMBER, "ReLU.backward", second.backward, dy.copy())
    dxa = run(NUMBER, "ReLU.backward", first.backward, dy.copy())
    shared = "a mask left by the other ReLU's forward (one mask shared by every ReLU: keep it on self, the instance)"
    close(f"the first ReLU's backward result{case}", array(f"the first ReLU's backward result{case}", dxa, shape),
          dy64 * (a > 0), rtol=0, atol=0, mistakes=[(shared, dy64 * (b > 0))])
    close(f"the second ReLU's backward result{case}", array(f"the second ReLU's backward result{case}", dxb, shape),
          dy64 * (b > 0), rtol=0, atol=0)

    # one ReLU called twice before its backward (as when a batch is re-run): the latest forward counts
    relu = run(NUMBER, "ReLU()", mydl.ReLU)
    run(NUMBER, "ReLU.forward", relu.forward, a.copy())
    run(NUMBER, "ReLU.forward", relu.forward, b.copy())
    dx = run(NUMBER, "ReLU.backward", relu.backward, dy.copy())
    close(f"ReLU.backward's result after forward(a) then forward(b) on one layer (x of shape {shape})",
          array("ReLU.backward's result", dx, shape), dy64 * (b > 0), rtol=0, atol=0,
          mistakes=[("the mask of the first forward call, not the latest", dy64 * (a > 0))])
    return passed(NUMBER, f"ReLU's output and dx are right on {len(CASES)} shapes with exact zeros (dx = 0 at x = 0), "
                          "dtypes kept, x left unchanged, each layer uses its own latest mask")
