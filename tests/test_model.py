"""The AlexNet presets: sizes, the two-tower wiring, and that it learns."""

import numpy as np
import pytest

import minidl as md
from alexnet import build_model
from alexnet.configs import PAPER, get_config

# every test here runs on both kernel sets of minidl.kernels (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("kernel_set")

# ---------------------------------------------------------------------------
# sizes


def test_paper_parameter_count_per_layer():
    m = build_model("paper")
    assert m.num_parameters() == 60_965_224
    per_stage = {name: sum(p.data.size for p in getattr(m, name).parameters()) for name in m.stage_names}
    assert per_stage == {
        "conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936, "conv5": 442_624,
        "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000,
    }


def test_paper_without_tower_split_has_more_parameters():
    # ALEXNET.md: if every conv read all maps, 62,378,344 parameters
    from alexnet.model import AlexNet

    assert AlexNet(PAPER.with_(towers=1)).num_parameters() == 62_378_344


def test_torchvision_parameter_count():
    assert build_model("torchvision").num_parameters() == 61_100_840


def test_paper_output_shapes_and_multiply_adds():
    m = build_model("paper")
    rows = {r["name"]: r for r in m.summary_rows()}
    expected = [
        ("conv1", (96, 55, 55)), ("pool1", (96, 27, 27)), ("conv2", (256, 27, 27)),
        ("pool2", (256, 13, 13)), ("conv3", (384, 13, 13)), ("conv4", (384, 13, 13)),
        ("conv5", (256, 13, 13)), ("pool5", (256, 6, 6)), ("fc6", (4096,)), ("fc7", (4096,)),
        ("fc8", (1000,)),
    ]
    for name, shape in expected:
        assert rows[name]["shape"] == shape, name
    assert sum(r["macs"] for r in rows.values()) == 724_406_816
    assert rows["conv1"]["macs"] == 105_415_200
    assert rows["conv2"]["macs"] == 223_948_800
    text = m.summary()
    assert "60,965,224" in text and "724,406,816" in text


def test_paper_actual_activation_shapes():
    m = build_model("paper").eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32)
    for layer, shape in [("conv1.conv", (96, 55, 55)), ("conv1", (96, 55, 55)), ("norm1", (96, 55, 55)),
                         ("pool1", (96, 27, 27)), ("conv2", (256, 27, 27)), ("pool2", (256, 13, 13)),
                         ("conv3", (384, 13, 13)), ("conv4", (384, 13, 13)), ("conv5", (256, 13, 13)),
                         ("pool5", (256, 6, 6)), ("fc6", (4096,)), ("fc7", (4096,)), ("fc8", (1000,))]:
        out = m.features(x, layer)
        assert out.shape == (1,) + shape, layer
        assert out.dtype == np.float32
    assert m.forward(x).shape == (1, 1000)


def test_layer_names_are_caffes():
    """'conv5' is conv5's rectified output, 'norm1'/'pool1' its LRN and pooling; the sub-layer
    addressing ('conv1.lrn') names the same arrays; summary lists names features accepts."""
    m = build_model("mini", num_classes=10).eval()     # eval: dropout draws no new mask per call
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    relu = m.features(x, "conv1.relu")
    assert np.array_equal(m.features(x, "conv1"), relu) and np.all(relu >= 0)
    assert np.any(m.features(x, "conv1.conv") < 0)
    for alias, sub in (("norm1", "conv1.lrn"), ("pool1", "conv1.pool"), ("norm2", "conv2.lrn"),
                       ("pool2", "conv2.pool"), ("pool5", "conv5.pool"), ("fc7", "fc7.relu"), ("fc8", "fc8.linear")):
        assert np.array_equal(m.features(x, alias), m.features(x, sub)), alias
    assert [r["name"] for r in m.summary_rows()] == m.layer_names()
    for name in m.layer_names():
        m.features(x, name)
    assert "pool1" in m.layer_names() and "conv1.pool" not in m.layer_names()
    with pytest.raises(ValueError, match=r"stage conv3 has no pool \(asked for 'pool3'\)"):
        m.features(x, "pool3")
    with pytest.raises(ValueError, match=r"unknown layer 'conv9'; layers are conv1, conv1.relu, norm1, pool1"):
        m.features(x, "conv9")
    caffenet = build_model("caffenet").eval()         # pooling before LRN: the names follow the layers
    assert caffenet.layer_names()[:4] == ["conv1", "conv1.relu", "pool1", "norm1"]


