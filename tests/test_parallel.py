"""minidl.parallel.Exchange: towers on two (or three) 'cpu' devices, and on GPUs."""

import numpy as np
import pytest

from minidl import Device, Linear, asnumpy, get_device
from minidl.parallel import Exchange


def test_forward_gives_every_tower_the_concatenation(rng):
    a = rng.standard_normal((2, 3, 4, 5))
    b = rng.standard_normal((2, 2, 4, 5))
    ex = Exchange(["cpu", "cpu"])
    assert ex.devices == [Device("cpu"), Device("cpu")]
    outs = ex.forward([a, b])
    assert len(outs) == 2
    for o in outs:
        assert o.shape == (2, 5, 4, 5)
        np.testing.assert_array_equal(o[:, :3], a)
        np.testing.assert_array_equal(o[:, 3:], b)
    # each tower gets its own array, not a view of the inputs or of the other tower's
    outs[0][:] = 0
    assert np.abs(outs[1]).sum() > 0 and np.abs(a).sum() > 0


def test_backward_sums_pieces_back_to_their_towers(rng):
    a = rng.standard_normal((2, 3, 4))
    b = rng.standard_normal((2, 2, 4))
    ex = Exchange(["cpu", "cpu"])
    ex.forward([a, b])
    g0 = rng.standard_normal((2, 5, 4))
    g1 = rng.standard_normal((2, 5, 4))
    da, db = ex.backward([g0, g1])
    np.testing.assert_allclose(da, g0[:, :3] + g1[:, :3], rtol=1e-15)
    np.testing.assert_allclose(db, g0[:, 3:] + g1[:, 3:], rtol=1e-15)
    assert da.shape == a.shape and db.shape == b.shape


def test_three_towers_axis0_explicit_sums():
    ex = Exchange(["cpu", "cpu", "cpu"], axis=0)
    xs = [np.full((1, 2), 1.0), np.full((2, 2), 2.0), np.full((1, 2), 3.0)]
    outs = ex.forward(xs)
    for o in outs:
        np.testing.assert_array_equal(o, [[1, 1], [2, 2], [2, 2], [3, 3]])
    grads = [np.arange(8.0).reshape(4, 2) * (t + 1) for t in range(3)]  # tower t's gradient = (t+1) * G
    dxs = ex.backward(grads)
    g = np.arange(8.0).reshape(4, 2) * 6  # 1 + 2 + 3
    np.testing.assert_array_equal(dxs[0], g[:1])
    np.testing.assert_array_equal(dxs[1], g[1:3])
    np.testing.assert_array_equal(dxs[2], g[3:])


def test_composed_towers_match_numerical_gradient(rng):
    """Two towers, each a Linear reading the exchanged features:

        L = sum(lin0(concat(a, b)) * G0) + sum(lin1(concat(a, b)) * G1)

    dL/da and dL/db from Exchange.backward equal central differences."""
    a = rng.standard_normal((3, 4))
    b = rng.standard_normal((3, 2))
    lins = [Linear(6, 5).to(dtype="float64"), Linear(6, 5).to(dtype="float64")]
    for lin in lins:
        for p in lin.parameters():
            p.data = rng.standard_normal(p.shape)
    gs = [rng.standard_normal((3, 5)), rng.standard_normal((3, 5))]
    ex = Exchange(["cpu", Device("cpu")], axis=1)

    def loss(a_, b_):
        outs = ex.forward([a_, b_])
        return sum(float((lin.forward(o) * g).sum()) for lin, o, g in zip(lins, outs, gs))

    loss(a, b)
    da, db = ex.backward([lin.backward(g) for lin, g in zip(lins, gs)])

    eps = 1e-6

    def numeric(arr, f):
        out = np.zeros_like(arr)
        for i in range(arr.size):
            old = arr.flat[i]
            arr.flat[i] = old + eps
            fp = f()
            arr.flat[i] = old - eps
            fm = f()
            arr.flat[i] = old
            out.flat[i] = (fp - fm) / (2 * eps)
        return out

    na = numeric(a, lambda: loss(a, b))
    nb = numeric(b, lambda: loss(a, b))
    np.testing.assert_allclose(da, na, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, nb, rtol=1e-6, atol=1e-8)
    # and in closed form: dL/dconcat = sum_t G_t @ W_t
    full = sum(g @ lin.weight.data for lin, g in zip(lins, gs))
    np.testing.assert_allclose(da, full[:, :4], rtol=1e-12)
    np.testing.assert_allclose(db, full[:, 4:], rtol=1e-12)


