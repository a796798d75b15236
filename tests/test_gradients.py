"""Gradients: every layer's backward against central differences in float64
(minidl.gradcheck, random upstream gradient), gradcheck itself against
deliberately broken layers, and cross-checks with PyTorch's autograd."""

import numpy as np
import pytest

import minidl
import reference as ref
from minidl import (
    Conv2D, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy, Tanh,
    asnumpy, gradcheck, gradcheck_loss,
)
from minidl.kernels import fast
from minidl.kernels import reference as kref

# every test here runs on both kernel sets of minidl.kernels (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("kernel_set")

TOL = 1e-6


def place(layer, xp, rng, scale=0.5):
    for p in layer.parameters():
        p.data = (scale * rng.standard_normal(p.shape)).astype(np.float64)
    layer.to(dtype="float64")
    if xp is not np:
        layer.to("cuda:0")
    return layer


def assert_grads_ok(errors, expected_keys):
    assert set(errors) == set(expected_keys), errors
    for name, err in errors.items():
        assert err < TOL, (name, err)


# -- Conv2D -----------------------------------------------------------------------
CONV_CASES = [
    # N, C, H, W, O, k, stride, pad, groups, bias
    pytest.param((2, 3, 15, 19, 2, 11, 4, 0, 1, True), id="11x11-s4-p0"),   # 2x3 outputs
    pytest.param((2, 4, 7, 9, 4, 5, 1, 2, 2, True), id="5x5-p2-g2"),
    pytest.param((1, 6, 5, 7, 3, 3, 1, 1, 3, True), id="3x3-p1-g3"),
    pytest.param((2, 3, 6, 5, 4, 1, 1, 0, 1, False), id="1x1-nobias"),
    pytest.param((1, 4, 9, 6, 4, 3, 2, 1, 2, False), id="3x3-s2-p1-g2-nobias"),
    pytest.param((1, 2, 8, 5, 3, 3, 3, 0, 1, True), id="3x3-s3"),
    pytest.param((1, 2, 7, 7, 2, 2, 3, 0, 1, True), id="stride-greater-than-kernel"),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("band_bytes", [None, 1], ids=["one-band", "row-by-row"])
def test_conv2d_gradcheck(xp, rng, monkeypatch, case, band_bytes):
    n, c, h, w, o, k, s, p, g, bias = case
    conv = place(Conv2D(c, o, k, stride=s, padding=p, groups=g, bias=bias), xp, rng)
    monkeypatch.setattr(fast, "CONV_BAND_BYTES", band_bytes)   # 1: the fast kernels' columns row by row
    x = xp.asarray(rng.standard_normal((n, c, h, w)))
    errors = gradcheck(conv, x)
    assert_grads_ok(errors, ["input", "weight"] + (["bias"] if bias else []))


# -- Linear, activations, flatten, dropout ---------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(xp, rng, bias):
    lin = place(Linear(7, 5, bias=bias), xp, rng)
    errors = gradcheck(lin, xp.asarray(rng.standard_normal((3, 7))))
    assert_grads_ok(errors, ["input", "weight"] + (["bias"] if bias else []))


def _away_from_zero(rng, shape):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)  # no kink within eps


@pytest.mark.parametrize("make", [ReLU, Tanh, Flatten])
def test_parameterless_gradcheck(xp, rng, make):
    errors = gradcheck(make(), xp.asarray(_away_from_zero(rng, (2, 3, 4, 5))))
    assert_grads_ok(errors, ["input"])


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_dropout_gradcheck(xp, rng, p):
    d = Dropout(p, seed=2)
    errors = gradcheck(d, xp.asarray(rng.standard_normal((4, 25))))
    assert_grads_ok(errors, ["input"])
    # gradcheck restored the random state it started from
    assert d.rng_state() == {"seed": 2, "counter": 0}


@pytest.mark.parametrize("training", [True, False])
def test_dropout_paper_mode_gradcheck(xp, rng, training):
    d = Dropout(0.5, seed=2, mode="paper").train(training)
    errors = gradcheck(d, xp.asarray(rng.standard_normal((4, 25))))
    assert_grads_ok(errors, ["input"])