def test_wrong_input_names_the_expected_input():
    m = build_model("mini", num_classes=10)
    with pytest.raises(ValueError, match=r"preset 'mini'.*\(N, 1, 28, 28\)"):
        m.forward(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\).*in_channels=3"):
        m.forward(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("vgg")
    with pytest.raises(ValueError, match="unknown init"):
        build_model("mini", init="zeros")
    with pytest.raises(ValueError, match="2 tower"):
        build_model("mini", devices=["cpu"])


def test_init_schemes():
    m = build_model("paper", init="paper", seed=3)
    p = dict(m.named_parameters())
    assert abs(float(p["conv1.tower0.weight"].data.std()) - 0.01) < 5e-4
    assert abs(float(p["fc6.tower1.weight"].data.std()) - 0.01) < 1e-4
    for name in ["conv2", "conv4", "conv5", "fc6", "fc7"]:
        for t in (0, 1):
            assert np.all(p[f"{name}.tower{t}.bias"].data == 1.0), name
    for name in ["conv1", "conv3", "fc8"]:
        assert np.all(p[f"{name}.tower0.bias"].data == 0.0), name

    caffe = dict(build_model("paper", init="caffe").named_parameters())
    assert np.all(caffe["conv2.tower0.bias"].data == np.float32(0.1))
    assert abs(float(caffe["fc7.tower0.weight"].data.std()) - 0.005) < 1e-4

    orig = dict(build_model("paper", init="original").named_parameters())
    assert abs(float(orig["conv4.tower0.weight"].data.std()) - 0.03) < 1e-3
    assert abs(float(orig["conv1.tower0.weight"].data.std()) - 0.01) < 1e-3

    he = dict(build_model("mini", init="he", num_classes=10).named_parameters())
    w = he["conv3.tower0.weight"].data
    assert abs(float(w.std()) - np.sqrt(2.0 / (w.shape[1] * 9))) < 0.01
    assert np.all(he["conv2.tower0.bias"].data == 0)

    # the same seed gives the same network; another seed does not
    a, b = build_model("mini", seed=5, num_classes=10), build_model("mini", seed=5, num_classes=10)
    c = build_model("mini", seed=6, num_classes=10)
    for (na, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert np.array_equal(pa.data, pb.data), na
        if na.endswith("weight"):
            assert not np.array_equal(pa.data, pc.data), na


# ---------------------------------------------------------------------------
# the towers


class GroupLRN(md.Layer):
    """LRN applied to each half of the channels separately (a tower's LRN)."""

    def __init__(self, groups=2):
        super().__init__()
        self.groups = groups
        self.parts = [md.LocalResponseNorm(5, 1e-4, 0.75, 2.0) for _ in range(groups)]

    def forward(self, x):
        xs = np.split(x, self.groups, axis=1)
        return np.concatenate([p.forward(np.ascontiguousarray(xi)) for p, xi in zip(self.parts, xs)], axis=1)

    def backward(self, dy):
        ds = np.split(dy, self.groups, axis=1)
        return np.concatenate([p.backward(np.ascontiguousarray(di)) for p, di in zip(self.parts, ds)], axis=1)


def grouped_reference(model):
    """The paper's net on one device: grouped convs in conv2/4/5, full conv3 and FC,
    with the two-tower model's weights concatenated tower 0 first."""
    lrn = model.config.lrn
    assert lrn == dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    ref = md.Sequential(
        md.Conv2D(3, 96, 11, stride=4), md.ReLU(), GroupLRN(), md.MaxPool2D(3, 2),
        md.Conv2D(96, 256, 5, padding=2, groups=2), md.ReLU(), GroupLRN(), md.MaxPool2D(3, 2),
        md.Conv2D(256, 384, 3, padding=1), md.ReLU(),
        md.Conv2D(384, 384, 3, padding=1, groups=2), md.ReLU(),
        md.Conv2D(384, 256, 3, padding=1, groups=2), md.ReLU(), md.MaxPool2D(3, 2),
        md.Flatten(),
        md.Linear(9216, 4096), md.ReLU(), md.Dropout(0.5),
        md.Linear(4096, 4096), md.ReLU(), md.Dropout(0.5),
        md.Linear(4096, model.num_classes),
    )
    mains = [l for l in ref if isinstance(l, (md.Conv2D, md.Linear))]
    params = dict(model.named_parameters())
    for layer, name in zip(mains, model.stage_names):
        for attr in ("weight", "bias"):
            getattr(layer, attr).data = np.concatenate(
                [params[f"{name}.tower0.{attr}"].data, params[f"{name}.tower1.{attr}"].data], axis=0)
    return ref, mains


def test_two_towers_equal_grouped_single_device_model():
    model = build_model("paper", num_classes=10, seed=1).eval()
    # bigger weights than N(0, 0.01) so that every layer's signal is far from zero
    rng = np.random.default_rng(0)
    for name, p in model.named_parameters():
        fan_in = p.data[0].size if p.data.ndim > 1 else 1
        p.data = (rng.standard_normal(p.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    ref, mains = grouped_reference(model)
    ref.eval()
    x = rng.standard_normal((2, 3, 227, 227)).astype(np.float32)
    logits = model.forward(x)
    ref_logits = ref.forward(x)
    np.testing.assert_allclose(logits, ref_logits, rtol=2e-4, atol=2e-4 * np.abs(ref_logits).max())

    g = rng.standard_normal(logits.shape).astype(np.float32)
    model.need_input_grad = True
    dx = model.backward(g)
    ref_dx = ref.backward(g)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-3, atol=1e-3 * np.abs(ref_dx).max())
    params = dict(model.named_parameters())
    for layer, name in zip(mains, model.stage_names):
        for attr in ("weight", "bias"):
            ours = np.concatenate([params[f"{name}.tower0.{attr}"].grad, params[f"{name}.tower1.{attr}"].grad])
            theirs = getattr(layer, attr).grad
            np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max(),
                                       err_msg=f"{name}.{attr}")


def test_lrn_never_crosses_towers():
    model = build_model("paper", seed=0).eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 227, 227)).astype(np.float32)
    before = model.features(x, "conv1.lrn")
    w = model.conv1.tower1.conv.weight
    w.data = w.data + np.float32(0.5)          # change only tower 1's conv1 maps
    after = model.features(x, "conv1.lrn")
    np.testing.assert_array_equal(after[:, :48], before[:, :48])      # tower 0: bit for bit
    assert np.abs(after[:, 48:] - before[:, 48:]).max() > 1e-3         # tower 1 did change


