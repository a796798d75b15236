"""minidl layers: forward against loop references, dtypes, input checks, the
switches of max-pooling, dropout, softmax cross-entropy, Sequential and the
initialisers. Gradients are in test_gradients.py."""

import math

import numpy as np
import pytest

import minidl
import reference as ref
from minidl import (
    Conv2D, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy, Tanh,
    asnumpy, init,
)

# every test here runs on both kernel sets of minidl.kernels (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("kernel_set")


# -- helpers ------------------------------------------------------------------------
def place(layer, xp, dtype=np.float64, rng=None, scale=0.5):
    """Random parameters (if rng), cast to dtype, moved to xp's device."""
    if rng is not None:
        for p in layer.parameters():
            p.data = (scale * rng.standard_normal(p.shape)).astype(p.dtype)
    layer.to(dtype=dtype)
    if xp is not np:
        layer.to("cuda:0")
    return layer


def host_params(layer):
    return {n: asnumpy(p.data).astype(np.float64) for n, p in layer.named_parameters()}


# -- Conv2D -------------------------------------------------------------------------
CONV_CASES = [
    # N, C, H, W, O, k, stride, pad, groups, bias
    pytest.param((2, 3, 23, 27, 4, 11, 4, 0, 1, True), id="11x11-s4-p0"),
    pytest.param((2, 4, 7, 9, 6, 5, 1, 2, 2, True), id="5x5-p2-g2"),
    pytest.param((1, 6, 5, 7, 9, 3, 1, 1, 3, True), id="3x3-p1-g3"),
    pytest.param((2, 3, 6, 5, 4, 1, 1, 0, 1, False), id="1x1-nobias"),
    pytest.param((1, 4, 9, 6, 4, 3, 2, 1, 2, False), id="3x3-s2-p1-g2-nobias"),
    pytest.param((1, 2, 8, 5, 3, 3, 3, 0, 1, True), id="3x3-s3"),
    pytest.param((1, 2, 3, 4, 2, 5, 2, 1, 1, True), id="kernel-larger-than-input-with-pad"),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_matches_reference(xp, rng, case):
    n, c, h, w, o, k, s, p, g, bias = case
    conv = place(Conv2D(c, o, k, stride=s, padding=p, groups=g, bias=bias), xp, rng=rng)
    assert conv.weight.shape == (o, c // g, k, k)
    assert (conv.bias is None) == (not bias)
    x = rng.standard_normal((n, c, h, w))
    y = conv.forward(xp.asarray(x))
    prm = host_params(conv)
    expected = ref.conv2d(x, prm["weight"], prm.get("bias"), s, p, g)
    assert y.shape == expected.shape == (n, *conv.output_shape(h, w))
    np.testing.assert_allclose(asnumpy(y), expected, rtol=1e-12, atol=1e-12)


def test_conv2d_groups_do_not_mix():
    """With groups=2, output channels of group 0 do not depend on input channels of group 1."""
    rng = np.random.default_rng(1)
    conv = place(Conv2D(4, 6, 3, padding=1, groups=2), np, rng=rng)
    x = rng.standard_normal((1, 4, 5, 5))
    y0 = conv.forward(x)
    x2 = x.copy()
    x2[:, 2:] = rng.standard_normal((1, 2, 5, 5))
    y1 = conv.forward(x2)
    np.testing.assert_array_equal(y0[:, :3], y1[:, :3])
    assert not np.allclose(y0[:, 3:], y1[:, 3:])


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_transpose_is_its_input_gradient(xp, rng, case):
    """``transpose(y, x_shape)`` is backward's dx for dy = y, with no forward and no cache."""
    n, c, h, w, o, k, s, p, g, bias = case
    conv = place(Conv2D(c, o, k, stride=s, padding=p, groups=g, bias=bias), xp, rng=rng)
    x = xp.asarray(rng.standard_normal((n, c, h, w)))
    y = conv.forward(x)
    dy = xp.asarray(rng.standard_normal(y.shape))
    dx = conv.backward(dy)
    fresh = place(Conv2D(c, o, k, stride=s, padding=p, groups=g, bias=bias), xp)
    fresh.load_state_dict(conv.state_dict())
    np.testing.assert_allclose(asnumpy(fresh.transpose(dy, x.shape)), asnumpy(dx), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"Conv2D.transpose: an input of shape"):
        fresh.transpose(dy[:, :1], x.shape)


def test_conv2d_constructor_errors():
    with pytest.raises(ValueError, match="Conv2D"):
        Conv2D(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="Conv2D"):
        Conv2D(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="Conv2D"):
        Conv2D(3, 4, 0)
    with pytest.raises(ValueError, match="Conv2D"):
        Conv2D(3, 4, 3, stride=0)
    with pytest.raises(ValueError, match="Conv2D"):
        Conv2D(3, 4, 3, padding=-1)
    with pytest.raises(ValueError, match="Conv2D"):
        Conv2D(3, 4, (3, 5))
    assert Conv2D(3, 4, (3, 3), stride=(2, 2)).stride == 2


# -- Linear, ReLU, Tanh, Flatten ---------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_matches_reference(xp, rng, bias):
    lin = place(Linear(7, 5, bias=bias), xp, rng=rng)
    assert lin.weight.shape == (5, 7)
    x = rng.standard_normal((3, 7))
    y = lin.forward(xp.asarray(x))
    prm = host_params(lin)
    np.testing.assert_allclose(asnumpy(y), ref.linear(x, prm["weight"], prm.get("bias")), rtol=1e-12, atol=1e-12)


def test_relu_forward(xp, rng):
    x = rng.standard_normal((3, 4, 5))
    x[0, 0, :3] = [0.0, -0.0, 1e-300]
    y = asnumpy(ReLU().forward(xp.asarray(x)))
    expected = np.array([max(0.0, v) for v in x.ravel()]).reshape(x.shape)
    np.testing.assert_array_equal(y, expected)


def test_relu_backward_zero_at_zero(xp):
    r = ReLU()
    x = xp.asarray(np.array([[-1.0, 0.0, 2.0]]))
    r.forward(x)
    np.testing.assert_array_equal(asnumpy(r.backward(xp.asarray(np.array([[5.0, 6.0, 7.0]])))), [[0.0, 0.0, 7.0]])


def test_tanh_forward(xp, rng):
    x = 3 * rng.standard_normal((4, 6))
    y = asnumpy(Tanh().forward(xp.asarray(x)))
    expected = np.array([math.tanh(v) for v in x.ravel()]).reshape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-15)


def test_flatten_forward_backward_order(xp, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    f = Flatten()
    y = asnumpy(f.forward(xp.asarray(x)))
    assert y.shape == (2, 60)
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(5):
                    assert y[n, (c * 4 + i) * 5 + j] == x[n, c, i, j]
    dy = rng.standard_normal((2, 60))
    dx = asnumpy(f.backward(xp.asarray(dy)))
    assert dx.shape == (2, 3, 4, 5)
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(5):
                    assert dx[n, c, i, j] == dy[n, (c * 4 + i) * 5 + j]


# -- LocalResponseNorm ----------------------------------------------------------------
LRN_CASES = [
    # C, size, alpha, beta, k
    (7, 5, 1.0, 0.75, 2.0),
    (7, 4, 1.0, 0.75, 2.0),
    (3, 5, 1.0, 0.75, 2.0),
    (1, 5, 1.0, 0.75, 2.0),
    (6, 3, 2.0, 0.5, 1.0),
    (4, 1, 1.0, 0.75, 2.0),
    (8, 5, 1e-4, 0.75, 2.0),  # the paper's values
]


@pytest.mark.parametrize("c, size, alpha, beta, k", LRN_CASES)
def test_lrn_forward_matches_reference(xp, rng, c, size, alpha, beta, k):
    x = 2 * rng.standard_normal((2, c, 3, 4))
    lrn = LocalResponseNorm(size, alpha, beta, k)
    y = asnumpy(lrn.forward(xp.asarray(x)))
    np.testing.assert_allclose(y, ref.lrn(x, size, alpha, beta, k), rtol=1e-12, atol=1e-14)


def test_lrn_any_spatial_rank(rng):
    """(N, C, L) inputs work and equal the 4-D result with a unit axis."""
    x = rng.standard_normal((2, 6, 5))
    lrn = LocalResponseNorm(5, 1.0, 0.75, 2.0)
    np.testing.assert_allclose(lrn.forward(x), ref.lrn(x[..., None], 5, 1.0, 0.75, 2.0)[..., 0], rtol=1e-12)


def test_lrn_defaults_are_the_papers():
    lrn = LocalResponseNorm()
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    with pytest.raises(ValueError, match="LocalResponseNorm"):
        LocalResponseNorm(0)


# -- MaxPool2D ------------------------------------------------------------------------
POOL_CASES = [
    pytest.param((3, 2, 7, 9), id="k3s2-7x9"),
    pytest.param((3, 2, 8, 7), id="k3s2-8x7-untiled"),
    pytest.param((2, 2, 6, 8), id="k2s2"),
    pytest.param((3, 3, 9, 7), id="k3s3"),
    pytest.param((3, 2, 3, 3), id="k3s2-single-window"),
    pytest.param((2, 3, 8, 9), id="k2s3-gaps"),
]


def _pool_input(kind, rng, shape):
    if kind == "random":
        return rng.standard_normal(shape)
    if kind == "integers":
        return rng.integers(-2, 2, size=shape).astype(np.float64)
    return np.full(shape, 0.5)


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["random", "integers", "constant"])
def test_maxpool_forward_and_switches_match_reference(xp, rng, case, kind):
    k, s, h, w = case
    x = _pool_input(kind, rng, (2, 3, h, w))
    pool = MaxPool2D(k, s)
    y = pool.forward(xp.asarray(x))
    ry, rsw, rflat = ref.maxpool(x, k, s)
    np.testing.assert_array_equal(asnumpy(y), ry)
    assert pool.switches.dtype == np.int8
    np.testing.assert_array_equal(asnumpy(pool.switches), rsw)
    idx = pool.switch_indices()
    np.testing.assert_array_equal(asnumpy(idx), rflat)
    # the flat indices point at the maxima
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(2, 3, -1), rflat.reshape(2, 3, -1), axis=2),
                                  ry.reshape(2, 3, -1))


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["random", "integers", "constant"])
def test_maxpool_backward_matches_reference(xp, rng, case, kind):
    """At ties the whole gradient goes to the first maximum in row-major order."""
    k, s, h, w = case
    x = _pool_input(kind, rng, (2, 3, h, w))
    pool = MaxPool2D(k, s)
    y = pool.forward(xp.asarray(x))
    dy = rng.standard_normal(y.shape)
    dx = asnumpy(pool.backward(xp.asarray(dy)))
    np.testing.assert_allclose(dx, ref.maxpool_backward(dy, x, k, s), rtol=0, atol=1e-12)
    # nothing is lost or duplicated
    np.testing.assert_allclose(dx.sum(axis=(2, 3)), dy.sum(axis=(2, 3)), rtol=1e-12, atol=1e-12)


