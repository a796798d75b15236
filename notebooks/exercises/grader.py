"""Graders for the exercises in this folder.

Each ``check_*`` function takes the function(s) you wrote, runs them on
random inputs, and compares the result with minidl's own implementation
(the reference kernels, the layers, ``minidl.SGD``) and, for gradients,
with central differences (``minidl.gradcheck``, in float64). On success it
prints one line starting with "PASSED"; on the first thing that is wrong it
raises an AssertionError whose message says what was wrong and by how much.
A function that still raises NotImplementedError (the blank exercise)
fails with an AssertionError too: nothing passes by default.
"""

from __future__ import annotations

import functools
import time

import numpy as np

import minidl as md
from minidl import runtime
from minidl.kernels import reference

__all__ = [
    "check_col2im", "check_maxpool_backward", "check_lrn_backward", "check_sgd_by_hand", "check_sgd_step",
    "check_two_tower_net", "check_two_tower_training", "load_fashion_subset",
    "TRAIN_SIZE", "TEST_SIZE", "ACCURACY_THRESHOLD",
]


# -- helpers ------------------------------------------------------------------

def _call(fn, *args, **kwargs):
    """Call the learner's function; a blank stub fails as an AssertionError, not as a crash."""
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        raise AssertionError(f"{name} still raises NotImplementedError: fill in the cell tagged "
                             "'exercise' above, run it, then run this cell again") from exc


def _array(out, name, shape):
    """The result as a NumPy array of the expected shape (or a clear failure)."""
    assert out is not None, f"{name} returned None: return the result instead of only computing it"
    out = np.asarray(out)
    assert out.shape == tuple(shape), f"{name} returned shape {out.shape}, expected {tuple(shape)}"
    assert np.all(np.isfinite(out)), f"{name} returned NaN or infinite values"
    return out


def _max_error(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def _close(a, b, rtol):
    """Equal up to ``rtol`` relative to the size of ``b``."""
    return _max_error(a, b) <= rtol * max(1.0, float(np.abs(b).max()))


class _FunctionLayer:
    """A given forward and the learner's backward, shaped as a layer for ``minidl.gradcheck``."""

    def __init__(self, forward, backward):
        self._forward, self._backward, self._x = forward, backward, None

    def named_parameters(self):
        return iter(())

    def forward(self, x):
        self._x = x
        return self._forward(x)

    def backward(self, dy):
        return self._backward(dy, self._x)


def _passed(text):
    print("PASSED: " + text)


# -- 01: col2im ---------------------------------------------------------------

# (x_shape, kh, kw, stride, pad, hint if this case fails after the ones before it passed)
COL2IM_CASES = [
    ((2, 3, 4, 4), 2, 2, 2, 0, "; here the windows neither overlap nor leave gaps, so every pixel comes from "
                               "exactly one entry of col: check the order of col's rows (c, i, j) and columns "
                               "(n, oy, ox)"),
    ((2, 3, 5, 5), 3, 3, 1, 0, "; the windows overlap here, so a pixel seen by several windows must receive "
                               "the sum of their entries (+=, not =)"),
    ((1, 2, 7, 7), 3, 3, 2, 1, "; with padding, add into a padded image of (H + 2 pad, W + 2 pad) and crop "
                               "the border off at the end"),
    ((2, 2, 6, 5), 3, 3, 2, 0, "; the last row of this image is seen by no window and must stay 0"),
    ((1, 2, 6, 7), 2, 3, 1, 1, "; kh and kw differ here: rows of col run over (c, i < kh, j < kw)"),
    ((1, 3, 11, 11), 5, 5, 3, 2, "; stride 3 with a 5x5 kernel and padding 2"),
    ((1, 1, 9, 9), 2, 2, 3, 0, "; the stride is larger than the kernel here, so some pixels are in no window "
                               "and must stay 0"),
]


def check_col2im(col2im):
    """``col2im(col, x_shape, kh, kw, stride, pad)`` is the adjoint of im2col, on seven cases."""
    rng = np.random.default_rng(2012)
    for x_shape, kh, kw, stride, pad, hint in COL2IM_CASES:
        n, c, h, w = x_shape
        oh, ow = reference.conv_out_size(h, kh, stride, pad), reference.conv_out_size(w, kw, stride, pad)
        case = f"x_shape={x_shape}, kh={kh}, kw={kw}, stride={stride}, pad={pad}"
        col = rng.standard_normal((c * kh * kw, n * oh * ow))
        out = _array(_call(col2im, col.copy(), x_shape, kh, kw, stride, pad), f"col2im({case})", x_shape)
        want = reference.col2im(col, x_shape, kh, kw, stride, pad)
        err = _max_error(out, want)
        # the adjoint identity: <im2col(x), col> = <x, col2im(col)> for every x
        x = rng.standard_normal(x_shape)
        lhs, rhs = float(np.sum(reference.im2col(x, kh, kw, stride, pad) * col)), float(np.sum(x * out))
        assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs)), (
            f"col2im is not the adjoint of im2col for {case}: <im2col(x), col> = {lhs:.6f} but "
            f"<x, col2im(col)> = {rhs:.6f} (max error against minidl's reference col2im {err:.2e}){hint}")
        assert err <= 1e-12 * max(1.0, float(np.abs(want).max())), (
            f"col2im differs from minidl.kernels.reference.col2im for {case}: max error {err:.2e}{hint}")
    _passed(f"col2im matches minidl's reference and satisfies <im2col(x), c> = <x, col2im(c)> "
            f"on {len(COL2IM_CASES)} cases (overlap, padding, gaps, kh != kw).")