# -- LocalResponseNorm --------------------------------------------------------------
LRN_CASES = [
    # C, size, alpha, beta, k
    (7, 5, 1.0, 0.75, 2.0),
    (7, 4, 1.0, 0.75, 2.0),
    (6, 3, 2.0, 0.5, 1.0),
    (3, 5, 1.0, 0.75, 2.0),
    (1, 5, 1.0, 0.75, 2.0),
    (2, 4, 1.0, 0.75, 2.0),
    (5, 2, 1.0, 0.75, 1.0),
    (4, 1, 1.0, 0.75, 2.0),
    (8, 5, 1e-4, 0.75, 2.0),
]


@pytest.mark.parametrize("c, size, alpha, beta, k", LRN_CASES)
def test_lrn_gradcheck(xp, rng, c, size, alpha, beta, k):
    lrn = LocalResponseNorm(size, alpha, beta, k)
    errors = gradcheck(lrn, xp.asarray(1.5 * rng.standard_normal((2, c, 3, 2))))
    assert_grads_ok(errors, ["input"])


# -- MaxPool2D ---------------------------------------------------------------------
@pytest.mark.parametrize("k, s, h, w", [(3, 2, 7, 9), (3, 2, 8, 7), (2, 2, 6, 8), (3, 3, 9, 7), (2, 1, 5, 4)])
def test_maxpool_gradcheck(xp, rng, k, s, h, w):
    # a random permutation: distinct values at least 0.01 apart, so eps never changes a maximum
    x = rng.permutation(2 * 3 * h * w).reshape(2, 3, h, w) * 0.01
    errors = gradcheck(MaxPool2D(k, s), xp.asarray(x))
    assert_grads_ok(errors, ["input"])


# -- SoftmaxCrossEntropy ------------------------------------------------------------
@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (1000.0, 2.0), (-1000.0, 2.0), (0.0, 10.0)])
def test_softmax_xent_gradcheck_loss(xp, rng, offset, scale):
    logits = offset + scale * rng.standard_normal((4, 6))
    labels = np.array([0, 5, 2, 2])
    err = gradcheck_loss(SoftmaxCrossEntropy(), xp.asarray(logits), xp.asarray(labels))
    assert err < TOL


# -- whole networks -------------------------------------------------------------------
def test_sequential_gradcheck(xp, rng):
    net = Sequential(
        Conv2D(3, 4, 3, padding=1, groups=1), ReLU(), LocalResponseNorm(5, 1.0, 0.75, 2.0), MaxPool2D(3, 2),
        Conv2D(4, 4, 3, padding=1, groups=2), Tanh(), Flatten(), Dropout(0.5, seed=1), Linear(4 * 3 * 3, 5),
    )
    place(net, xp, rng)
    errors = gradcheck(net, xp.asarray(rng.standard_normal((2, 3, 7, 7))))
    assert_grads_ok(errors, ["input", "0.weight", "0.bias", "4.weight", "4.bias", "8.weight", "8.bias"])


def test_gradcheck_num_checks_and_frozen_params(rng):
    conv = place(Conv2D(2, 3, 3), np, rng)
    conv.bias.requires_grad = False
    errors = gradcheck(conv, rng.standard_normal((1, 2, 5, 5)), num_checks=10)
    assert_grads_ok(errors, ["input", "weight"])