def test_maxpool_constant_input_gradient_goes_to_window_corners(xp):
    """Constant 5x5, k=3, s=2: every window's first element (0,0),(0,2),(2,0),(2,2) gets its dy."""
    pool = MaxPool2D(3, 2)
    pool.forward(xp.asarray(np.ones((1, 1, 5, 5))))
    dx = asnumpy(pool.backward(xp.asarray(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))))
    expected = np.zeros((1, 1, 5, 5))
    expected[0, 0, 0, 0], expected[0, 0, 0, 2], expected[0, 0, 2, 0], expected[0, 0, 2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx, expected)


def test_maxpool_shared_maximum_accumulates(xp):
    """One input that is the maximum of four overlapping windows receives the sum of their gradients."""
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 9.0  # inside all four 3x3 windows at stride 2
    pool = MaxPool2D(3, 2)
    y = asnumpy(pool.forward(xp.asarray(x)))
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 9.0))
    dx = asnumpy(pool.backward(xp.asarray(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))))
    assert dx[0, 0, 2, 2] == 10.0
    assert np.count_nonzero(dx) == 1


def test_maxpool_untiled_trailing_row_and_col_get_zero(xp, rng):
    """8x7 with k=3, s=2: windows cover rows 0..6 and columns 0..6, so row 7 gets nothing."""
    x = rng.standard_normal((2, 2, 8, 7))
    x[:, :, 7, :] = 100.0  # the trailing row is the largest but lies in no window
    pool = MaxPool2D(3, 2)
    y = pool.forward(xp.asarray(x))
    assert y.shape == (2, 2, 3, 3)
    assert float(asnumpy(y).max()) < 100.0
    dx = asnumpy(pool.backward(xp.ones(y.shape)))
    assert np.all(dx[:, :, 7, :] == 0)
    x2 = rng.standard_normal((1, 1, 7, 8))
    pool2 = MaxPool2D(3, 2)
    dx2 = asnumpy(pool2.backward(xp.ones(pool2.forward(xp.asarray(x2)).shape)))
    assert np.all(dx2[:, :, :, 7] == 0)


