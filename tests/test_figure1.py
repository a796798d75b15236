"""alexnet.figure1: the four-layer CNN of the ReLU-vs-tanh experiment and its steps-to-error measure."""

import math

import numpy as np
import pytest

from alexnet.figure1 import (
    LayerProbe, four_layer_cnn, layer_names, layer_statistics, lr_sweep, running_error, seed_runs, standardize,
    steps_to_error, train_curve,
)
from minidl import Conv2D, Linear, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy, Tanh, gradcheck


def toy_data(n=256, size=16, seed=0):
    """Two classes of noisy 1 x size x size images: a bright square top-left (0) or bottom-right (1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = 0.3 * rng.standard_normal((n, 1, size, size))
    h = size // 2
    x[labels == 0, :, :h, :h] += 1.0
    x[labels == 1, :, h:, h:] += 1.0
    return x.astype(np.float32), labels


# -- the network ---------------------------------------------------------------------
@pytest.mark.parametrize("activation, kind", [("relu", ReLU), ("tanh", Tanh)])
def test_four_layer_cnn_layout_shapes_and_parameter_count(activation, kind):
    model = four_layer_cnn(activation)
    convs = [m for m in model if isinstance(m, Conv2D)]
    linears = [m for m in model if isinstance(m, Linear)]
    assert len(convs) == 3 and len(linears) == 1          # four layers with weights
    assert [type(m) for m in model][1:9:3] == [kind] * 3  # conv, act, pool, conv, act, pool, ...
    assert not any(isinstance(m, Tanh if kind is ReLU else ReLU) for m in model)
    assert [(m.kernel_size, m.stride) for m in model if isinstance(m, MaxPool2D)] == [(3, 2)] * 3
    # 16*25+16, 32*16*25+32, 64*32*9+64, 64*2*2*10+10
    assert model.num_parameters() == 416 + 12832 + 18496 + 2570
    y = model.forward(np.zeros((3, 1, 28, 28), dtype=np.float32))
    assert y.shape == (3, 10) and y.dtype == np.float32


def test_init_auto_is_he_for_relu_and_glorot_for_tanh():
    relu, tanh = four_layer_cnn("relu", seed=1), four_layer_cnn("tanh", seed=1)
    w_relu, w_tanh = relu[3].weight.data, tanh[3].weight.data   # conv2: (32, 16, 5, 5), fan_in 400
    assert w_relu.std() == pytest.approx(math.sqrt(2 / 400), rel=0.05)
    bound = math.sqrt(6 / (400 + 800))
    assert np.abs(w_tanh).max() <= bound and np.abs(w_tanh).max() > 0.95 * bound
    for model in (relu, tanh):
        assert model[-1].weight.data.std() == pytest.approx(0.01, rel=0.1)
        assert all(np.all(m.bias.data == 0) for m in model if isinstance(m, (Conv2D, Linear)))
    same = four_layer_cnn("tanh", init="he", seed=1)
    np.testing.assert_array_equal(same[3].weight.data, w_relu)   # same seed, same init: same draws


def test_init_can_be_a_fixed_std():
    model = four_layer_cnn("relu", init=0.05, seed=2)
    assert model[3].weight.data.std() == pytest.approx(0.05, rel=0.05)
    assert model[0].weight.data.std() == pytest.approx(0.05, rel=0.3)    # 400 draws only
    assert model[-1].weight.data.std() == pytest.approx(0.01, rel=0.1)   # the output layer is always 0.01


def test_four_layer_cnn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        four_layer_cnn("sigmoid")
    for bad in ("paper", -0.1, 0):
        with pytest.raises(ValueError, match="init"):
            four_layer_cnn("relu", init=bad)
    with pytest.raises(ValueError, match="too small"):
        four_layer_cnn("relu", input_size=12)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_four_layer_cnn_backward_passes_gradcheck(activation, rng):
    model = four_layer_cnn(activation, input_size=16, num_classes=3, widths=(2, 3, 4), dtype="float64")
    for p in model.parameters():                  # larger weights than the init: every path carries gradient
        p.data = 0.5 * rng.standard_normal(p.shape)
    x = rng.standard_normal((2, 1, 16, 16))
    errors = gradcheck(model, x, num_checks=25)
    assert max(errors.values()) < 1e-6, errors


# -- the measure ---------------------------------------------------------------------
def test_running_error_by_hand():
    e = np.array([1.0, 0.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(running_error(e, window=2), [1.0, 0.5, 0.25, 0.5, 0.25])
    np.testing.assert_allclose(running_error(e, window=1), e)
    np.testing.assert_allclose(running_error(e, window=10), np.cumsum(e) / np.arange(1, 6))
    with pytest.raises(ValueError):
        running_error(e, window=0)


def test_steps_to_error_counts_only_full_windows():
    e = np.array([0.0, 1.0, 1.0, 0.4, 0.2, 0.0, 0.0])
    # windows of 3 ending at steps 3..7: 2/3, 0.8, 0.53, 0.2, 0.067
    assert steps_to_error(e, threshold=0.25, window=3) == 6
    assert steps_to_error(e, threshold=0.8, window=3) == 3   # at or below the threshold counts
    assert steps_to_error(e, threshold=0.0, window=1) == 1
    assert steps_to_error(e, threshold=0.01, window=3) is None
    assert steps_to_error(e[:2], threshold=0.9, window=3) is None   # never a full window


def test_steps_to_error_ignores_a_diverged_tail():
    e = np.array([1.0, 1.0, 0.5, np.nan, np.nan])
    assert steps_to_error(e, threshold=0.3, window=2) is None
    assert steps_to_error(e, threshold=0.75, window=2) == 3


def test_standardize():
    imgs = np.arange(2 * 1 * 3 * 3, dtype=np.uint8).reshape(2, 1, 3, 3) * 10
    x = standardize(imgs)
    assert x.dtype == np.float32 and x.shape == imgs.shape
    assert abs(x.mean()) < 1e-6 and x.std() == pytest.approx(1.0, rel=1e-5)


# -- training ------------------------------------------------------------------------
def test_train_curve_learns_a_separable_task_and_is_reproducible():
    x, y = toy_data()
    runs = [train_curve(four_layer_cnn("relu", input_size=16, num_classes=2, widths=(4, 4, 8)),
                        x, y, steps=60, lr=0.05, batch_size=32) for _ in range(2)]
    err = runs[0]["error"]
    assert err.shape == (60,) and np.all(np.isfinite(err)) and np.all(np.isfinite(runs[0]["loss"]))
    assert np.all(np.isclose(err * 32, np.round(err * 32)))          # k wrong out of a batch of 32
    assert err[:5].mean() > 0.3 and running_error(err, 10)[-1] < 0.05
    assert runs[0]["loss"][-10:].mean() < 0.5 * runs[0]["loss"][:5].mean()
    np.testing.assert_array_equal(runs[0]["error"], runs[1]["error"])
    np.testing.assert_array_equal(runs[0]["loss"], runs[1]["loss"])


def test_train_curve_error_is_measured_before_the_update():
    # with a zero learning rate the model never changes: the first step's error is that of the initial net
    x, y = toy_data(n=64)
    model = four_layer_cnn("tanh", input_size=16, num_classes=2, widths=(2, 2, 2), seed=3)
    rng = np.random.default_rng(0)
    first = rng.permutation(64)[:16]
    expected = float(np.mean(model.forward(x[first]).argmax(axis=1) != y[first]))
    curve = train_curve(model, x, y, steps=1, lr=5.0, batch_size=16, seed=0)
    assert curve["error"][0] == expected


def test_train_curve_stops_on_divergence():
    x, y = toy_data(n=64)
    curve = train_curve(four_layer_cnn("relu", input_size=16, num_classes=2, widths=(2, 2, 2)),
                        x, y, steps=40, lr=1e30, batch_size=16)
    assert np.isnan(curve["loss"][-1]) and np.isnan(curve["error"][-1])
    assert np.isfinite(curve["loss"][0])
    assert steps_to_error(curve["error"], 0.25, window=5) is None


def test_train_curve_rejects_bad_batches():
    x, y = toy_data(n=8)
    model = four_layer_cnn("relu", input_size=16, num_classes=2, widths=(2, 2, 2))
    with pytest.raises(ValueError, match="batch_size"):
        train_curve(model, x, y, steps=1, lr=0.1, batch_size=9)
    with pytest.raises(ValueError, match="labels"):
        train_curve(model, x, y[:4], steps=1, lr=0.1)


def test_lr_sweep_picks_the_rate_that_reaches_the_threshold_first():
    x, y = toy_data()
    kw = dict(input_size=16, num_classes=2, widths=(4, 4, 8))
    best, runs = lr_sweep("relu", [1e-5, 0.05], x, y, steps=60, threshold=0.2, window=10, batch_size=32, **kw)
    assert [r["lr"] for r in runs] == [1e-5, 0.05]
    assert runs[0]["steps_to_threshold"] is None                   # far too slow to learn in 60 steps
    assert runs[1]["steps_to_threshold"] is not None
    assert best is runs[1]
    # both rates start from the same weights, so their first minibatch errors agree
    assert runs[0]["error"][0] == runs[1]["error"][0]


# -- seeds -------------------------------------------------------------------------------
def _batches(seed, steps=6, n=64, batch_size=16):
    """The minibatches train_curve draws with ``seed``, as recorded by a probe."""
    x, y = toy_data(n=n)
    seen = []
    train_curve(four_layer_cnn("relu", input_size=16, num_classes=2, widths=(2, 2, 2)), x, y, steps, lr=0.01,
                batch_size=batch_size, seed=seed, probe=lambda t, model, xb, yb: seen.append(xb.copy()))
    return seen


def test_a_seed_fixes_the_initial_weights_and_the_data_order():
    for act in ("relu", "tanh"):
        a, b, c = (four_layer_cnn(act, seed=s) for s in (0, 0, 1))
        for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
            np.testing.assert_array_equal(pa.data, pb.data)
            if np.any(pa.data != 0):                                   # biases are all zero
                assert not np.array_equal(pa.data, pc.data)
    same, other = _batches(0), _batches(1)
    assert len(same) == 6
    for xa, xb in zip(same, _batches(0)):
        np.testing.assert_array_equal(xa, xb)
    assert not any(np.array_equal(xa, xc) for xa, xc in zip(same, other))


def test_seed_runs_are_the_runs_of_their_seeds():
    x, y = toy_data(n=128)
    kw = dict(input_size=16, num_classes=2, widths=(2, 2, 4))
    runs = seed_runs("tanh", 0.05, [3, 0], x, y, steps=12, threshold=0.5, window=4, batch_size=16, **kw)
    assert [r["seed"] for r in runs] == [3, 0]
    for r in runs:
        curve = train_curve(four_layer_cnn("tanh", seed=r["seed"], **kw), x, y, 12, 0.05, batch_size=16,
                            seed=r["seed"])
        np.testing.assert_array_equal(r["error"], curve["error"])
        np.testing.assert_array_equal(r["loss"], curve["loss"])
        assert r["steps_to_threshold"] == steps_to_error(curve["error"], 0.5, 4)
    _, sweep = lr_sweep("tanh", [0.05], x, y, steps=12, threshold=0.5, window=4, batch_size=16, seed=0, **kw)
    np.testing.assert_array_equal(sweep[0]["error"], runs[1]["error"])   # seed 0 at that rate: the sweep's run


# -- saturation, measured ----------------------------------------------------------------
def _identity_net(activation):
    """Linear(4, 4) with W = I and b = 0, the nonlinearity, Linear(4, 2): the pre-activation is the input."""
    first, last = Linear(4, 4, dtype=np.float64), Linear(4, 2, dtype=np.float64)
    first.weight.data = np.eye(4)
    last.weight.data = np.arange(8.0).reshape(2, 4) / 10
    return Sequential(first, activation(), last)


def test_layer_statistics_by_hand():
    x = np.array([[0.5, -2.5, 3.0, 1.9],
                  [-2.1, 0.0, 2.0, -0.1]])                  # |z| > 2: -2.5, 3.0, -2.1 (2.0 itself is not)
    tanh = layer_statistics(_identity_net(Tanh), x)
    assert tanh["saturated"] == {"fc1": 3 / 8}
    assert tanh["slope"]["fc1"] == pytest.approx(np.mean(1 - np.tanh(x) ** 2), rel=1e-12)
    assert layer_statistics(_identity_net(Tanh), x, threshold=1.95)["saturated"] == {"fc1": 4 / 8}
    relu = layer_statistics(_identity_net(ReLU), x)
    assert relu["saturated"] == {"fc1": 3 / 8}
    assert relu["slope"] == {"fc1": 4 / 8}                  # z > 0: 0.5, 3.0, 1.9, 2.0
    assert set(tanh["grad_norm"]) == {"fc1", "fc2"} and all(math.isnan(v) for v in tanh["grad_norm"].values())


def test_layer_names():
    assert layer_names(four_layer_cnn("tanh")) == ["conv1", "conv2", "conv3", "fc"]
    assert layer_names(_identity_net(Tanh)) == ["fc1", "fc2"]


def test_layer_statistics_reads_the_gradients_and_changes_nothing(rng):
    model = four_layer_cnn("tanh", input_size=16, num_classes=3, widths=(2, 3, 4), seed=1)
    x = rng.standard_normal((5, 1, 16, 16)).astype(np.float32)
    crit = SoftmaxCrossEntropy()
    crit.forward(model.forward(x), np.array([0, 1, 2, 0, 1]))
    model.backward(crit.backward())
    before = [(p.data.copy(), p.grad.copy()) for p in model.parameters()]
    stats = layer_statistics(model, x)
    weighted = [m for m in model if isinstance(m, (Conv2D, Linear))]
    assert list(stats["grad_norm"]) == ["conv1", "conv2", "conv3", "fc"]
    for m, norm in zip(weighted, stats["grad_norm"].values()):
        assert norm == pytest.approx(np.linalg.norm(m.weight.grad.astype(np.float64)), rel=1e-12)
    for p, (data, grad) in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, data)
        np.testing.assert_array_equal(p.grad, grad)
    # the pre-activations are the convolutions' outputs
    z1 = model[0].forward(x)
    assert stats["saturated"]["conv1"] == np.mean(np.abs(z1.astype(np.float64)) > 2)
    assert list(stats["saturated"]) == list(stats["slope"]) == ["conv1", "conv2", "conv3"]


def test_probe_changes_nothing_and_measures_before_the_update():
    x, y = toy_data(n=64)
    kw = dict(input_size=16, num_classes=2, widths=(2, 2, 2), seed=3)
    plain = train_curve(four_layer_cnn("tanh", **kw), x, y, steps=8, lr=0.5, batch_size=16, seed=0)
    probe = LayerProbe([0, 5, 7, 100])
    probed = train_curve(four_layer_cnn("tanh", **kw), x, y, steps=8, lr=0.5, batch_size=16, seed=0, probe=probe)
    np.testing.assert_array_equal(plain["error"], probed["error"])
    np.testing.assert_array_equal(plain["loss"], probed["loss"])
    np.testing.assert_array_equal(probe.steps, [0, 5, 7])              # the run has no step 100
    assert set(probe.series("grad_norm")) == {"conv1", "conv2", "conv3", "fc"}
    # step 0: the initial weights on the first minibatch, with that minibatch's gradient
    model = four_layer_cnn("tanh", **kw)
    first = np.random.default_rng(0).permutation(64)[:16]
    crit = SoftmaxCrossEntropy()
    crit.forward(model.forward(x[first]), y[first])
    model.backward(crit.backward())
    expected = layer_statistics(model, x[first])
    for key in ("saturated", "slope", "grad_norm"):
        assert {n: v[0] for n, v in probe.series(key).items()} == expected[key]


def test_probe_stops_with_a_diverged_run():
    x, y = toy_data(n=64)
    probe = LayerProbe(range(40))
    curve = train_curve(four_layer_cnn("relu", input_size=16, num_classes=2, widths=(2, 2, 2)),
                        x, y, steps=40, lr=1e30, batch_size=16, probe=probe)
    assert len(probe.steps) == np.count_nonzero(np.isfinite(curve["loss"])) < 40
    assert LayerProbe([0]).series("saturated") == {}