# -- 02: max-pooling backward -------------------------------------------------

# (x_shape, kernel_size, stride)
MAXPOOL_CASES = [
    ((1, 2, 6, 6), 2, 2),        # no overlap: the easy case first
    ((2, 2, 7, 7), 3, 2),        # AlexNet's overlapping 3x3/2
    ((1, 3, 8, 8), 3, 2),        # the last row and column are in no window
    ((2, 1, 13, 13), 3, 2),      # conv5's 13x13 -> 6x6
    ((1, 1, 9, 9), 3, 1),        # heavy overlap: an input can win up to 9 windows
]


def _ties_free(rng, shape):
    """Distinct values 1/size apart: no window holds a tie, and eps = 1e-6 moves no maximum."""
    size = int(np.prod(shape))
    return rng.permutation(size).reshape(shape).astype(np.float64) / size - 0.5


def _maxpool_hint(dx, want, x, k, stride):
    """What the difference looks like, in words."""
    layer = md.MaxPool2D(k, stride)
    layer.forward(x)
    wins = layer.backward(np.ones(layer.switches.shape))    # how many windows each input wins
    wrong = np.abs(dx - want) > 1e-9
    if wrong.any() and np.all(wins[wrong] > 1):
        return ("; it is wrong only at inputs that are the maximum of two or more overlapping windows: "
                "add up (+=) what every window sends there")
    return "; each window's gradient must go, whole, to the position of that window's maximum"


def check_maxpool_backward(maxpool_backward):
    """``maxpool_backward(dy, x, kernel_size, stride) -> dx``, by gradcheck and against md.MaxPool2D."""
    rng = np.random.default_rng(5)
    for x_shape, k, stride in MAXPOOL_CASES:
        case = f"x of shape {x_shape}, kernel_size={k}, stride={stride}"
        x = _ties_free(rng, x_shape)
        layer = md.MaxPool2D(k, stride)
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape)
        want = layer.backward(dy)
        dx = _array(_call(maxpool_backward, dy.copy(), x.copy(), k, stride), f"maxpool_backward({case})", x_shape)
        err = _max_error(dx, want)
        assert abs(dx.sum() - dy.sum()) <= 1e-9 * max(1.0, np.abs(dy).sum()), (
            f"for {case}, dx sums to {dx.sum():.6f} but dy to {dy.sum():.6f} (max error against MaxPool2D "
            f"{err:.2e}): every output passes all of its gradient to one input, so nothing may be lost"
            + _maxpool_hint(dx, want, x, k, stride))
        wrapped = _FunctionLayer(lambda inp: reference.maxpool_forward(inp, k, stride)[0],
                                 lambda g, inp: np.asarray(_call(maxpool_backward, g, inp, k, stride)))
        rel = md.gradcheck(wrapped, x, seed=1)["input"]
        assert rel < 1e-7, (f"gradcheck fails for {case}: relative error {rel:.1e} against central differences "
                            f"(max error against MaxPool2D {err:.2e})" + _maxpool_hint(dx, want, x, k, stride))
        assert err <= 1e-12, f"maxpool_backward differs from md.MaxPool2D.backward for {case}: max error {err:.2e}"
    # float32 in, float32 out, as the layers run
    x = _ties_free(rng, (2, 3, 13, 13)).astype(np.float32)
    layer = md.MaxPool2D(3, 2)
    dy = rng.standard_normal(layer.forward(x).shape).astype(np.float32)
    dx = _array(_call(maxpool_backward, dy, x, 3, 2), "maxpool_backward (float32)", x.shape)
    err = _max_error(dx, layer.backward(dy))
    assert err <= 1e-5, f"maxpool_backward differs from md.MaxPool2D.backward on float32 input: max error {err:.2e}"
    _passed(f"maxpool_backward passes gradcheck and matches md.MaxPool2D on {len(MAXPOOL_CASES) + 1} cases, "
            "overlapping windows included.")