@pytest.mark.parametrize("k, s", [(2, 2), (3, 3)])
def test_maxpool_unpool_non_overlapping_places_values_at_maxima(xp, rng, k, s):
    x = rng.standard_normal((2, 3, 6, 9))
    pool = MaxPool2D(k, s)
    y = pool.forward(xp.asarray(x))
    up = asnumpy(pool.unpool(y))
    _, _, flat = ref.maxpool(x, k, s)
    expected = np.zeros_like(x)
    for n in range(2):
        for c in range(3):
            for v, f in zip(asnumpy(y)[n, c].ravel(), flat[n, c].ravel()):
                expected[n, c].flat[f] = v
    np.testing.assert_array_equal(up, expected)
    # for non-overlapping windows that is x where x is the max of its window, 0 elsewhere
    mask = expected != 0
    np.testing.assert_array_equal(up[mask], x[mask])


def test_maxpool_unpool_overlapping_matches_reference(xp, rng):
    x = rng.standard_normal((1, 2, 7, 7))
    pool = MaxPool2D(3, 2)
    y = pool.forward(xp.asarray(x))
    up = asnumpy(pool.unpool(2.0 * y))
    np.testing.assert_allclose(up, ref.maxpool_backward(2.0 * asnumpy(y), x, 3, 2), rtol=0, atol=1e-12)


def test_maxpool_backward_does_not_clear_switches(rng):
    pool = MaxPool2D(3, 2)
    x = rng.standard_normal((1, 1, 5, 5))
    y = pool.forward(x)
    d1 = pool.backward(np.ones_like(y))
    d2 = pool.unpool(np.ones_like(y))
    np.testing.assert_array_equal(d1, d2)


def test_maxpool_constructor_errors():
    for args in [(0, 1), (3, 0), (12, 1)]:
        with pytest.raises(ValueError, match="MaxPool2D"):
            MaxPool2D(*args)
    MaxPool2D(11, 1)  # 121 offsets still fit in int8


# -- Dropout -------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.5, 0.2, 0.9])
def test_dropout_statistics(xp, p):
    n = 100_000
    d = Dropout(p, seed=3)
    x = xp.asarray(np.ones((100, 1000), dtype=np.float32))
    y = asnumpy(d.forward(x))
    kept = y != 0
    frac = kept.mean()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(frac - (1 - p)) < 4 * sigma
    np.testing.assert_allclose(y[kept], np.float32(1.0 / (1.0 - p)), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 4 * sigma / (1 - p)  # the mean is preserved


def test_dropout_scales_values(xp, rng):
    x = rng.standard_normal((50, 40))
    d = Dropout(0.3, seed=1)
    y = asnumpy(d.forward(xp.asarray(x)))
    kept = y != 0
    assert 0.5 < kept.mean() < 0.9
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-15)


def test_dropout_eval_is_identity(xp, rng):
    x = xp.asarray(rng.standard_normal((4, 30)))
    d = Dropout(0.5).eval()
    assert not d.training
    np.testing.assert_array_equal(asnumpy(d.forward(x)), asnumpy(x))
    dy = xp.asarray(rng.standard_normal((4, 30)))
    np.testing.assert_array_equal(asnumpy(d.backward(dy)), asnumpy(dy))
    d0 = Dropout(0.0)
    np.testing.assert_array_equal(asnumpy(d0.forward(x)), asnumpy(x))


