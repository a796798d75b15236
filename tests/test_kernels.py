"""minidl.kernels: both kernel sets' im2col/col2im, max-pool with switches and
channel window sums against loop references; the fast set against the
reference set, operation by operation; the fast set's bands, layouts and
threads; the counter-based uniform generator; choosing a set; and, on a GPU,
CuPy against NumPy. The layer, gradient and model tests run on both sets too
(the ``kernel_set`` fixture)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import minidl
import reference as ref
from minidl import Conv2D, LocalResponseNorm, MaxPool2D, Sequential, asnumpy, init, kernels
from minidl.kernels import cpu, fast
from minidl.kernels import reference as kref


@pytest.fixture(params=["fast", "reference"])
def impl(request):
    """A kernel set's module: its primitives are tested directly."""
    return kernels.SETS[request.param]


def fast_layout(impl, col, n):
    """im2col columns in the fast set's (oy, ox, n) order (the reference set's are (n, oy, ox))."""
    if impl is fast:
        return col
    return col.reshape(col.shape[0], n, -1).transpose(0, 2, 1).reshape(col.shape[0], -1)

IM2COL_CASES = [
    # (N, C, H, W, kh, kw, stride, pad)
    (2, 3, 7, 5, 3, 3, 1, 0),
    (1, 2, 7, 9, 3, 3, 2, 1),
    (2, 1, 9, 8, 2, 2, 3, 0),   # stride > kernel: some pixels in no window
    (1, 2, 11, 13, 3, 3, 4, 2),  # stride > kernel with padding
    (1, 3, 23, 27, 11, 11, 4, 0),
    (2, 2, 5, 6, 5, 5, 1, 2),
    (1, 2, 4, 5, 1, 1, 1, 0),
    (1, 1, 6, 7, 2, 3, 1, 1),    # rectangular kernel
    (1, 1, 3, 3, 3, 3, 1, 0),    # a single window
]


def _rand(xp, rng, shape, dtype=np.float64):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


@pytest.mark.parametrize("case", IM2COL_CASES)
def test_im2col_matches_loop_reference(xp, rng, impl, case):
    n, c, h, w, kh, kw, s, p = case
    x = rng.standard_normal((n, c, h, w))
    col = fast_layout(impl, impl.im2col(xp.asarray(x), kh, kw, s, p), n)
    oh, ow = ref.out_size(h, kh, s, p), ref.out_size(w, kw, s, p)
    assert col.shape == (c * kh * kw, n * oh * ow)
    assert col.dtype == np.float64
    np.testing.assert_array_equal(asnumpy(col), ref.im2col(x, kh, kw, s, p))


@pytest.mark.parametrize("case", IM2COL_CASES)
def test_col2im_is_the_adjoint_of_im2col(xp, rng, impl, case):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    n, c, h, w, kh, kw, s, p = case
    oh, ow = ref.out_size(h, kh, s, p), ref.out_size(w, kw, s, p)
    for _ in range(2):
        x = rng.standard_normal((n, c, h, w))
        cc = rng.standard_normal((c * kh * kw, n * oh * ow))
        lhs = float(np.sum(asnumpy(impl.im2col(xp.asarray(x), kh, kw, s, p)) * cc))
        back = impl.col2im(xp.asarray(cc), (n, c, h, w), kh, kw, s, p)
        assert back.shape == (n, c, h, w) and back.dtype == np.float64
        rhs = float(np.sum(x * asnumpy(back)))
        assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