# -- 03: local response normalisation backward --------------------------------

# (x_shape, size, alpha, beta, k, scale of the activations)
LRN_CASES = [
    ((2, 8, 3, 3), 5, 1e-4, 0.75, 2.0, 30.0),     # the paper's settings, on activations big enough to matter
    ((1, 6, 2, 2), 3, 2.0, 0.75, 1.0, 1.0),       # strong normalisation: the cross term is large
    ((1, 7, 2, 3), 4, 1.0, 0.5, 1.0, 1.0),        # even size: the window is not symmetric
    ((2, 3, 2, 2), 5, 0.5, 0.75, 2.0, 2.0),       # fewer channels than the window: clipped on both sides
]


def _lrn_variant(dy, a, size, alpha, beta, k, cross=True, alpha_over_n=True, mirrored=True):
    """The LRN input gradient, or one of the ways it is commonly got wrong."""
    scale = alpha / size if alpha_over_n else alpha
    s = k + scale * reference.channel_window_sum(a * a, size // 2, (size - 1) // 2)
    b = a * s ** -beta
    direct = dy * s ** -beta
    if not cross:
        return direct
    before, after = ((size - 1) // 2, size // 2) if mirrored else (size // 2, (size - 1) // 2)
    return direct - 2 * scale * beta * a * reference.channel_window_sum(dy * b / s, before, after)


def _lrn_hint(da, dy, a, size, alpha, beta, k):
    variants = [
        (dict(cross=False), "; it equals the direct term g_j s_j^-beta alone: b_i also depends on a_j through "
                            "s_i for every i whose window holds j (the cross term)"),
        (dict(alpha_over_n=False), "; it is the gradient with alpha in place of alpha/n (the paper's printed "
                                   "formula): minidl divides alpha by n, as cuda-convnet, Caffe and PyTorch do"),
        (dict(mirrored=False), "; for an even n the cross term's window is mirrored: the i whose window holds j "
                               "run from j - (n-1)//2 to j + n//2"),
    ]
    for kwargs, hint in variants:
        other = _lrn_variant(dy, a, size, alpha, beta, k, **kwargs)
        if not _close(other, _lrn_variant(dy, a, size, alpha, beta, k), 1e-12) and _close(da, other, 1e-9):
            return hint
    return ("; da_j = g_j s_j^-beta - (2 alpha beta / n) a_j * sum over the i whose window holds j "
            "of g_i b_i / s_i")


def check_lrn_backward(lrn_backward):
    """``lrn_backward(dy, a, size, alpha, beta, k) -> da``, by gradcheck and against md.LocalResponseNorm."""
    rng = np.random.default_rng(33)
    for x_shape, size, alpha, beta, k, scale in LRN_CASES:
        case = f"a of shape {x_shape}, size={size}, alpha={alpha}, beta={beta}, k={k}"
        a = scale * rng.standard_normal(x_shape)
        layer = md.LocalResponseNorm(size, alpha, beta, k)
        dy = rng.standard_normal(x_shape)
        layer.forward(a)
        want = layer.backward(dy)
        da = _array(_call(lrn_backward, dy.copy(), a.copy(), size, alpha, beta, k), f"lrn_backward({case})", x_shape)
        err = _max_error(da, want)
        wrapped = _FunctionLayer(lambda inp: md.LocalResponseNorm(size, alpha, beta, k).forward(inp),
                                 lambda g, inp: np.asarray(_call(lrn_backward, g, inp, size, alpha, beta, k)))
        rel = md.gradcheck(wrapped, a, seed=2)["input"]
        # 1e-6: with activations of size 30 the rounding of central differences alone reaches ~2e-8
        assert rel < 1e-6, (f"gradcheck fails for {case}: relative error {rel:.1e} against central differences "
                            f"(max error against md.LocalResponseNorm {err:.2e})"
                            + _lrn_hint(da, dy, a, size, alpha, beta, k))
        assert _close(da, want, 1e-10), (f"lrn_backward differs from md.LocalResponseNorm.backward for {case}: "
                                         f"max error {err:.2e}" + _lrn_hint(da, dy, a, size, alpha, beta, k))
    _passed(f"lrn_backward passes gradcheck and matches md.LocalResponseNorm on {len(LRN_CASES)} cases "
            "(the paper's settings, strong normalisation, an even window, a clipped window).")


# -- 04: the paper's SGD step -------------------------------------------------

BY_HAND = dict(w0=2.0, lr=0.1, momentum=0.9, weight_decay=0.0005, grads=(1.0, -0.5))


def _minidl_sgd(w0, grads, lr, momentum, weight_decay):
    """minidl's SGD on a parameter starting at w0: [(w, v) after each step]."""
    p = md.Parameter(np.array(w0, dtype=np.float64, copy=True))
    sgd = md.SGD([p], lr=lr, momentum=momentum, weight_decay=weight_decay)
    out = []
    for g in grads:
        p.grad = np.array(g, dtype=np.float64, copy=True)
        sgd.step()
        out.append((p.data.copy(), sgd.velocity[id(p)].copy()))
    return out


def check_sgd_by_hand(two_steps_by_hand):
    """``two_steps_by_hand() -> (w1, w2)`` for BY_HAND, against minidl's SGD."""
    got = _call(two_steps_by_hand)
    assert isinstance(got, (tuple, list)) and len(got) == 2, (
        f"two_steps_by_hand must return the two numbers (w1, w2), got {got!r}")
    h = BY_HAND
    (w1, _), (w2, _) = _minidl_sgd(np.array([h["w0"]]), [np.array([g]) for g in h["grads"]], h["lr"],
                                   h["momentum"], h["weight_decay"])
    for step, mine, want in ((1, got[0], w1[0]), (2, got[1], w2[0])):
        assert mine is not None, f"w{step} is None: write in the number you computed"
        err = abs(float(mine) - float(want))
        hint = ""
        if step == 1 and abs(float(mine) - (h["w0"] - h["weight_decay"] * h["w0"] - h["lr"] * h["grads"][0])) < 1e-9:
            hint = "; the weight decay term is 0.0005 * lr * w, scaled by the learning rate too"
        assert err < 1e-6, f"w{step} should be {want:.9f}, you have {float(mine):.9f} (error {err:.1e}){hint}"
    _passed(f"by hand: w1 = {w1[0]:.10g} and w2 = {w2[0]:.10g}, as minidl's SGD computes.")


SGD_CONFIGS = [
    dict(lr=0.01, momentum=0.9, weight_decay=0.0005),    # the paper's
    dict(lr=0.5, momentum=0.5, weight_decay=0.1),        # exaggerated, so that every term shows
]


def _sgd_hint(w_new, v_new, w, v, g, lr, momentum, weight_decay):
    """Name the mistake when the result matches a common wrong rule."""
    wrong_rules = [
        (momentum * v - weight_decay * w - lr * g, "the weight decay term must be scaled by the learning rate "
                                                   "too: -weight_decay * lr * w"),
        (momentum * v + weight_decay * lr * w - lr * g, "weight decay pulls w towards 0: its term is "
                                                        "-weight_decay * lr * w"),
        (momentum * v - weight_decay * lr * w - g, "the gradient term is -lr * grad"),
    ]
    for v_wrong, hint in wrong_rules:
        if _close(v_new, v_wrong, 1e-12):
            return "; " + hint
    v_right = momentum * v - weight_decay * lr * w - lr * g
    if _close(v_new, v_right, 1e-12) and _close(w_new, w + v, 1e-12):
        return "; w must move by the new velocity: w <- w + v_new"
    return "; v <- momentum * v - weight_decay * lr * w - lr * grad, then w <- w + v"


def check_sgd_step(sgd_step):
    """``sgd_step(w, v, grad, lr, momentum, weight_decay) -> (w, v)`` against md.SGD over two steps."""
    rng = np.random.default_rng(7)
    for cfg in SGD_CONFIGS:
        w0 = rng.standard_normal((3, 4))
        grads = [rng.standard_normal((3, 4)) for _ in range(2)]
        want = _minidl_sgd(w0, grads, **cfg)
        w, v = w0.copy(), np.zeros_like(w0)
        settings = ", ".join(f"{k}={val}" for k, val in cfg.items())
        for step, (g, (w_want, v_want)) in enumerate(zip(grads, want), start=1):
            got = _call(sgd_step, w.copy(), v.copy(), g.copy(), **cfg)
            assert isinstance(got, (tuple, list)) and len(got) == 2, (
                f"sgd_step must return the pair (new w, new v), got {type(got).__name__}")
            w_new = _array(got[0], "sgd_step's new w", w0.shape)
            v_new = _array(got[1], "sgd_step's new v", w0.shape)
            err = max(_max_error(w_new, w_want), _max_error(v_new, v_want))
            assert err <= 1e-13, (f"step {step} with {settings}: (w, v) differ from minidl's SGD by max error "
                                  f"{err:.2e}" + _sgd_hint(w_new, v_new, w, v, g, **cfg))
            w, v = w_new, v_new
    _passed("sgd_step matches md.SGD over two steps, with the paper's settings and with exaggerated ones.")


# -- 05: a two-tower net --------------------------------------------------------

TRAIN_SIZE, TEST_SIZE = 3000, 1000
# The solution reaches 75.8-80.1% (seeds 0-9 of its initialisation and shuffling; 77.4% with seed 0,
# what this grader runs): a margin of 10 points for other machines' arithmetic, while a net that
# does not learn fails (chance is 10%).
ACCURACY_THRESHOLD = 0.65


def _layers(model):
    assert isinstance(model, md.Sequential), (
        f"build_two_tower_net must return an md.Sequential of minidl layers, got {type(model).__name__}")
    return list(model)


def check_two_tower_net(build_two_tower_net):
    """Two towers (groups=2 convolutions) that exchange at exactly one convolution (groups=1)."""
    model = _call(build_two_tower_net, seed=0)
    layers = _layers(model)
    convs = [(i, m) for i, m in enumerate(layers) if isinstance(m, md.Conv2D)]
    assert len(convs) >= 4, (f"found {len(convs)} Conv2D layers; the net needs at least four: conv1 on the "
                             "image, a tower layer, the exchange, another tower layer")
    assert convs[0][1].in_channels == 1, (
        f"the first Conv2D must read the 1-channel image, it reads {convs[0][1].in_channels} channels")
    rest = convs[1:]
    odd = [(i, m.groups) for i, m in rest if m.groups not in (1, 2)]
    assert not odd, (f"layer {odd[0][0]} has groups={odd[0][1]}: with two towers a convolution reads its own "
                     "tower (groups=2) or both (groups=1, the exchange)")
    exchanges = [i for i, m in rest if m.groups == 1]
    assert len(exchanges) == 1, (
        "no convolution after the first reads both towers: the towers must exchange at one Conv2D with groups=1"
        if not exchanges else
        f"layers {exchanges} all read both towers (groups=1): the towers exchange at one convolution only")
    assert rest[0][1].groups == 2 and rest[-1][1].groups == 2, (
        f"the exchange (layer {exchanges[0]}) must sit between tower layers: put a groups=2 Conv2D before it "
        "and another after it")
    assert isinstance(layers[-1], md.Linear) and layers[-1].out_features == 10, (
        "the last layer must be an md.Linear with 10 outputs, one per class")
    # Numbers, not just settings: a change in tower 1 must reach tower 0 at the exchange and not before.
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    model.eval()

    def outputs():
        h, outs = x, []
        for m in layers:
            h = m.forward(h)
            outs.append(np.array(h, copy=True))      # a copy: a layer may reuse its output buffer
        return outs

    before = outputs()
    assert before[-1].shape == (2, 10), f"the net maps (2, 1, 28, 28) images to {before[-1].shape}, not (2, 10)"
    first_tower = rest[0][1]
    saved = first_tower.weight.data.copy()
    half = first_tower.out_channels // 2
    bumped = saved.copy()
    bumped[half:] += np.float32(0.1) * np.abs(saved[half:]).max() + np.float32(0.1)
    first_tower.weight.data = bumped
    after = outputs()
    first_tower.weight.data = saved
    model.train()
    for i in range(rest[0][0], exchanges[0]):
        if before[i].ndim == 4:
            c = before[i].shape[1] // 2
            assert np.array_equal(before[i][:, :c], after[i][:, :c]), (
                f"layer {i} ({type(layers[i]).__name__}) lets tower 1's maps into tower 0 before the exchange "
                f"at layer {exchanges[0]}: only the exchange may mix the towers")
    c = before[exchanges[0]].shape[1] // 2
    assert not np.array_equal(before[exchanges[0]][:, :c], after[exchanges[0]][:, :c]), (
        f"a change in tower 1 does not reach tower 0 at the exchange (layer {exchanges[0]}): are the weights "
        "initialised? (Conv2D starts at zero; use md.init)")
    n_params = model.num_parameters()
    _passed(f"two towers exchanging at layer {exchanges[0]} (of {len(layers)}), {n_params:,} parameters.")


@functools.lru_cache(maxsize=1)
def load_fashion_subset(train_size=TRAIN_SIZE, test_size=TEST_SIZE):
    """(x_train, y_train, x_test, y_test): fixed, class-balanced Fashion-MNIST subsets.

    Images float32 (N, 1, 28, 28), standardised with the training subset's mean and
    standard deviation; labels int64 (N,).
    """
    from minidl.data import FashionMNIST, subset_indices

    train, test = FashionMNIST("train", download=False), FashionMNIST("test", download=False)
    itr, ite = subset_indices(train.labels, train_size, seed=0), subset_indices(test.labels, test_size, seed=0)
    x_train, x_test = train.get_batch(itr).astype(np.float32), test.get_batch(ite).astype(np.float32)
    mean, std = x_train.mean(), x_train.std()
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    for arr in (x_train, x_test):
        arr.setflags(write=False)             # shared between calls: nobody may change it
    return x_train, train.labels[itr], x_test, test.labels[ite]


def accuracy(model, images, labels, batch_size=500):
    """Top-1 accuracy in evaluation mode (dropout off)."""
    model.eval()
    pred = np.concatenate([np.asarray(model.forward(images[s:s + batch_size])).argmax(axis=1)
                           for s in range(0, len(images), batch_size)])
    model.train()
    return float((pred == labels).mean())


def check_two_tower_training(build_two_tower_net, train, threshold=ACCURACY_THRESHOLD):
    """Train a fresh net with ``train(model, images, labels)``; test accuracy must reach ``threshold``."""
    model = _call(build_two_tower_net, seed=0)
    _layers(model)
    x_train, y_train, x_test, y_test = load_fashion_subset()
    # one BLAS thread: faster for these small matrices, and not slowed 10-100x by spinning
    # BLAS threads when another process shares the cores
    with runtime.tuned(blas_threads=1):
        t0 = time.perf_counter()
        losses = _call(train, model, x_train, y_train)
        seconds = time.perf_counter() - t0
        acc = accuracy(model, x_test, y_test)
    shown = "" if losses is None else " (losses per epoch: " + ", ".join(f"{float(v):.3f}" for v in losses) + ")"
    assert acc >= threshold, (
        f"test accuracy {acc:.1%} on {len(y_test):,} test images is below {threshold:.0%}{shown}: check that each "
        "batch runs forward, loss, backward and sgd.step, with zero_grad in between, and the learning rate")
    _passed(f"trained on {len(y_train):,} images in {seconds:.1f} s{shown}; test accuracy {acc:.1%} "
            f"(needed {threshold:.0%}).")
    return acc