def test_dropout_backward_uses_the_same_mask(xp, rng):
    x = rng.standard_normal((20, 50)) + 5.0  # no zeros in x
    d = Dropout(0.5, seed=9)
    y = asnumpy(d.forward(xp.asarray(x)))
    dy = rng.standard_normal(x.shape)
    dx = asnumpy(d.backward(xp.asarray(dy)))
    kept = y != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(dx != 0, kept)
    np.testing.assert_allclose(dx[kept], dy[kept] * 2.0, rtol=1e-15)


def test_dropout_masks_differ_between_calls_and_replay(xp):
    x = xp.asarray(np.ones((10, 1000)))
    d = Dropout(0.5, seed=4)
    state = d.rng_state()
    m1 = asnumpy(d.forward(x)) != 0
    m2 = asnumpy(d.forward(x)) != 0
    assert np.mean(m1 != m2) > 0.4  # independent masks disagree on ~half the units
    d.set_rng_state(state)
    np.testing.assert_array_equal(asnumpy(d.forward(x)) != 0, m1)
    np.testing.assert_array_equal(asnumpy(d.forward(x)) != 0, m2)
    # a different layer restored to that state draws the same masks
    other = Dropout(0.5, seed=123)
    other.set_rng_state(state)
    np.testing.assert_array_equal(asnumpy(other.forward(x)) != 0, m1)
    # different seeds, different masks
    assert np.mean((asnumpy(Dropout(0.5, seed=5).forward(x)) != 0) != m1) > 0.4


def test_dropout_rng_state_through_sequential():
    net = Sequential(Linear(3, 3), Dropout(0.5, seed=1), ReLU(), Dropout(0.5, seed=2))
    st = net.rng_state()
    assert st == {"1": {"seed": 1, "counter": 0}, "3": {"seed": 2, "counter": 0}}
    x = np.ones((4, 3), dtype=np.float32)
    net[0].bias.data[:] = 1.0
    y1 = net.forward(x)
    assert net.rng_state()["1"]["counter"] == 1
    net.set_rng_state(st)
    np.testing.assert_array_equal(net.forward(x), y1)


def test_dropout_bad_p():
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="Dropout"):
            Dropout(p)


# the paper's dropout: unscaled while training, outputs times (1 - p) at test time
@pytest.mark.parametrize("p", [0.5, 0.2])
def test_dropout_paper_mode_draws_the_inverted_mask_unscaled(xp, rng, p):
    x = rng.standard_normal((30, 40)) + 5.0  # no zeros in x
    paper, inverted = Dropout(p, seed=7, mode="paper"), Dropout(p, seed=7)
    assert inverted.mode == "inverted" and paper.mode == "paper"
    y = asnumpy(paper.forward(xp.asarray(x)))
    y_inv = asnumpy(inverted.forward(xp.asarray(x)))
    kept = y != 0
    np.testing.assert_array_equal(kept, y_inv != 0)          # the same mask
    np.testing.assert_array_equal(y[kept], x[kept])           # kept units unscaled
    np.testing.assert_allclose(y, y_inv * (1 - p), rtol=1e-15)
    assert paper.rng_state() == inverted.rng_state() == {"seed": 7, "counter": 1}
    dy = rng.standard_normal(x.shape)
    dx = asnumpy(paper.backward(xp.asarray(dy)))
    np.testing.assert_array_equal(dx, np.where(kept, dy, 0.0))


def test_dropout_paper_mode_eval_multiplies_by_keep_probability(xp, rng):
    x = xp.asarray(rng.standard_normal((4, 30)))
    d = Dropout(0.3, mode="paper").eval()
    np.testing.assert_allclose(asnumpy(d.forward(x)), 0.7 * asnumpy(x), rtol=1e-15)
    dy = xp.asarray(rng.standard_normal((4, 30)))
    np.testing.assert_allclose(asnumpy(d.backward(dy)), 0.7 * asnumpy(dy), rtol=1e-15)
    assert d.rng_state() == {"seed": 0, "counter": 0}         # evaluation draws no mask
    d0 = Dropout(0.0, mode="paper")
    for layer in (d0, d0.eval()):
        np.testing.assert_array_equal(asnumpy(layer.forward(x)), asnumpy(x))


def test_dropout_modes_agree_in_expectation():
    # E[training output] = evaluation output, in both modes
    x = np.linspace(-2.0, 3.0, 50)[None, :].repeat(4000, axis=0)
    for mode in ("inverted", "paper"):
        d = Dropout(0.5, seed=11, mode=mode)
        mean = d.forward(x).mean(axis=0)
        test = d.eval().forward(x[:1])[0]
        sigma = np.abs(x[0]) * 0.5 / np.sqrt(4000) * (2.0 if mode == "inverted" else 1.0)
        assert np.all(np.abs(mean - test) <= 5 * sigma + 1e-12), mode


def test_dropout_paper_mode_keeps_float32():
    x = np.ones((3, 8), np.float32)
    d = Dropout(0.5, mode="paper")
    assert d.forward(x).dtype == np.float32 and d.backward(x).dtype == np.float32
    d.eval()
    assert d.forward(x).dtype == np.float32 and d.backward(x).dtype == np.float32


def test_dropout_mode_repr_and_bad_mode():
    assert repr(Dropout(0.5)) == "Dropout(p=0.5)"
    assert repr(Dropout(0.5, mode="paper")) == "Dropout(p=0.5, mode='paper')"
    with pytest.raises(ValueError, match="Dropout: mode must be one of inverted, paper"):
        Dropout(0.5, mode="scale")