def test_gradcheck_requires_float64(rng):
    with pytest.raises(ValueError, match="float64"):
        gradcheck(ReLU(), rng.standard_normal((2, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="float64"):
        gradcheck(Linear(3, 2), rng.standard_normal((2, 3)))  # float32 parameters
    with pytest.raises(ValueError, match="float64"):
        gradcheck_loss(SoftmaxCrossEntropy(), np.zeros((2, 3), np.float32), np.array([0, 1]))


def test_relative_error():
    assert minidl.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert minidl.relative_error(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == 0.0
    assert minidl.relative_error(np.array([3.0, 4.0]), np.array([0.0, 0.0])) == pytest.approx(1.0)
    assert minidl.relative_error(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(2 ** 0.5)


# -- gradcheck catches broken layers ------------------------------------------------------
class OffByOneLRN(LocalResponseNorm):
    """Backward sums g*b/s over a window one channel too wide on one side.

    Keeps its own cache (a, s, b) so that it does not depend on the library's private one."""

    def forward(self, x):
        y = super().forward(x)
        s = self.k + self.alpha / self.size * kref.channel_window_sum(x * x, self.before, self.after)
        self._mine = (x, s, y)
        return y

    def backward(self, dy):
        x, s, y = self._mine
        back = kref.channel_window_sum(dy * y / s, self.after, self.before + 1)
        return dy * s ** -self.beta - 2 * self.alpha * self.beta / self.size * x * back


class RightLRN(OffByOneLRN):
    """The same hand-written backward with the right window: passes, so the test above is fair."""

    def backward(self, dy):
        x, s, y = self._mine
        back = kref.channel_window_sum(dy * y / s, self.after, self.before)
        return dy * s ** -self.beta - 2 * self.alpha * self.beta / self.size * x * back


class AssigningMaxPool(MaxPool2D):
    """Backward assigns (=) instead of accumulating (+=): wrong when windows overlap."""

    def backward(self, dy):
        k, s = self.kernel_size, self.stride
        oh, ow = dy.shape[2:]
        dx = np.zeros(self.input_shape, dtype=dy.dtype)
        for i in range(k):
            for j in range(k):
                sl = (slice(None), slice(None), slice(i, i + s * oh, s), slice(j, j + s * ow, s))
                hit = self.switches == i * k + j
                dx[sl] = np.where(hit, dy, dx[sl])
        return dx


class ZeroGradSoftmax(minidl.Layer):
    """Softmax whose backward returns 0: right only for the upstream gradient 1 (sum(y) is constant)."""

    def forward(self, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def backward(self, dy):
        return np.zeros_like(dy)


class CorrectSoftmax(ZeroGradSoftmax):
    """dx = y * (dy - sum(dy * y))."""

    def forward(self, x):
        self._y = super().forward(x)
        return self._y

    def backward(self, dy):
        return self._y * (dy - (dy * self._y).sum(axis=1, keepdims=True))


class MeanConv(Conv2D):
    """Backward averages dW over the batch instead of summing it."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.weight.grad = self.weight.grad / dy.shape[0]
        return dx


def test_gradcheck_catches_off_by_one_lrn_window(rng):
    x = 1.5 * rng.standard_normal((2, 7, 3, 2))
    for size in (5, 4):
        assert gradcheck(LocalResponseNorm(size, 1.0, 0.75, 2.0), x)["input"] < TOL
        assert gradcheck(RightLRN(size, 1.0, 0.75, 2.0), x)["input"] < TOL
        assert gradcheck(OffByOneLRN(size, 1.0, 0.75, 2.0), x)["input"] > 1e-2


def test_gradcheck_catches_assignment_in_overlapping_maxpool(rng):
    x = rng.permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9) * 0.01
    assert gradcheck(AssigningMaxPool(3, 2), x)["input"] > 1e-2
    # with stride == kernel the windows are disjoint and the same bug hides: why overlap is tested
    x2 = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) * 0.01
    assert gradcheck(AssigningMaxPool(2, 2), x2)["input"] < TOL


def test_gradcheck_uses_a_random_upstream_gradient(rng):
    x = rng.standard_normal((3, 5))
    layer = ZeroGradSoftmax()
    # d sum(softmax(x)) / dx is 0: an all-ones upstream gradient cannot tell the broken backward apart
    eps = 1e-6
    for i in range(x.size):
        xp_, xm = x.copy(), x.copy()
        xp_.flat[i] += eps
        xm.flat[i] -= eps
        assert abs(layer.forward(xp_).sum() - layer.forward(xm).sum()) / (2 * eps) < 1e-8
    # gradcheck's default random upstream gradient exposes it
    assert gradcheck(layer, x)["input"] > 0.5
    # and the correct backward passes under the same check
    assert gradcheck(CorrectSoftmax(), x)["input"] < TOL


def test_gradcheck_catches_wrong_parameter_gradient(rng):
    conv = place(MeanConv(2, 3, 3), np, rng)
    errors = gradcheck(conv, rng.standard_normal((2, 2, 5, 5)))
    assert errors["input"] < TOL and errors["bias"] < TOL
    assert errors["weight"] > 0.1


# -- PyTorch cross-checks ------------------------------------------------------------
@pytest.mark.parametrize("case", [
    pytest.param((2, 3, 13, 15, 4, 5, 2, 1, 1), id="g1-s2-p1"),
    pytest.param((2, 4, 9, 8, 6, 3, 1, 1, 2), id="g2-s1-p1"),
    pytest.param((1, 4, 23, 19, 4, 11, 4, 2, 2), id="g2-11x11-s4-p2"),
    pytest.param((2, 6, 7, 7, 6, 3, 2, 0, 3), id="g3-s2"),
])
def test_conv2d_matches_torch(rng, case):
    torch = pytest.importorskip("torch")
    n, c, h, w, o, k, s, p, g = case
    conv = place(Conv2D(c, o, k, stride=s, padding=p, groups=g), np, rng)
    x = rng.standard_normal((n, c, h, w))
    y = conv.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(conv.weight.data, requires_grad=True)
    tb = torch.tensor(conv.bias.data, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, groups=g)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, tw.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k, s, h, w", [(3, 2, 7, 9), (3, 2, 8, 7), (2, 2, 6, 8), (3, 3, 9, 7), (3, 2, 55, 55)])
def test_maxpool_matches_torch(rng, k, s, h, w):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, h, w))
    pool = MaxPool2D(k, s)
    y = pool.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = pool.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, k, s, return_indices=True)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(pool.switch_indices(), tidx.numpy())
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("c, size, alpha, beta, k", LRN_CASES)
def test_lrn_matches_torch(rng, c, size, alpha, beta, k):
    torch = pytest.importorskip("torch")
    x = 1.5 * rng.standard_normal((2, c, 4, 3))
    lrn = LocalResponseNorm(size, alpha, beta, k)
    y = lrn.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = lrn.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.local_response_norm(tx, size, alpha=alpha, beta=beta, k=k)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_softmax_xent_matches_torch(rng):
    torch = pytest.importorskip("torch")
    logits = 1e3 * rng.standard_normal((5, 8))
    labels = rng.integers(0, 8, size=5)
    crit = SoftmaxCrossEntropy()
    loss = crit.forward(logits, labels)
    g = crit.backward()
    tz = torch.tensor(logits, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(labels))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(g, tz.grad.numpy(), rtol=1e-10, atol=1e-15)


# -- CuPy: float64 gradchecks run through the xp fixture above; here GPU against CPU ----------
@pytest.mark.gpu
@pytest.mark.parametrize("case", CONV_CASES)
def test_gpu_conv2d_gradients_equal_cpu_float64(case):
    import cupy

    n, c, h, w, o, k, s, p, g, bias = case
    rng = np.random.default_rng(0)
    cpu = place(Conv2D(c, o, k, stride=s, padding=p, groups=g, bias=bias), np, rng)
    gpu = Conv2D(c, o, k, stride=s, padding=p, groups=g, bias=bias).to(dtype="float64")
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda:0")
    x = rng.standard_normal((n, c, h, w))
    y = cpu.forward(x)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(asnumpy(gpu.forward(cupy.asarray(x))), y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(asnumpy(gpu.backward(cupy.asarray(dy))), cpu.backward(dy), rtol=1e-10, atol=1e-12)
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters()):
        np.testing.assert_allclose(asnumpy(pg.grad), pc.grad, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.gpu
def test_gpu_maxpool_ties_backward_matches_reference():
    import cupy

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(2, 3, 8, 7)).astype(np.float64)
    pool = MaxPool2D(3, 2)
    y = pool.forward(cupy.asarray(x))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(asnumpy(pool.backward(cupy.asarray(dy))), ref.maxpool_backward(dy, x, 3, 2),
                               rtol=0, atol=1e-12)


def test_chained_convolutions_gradcheck(xp, rng):
    """conv -> conv: the second conv reads the first one's (channel-major) output directly."""
    net = place(Sequential(Conv2D(2, 4, 3, stride=2, padding=1), Conv2D(4, 4, 3, padding=1, groups=2),
                           Conv2D(4, 2, 1)), xp, rng)
    errors = gradcheck(net, xp.asarray(rng.standard_normal((2, 2, 7, 6))))
    assert_grads_ok(errors, ["input"] + [f"{i}.{n}" for i in range(3) for n in ("weight", "bias")])
