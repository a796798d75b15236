"""alexnet.grouped: the two-tower net equals one grouped network on one device."""

from dataclasses import replace

import numpy as np
import pytest

import minidl as md
from alexnet import build_model
from alexnet.configs import BVLC, MINI, FCSpec
from alexnet.grouped import GroupedAlexNet, GroupedLRN
from alexnet.model import AlexNet

# every test here runs on both kernel sets of minidl.kernels (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("kernel_set")


def _spread_weights(model, seed=0):
    """He-scaled weights and random biases, so every layer's signal is far from zero."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        fan_in = p.data[0].size if p.data.ndim > 1 else 1
        p.data = (rng.standard_normal(p.shape) * np.sqrt(2.0 / fan_in)).astype(p.dtype)
    return model


def _compare(model, x, rtol):
    model.eval()
    grouped = GroupedAlexNet(model)
    assert not grouped.training
    logits, ref = model.forward(x), grouped.forward(x)
    assert logits.shape == ref.shape and logits.dtype == ref.dtype
    np.testing.assert_allclose(logits, ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    g = np.random.default_rng(1).standard_normal(logits.shape).astype(logits.dtype)
    model.need_input_grad = True
    dx, ref_dx = model.backward(g), grouped.backward(g)
    np.testing.assert_allclose(dx, ref_dx, rtol=rtol, atol=rtol * np.abs(ref_dx).max())
    theirs = grouped.tower_arrays("grad")
    ours = dict(model.named_parameters())
    assert set(theirs) == set(ours)
    for name, p in ours.items():
        np.testing.assert_allclose(p.grad, theirs[name], rtol=rtol, atol=rtol * np.abs(theirs[name]).max(),
                                   err_msg=name)
    return grouped


def test_mini_two_towers_equal_grouped_network_float64():
    model = _spread_weights(build_model("mini", num_classes=10, seed=2, dtype="float64"))
    x = np.random.default_rng(3).standard_normal((3, 1, 28, 28))
    grouped = _compare(model, x, rtol=1e-10)
    convs = {name: grouped._main(name) for name in grouped.stage_names if name.startswith("conv")}
    assert {n: c.groups for n, c in convs.items()} == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    assert grouped.num_parameters() == model.num_parameters()


def test_pool_before_lrn_and_odd_class_split():
    convs = tuple(replace(s, after=("relu", "pool", "lrn")) if s.name in ("conv1", "conv2") else s
                  for s in MINI.convs)
    model = _spread_weights(AlexNet(MINI.with_(name="mini-caffe", convs=convs), num_classes=7))
    model.to(dtype="float64")
    assert model.class_splits == [4, 3]
    assert model.conv1.tower0.order == ["conv", "relu", "pool", "lrn"]
    _compare(model, np.random.default_rng(4).standard_normal((2, 1, 28, 28)), rtol=1e-10)


def test_one_tower_with_groups_inside_it_bvlc():
    # Caffe's net: one device, group=2 in conv2/4/5, LRN across the whole map stack
    small_fc = (FCSpec("fc6", 64, dropout_after=0.5), FCSpec("fc7", 64, dropout_after=0.5),
                FCSpec("fc8", None, relu=False))
    model = _spread_weights(AlexNet(BVLC.with_(fcs=small_fc), num_classes=6, input_size=99)).to(dtype="float64")
    grouped = _compare(model, np.random.default_rng(5).standard_normal((1, 3, 99, 99)), rtol=1e-10)
    assert grouped._main("conv2").groups == 2 and grouped._main("conv3").groups == 1


def test_paper_preset_equal_in_float32():
    model = _spread_weights(build_model("paper", num_classes=10, seed=1))
    x = np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32)
    _compare(model, x, rtol=1e-3)


def test_tower_arrays_round_trip_and_errors():
    model = build_model("mini", num_classes=10, seed=3)
    grouped = GroupedAlexNet(model)
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(grouped.tower_arrays("data")[name], p.data)
    with pytest.raises(ValueError, match="no gradient"):
        grouped.tower_arrays("grad")
    with pytest.raises(ValueError, match="'data' or 'grad'"):
        grouped.tower_arrays("weights")
    # the copy is independent of the model
    model.conv1.tower0.conv.weight.data[:] = 0
    assert np.abs(grouped.tower_arrays("data")["conv1.tower0.weight"]).max() > 0


def test_train_mode_follows_the_model():
    model = build_model("mini", num_classes=10)
    assert GroupedAlexNet(model.train()).training
    grouped = GroupedAlexNet(model.eval())
    assert all(not layer.training for _, layer in grouped.named_layers())


def test_grouped_lrn_is_lrn_per_block():
    rng = np.random.default_rng(0)
    x = 3.0 * rng.standard_normal((2, 8, 3, 4))   # large values: the window sums matter
    glrn = GroupedLRN(2, size=5, alpha=1.0, beta=0.75, k=2.0)
    y = glrn.forward(x)
    for g in range(2):
        ref = md.LocalResponseNorm(5, 1.0, 0.75, 2.0).forward(np.ascontiguousarray(x[:, 4 * g:4 * g + 4]))
        np.testing.assert_allclose(y[:, 4 * g:4 * g + 4], ref, rtol=1e-14)
    whole = md.LocalResponseNorm(5, 1.0, 0.75, 2.0).forward(x)
    assert np.abs(whole[:, 2:6] - y[:, 2:6]).max() > 1e-3      # channels near the boundary differ
    errors = md.gradcheck(glrn, x)
    assert errors["input"] < 1e-7, errors
    with pytest.raises(ValueError, match="do not split into 3 groups"):
        GroupedLRN(3).forward(x)
    with pytest.raises(ValueError, match="groups must be >= 1"):
        GroupedLRN(0)