# -- SoftmaxCrossEntropy ---------------------------------------------------------------
def test_softmax_xent_large_logits(xp, rng):
    logits = 1e3 * rng.standard_normal((5, 7))
    logits[0] = [1000.0, -1000.0, 999.0, 0.0, 1000.0, -999.0, 500.0]
    labels = np.array([2, 0, 6, 3, 1])
    crit = SoftmaxCrossEntropy()
    loss = crit.forward(xp.asarray(logits), xp.asarray(labels))
    assert isinstance(loss, float) and math.isfinite(loss)
    expected = ref.softmax_xent(logits, labels)
    assert loss == pytest.approx(expected, rel=1e-12)
    g = asnumpy(crit.backward())
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, ref.softmax_xent_grad(logits, labels), rtol=1e-10, atol=1e-15)


def test_softmax_xent_backward_is_softmax_minus_onehot_over_n(xp, rng):
    logits = rng.standard_normal((4, 6))
    labels = np.array([5, 0, 0, 3])
    crit = SoftmaxCrossEntropy()
    crit.forward(xp.asarray(logits), xp.asarray(labels))
    g = asnumpy(crit.backward())
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(4), labels] = 1
    np.testing.assert_allclose(g, (p - onehot) / 4, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-15)
    # an upstream scalar scales it
    crit.forward(xp.asarray(logits), xp.asarray(labels))
    np.testing.assert_allclose(asnumpy(crit.backward(3.0)), 3 * (p - onehot) / 4, rtol=1e-12, atol=1e-15)


def test_softmax_xent_known_value():
    """Uniform logits over K classes: loss = log K; labels of any integer dtype."""
    crit = SoftmaxCrossEntropy()
    for dt in (np.int64, np.int32, np.uint8):
        assert crit.forward(np.zeros((3, 4)), np.array([0, 1, 3], dtype=dt)) == pytest.approx(math.log(4), rel=1e-15)
    assert crit.forward(np.array([[0.0, math.log(3.0)]]), np.array([1])) == pytest.approx(math.log(4 / 3), rel=1e-14)


@pytest.mark.parametrize("labels", [
    np.array([0, 3]),            # out of range (K = 3)
    np.array([-1, 0]),           # negative
    np.array([0.0, 1.0]),        # float dtype
    np.array([[0], [1]]),        # wrong shape
    np.array([0, 1, 2]),         # wrong length
    [0, 1],                      # not an array
])
def test_softmax_xent_bad_labels(labels):
    crit = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match="SoftmaxCrossEntropy"):
        crit.forward(np.zeros((2, 3)), labels)


def test_softmax_xent_loss_attribute_stays_an_array(rng):
    crit = SoftmaxCrossEntropy()
    logits = rng.standard_normal((3, 4)).astype(np.float32)
    loss = crit.forward(logits, np.array([0, 1, 2]))
    assert crit.loss.dtype == np.float32 and crit.loss.shape == ()
    assert float(crit.loss) == loss
    arr = crit.compute(logits, np.array([0, 1, 2]))
    assert float(arr) == loss


# -- dtypes ------------------------------------------------------------------------------
def _layer_cases():
    return [
        ("conv", lambda: Conv2D(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 7, 9)),
        ("conv-nobias", lambda: Conv2D(3, 2, 1, bias=False), (2, 3, 4, 5)),
        ("linear", lambda: Linear(5, 3), (4, 5)),
        ("maxpool", lambda: MaxPool2D(3, 2), (2, 3, 7, 8)),
        ("lrn", lambda: LocalResponseNorm(5, 1.0, 0.75, 2.0), (2, 7, 3, 4)),
        ("relu", ReLU, (2, 3, 4)),
        ("tanh", Tanh, (2, 3, 4)),
        ("flatten", Flatten, (2, 3, 4, 5)),
        ("dropout", lambda: Dropout(0.5), (3, 40)),
        ("sequential", lambda: Sequential(
            Conv2D(3, 4, 3, padding=1), ReLU(), LocalResponseNorm(5, 1.0, 0.75, 2.0), MaxPool2D(3, 2),
            Flatten(), Dropout(0.5), Linear(4 * 3 * 3, 5), Tanh()), (2, 3, 7, 7)),
    ]


LAYER_CASES = [pytest.param(make, shape, id=name) for name, make, shape in _layer_cases()]


