"""minidl.optim: the paper's SGD rule on hand-computed numbers, parameter
groups, checkpointing, and the two learning-rate schedules."""

import io
import math

import numpy as np
import pytest

from minidl import SGD, Linear, Parameter, ReduceLROnPlateau, StepLR, asnumpy

# every test here runs on both kernel sets of minidl.kernels (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("kernel_set")


def scalar(value, dtype=np.float64):
    return Parameter(np.array([value], dtype=dtype))


# -- the update rule ---------------------------------------------------------------
def test_sgd_two_steps_by_hand():
    """w=1, lr=0.1, m=0.9, wd=0.01; gradients 0.5 then -0.25.

    v1 = 0.9*0 - 0.01*0.1*1.0 - 0.1*0.5           = -0.001 - 0.05            = -0.051
    w1 = 1.0 + v1                                                             =  0.949
    v2 = 0.9*(-0.051) - 0.01*0.1*0.949 - 0.1*(-0.25) = -0.0459 - 0.000949 + 0.025 = -0.021849
    w2 = 0.949 - 0.021849                                                     =  0.927151
    """
    w = scalar(1.0)
    opt = SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    w.grad = np.array([0.5])
    opt.step()
    assert w.data[0] == pytest.approx(0.949, rel=1e-14)
    assert opt.velocity[id(w)][0] == pytest.approx(-0.051, rel=1e-14)
    w.grad = np.array([-0.25])
    opt.step()
    assert opt.velocity[id(w)][0] == pytest.approx(-0.021849, rel=1e-13)
    assert w.data[0] == pytest.approx(0.927151, rel=1e-14)


def test_sgd_elementwise_and_float32():
    """Two entries at once, float32 stays float32.

    w = [2, -1], g = [1, 1], lr = 0.5, m = 0.5, wd = 0.1:
    v1 = -0.1*0.5*[2, -1] - 0.5*[1, 1] = [-0.1, 0.05] - [0.5, 0.5] = [-0.6, -0.45]
    w1 = [1.4, -1.45]
    g = [0, -2]:
    v2 = 0.5*[-0.6, -0.45] - 0.05*[1.4, -1.45] - 0.5*[0, -2] = [-0.3, -0.225] - [0.07, -0.0725] + [0, 1]
       = [-0.37, 0.8475]
    w2 = [1.03, -0.6025]
    """
    w = Parameter(np.array([2.0, -1.0], dtype=np.float32))
    opt = SGD([w], lr=0.5, momentum=0.5, weight_decay=0.1)
    w.grad = np.array([1.0, 1.0], dtype=np.float32)
    opt.step()
    np.testing.assert_allclose(w.data, [1.4, -1.45], rtol=1e-6)
    w.grad = np.array([0.0, -2.0], dtype=np.float32)
    opt.step()
    np.testing.assert_allclose(w.data, [1.03, -0.6025], rtol=1e-6)
    assert w.data.dtype == np.float32 and opt.velocity[id(w)].dtype == np.float32


def test_sgd_no_momentum_no_decay_is_plain_gradient_descent():
    w = scalar(3.0)
    opt = SGD([w], lr=0.25, momentum=0.0, weight_decay=0.0)
    for g, expected in [(1.0, 2.75), (2.0, 2.25), (-4.0, 3.25)]:
        w.grad = np.array([g])
        opt.step()
        assert w.data[0] == expected  # exact in binary


def test_sgd_defaults_are_the_papers():
    opt = SGD([scalar(1.0)], lr=0.01)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    assert opt.lr == 0.01


def test_sgd_parameter_groups():
    """Biases: lr_mult 2, no weight decay (the original code's setting).

    weight as in test_sgd_two_steps_by_hand: 0.949, 0.927151.
    bias b=1, lr 0.2, m=0.9, wd=0: v1 = -0.2*0.5 = -0.1, b1 = 0.9;
    v2 = 0.9*(-0.1) - 0.2*(-0.25) = -0.09 + 0.05 = -0.04, b2 = 0.86.
    """
    w, b = scalar(1.0), scalar(1.0)
    opt = SGD([{"params": [w]}, {"params": [b], "lr_mult": 2.0, "weight_decay": 0.0}],
              lr=0.1, momentum=0.9, weight_decay=0.01)
    assert opt.param_groups[0]["lr_mult"] == 1.0 and opt.param_groups[0]["weight_decay"] == 0.01
    assert opt.param_groups[1]["lr_mult"] == 2.0 and opt.param_groups[1]["momentum"] == 0.9
    w.grad, b.grad = np.array([0.5]), np.array([0.5])
    opt.step()
    w.grad, b.grad = np.array([-0.25]), np.array([-0.25])
    opt.step()
    assert w.data[0] == pytest.approx(0.927151, rel=1e-14)
    assert b.data[0] == pytest.approx(0.86, rel=1e-14)