def test_only_conv3_and_fc_read_both_towers():
    model = build_model("paper")
    reads = {st.name: st.reads for st in model.stages}
    assert reads == {"conv1": "input", "conv2": "own", "conv3": "both", "conv4": "own", "conv5": "own",
                     "fc6": "both", "fc7": "both", "fc8": "both"}
    with_exchange = [st.name for st in model.stages if st.exchange is not None]
    assert with_exchange == ["conv3", "fc6", "fc7", "fc8"]
    # conv2/4/5 of a tower see only that tower's channels
    assert model.conv2.tower0.conv.in_channels == 48
    assert model.conv4.tower1.conv.in_channels == 192
    assert model.conv3.tower0.conv.in_channels == 256
    assert model.fc6.tower0.linear.in_features == 9216


def test_caffenet_pools_before_lrn_and_torchvision_has_no_lrn():
    caffe = build_model("caffenet")
    assert caffe.conv1.tower0.order == ["conv", "relu", "pool", "lrn"]
    assert build_model("paper").conv1.tower0.order == ["conv", "relu", "lrn", "pool"]
    tv = build_model("torchvision")
    assert len(tv.devices) == 1
    assert all("lrn" not in st.blocks[0].order for st in tv.stages)
    assert tv.conv1.tower0.conv.padding == 2 and tv.expected_input == (3, 224, 224)
    assert tv.fc6.tower0.order == ["flatten", "drop_in", "linear", "relu"]
    x = np.zeros((1, 3, 224, 224), np.float32)
    assert tv.eval().forward(x).shape == (1, 1000)


def test_mini_accepts_inputs_from_28_to_64():
    for size in (28, 32, 64):
        m = build_model("mini", num_classes=10, input_size=size, in_channels=3)
        assert m.forward(np.zeros((2, 3, size, size), np.float32)).shape == (2, 10)


# ---------------------------------------------------------------------------
# gradients and learning


def test_mini_whole_model_gradcheck_float64():
    model = build_model("mini", num_classes=5, seed=0, dtype="float64")
    model.train()                       # dropout masks are replayed by gradcheck
    model.need_input_grad = True
    x = np.random.default_rng(2).standard_normal((2, 1, 28, 28))
    errors = md.gradcheck(model, x, num_checks=12, seed=4)
    assert set(errors) == {"input"} | {n for n, _ in model.named_parameters()}
    worst = max(errors.values())
    assert worst < 1e-6, errors


