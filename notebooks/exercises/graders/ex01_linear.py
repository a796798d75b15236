"""Exercise 01: Linear.forward and Linear.backward."""

import numpy as np

from .common import array, close, fail, load, passed, run

NUMBER = "01"
TITLE = "Linear: forward and backward"
WRITES = "Linear.forward and Linear.backward in mydl/linear.py"
NOTEBOOK = "01_layers_and_gradcheck.ipynb, section \"Linear\""
MINUTES = 15

CASES = [(4, 3, 2), (1, 5, 7), (16, 32, 10)]      # (N, in, out)


def grade(mydl_path=None):
    mydl = load(NUMBER, mydl_path)
    rng = np.random.default_rng(101)
    for n, fin, fout in CASES:
        case = f" (x of shape {(n, fin)}, Linear({fin}, {fout}))"
        layer = run(NUMBER, "Linear(...)", mydl.Linear, fin, fout)
        w = rng.standard_normal((fout, fin)).astype(np.float32)
        b = rng.standard_normal(fout).astype(np.float32)
        layer.weight.data[...] = w
        layer.bias.data[...] = b
        x = rng.standard_normal((n, fin)).astype(np.float32)
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        given = x.copy()
        y = array(f"Linear.forward's output{case}", run(NUMBER, "Linear.forward", layer.forward, given),
                  (n, fout), np.float32, "(N, out)")
        if not np.array_equal(given, x):
            fail(f"Linear.forward changed its input x{case}: compute a new array instead")
        close(f"Linear.forward's output{case}", y, x64 @ w64.T + b, rtol=1e-4, atol=1e-5, case="",
              mistakes=[("forgetting the bias", x64 @ w64.T)])

        dy = rng.standard_normal((n, fout)).astype(np.float32)
        dy64 = dy.astype(np.float64)
        dx = array(f"Linear.backward's result (the gradient with respect to x){case}",
                   run(NUMBER, "Linear.backward", layer.backward, dy.copy()), (n, fin), np.float32, "(N, in)")
        close(f"the gradient with respect to x{case}", dx, dy64 @ w64, rtol=1e-4, atol=1e-5)
        dw, db = layer.weight.grad, layer.bias.grad
        array(f"weight.grad{case}", dw, (fout, fin), np.float32, "(out, in), the weight's shape")
        close(f"weight.grad (the gradient with respect to W){case}", dw, dy64.T @ x64, rtol=1e-4, atol=1e-5,
              mistakes=[("dividing by the batch size (the loss already averages over the batch)",
                         dy64.T @ x64 / n)])
        array(f"bias.grad{case}", db, (fout,), np.float32, "(out,)")
        close(f"bias.grad (the gradient with respect to b){case}", db, dy64.sum(axis=0), rtol=1e-4, atol=1e-5,
              mistakes=[("the mean over the batch instead of the sum", dy64.mean(axis=0))])

        # a second forward and backward must add to the grads, not replace them
        run(NUMBER, "Linear.forward", layer.forward, x.copy())
        run(NUMBER, "Linear.backward", layer.backward, dy.copy())
        close(f"weight.grad after two backward passes{case}", layer.weight.grad, 2 * (dy64.T @ x64),
              rtol=1e-4, atol=1e-5,
              mistakes=[("overwriting .grad instead of adding to it (= instead of +=)", dy64.T @ x64)])
        close(f"bias.grad after two backward passes{case}", layer.bias.grad, 2 * dy64.sum(axis=0),
              rtol=1e-4, atol=1e-5,
              mistakes=[("overwriting .grad instead of adding to it (= instead of +=)", dy64.sum(axis=0))])
    return passed(NUMBER, f"Linear's output, dx, weight.grad and bias.grad are right on {len(CASES)} shapes, "
                          "and backward adds to .grad")