def test_sgd_group_momentum_override():
    a, b = scalar(1.0), scalar(1.0)
    opt = SGD([{"params": [a], "momentum": 0.0}, {"params": [b]}], lr=0.1, momentum=0.5, weight_decay=0.0)
    for _ in range(2):
        a.grad, b.grad = np.array([1.0]), np.array([1.0])
        opt.step()
    assert a.data[0] == pytest.approx(0.8, rel=1e-14)          # -0.1, -0.1
    assert b.data[0] == pytest.approx(1 - 0.1 - 0.15, rel=1e-14)  # -0.1, 0.5*(-0.1) - 0.1


def test_sgd_uses_current_lr():
    w = scalar(1.0)
    opt = SGD([w], lr=0.1, momentum=0.0, weight_decay=0.0)
    opt.lr = 0.5
    w.grad = np.array([1.0])
    opt.step()
    assert w.data[0] == 0.5


def test_sgd_skips_parameters_without_grad():
    a, b, c = scalar(1.0), scalar(2.0), scalar(3.0)
    opt = SGD([a, b, c], lr=0.1, momentum=0.9, weight_decay=0.01)
    a.grad = np.array([1.0])
    c.grad = np.array([1.0])
    c.requires_grad = False
    opt.step()
    assert b.data[0] == 2.0 and id(b) not in opt.velocity  # no grad: untouched, even by weight decay
    assert c.data[0] == 3.0 and id(c) not in opt.velocity  # frozen
    assert a.data[0] == pytest.approx(1 - 0.001 - 0.1, rel=1e-14)


def test_sgd_zero_grad_and_model_parameters():
    lin = Linear(3, 2)
    opt = SGD(lin.parameters(), lr=0.1)
    for p in lin.parameters():
        p.grad = np.ones(p.shape, np.float32)
    opt.zero_grad()
    assert all(p.grad is None for p in lin.parameters())
    gen_opt = SGD((p for p in lin.parameters()), lr=0.1)  # any iterable
    assert len(gen_opt.param_groups[0]["params"]) == 2


# -- checkpointing -------------------------------------------------------------------
def _save_load(state):
    """Through an .npz file, as a checkpoint would (no pickle)."""
    buf = io.BytesIO()
    np.savez(buf, lr=np.array(state["lr"]), **{"v/" + k: v for k, v in state["velocity"].items()})
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        return {"lr": float(z["lr"]), "velocity": {k[2:]: z[k] for k in z.files if k.startswith("v/")}}


def test_sgd_state_dict_round_trip_continues_identically(rng):
    def make(params):
        return SGD([{"params": params[:1]}, {"params": params[1:], "lr_mult": 2.0, "weight_decay": 0.0}],
                   lr=0.05, momentum=0.9, weight_decay=5e-4)

    ps = [Parameter(rng.standard_normal((3, 4)).astype(np.float32)),
          Parameter(rng.standard_normal(4).astype(np.float32)),
          Parameter(rng.standard_normal(2).astype(np.float32))]
    opt = make(ps)
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in ps] for _ in range(5)]
    for step in range(2):
        for p, g in zip(ps, grads[step]):
            p.grad = g
        ps[2].grad = None if step == 0 else ps[2].grad  # one parameter has no velocity yet after step 0
        opt.step()
    opt.lr = 0.02
    saved = _save_load(opt.state_dict())
    assert set(saved["velocity"]) == {"0.0", "1.0", "1.1"}
    copies = [Parameter(p.data.copy()) for p in ps]
    opt2 = make(copies)
    opt2.load_state_dict(saved)
    assert opt2.lr == 0.02
    for step in range(2, 5):
        for p, q, g in zip(ps, copies, grads[step]):
            p.grad, q.grad = g, g.copy()
        opt.step()
        opt2.step()
    for p, q in zip(ps, copies):
        np.testing.assert_array_equal(p.data, q.data)
        assert q.data.dtype == np.float32 and opt2.velocity[id(q)].dtype == np.float32


def test_sgd_load_state_dict_shape_mismatch():
    opt = SGD([Parameter(np.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="SGD"):
        opt.load_state_dict({"lr": 0.1, "velocity": {"0.0": np.zeros(4)}})


# -- bad arguments ---------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"lr": 0.0}, {"lr": -0.1}, {"lr": math.nan}, {"lr": math.inf},
    {"lr": 0.1, "momentum": -0.1}, {"lr": 0.1, "momentum": 1.0},
    {"lr": 0.1, "weight_decay": -1e-4},
])
def test_sgd_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="SGD"):
        SGD([scalar(1.0)], **kwargs)