def test_float32_stays_float32_through_the_model():
    model = build_model("mini", num_classes=10)
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    y = model.forward(x)
    assert y.dtype == np.float32
    model.need_input_grad = True
    dx = model.backward(np.ones_like(y))
    assert dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_frozen_lower_layers_get_no_gradient():
    model = build_model("mini", num_classes=10)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(("fc7", "fc8"))
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    y = model.forward(x)
    assert model.backward(np.ones_like(y)) is None
    for name, p in model.named_parameters():
        assert (p.grad is not None) == name.startswith(("fc7", "fc8")), name


def _fit_fixed_batch(steps):
    """(the training losses of ``steps`` steps on 48 Fashion-MNIST images, the final loss in eval mode)."""
    ds = pytest.importorskip("minidl.data").FashionMNIST("train")
    idx = np.arange(48)
    x = ((ds.images[idx].astype(np.float32) / 255.0) - 0.286) / 0.353
    y = ds.labels[idx]
    model = build_model("mini", num_classes=10, seed=0)
    opt = md.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=0.0)
    loss_fn = md.SoftmaxCrossEntropy()
    losses = []
    for step in range(steps):
        model.train()
        losses.append(float(loss_fn.forward(model.forward(x), y)))
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    model.eval()
    return np.array(losses), float(loss_fn.forward(model.forward(x), y))


def test_mini_fits_a_fixed_batch_of_real_images(kernel_set):
    if kernel_set == "reference":
        # the textbook kernels take the fast kernels' steps, to float rounding (measured: <= 1.1e-7 relative
        # over 12 steps); the 150 steps that fit the batch are the fast kernels' below (with these: 50 s)
        from minidl import kernels
        reference, _ = _fit_fixed_batch(12)
        with kernels.using("fast"):
            fast, _ = _fit_fixed_batch(12)
        np.testing.assert_allclose(reference, fast, rtol=1e-5)
        assert fast[-1] < fast[0] - 0.3            # 12 steps that learn, so a wrong update would show
        return
    losses, final = _fit_fixed_batch(150)
    assert losses[0] > 1.5
    assert final < 0.05, (losses[0], final)


# ---------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
def test_paper_model_on_gpu_matches_numpy():
    import cupy as cp

    cpu = build_model("paper", num_classes=20, seed=0)
    gpu = build_model("paper", num_classes=20, seed=0, devices=["cuda:0", "cuda:0"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 227, 227)).astype(np.float32)
    for m in (cpu, gpu):
        m.train()
    a = cpu.forward(x)
    b = gpu.forward(cp.asarray(x))
    np.testing.assert_allclose(md.asnumpy(b), a, rtol=1e-3, atol=1e-4)
    g = rng.standard_normal(a.shape).astype(np.float32)
    cpu.backward(g)
    gpu.backward(cp.asarray(g))
    for (n, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
        np.testing.assert_allclose(md.asnumpy(q.grad), p.grad, rtol=2e-3, atol=2e-3 * float(np.abs(p.grad).max()),
                                   err_msg=n)


@pytest.mark.gpu
def test_mini_gradcheck_on_gpu():
    import cupy as cp

    model = build_model("mini", num_classes=5, devices=["cuda:0", "cuda:0"], dtype="float64")
    model.need_input_grad = True
    x = cp.asarray(np.random.default_rng(2).standard_normal((2, 1, 28, 28)))
    assert max(md.gradcheck(model, x, num_checks=8).values()) < 1e-6


def test_get_config():
    assert get_config("paper") is PAPER
    assert get_config(PAPER) is PAPER


def test_tower_threads_give_bit_identical_training_steps():
    # the same arithmetic in two threads: logits, gradients and updated weights equal bit for bit
    from minidl import SGD, SoftmaxCrossEntropy

    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    results = []
    for threads in (False, True):
        model = build_model("mini", num_classes=10, seed=4).train()
        model.tower_threads = threads
        assert model.tower_threads is threads
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        crit = SoftmaxCrossEntropy()
        for _ in range(3):
            opt.zero_grad()
            logits = model.forward(x)
            crit.forward(logits, y)
            model.backward(crit.backward())
            opt.step()
        results.append((logits, {k: p.data.copy() for k, p in model.named_parameters()},
                        {k: p.grad.copy() for k, p in model.named_parameters()}))
        model.tower_threads = False
        assert not model.tower_threads
    (l0, w0, g0), (l1, w1, g1) = results
    np.testing.assert_array_equal(l0, l1)
    for k in w0:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
        np.testing.assert_array_equal(g0[k], g1[k], err_msg=k)