@pytest.mark.parametrize("make, shape", LAYER_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(xp, rng, make, shape, dtype):
    layer = place(make(), xp, dtype=dtype, rng=rng)
    for p in layer.parameters():
        assert p.dtype == dtype
    x = xp.asarray(rng.standard_normal(shape).astype(dtype))
    y = layer.forward(x)
    assert y.dtype == dtype
    dx = layer.backward(xp.asarray(rng.standard_normal(y.shape).astype(dtype)))
    assert dx.dtype == dtype and dx.shape == x.shape
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert p.grad.dtype == dtype, name
        assert p.grad.shape == p.shape, name
        assert p.dtype == dtype, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_xent_dtype(xp, rng, dtype):
    crit = SoftmaxCrossEntropy()
    crit.forward(xp.asarray(rng.standard_normal((3, 5)).astype(dtype)), xp.asarray(np.array([0, 4, 2])))
    assert crit.loss.dtype == dtype
    assert crit.backward().dtype == dtype


@pytest.mark.parametrize("make, shape", [pytest.param(m, s, id=n) for n, m, s in _layer_cases()
                                         if n in ("conv", "conv-nobias", "linear", "sequential")])
def test_dtype_mismatch_with_parameters_raises(make, shape, rng):
    layer = make()  # float32 parameters
    x = rng.standard_normal(shape)  # float64
    first = layer[0] if isinstance(layer, Sequential) else layer
    with pytest.raises(ValueError, match=type(first).__name__) as ei:
        layer.forward(x)
    assert "float64" in str(ei.value) and "float32" in str(ei.value)
    layer.to(dtype="float64")
    layer.forward(x)  # fine once cast


# -- input checks ---------------------------------------------------------------------
def _msg(layer, x, *fragments):
    with pytest.raises(ValueError) as ei:
        layer.forward(x)
    msg = str(ei.value)
    assert msg.startswith(type(layer).__name__), msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def test_conv2d_bad_inputs():
    conv = Conv2D(3, 4, 11, stride=4)
    f32 = np.float32
    _msg(conv, np.zeros((3, 23, 27), f32), "(N, 3, H, W)", "(3, 23, 27)")        # wrong ndim
    _msg(conv, np.zeros((1, 4, 23, 27), f32), "expected 3 channels (N, 3, H, W)", "(1, 4, 23, 27)")
    msg = _msg(conv, np.zeros((1, 3, 5, 27), f32), "(N, 3, H, W)")              # too small
    assert "(1, 3, 5, 27)" in msg or "5x27" in msg
    _msg(conv, np.zeros((1, 3, 23, 27), np.int64), "int64")                     # integer dtype
    _msg(conv, [[[[0.0]]]], "list")                                             # not an array


def test_linear_bad_inputs():
    lin = Linear(5, 3)
    _msg(lin, np.zeros((4, 6), np.float32), "expected 5 features (N, 5)", "(4, 6)")
    _msg(lin, np.zeros((4, 5, 1), np.float32), "(N, 5)", "(4, 5, 1)")
    _msg(lin, np.zeros((4, 5), np.int32), "int32")
    _msg(lin, 3.0)


def test_maxpool_bad_inputs():
    pool = MaxPool2D(3, 2)
    _msg(pool, np.zeros((2, 5, 5)), "(2, 5, 5)")
    _msg(pool, np.zeros((1, 2, 2, 5)), "H, W >= 3", "(1, 2, 2, 5)")
    _msg(pool, np.zeros((1, 2, 5, 5), np.uint8), "uint8")
    _msg(pool, "image")


def test_lrn_bad_inputs():
    lrn = LocalResponseNorm()
    _msg(lrn, np.zeros((3, 4)), "(3, 4)")
    _msg(lrn, np.zeros((1, 3, 4, 4), np.int16), "int16")
    _msg(lrn, None)


@pytest.mark.parametrize("make", [ReLU, Tanh, Flatten, Dropout])
def test_elementwise_bad_inputs(make):
    layer = make()
    _msg(layer, np.zeros((2, 3), np.int64), "int64")
    _msg(layer, [1.0, 2.0], "list")


def test_flatten_needs_a_batch_axis():
    _msg(Flatten(), np.zeros(5), "(5,)")


def test_softmax_xent_bad_logits():
    crit = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"SoftmaxCrossEntropy.*\(2, 3, 1\)"):
        crit.forward(np.zeros((2, 3, 1)), np.array([0, 1]))
    with pytest.raises(ValueError, match="SoftmaxCrossEntropy.*int64"):
        crit.forward(np.zeros((2, 3), np.int64), np.array([0, 1]))


@pytest.mark.parametrize("make", [
    lambda: Conv2D(2, 2, 3), lambda: Linear(2, 2), MaxPool2D, LocalResponseNorm, ReLU, Tanh, Flatten, Dropout,
    SoftmaxCrossEntropy, lambda: Sequential(Linear(2, 2), ReLU()),
])
def test_backward_before_forward_raises(make):
    layer = make()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 2), np.float32))


def test_maxpool_unpool_and_switch_indices_before_forward_raise():
    pool = MaxPool2D()
    with pytest.raises(RuntimeError):
        pool.unpool(np.zeros((1, 1, 1, 1)))
    with pytest.raises(RuntimeError):
        pool.switch_indices()


# -- Sequential and the Layer base -------------------------------------------------------
def test_sequential_chain_and_names(rng):
    c, r, f, lin = Conv2D(2, 3, 3, padding=1), ReLU(), Flatten(), Linear(3 * 4 * 4, 5)
    net = Sequential(c, r, f, lin)
    place(net, np, rng=rng)
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert net.parameters()[0] is c.weight
    assert len(net) == 4 and net[3] is lin and list(net) == [c, r, f, lin]
    assert [n for n, _ in net.named_layers()] == ["0", "1", "2", "3"]
    assert net.num_parameters() == 3 * 2 * 9 + 3 + 5 * 48 + 5
    x = rng.standard_normal((2, 2, 4, 4))
    y = net.forward(x)
    # the same as applying the layers by hand
    expected = lin.forward(f.forward(r.forward(c.forward(x))))
    np.testing.assert_array_equal(y, expected)
    dy = rng.standard_normal(y.shape)
    net.zero_grad()
    dx = net.backward(dy)
    grads = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    lin.forward(f.forward(r.forward(c.forward(x))))
    dx2 = c.backward(r.backward(f.backward(lin.backward(dy))))
    np.testing.assert_array_equal(dx, dx2)
    for g, p in zip(grads, net.parameters()):
        np.testing.assert_array_equal(g, p.grad)