def test_sgd_bad_parameter_lists():
    p = scalar(1.0)
    with pytest.raises(ValueError, match="SGD"):
        SGD([{"params": [p], "lr": 0.1}], lr=0.1)  # unknown key (lr_mult is the group setting)
    with pytest.raises(ValueError, match="SGD"):
        SGD([{"weights": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="SGD"):
        SGD([{"params": [np.zeros(3)]}], lr=0.1)
    with pytest.raises(ValueError, match="SGD"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="SGD"):
        SGD([p, p], lr=0.1)


# -- schedules -------------------------------------------------------------------------
def test_step_lr():
    opt = SGD([scalar(1.0)], lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    lrs = [sched.step() for _ in range(5)]
    np.testing.assert_allclose(lrs, [1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-12)
    assert opt.lr == pytest.approx(0.01)
    # round trip: a fresh scheduler on a fresh optimizer continues the same sequence
    state = sched.state_dict()
    opt2 = SGD([scalar(1.0)], lr=123.0)
    sched2 = StepLR(opt2, step_size=2, gamma=0.1)
    sched2.load_state_dict(state)
    np.testing.assert_allclose([sched2.step() for _ in range(3)], [sched.step() for _ in range(3)], rtol=1e-15)
    np.testing.assert_allclose(opt2.lr, 0.0001, rtol=1e-12)
    with pytest.raises(ValueError, match="StepLR"):
        StepLR(opt, step_size=0)


def test_reduce_on_plateau_patience_threshold_and_max_reductions():
    opt = SGD([scalar(1.0)], lr=1.0)
    sched = ReduceLROnPlateau(opt, factor=0.1, patience=1, threshold=1e-3, max_reductions=3)
    steps = [
        (0.5, 1.0),      # first value: best = 0.5
        (0.5, 1.0),      # 1 bad epoch (= patience): keep
        (0.5, 0.1),      # 2 bad epochs (> patience): reduce #1
        (0.4996, 0.1),   # not below 0.5 * (1 - 1e-3) = 0.4995: bad 1
        (0.4994, 0.1),   # below it: improvement, best = 0.4994, bad 0
        (0.6, 0.1),      # bad 1
        (0.6, 0.01),     # bad 2: reduce #2
        (0.6, 0.01),
        (0.6, 0.001),    # reduce #3
        (0.6, 0.001),
        (0.6, 0.001),    # would reduce, but three reductions is the maximum
        (0.6, 0.001),
        (0.6, 0.001),
    ]
    for i, (metric, lr) in enumerate(steps):
        assert sched.step(metric) == pytest.approx(lr, rel=1e-12), i
        assert opt.lr == pytest.approx(lr, rel=1e-12), i
    assert sched.reductions == 3 and sched.best == 0.4994


def test_reduce_on_plateau_patience_zero():
    opt = SGD([scalar(1.0)], lr=1.0)
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=0.0)
    assert [sched.step(m) for m in [3.0, 2.0, 2.0, 1.0, 1.5]] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_reduce_on_plateau_state_round_trip():
    metrics = [0.9, 0.8, 0.8, 0.85, 0.7, 0.7, 0.75, 0.7, 0.69, 0.7, 0.7, 0.7]
    opt = SGD([scalar(1.0)], lr=1.0)
    sched = ReduceLROnPlateau(opt, patience=2)
    for m in metrics[:6]:
        sched.step(m)
    state, sgd_state = sched.state_dict(), opt.state_dict()
    opt2 = SGD([scalar(1.0)], lr=1.0)
    opt2.load_state_dict(sgd_state)
    sched2 = ReduceLROnPlateau(opt2, patience=2)
    sched2.load_state_dict(state)
    rest = [sched.step(m) for m in metrics[6:]]
    assert [sched2.step(m) for m in metrics[6:]] == rest
    assert sched2.reductions == sched.reductions >= 1
    # a best of +inf (nothing seen yet) survives the round trip
    fresh = ReduceLROnPlateau(SGD([scalar(1.0)], lr=1.0))
    again = ReduceLROnPlateau(SGD([scalar(1.0)], lr=1.0))
    again.load_state_dict(fresh.state_dict())
    assert again.best == math.inf


@pytest.mark.parametrize("factor", [0.0, 1.0, 1.5, -0.1])
def test_reduce_on_plateau_bad_factor(factor):
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        ReduceLROnPlateau(SGD([scalar(1.0)], lr=1.0), factor=factor)


@pytest.mark.parametrize("make", [
    lambda o: StepLR(o, 1, gamma=0.0),
    lambda o: StepLR(o, 1, gamma=-0.5),
    lambda o: ReduceLROnPlateau(o, patience=-1),
    lambda o: ReduceLROnPlateau(o, threshold=-0.1),
    lambda o: ReduceLROnPlateau(o, max_reductions=-1),
])
def test_schedule_bad_arguments(make):
    with pytest.raises(ValueError):
        make(SGD([scalar(1.0)], lr=1.0))


# -- GPU -------------------------------------------------------------------------------
@pytest.mark.gpu
def test_sgd_on_gpu_matches_cpu():
    import cupy

    rng = np.random.default_rng(0)
    cpu = Linear(4, 3)
    for p in cpu.parameters():
        p.data = rng.standard_normal(p.shape).astype(np.float32)
    gpu = Linear(4, 3)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda:0")
    oc, og = SGD(cpu.parameters(), lr=0.1), SGD(gpu.parameters(), lr=0.1)
    for _ in range(3):
        for pc, pg in zip(cpu.parameters(), gpu.parameters()):
            g = rng.standard_normal(pc.shape).astype(np.float32)
            pc.grad, pg.grad = g, cupy.asarray(g)
        oc.step()
        og.step()
    for pc, pg in zip(cpu.parameters(), gpu.parameters()):
        assert isinstance(og.velocity[id(pg)], cupy.ndarray)
        np.testing.assert_allclose(asnumpy(pg.data), pc.data, rtol=1e-6, atol=1e-7)