@pytest.mark.parametrize("case", IM2COL_CASES[:4])
def test_col2im_of_ones_counts_window_coverage(xp, impl, case):
    """col2im(ones) at each pixel = the number of windows that copy it (a direct count)."""
    n, c, h, w, kh, kw, s, p = case
    oh, ow = ref.out_size(h, kh, s, p), ref.out_size(w, kw, s, p)
    got = asnumpy(impl.col2im(xp.ones((c * kh * kw, n * oh * ow)), (n, c, h, w), kh, kw, s, p))
    count = np.zeros((h, w))
    for oy in range(oh):
        for ox in range(ow):
            for i in range(kh):
                for j in range(kw):
                    yy, xx = oy * s + i - p, ox * s + j - p
                    if 0 <= yy < h and 0 <= xx < w:
                        count[yy, xx] += 1
    np.testing.assert_array_equal(got, np.broadcast_to(count, (n, c, h, w)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_col2im_keep_dtype(xp, rng, impl, dtype):
    x = _rand(xp, rng, (1, 2, 6, 6), dtype)
    col = impl.im2col(x, 3, 3, 1, 1)
    assert col.dtype == dtype
    assert impl.col2im(col, x.shape, 3, 3, 1, 1).dtype == dtype


POOL_CASES = [(3, 2, 7, 9), (3, 2, 8, 7), (2, 2, 6, 8), (3, 3, 9, 10), (2, 1, 4, 5), (3, 2, 3, 3), (2, 3, 8, 9)]


@pytest.mark.parametrize("k, s, h, w", POOL_CASES)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("batch_innermost", [False, True])
def test_maxpool_kernels_match_reference(xp, rng, impl, k, s, h, w, ties, batch_innermost):
    if ties:
        x = rng.integers(0, 3, size=(2, 3, h, w)).astype(np.float64)  # many ties
    else:
        x = rng.standard_normal((2, 3, h, w))
    xin = xp.asarray(x)
    if batch_innermost:   # the conv layers' (C, H, W, N) buffers
        xin = xp.ascontiguousarray(xin.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    y, sw = impl.maxpool_forward(xin, k, s)
    ry, rsw, _ = ref.maxpool(x, k, s)
    assert sw.dtype == np.int8
    np.testing.assert_array_equal(asnumpy(y), ry)
    np.testing.assert_array_equal(asnumpy(sw), rsw)
    dy = rng.standard_normal(ry.shape)
    dx = impl.maxpool_backward(xp.asarray(dy), sw, x.shape, k, s)
    np.testing.assert_allclose(asnumpy(dx), ref.maxpool_backward(dy, x, k, s), rtol=0, atol=1e-12)


@pytest.mark.parametrize("per_band", [1, 2, 3])        # channels per band: 5 bands, 3 (uneven), 2 (uneven)
@pytest.mark.parametrize("batch_innermost", [False, True])
def test_maxpool_channel_bands_give_the_same_bits(rng, monkeypatch, per_band, batch_innermost):
    x = rng.integers(0, 3, size=(4, 5, 9, 7)).astype(np.float32)     # ties, and overlapping windows
    if batch_innermost:
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    dy = rng.standard_normal((4, 5, 4, 3)).astype(np.float32)
    runs = []
    for nbytes in (1 << 40, per_band * x[:, :1].nbytes):
        monkeypatch.setattr(cpu, "POOL_BAND_BYTES", nbytes)
        assert len(cpu.axis_bands(x, 1, nbytes)) == (1 if nbytes > x.nbytes else -(-5 // per_band))
        y, sw = fast.maxpool_forward(x, 3, 2)
        runs.append((y, sw, fast.maxpool_backward(dy, sw, x.shape, 3, 2)))
    for whole, banded in zip(*runs):
        np.testing.assert_array_equal(banded, whole)
    y, sw, dx = runs[1]
    ry, rsw, _ = ref.maxpool(x.astype(np.float64), 3, 2)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(sw, rsw)
    order = np.argsort(x.strides)                    # the memory layout carries through
    assert (np.argsort(y.strides) == order).all() and (np.argsort(sw.strides) == order).all()
    assert dx.shape == x.shape and (np.argsort(dx.strides) == np.argsort(dy.strides)).all()


def test_channel_bands_cover_every_channel_once():
    x = np.zeros((3, 10, 4, 4), dtype=np.float32)
    for nbytes, expect in ((1, 10), (x[:, :3].nbytes, 4), (x[:, :3].nbytes + 5, 4), (x.nbytes, 1), (1 << 40, 1)):
        bands = cpu.axis_bands(x, 1, nbytes)
        assert len(bands) == expect
        seen = np.zeros(10, int)
        for b in bands:
            seen[b] += 1
        assert (seen == 1).all()
    assert cpu.axis_bands(np.zeros((2, 0, 3, 3)), 1, 100) == [slice(None)]


@pytest.mark.parametrize("shape", [(2, 7, 3, 4), (2, 3, 2, 2), (1, 1, 3, 2), (2, 4, 5), (1, 6, 2, 1, 3), (3, 2)])
@pytest.mark.parametrize("before, after", [(2, 2), (2, 1), (1, 2), (0, 0), (3, 0), (0, 4), (6, 6)])
def test_channel_window_sum_matches_reference(xp, rng, impl, shape, before, after):
    x = rng.standard_normal(shape)
    got = impl.channel_window_sum(xp.asarray(x), before, after)
    assert got.shape == x.shape and got.dtype == np.float64
    np.testing.assert_allclose(asnumpy(got), ref.channel_window_sum(x, before, after), rtol=1e-12, atol=1e-12)


def test_channel_window_sum_does_not_modify_input(xp, rng, impl):
    x = xp.asarray(rng.standard_normal((2, 5, 3, 3)))
    x0 = x.copy()
    impl.channel_window_sum(x, 2, 2)
    np.testing.assert_array_equal(asnumpy(x), asnumpy(x0))


@pytest.mark.parametrize("size, k, stride, pad, expected", [
    (227, 11, 4, 0, 55), (27, 5, 1, 2, 27), (55, 3, 2, 0, 27), (27, 3, 2, 0, 13), (13, 3, 2, 0, 6),
    (224, 11, 4, 2, 55), (8, 3, 2, 0, 3), (7, 3, 2, 0, 3),
])
def test_conv_out_size(size, k, stride, pad, expected):
    assert kernels.conv_out_size(size, k, stride, pad) == expected


# -- group_matmul and neg_power ------------------------------------------------------
@pytest.mark.parametrize("g, m, k, n", [(1, 3, 4, 5), (2, 5, 7, 3), (3, 1, 6, 2), (2, 4, 1, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_matmul_matches_loops(xp, rng, g, m, k, n, dtype):
    a = rng.standard_normal((g, m, k)).astype(dtype)
    b = rng.standard_normal((g, k, n)).astype(dtype)
    out = fast.group_matmul(xp.asarray(a), xp.asarray(b))
    assert out.shape == (g, m, n) and out.dtype == dtype
    expected = np.zeros((g, m, n))
    for gi in range(g):
        for i in range(m):
            for j in range(n):
                expected[gi, i, j] = sum(float(a[gi, i, q]) * float(b[gi, q, j]) for q in range(k))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(asnumpy(out), expected, rtol=tol, atol=tol)
    # transposed (non-contiguous) operands
    at = np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1)
    bt = np.ascontiguousarray(b.transpose(0, 2, 1)).transpose(0, 2, 1)
    np.testing.assert_allclose(asnumpy(fast.group_matmul(xp.asarray(at), xp.asarray(bt))), expected,
                               rtol=tol, atol=tol)
    # into a column slice of a wider array (as Conv2D writes a band of output rows)
    wide = xp.zeros((g, m, n + 5), dtype=dtype)
    res = fast.group_matmul(xp.asarray(a), xp.asarray(b), out=wide[:, :, 2:2 + n])
    np.testing.assert_allclose(asnumpy(wide[:, :, 2:2 + n]), expected, rtol=tol, atol=tol)
    assert not np.any(asnumpy(wide[:, :, :2])) and not np.any(asnumpy(wide[:, :, 2 + n:]))
    assert res.shape == (g, m, n)


@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_neg_power(xp, rng, beta, dtype):
    s = (0.5 + 10 * rng.random((3, 4, 5))).astype(dtype)
    s0 = s.copy()
    arr = xp.asarray(s)
    got = fast.neg_power(arr, beta)
    assert got.dtype == dtype and got.shape == s.shape
    expected = np.array([v ** -beta for v in s.astype(np.float64).ravel()]).reshape(s.shape)
    np.testing.assert_allclose(asnumpy(got), expected, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(asnumpy(arr), s0)  # the input is not modified


@pytest.mark.parametrize("beta", [0.75, 0.5])
def test_neg_power_into_a_strided_out(xp, rng, beta):
    s = 0.5 + 10 * rng.random((4, 6))
    wide = xp.zeros((4, 9))
    got = fast.neg_power(xp.asarray(s), beta, out=wide[:, 1:7])
    np.testing.assert_allclose(asnumpy(wide[:, 1:7]), s ** -beta, rtol=1e-14)
    np.testing.assert_allclose(asnumpy(got), s ** -beta, rtol=1e-14)
    assert not np.any(asnumpy(wide[:, [0, 7, 8]]))


@pytest.mark.parametrize("shape", [(3, 4, 17, 5), (2, 3, 9), (1, 1, 1, 1), (2, 3, 0, 4)])
@pytest.mark.parametrize("band_bytes", [1, 200, 1 << 30])
def test_row_bands_cover_every_row_once(monkeypatch, shape, band_bytes):
    monkeypatch.setattr(cpu, "ROW_BAND_BYTES", band_bytes)
    x = np.zeros(shape, dtype=np.float32)
    bands = fast.row_bands(x)
    for b in bands:
        x[b] += 1
    assert np.all(x == 1)
    row_bytes = x[:, :, :1].nbytes
    if shape[2]:
        assert all(x[b].shape[2] == max(1, band_bytes // row_bytes) for b in bands[:-1])
        assert len(bands) == (1 if band_bytes >= x.nbytes else -(-shape[2] // max(1, band_bytes // row_bytes)))


def test_row_bands_needs_rows():
    with pytest.raises(ValueError, match=r"\(N, C, H, \.\.\.\)"):
        fast.row_bands(np.zeros((2, 3)))


# -- hash_uniform --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hash_uniform_deterministic_and_in_range(xp, dtype):
    a = asnumpy(kernels.hash_uniform((100, 1000), 7, 3, xp, dtype))
    b = asnumpy(kernels.hash_uniform((100, 1000), 7, 3, xp, dtype))
    assert a.shape == (100, 1000) and a.dtype == dtype
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0.0 and a.max() < 1.0


def test_hash_uniform_counters_and_seeds_differ(xp):
    base = asnumpy(kernels.hash_uniform((10000,), 1, 0, xp))
    for seed, counter in [(1, 1), (1, 2), (2, 0), (0, 1), (0, 0)]:
        other = asnumpy(kernels.hash_uniform((10000,), seed, counter, xp))
        assert np.mean(other == base) < 0.01
        assert abs(np.corrcoef(base, other)[0, 1]) < 0.05


def test_hash_uniform_roughly_uniform(xp):
    u = asnumpy(kernels.hash_uniform((100000,), 123, 4, xp, np.float64))
    # chi-square over 20 equal bins: 19 degrees of freedom, 99.99% quantile ~ 47
    counts, _ = np.histogram(u, bins=20, range=(0.0, 1.0))
    expected = u.size / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 47.0
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 0.002
    # neighbours are not correlated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02
    # many distinct values (24 bits of resolution)
    assert np.unique(u).size > 99000


def test_hash_uniform_depends_only_on_index():
    """The same element gets the same number whatever the shape around it."""
    a = kernels.hash_uniform((6, 5), 3, 9)
    b = kernels.hash_uniform((30,), 3, 9)
    np.testing.assert_array_equal(a.ravel(), b)


def test_hash_uniform_float16_in_range():
    u = kernels.hash_uniform((10000,), 0, 0, np, np.float16)
    assert u.dtype == np.float16
    assert np.all(np.isfinite(u)) and u.min() >= 0 and u.max() < 1


# -- CuPy against NumPy ------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_kernels_equal_numpy(rng):
    import cupy

    for n, c, h, w, kh, kw, s, p in IM2COL_CASES:
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        col_c = fast.im2col(x, kh, kw, s, p)
        col_g = fast.im2col(cupy.asarray(x), kh, kw, s, p)
        np.testing.assert_array_equal(asnumpy(col_g), col_c)
        cc = rng.standard_normal(col_c.shape).astype(np.float32)
        np.testing.assert_allclose(asnumpy(fast.col2im(cupy.asarray(cc), x.shape, kh, kw, s, p)),
                                   fast.col2im(cc, x.shape, kh, kw, s, p), rtol=1e-5, atol=1e-5)
    for k, s, h, w in POOL_CASES:
        x = rng.integers(0, 3, size=(2, 3, h, w)).astype(np.float32)
        y_c, sw_c = fast.maxpool_forward(x, k, s)
        y_g, sw_g = fast.maxpool_forward(cupy.asarray(x), k, s)
        np.testing.assert_array_equal(asnumpy(y_g), y_c)
        np.testing.assert_array_equal(asnumpy(sw_g), sw_c)
        dy = rng.standard_normal(y_c.shape).astype(np.float32)
        np.testing.assert_allclose(asnumpy(fast.maxpool_backward(cupy.asarray(dy), sw_g, x.shape, k, s)),
                                   fast.maxpool_backward(dy, sw_c, x.shape, k, s), rtol=1e-6, atol=1e-6)
    x = rng.standard_normal((2, 7, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(asnumpy(fast.channel_window_sum(cupy.asarray(x), 2, 1)),
                               fast.channel_window_sum(x, 2, 1), rtol=1e-5, atol=1e-6)
    for dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(asnumpy(kernels.hash_uniform((33, 70), 5, 11, cupy, dtype)),
                                      kernels.hash_uniform((33, 70), 5, 11, np, dtype))



@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
@pytest.mark.parametrize("size, block, threads", [(10, 4, 1), (12, 4, 1), (3, 8, 1), (1000, 1 << 18, 1),
                                                  (10, 4, 2), (13, 2, 3), (12, 4, 5), (1000, 64, None)])
def test_momentum_update_in_blocks_is_bit_identical_to_whole_arrays(weight_decay, size, block, threads):
    rng = np.random.default_rng(size)
    w, g, v = (rng.standard_normal(size).astype(np.float32) for _ in range(3))
    w2, v2 = w.copy(), v.copy()
    cpu.momentum_update(w, g, v, 0.01, 0.9, weight_decay, block=block, threads=threads)
    t = np.float32
    v2 *= t(0.9)
    if weight_decay:
        v2 -= t(weight_decay * 0.01) * w2
    v2 -= t(0.01) * g
    w2 += v2
    np.testing.assert_array_equal(v, v2)
    np.testing.assert_array_equal(w, w2)


def test_momentum_update_splits_the_blocks_between_threads(monkeypatch):
    calls = []
    real = cpu.run_parallel
    monkeypatch.setattr(cpu, "run_parallel", lambda fn, parts: calls.append([p[0].size for p in parts])
                        or real(fn, parts))
    w, g, v = (np.ones(10, np.float32) for _ in range(3))
    cpu.momentum_update(w, g, v, 0.5, 0.0, 0.0, block=3, threads=2)     # 4 blocks: 2 per thread
    cpu.momentum_update(w, g, v, 0.5, 0.0, 0.0, block=3, threads=8)     # no more threads than blocks
    cpu.momentum_update(w[:0], g[:0], v[:0], 0.5, 0.0, 0.0, threads=2)  # nothing to do
    assert calls == [[6, 4], [3, 3, 3, 1]]
    np.testing.assert_array_equal(w, 0.0)      # two steps of w - 0.5 * 1


def test_run_parallel_keeps_order_and_raises_the_callers_errors():
    import threading

    names = cpu.run_parallel(lambda i: (i, threading.current_thread().name), [(i,) for i in range(3)])
    assert [i for i, _ in names] == [0, 1, 2]
    assert names[0][1] == threading.current_thread().name   # the first runs in the caller
    assert all(n.startswith("minidl-cpu") for _, n in names[1:])

    def boom(i):
        if i == 1:
            raise ValueError("part 1 failed")
        return i

    with pytest.raises(ValueError, match="part 1 failed"):
        cpu.run_parallel(boom, [(0,), (1,)])


def test_momentum_update_of_non_contiguous_arrays_writes_through(kernel_set):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 8))
    v = np.zeros((8, 6)).T                      # a transposed velocity: not C-contiguous
    g = rng.standard_normal((6, 8))
    w0 = w.copy()
    kernels.momentum_update(w, g, v, 0.1, 0.9, 0.0)
    np.testing.assert_allclose(v, -0.1 * g)
    np.testing.assert_allclose(w, w0 - 0.1 * g)


# -- the fast set against the reference set, operation by operation ------------------
SET_CONV_CASES = [
    # N, C, H, W, O, k, stride, pad, groups
    pytest.param((2, 3, 23, 27, 4, 11, 4, 0, 1), id="11x11-s4"),
    pytest.param((2, 4, 7, 9, 6, 5, 1, 2, 2), id="5x5-p2-g2"),
    pytest.param((3, 6, 9, 8, 4, 3, 2, 1, 2), id="3x3-s2-p1-g2"),
    pytest.param((1, 2, 7, 7, 2, 2, 3, 0, 1), id="stride-greater-than-kernel"),
]


def _both_sets(fn):
    """fn() under the fast set, then under the reference set."""
    out = []
    for name in ("fast", "reference"):
        with kernels.using(name):
            out.append(fn())
    return out


@pytest.mark.parametrize("case", SET_CONV_CASES)
def test_conv_kernels_of_both_sets_agree(xp, rng, case):
    n, c, h, w, o, k, s, p, g = case
    x = xp.asarray(rng.standard_normal((n, c, h, w)))
    wt = xp.asarray(rng.standard_normal((o, c // g, k, k)))
    oh, ow = ref.out_size(h, k, s, p), ref.out_size(w, k, s, p)
    dy = xp.asarray(rng.standard_normal((n, o, oh, ow)))

    def run():
        y, saved = kernels.conv2d_forward(x, wt, s, p, g)
        dw, dx = kernels.conv2d_backward(dy, saved, wt, s, p, g)
        return y, dw, dx, kernels.conv2d_transpose(dy, wt, x.shape, s, p, g)

    for a, b in zip(*_both_sets(run)):
        np.testing.assert_allclose(asnumpy(a), asnumpy(b), rtol=1e-12, atol=1e-12)
    y = asnumpy(_both_sets(run)[1][0])
    np.testing.assert_allclose(y, ref.conv2d(asnumpy(x), asnumpy(wt), None, s, p, g), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("need_dw, need_dx", [(True, False), (False, True)])
def test_conv_backward_computes_only_what_is_asked(rng, kernel_set, need_dw, need_dx):
    x, wt = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3))
    y, saved = kernels.conv2d_forward(x, wt, 2, 1, 1)
    dw, dx = kernels.conv2d_backward(np.ones_like(y), saved, wt, 2, 1, 1, need_dw=need_dw, need_dx=need_dx)
    assert (dw is not None) == need_dw and (dx is not None) == need_dx


@pytest.mark.parametrize("size, alpha, beta", [(5, 1e-1, 0.75), (3, 2.0, 0.5), (4, 1.0, 1.0)])
def test_lrn_and_pool_kernels_of_both_sets_agree(xp, rng, size, alpha, beta):
    x = xp.asarray(2 * rng.standard_normal((3, 7, 6, 5)))
    dy = xp.asarray(rng.standard_normal(x.shape))

    def run():
        y, saved = kernels.lrn_forward(x, size, alpha, beta, 2.0)
        p, sw = kernels.maxpool_forward(y, 3, 2)
        return y, kernels.lrn_backward(dy, saved, size, alpha, beta, 2.0), p, sw, \
            kernels.maxpool_backward(p, sw, y.shape, 3, 2)

    fast_out, ref_out = _both_sets(run)
    for a, b in zip(fast_out, ref_out):
        np.testing.assert_allclose(asnumpy(a), asnumpy(b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(asnumpy(ref_out[0]), ref.lrn(asnumpy(x), size, alpha, beta, 2.0), rtol=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 5e-4])
def test_sgd_kernels_of_both_sets_are_bit_identical(xp, weight_decay):
    rng = np.random.default_rng(1)
    start = [xp.asarray(rng.standard_normal(1000).astype(np.float32)) for _ in range(3)]

    def run():
        w, g, v = (a.copy() for a in start)
        for _ in range(3):
            kernels.momentum_update(w, g, v, 0.01, 0.9, weight_decay)
        return w, v

    for a, b in zip(*_both_sets(run)):
        np.testing.assert_array_equal(asnumpy(a), asnumpy(b))


def test_backward_uses_the_set_that_ran_forward(rng):
    """``saved`` belongs to the set that made it: switching sets in between is harmless."""
    x, wt = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    with kernels.using("reference"):
        y, saved = kernels.conv2d_forward(x, wt, 1, 1, 1)
    with kernels.using("fast"):
        dw, dx = kernels.conv2d_backward(np.ones_like(y), saved, wt, 1, 1, 1)
        _, fast_saved = kernels.conv2d_forward(x, wt, 1, 1, 1)
        dw_fast, dx_fast = kernels.conv2d_backward(np.ones_like(y), fast_saved, wt, 1, 1, 1)
    np.testing.assert_allclose(dw, dw_fast, rtol=1e-12)
    np.testing.assert_allclose(dx, dx_fast, rtol=1e-12)


# -- choosing a set ---------------------------------------------------------------------
def test_use_and_using_switch_the_set_and_restore_it():
    assert kernels.active() == "fast"
    with kernels.using("reference"):
        assert kernels.active() == "reference"
        with kernels.using("fast"):
            assert kernels.active() == "fast"
        assert kernels.active() == "reference"
    assert kernels.active() == "fast"
    with pytest.raises(RuntimeError):
        with kernels.using("reference"):
            raise RuntimeError("inside")
    assert kernels.active() == "fast"
    kernels.use("reference")
    try:
        conv = Conv2D(1, 1, 3)
        y, (impl, _) = kernels.conv2d_forward(np.ones((1, 1, 3, 3)), conv.weight.data, 1, 0, 1)
        assert impl is kref
    finally:
        kernels.use("fast")


def test_an_unknown_set_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown kernel set 'quick'; expected one of 'fast', 'reference'"):
        kernels.use("quick")
    assert kernels.active() == "fast"


@pytest.mark.parametrize("value, expect", [("reference", "reference"), ("fast", "fast"), ("", "fast"), ("nope", None)])
def test_the_environment_variable_chooses_the_set(value, expect):
    code = ("from minidl import kernels\n"
            "try:\n    print(kernels.active())\nexcept ValueError as e:\n    print('error:', e)")
    env = dict(os.environ, MINIDL_KERNELS=value)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    if expect:
        assert out.strip() == expect
    else:
        assert out.startswith(f"error: MINIDL_KERNELS: unknown kernel set {value!r}")


# -- the fast set: bands of output rows in convolutions ------------------------------------
def _conv(c, o, k, s, p, g=1, rng=None, dtype=np.float64):
    conv = Conv2D(c, o, k, stride=s, padding=p, groups=g).to(dtype=dtype)
    if rng is not None:
        for prm in conv.parameters():
            prm.data = rng.standard_normal(prm.shape).astype(dtype)
    return conv


@pytest.mark.parametrize("case", SET_CONV_CASES)
@pytest.mark.parametrize("rows", [1, 2])
def test_conv_bands_give_the_whole_result(xp, rng, monkeypatch, case, rows):
    """Columns built a few output rows at a time: the same y, dx, dW and db as all at once."""
    n, c, h, w, o, k, s, p, g = case
    conv = _conv(c, o, k, s, p, g, rng)
    if xp is not np:
        conv.to("cuda:0")
    x = xp.asarray(rng.standard_normal((n, c, h, w)))
    oh, ow = ref.out_size(h, k, s, p), ref.out_size(w, k, s, p)
    dy = xp.asarray(rng.standard_normal((n, o, oh, ow)))
    results = []
    for budget in (None, rows * c * k * k * ow * n * 8):       # all rows; `rows` rows of float64 columns
        monkeypatch.setattr(fast, "CONV_BAND_BYTES", budget)
        expect = 1 if budget is None else -(-oh // rows)
        assert len(fast.conv_bands((n, c, h + 2 * p, w + 2 * p), k, s, 8, x)) == expect
        conv.zero_grad()
        y = conv.forward(x)
        results.append((y, conv.backward(dy), conv.weight.grad, conv.bias.grad))
    for a, b in zip(*results):
        np.testing.assert_allclose(asnumpy(b), asnumpy(a), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("need_input_grad, frozen", [(False, False), (True, True)])
def test_conv_bands_skip_what_is_not_needed(rng, monkeypatch, need_input_grad, frozen):
    conv = _conv(3, 4, 5, 2, 1, rng=rng)
    conv.need_input_grad = need_input_grad
    conv.weight.requires_grad = not frozen
    x = rng.standard_normal((2, 3, 15, 12))
    results = []
    for budget in (None, 1):
        monkeypatch.setattr(fast, "CONV_BAND_BYTES", budget)
        conv.zero_grad()
        y = conv.forward(x)
        results.append((conv.backward(np.ones_like(y)), conv.weight.grad, conv.bias.grad))
    (dx0, dw0, db0), (dx1, dw1, db1) = results
    if need_input_grad:
        np.testing.assert_allclose(dx1, dx0, rtol=1e-12, atol=1e-12)
    else:
        assert dx0 is None and dx1 is None
    if frozen:
        assert dw1 is None
    else:
        np.testing.assert_allclose(dw1, dw0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db1, db0, rtol=1e-12, atol=1e-12)


def test_conv_default_bands_fit_the_cpu_budget():
    assert fast.CONV_BAND_BYTES is None
    x = np.zeros((8, 3, 227, 227), np.float32)     # conv1 at batch 8: 35 MB of columns
    bands = fast.conv_bands(x.shape, 11, 4, 4, x)
    assert len(bands) > 1 and bands[0][0] == 0 and bands[-1][1] == 55
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))          # every output row once
    for r0, r1 in bands:
        assert 3 * 11 * 11 * (r1 - r0) * 55 * 8 * 4 <= fast.column_band_bytes(x) == 16 * 2**20


def test_conv_keeps_its_input_not_its_columns(monkeypatch):
    """conv1 at batch 8: the columns (363 x 3025*8 floats, 35 MB) are neither kept nor built whole,
    only a band of them at a time (2 MB here)."""
    import tracemalloc

    monkeypatch.setattr(fast, "CONV_BAND_BYTES", 2 * 2**20)
    rng = np.random.default_rng(0)
    conv = Conv2D(3, 48, 11, stride=4)
    init.normal_(conv.weight, 0.01, rng=0)
    x = rng.standard_normal((8, 3, 227, 227), dtype=np.float32)
    col_bytes = 3 * 11 * 11 * 55 * 55 * 8 * 4
    y = conv.forward(x)                          # warm-up: nothing below is first-call allocation
    conv.backward(np.ones_like(y))
    tracemalloc.start()
    try:
        y = conv.forward(x)
        kept, _ = tracemalloc.get_traced_memory()
        conv.backward(np.ones_like(y))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # kept after forward: y (4.6 MB) and the input in its batch-innermost copy (4.9 MB)
    assert kept < x.nbytes + 2 * y.nbytes, kept
    # at the peak: x's copy, dx, y, dy and its copy, and a band's columns and their gradient
    bound = 2 * x.nbytes + 3 * y.nbytes + 3 * fast.CONV_BAND_BYTES
    assert bound < col_bytes
    assert peak < bound, (peak, bound)


# -- the fast set: LRN in bands of rows --------------------------------------------------
@pytest.mark.parametrize("band_bytes", [1, 2 * 7 * 2 * 8 * 8])   # one row per band; two rows (3 bands of 5 rows)
@pytest.mark.parametrize("layout", ["nchw", "chwn"])
def test_lrn_bands_give_the_same_bits(rng, monkeypatch, band_bytes, layout):
    """Forward and backward band by band over the rows equal one band over the whole array, bit for bit."""
    shape = (8, 7, 5, 2)
    x, dy = 2 * rng.standard_normal(shape), rng.standard_normal(shape)
    if layout == "chwn":    # what a convolution hands over: the batch innermost in memory
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    results = []
    for nbytes in (1 << 40, band_bytes):
        monkeypatch.setattr(cpu, "ROW_BAND_BYTES", nbytes)
        lrn = LocalResponseNorm(5, 1.0, 0.75, 2.0)
        assert len(fast.row_bands(x)) == (1 if nbytes > x.nbytes else 5 if nbytes == 1 else 3)
        y = lrn.forward(x)
        results.append((y, lrn.backward(dy)))
    (y0, dx0), (y1, dx1) = results
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    assert y1.strides == x.strides and dx1.strides == x.strides     # the layout is kept
    np.testing.assert_allclose(y1, ref.lrn(np.asarray(x), 5, 1.0, 0.75, 2.0), rtol=1e-12)


# -- no Python loops over images or pixels ----------------------------------------------
_PKG = os.path.dirname(minidl.__file__)


def _count_lines(fn):
    """Run fn() and count the Python lines it executes inside the minidl package."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(_PKG) else None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(old)
    return count


def _conv_step(conv, x):
    def run():
        y = conv.forward(x)
        assert y.shape == (x.shape[0], 96, (x.shape[2] - 11) // 4 + 1, (x.shape[3] - 11) // 4 + 1)
        dx = conv.backward(np.ones_like(y))
        assert dx.shape == x.shape and dx.dtype == np.float32
        assert conv.weight.grad.dtype == np.float32

    return run


def test_conv1_sized_step_has_no_python_loop_over_images_or_pixels(monkeypatch, kernel_set):
    monkeypatch.setattr(fast, "CONV_BAND_BYTES", 2**40)   # one band: the loop over bands runs once at any size
    rng = np.random.default_rng(0)
    conv = Conv2D(3, 96, 11, stride=4)
    init.normal_(conv.weight, 0.01, rng=0)
    big = rng.standard_normal((32 if kernel_set == "fast" else 4, 3, 227, 227), dtype=np.float32)
    n_big = _count_lines(_conv_step(conv, big))
    conv.zero_grad()
    n_small = _count_lines(_conv_step(conv, big[:2, :, :35, :39]))
    # O(kh*kw) lines: the loops over the 121 kernel offsets in im2col and col2im
    assert n_big < 20 * 121, n_big
    # and independent of the batch size and the image size
    assert n_big == n_small


def test_pool_and_lrn_have_no_python_loop_over_images_or_pixels(monkeypatch):
    rng = np.random.default_rng(0)
    net = Sequential(LocalResponseNorm(5, 1e-4, 0.75, 2.0), MaxPool2D(3, 2))

    def step(x):
        def run():
            y = net.forward(x)
            net.backward(np.ones_like(y))
        return run

    big = rng.standard_normal((8, 96, 55, 55), dtype=np.float32)
    n_small = _count_lines(step(rng.standard_normal((1, 96, 7, 9), dtype=np.float32)))
    n_banded = _count_lines(step(big))     # one pass of the loops per band of a few MiB
    bands = len(fast.row_bands(big)) + len(cpu.axis_bands(big, 1, cpu.POOL_BAND_BYTES))
    monkeypatch.setattr(cpu, "ROW_BAND_BYTES", 1 << 40)    # one band, whatever the size
    monkeypatch.setattr(cpu, "POOL_BAND_BYTES", 1 << 40)
    n_big = _count_lines(step(big))
    assert n_big == n_small < 500
    assert 1 < bands < 10 and n_small < n_banded < bands * n_small
    with kernels.using("reference"):   # the reference loops over channels, not images or pixels
        assert _count_lines(step(big)) == _count_lines(step(rng.standard_normal((1, 96, 7, 9), dtype=np.float32)))