def test_sequential_nested_names():
    net = Sequential(Sequential(Linear(2, 3), ReLU()), Linear(3, 1, bias=False))
    assert [n for n, _ in net.named_parameters()] == ["0.0.weight", "0.0.bias", "1.weight"]
    assert list(net.state_dict()) == ["0.0.weight", "0.0.bias", "1.weight"]


def test_sequential_rejects_non_layers():
    with pytest.raises(ValueError, match="Sequential"):
        Sequential(Linear(2, 2), lambda x: x)


def test_train_eval_propagate():
    net = Sequential(Linear(2, 2), Sequential(Dropout(0.5)))
    assert net.eval() is net
    assert not net.training and not net[0].training and not net[1][0].training
    net.train()
    assert net[1][0].training


def test_gradients_accumulate_over_backward_calls(rng):
    lin = place(Linear(3, 2), np, rng=rng)
    x = rng.standard_normal((4, 3))
    dy = rng.standard_normal((4, 2))
    lin.forward(x)
    lin.backward(dy)
    g1 = lin.weight.grad.copy()
    lin.forward(x)
    lin.backward(dy)
    np.testing.assert_allclose(lin.weight.grad, 2 * g1, rtol=1e-15)
    np.testing.assert_allclose(g1, dy.T @ x, rtol=1e-12)


def test_frozen_parameter_gets_no_gradient(rng):
    conv = place(Conv2D(2, 2, 3), np, rng=rng)
    conv.weight.requires_grad = False
    y = conv.forward(rng.standard_normal((1, 2, 4, 4)))
    conv.backward(np.ones_like(y))
    assert conv.weight.grad is None
    np.testing.assert_allclose(conv.bias.grad, [4.0, 4.0])


def test_state_dict_round_trip(rng):
    a = place(Sequential(Conv2D(2, 3, 3), Linear(3, 2)), np, dtype=np.float32, rng=rng)
    b = Sequential(Conv2D(2, 3, 3), Linear(3, 2))
    b.load_state_dict({k: v.astype(np.float64) for k, v in a.state_dict().items()})
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and pb.dtype == np.float32
        np.testing.assert_array_equal(pa.data, pb.data)
        assert pa.data is not pb.data
    with pytest.raises(KeyError):
        b.load_state_dict({"0.weight": a.state_dict()["0.weight"]})
    bad = dict(a.state_dict())
    bad["1.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="1.bias"):
        b.load_state_dict(bad)


def test_layer_to_dtype_casts_params_and_grads():
    lin = Linear(2, 2)
    lin.weight.grad = np.ones((2, 2), np.float32)
    lin.to(dtype="float64")
    assert lin.weight.dtype == np.float64 and lin.bias.dtype == np.float64
    assert lin.weight.grad.dtype == np.float64


# -- init ----------------------------------------------------------------------------------
def _check_normal(values, mean, std):
    n = values.size
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(n)
    assert abs(values.std() - std) < 5 * std / math.sqrt(2 * n)


def test_init_normal_statistics():
    p = Linear(400, 250).weight  # 1e5 values
    init.normal_(p, 0.01, rng=0)
    _check_normal(p.data.astype(np.float64), 0.0, 0.01)
    init.normal_(p, 0.5, rng=1, mean=3.0)
    _check_normal(p.data.astype(np.float64), 3.0, 0.5)


def test_init_constant():
    p = Conv2D(2, 4, 3).bias
    init.constant_(p, 1.0)
    assert p.dtype == np.float32
    np.testing.assert_array_equal(p.data, np.ones(4, np.float32))
    init.constant_(p, 0.0)
    assert not p.data.any()


@pytest.mark.parametrize("layer, fan_in", [
    (lambda: Conv2D(16, 256, 5, groups=2), 8 * 25),
    (lambda: Conv2D(3, 96, 11), 3 * 121),
    (lambda: Linear(300, 400), 300),
])
def test_init_he_normal_std(layer, fan_in):
    p = layer().weight
    assert init.fans(p.shape)[0] == fan_in
    init.he_normal_(p, rng=7)
    _check_normal(p.data.astype(np.float64), 0.0, math.sqrt(2.0 / fan_in))


def test_init_fans():
    assert init.fans((96, 3, 11, 11)) == (363, 96 * 121)
    assert init.fans((10, 20)) == (20, 10)
    with pytest.raises(ValueError):
        init.fans((5,))


def test_init_xavier_bounds():
    p = Linear(200, 300).weight
    init.xavier_uniform_(p, rng=3)
    a = math.sqrt(6.0 / (200 + 300))
    v = p.data.astype(np.float64)
    assert v.min() >= -a and v.max() <= a
    assert v.min() < -0.99 * a and v.max() > 0.99 * a
    assert abs(v.var() - a * a / 3) < 0.02 * a * a / 3
    q = Conv2D(4, 6, 3).weight
    init.xavier_uniform_(q, rng=3)
    b = math.sqrt(6.0 / (4 * 9 + 6 * 9))
    assert np.abs(q.data).max() <= b and np.abs(q.data).max() > 0.9 * b


@pytest.mark.parametrize("fn", [
    lambda p, r: init.normal_(p, 0.1, rng=r), lambda p, r: init.he_normal_(p, rng=r),
    lambda p, r: init.xavier_uniform_(p, rng=r),
])
def test_init_seeded_and_dtype_preserved(fn):
    a, b, c = Linear(5, 4).weight, Linear(5, 4).weight, Linear(5, 4).weight
    fn(a, 11)
    fn(b, 11)
    fn(c, 12)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    d = Linear(5, 4, dtype=np.float64).weight
    fn(d, 11)
    assert d.dtype == np.float64
    np.testing.assert_array_equal(d.data.astype(np.float32), a.data)
    # a Generator works too and advances
    g = np.random.default_rng(11)
    fn(b, g)
    np.testing.assert_array_equal(a.data, b.data)
    fn(b, g)
    assert not np.array_equal(a.data, b.data)


@pytest.mark.gpu
def test_init_on_gpu_equals_cpu():
    cpu = Linear(5, 4).weight
    gpu = Linear(5, 4).to("cuda:0").weight
    init.he_normal_(cpu, rng=5)
    init.he_normal_(gpu, rng=5)
    assert gpu.device == minidl.Device("cuda:0") and gpu.dtype == np.float32
    np.testing.assert_array_equal(asnumpy(gpu.data), cpu.data)


# -- CuPy against NumPy -------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("make, shape", LAYER_CASES)
def test_gpu_layer_matches_numpy_float32(make, shape):
    import cupy

    rng = np.random.default_rng(0)
    cpu_layer = place(make(), np, dtype=np.float32, rng=rng)
    gpu_layer = make()
    gpu_layer.load_state_dict(cpu_layer.state_dict())
    gpu_layer.to("cuda:0")
    for p in gpu_layer.parameters():
        assert isinstance(p.data, cupy.ndarray) and p.dtype == np.float32
    x = rng.standard_normal(shape).astype(np.float32)
    y_c = cpu_layer.forward(x)
    y_g = gpu_layer.forward(cupy.asarray(x))
    assert isinstance(y_g, cupy.ndarray) and y_g.dtype == np.float32

    def close(a, b):
        b = np.asarray(b, dtype=np.float64)
        np.testing.assert_allclose(asnumpy(a), b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())))

    close(y_g, y_c)
    dy = rng.standard_normal(y_c.shape).astype(np.float32)
    close(gpu_layer.backward(cupy.asarray(dy)), cpu_layer.backward(dy))
    for (n, pc), (_, pg) in zip(cpu_layer.named_parameters(), gpu_layer.named_parameters()):
        assert pg.grad.dtype == np.float32, n
        close(pg.grad, pc.grad)