def test_exchange_errors():
    ex = Exchange(["cpu", "cpu"])
    with pytest.raises(RuntimeError, match="before forward"):
        ex.backward([np.zeros((1, 2)), np.zeros((1, 2))])
    with pytest.raises(ValueError, match="Exchange"):
        ex.forward([np.zeros((1, 2))])
    with pytest.raises(ValueError):
        Exchange(["cpu", "tpu"])


def test_exchange_backward_checks_number_of_gradients():
    ex = Exchange(["cpu", "cpu"])
    ex.forward([np.ones((1, 2)), np.ones((1, 3))])
    with pytest.raises(ValueError, match="Exchange"):
        ex.backward([np.ones((1, 5))])


def test_exchange_keeps_dtype():
    ex = Exchange(["cpu", "cpu"])
    outs = ex.forward([np.ones((2, 3), np.float32), np.ones((2, 1), np.float32)])
    assert all(o.dtype == np.float32 for o in outs)
    dxs = ex.backward([np.ones((2, 4), np.float32)] * 2)
    assert all(d.dtype == np.float32 for d in dxs)


# -- GPU ---------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("devices", [["cuda:0", "cuda:0"], ["cpu", "cuda:0"]])
def test_exchange_on_gpu(devices):
    import cupy

    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((2, 2)).astype(np.float32)
    xs = [v if Device(d).type == "cpu" else cupy.asarray(v) for d, v in zip(devices, [a, b])]
    ex = Exchange(devices)
    outs = ex.forward(xs)
    for d, o in zip(devices, outs):
        assert get_device(o) == Device(d)
        np.testing.assert_array_equal(asnumpy(o), np.concatenate([a, b], axis=1))
    g = [rng.standard_normal((2, 5)).astype(np.float32) for _ in devices]
    gs = [gi if Device(d).type == "cpu" else cupy.asarray(gi) for d, gi in zip(devices, g)]
    da, db = ex.backward(gs)
    assert get_device(da) == Device(devices[0]) and get_device(db) == Device(devices[1])
    np.testing.assert_allclose(asnumpy(da), g[0][:, :3] + g[1][:, :3], rtol=1e-6)
    np.testing.assert_allclose(asnumpy(db), g[0][:, 3:] + g[1][:, 3:], rtol=1e-6)


def test_exchange_keeps_the_batch_innermost_layout(rng):
    # conv outputs are (N, C, H, W) views of (C, H, W, N) buffers; the exchange must hand
    # conv3 the same layout (a C-order concatenation costs a transpose in every later kernel)
    xs = [np.ascontiguousarray(rng.standard_normal((c, 5, 5, 4)).astype(np.float32)).transpose(3, 0, 1, 2)
          for c in (3, 2)]
    ex = Exchange(["cpu", "cpu"])
    outs = ex.forward(xs)
    for out in outs:
        np.testing.assert_array_equal(out, np.concatenate(xs, axis=1))
        assert out.transpose(1, 2, 3, 0).flags.c_contiguous
    grads = [np.ascontiguousarray(rng.standard_normal((5, 5, 5, 4)).astype(np.float32)).transpose(3, 0, 1, 2)
             for _ in range(2)]
    dxs = ex.backward(grads)
    for i, (lo, hi) in enumerate(((0, 3), (3, 5))):
        np.testing.assert_allclose(dxs[i], grads[0][:, lo:hi] + grads[1][:, lo:hi], rtol=1e-6)
        assert dxs[i].transpose(1, 2, 3, 0).flags.c_contiguous
    # a single tower's gradient is copied in its layout too
    one = Exchange(["cpu"])
    one.forward(xs[:1])
    assert one.backward(grads[:1])[0].transpose(1, 2, 3, 0).flags.c_contiguous


def test_tower_threads_run_concurrently_in_order_and_raise():
    import threading

    from minidl.parallel import TowerThreads

    pool = TowerThreads(3)
    barrier = threading.Barrier(3, timeout=10)   # passes only if all three calls run at once

    def work(t, x):
        barrier.wait()
        return (t, x * 2, threading.current_thread().name)

    out = pool.map(work, [0, 1, 2], [10, 20, 30])
    assert [o[:2] for o in out] == [(0, 20), (1, 40), (2, 60)]
    assert out[0][2] == threading.current_thread().name      # tower 0 in the caller
    assert len({o[2] for o in out}) == 3

    def fail(t):
        if t == 1:
            raise ValueError("tower 1 broke")
        return t

    with pytest.raises(ValueError, match="tower 1 broke"):
        pool.map(fail, [0, 1])
    pool.close()