@pytest.mark.gpu
def test_gpu_softmax_xent_matches_numpy():
    import cupy

    rng = np.random.default_rng(0)
    logits = (100 * rng.standard_normal((6, 9))).astype(np.float32)
    labels = rng.integers(0, 9, size=6)
    c, g = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    lc = c.forward(logits, labels)
    lg = g.forward(cupy.asarray(logits), cupy.asarray(labels))
    assert lg == pytest.approx(lc, rel=1e-5)
    np.testing.assert_allclose(asnumpy(g.backward()), c.backward(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="SoftmaxCrossEntropy"):
        g.forward(cupy.asarray(logits), labels)  # labels on the host, logits on the GPU


@pytest.mark.gpu
def test_gpu_layer_rejects_host_input():
    conv = Conv2D(3, 4, 3).to("cuda:0")
    with pytest.raises(ValueError, match="Conv2D.*cuda:0"):
        conv.forward(np.zeros((1, 3, 5, 5), np.float32))


# -- memory layout: conv outputs are (N, O, H, W) views of (O, N, H, W) buffers -------------------
def _channel_major(xp, a):
    """The same values as ``a`` (N, C, ...), stored channel-major like a conv output."""
    a = xp.asarray(a)
    axes = (1, 0) + tuple(range(2, a.ndim))
    return xp.ascontiguousarray(a.transpose(axes)).transpose(axes)


@pytest.mark.parametrize("make, shape", [pytest.param(m, s, id=n) for n, m, s in _layer_cases()
                                         if len(s) == 4])
def test_layers_accept_channel_major_views(xp, rng, make, shape):
    layer = place(make(), xp, rng=rng)
    state = layer.rng_state()
    x = rng.standard_normal(shape)
    y_ref = asnumpy(layer.forward(xp.asarray(x)))
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = asnumpy(layer.backward(xp.asarray(dy)))
    grads_ref = [asnumpy(p.grad) for p in layer.parameters()]
    layer.zero_grad()
    layer.set_rng_state(state)  # dropout draws the same mask again
    xv = _channel_major(xp, x)
    assert not xv.flags.c_contiguous
    y = layer.forward(xv)
    np.testing.assert_allclose(asnumpy(y), y_ref, rtol=1e-12, atol=1e-14)
    dyv = _channel_major(xp, dy) if dy.ndim == 4 else xp.asarray(dy)
    np.testing.assert_allclose(asnumpy(layer.backward(dyv)), dx_ref, rtol=1e-12, atol=1e-14)
    for g, p in zip(grads_ref, layer.parameters()):
        np.testing.assert_allclose(asnumpy(p.grad), g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2D(3, 4, 3, stride=2, padding=1, groups=1), (2, 3, 7, 6)),
    (lambda: Linear(5, 4), (3, 5)),
])
def test_need_input_grad_false_skips_dx_only(rng, make, shape):
    a, b = place(make(), np, rng=rng), make().to(dtype="float64")
    b.load_state_dict(a.state_dict())
    b.need_input_grad = False
    x = rng.standard_normal(shape)
    y = a.forward(x)
    np.testing.assert_array_equal(b.forward(x), y)
    dy = rng.standard_normal(y.shape)
    assert a.backward(dy) is not None
    assert b.backward(dy) is None
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad)
