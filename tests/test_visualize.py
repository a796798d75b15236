"""alexnet.visualize on a tiny trained run (mini preset, Fashion-MNIST, 5 steps).

Every command writes a PNG that opens; the arrays behind each figure are
checked: conv1's kernels are the checkpoint's, min-max normalised; the top-5
are the model's; the fc7 neighbours equal a brute-force NumPy search; a
deconv projection has the image's shape, is zero outside the unit's
receptive field, and at conv1 is exactly the activation times the kernel.
"""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from alexnet import build_model, deconv, visualize
from alexnet.configs import get_config
from alexnet.dataspec import make_transforms, open_split
from alexnet.runs import load_run
import minidl as md
from minidl import checkpoint

MINI = get_config("mini")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vis") / "run"
    r = subprocess.run([sys.executable, "-m", "alexnet.train", "--max-steps", "5", "--train-subset", "256",
                        "--val-size", "100", "--batch-size", "32", "--test-subset", "100", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def check_png(path, min_w=300, min_h=150):
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        w, h = im.size
    assert min_w <= w <= 6000 and min_h <= h <= 6000, (w, h)
    return w, h


def test_filters(run, tmp_path):
    path, arrays = visualize.filters(run, out=tmp_path / "filters.png")
    check_png(path)
    k = arrays["kernels"]
    n = MINI.convs[0].out_channels                    # 32: 16 per tower
    assert k.shape == (n, 1, 5, 5)
    assert list(arrays["towers"]) == [0] * (n // 2) + [1] * (n // 2)
    model = checkpoint.load(run / "checkpoints" / "best.npz")["model"]
    w = np.concatenate([model["conv1.tower0.weight"], model["conv1.tower1.weight"]]).astype(np.float64)
    lo, hi = w.min(axis=(1, 2, 3), keepdims=True), w.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(k, (w - lo) / (hi - lo), atol=1e-6)
    assert k.reshape(n, -1).min(1).max() == 0 and k.reshape(n, -1).max(1).min() == 1
    # colour kernels, two towers and one
    one_tower = MINI.with_(name="mini-1", towers=1)
    for m in (build_model("mini", in_channels=3, seed=1), build_model(one_tower, in_channels=3, seed=1)):
        path, arrays = visualize.plot_filters(m, tmp_path / f"{m.config.name}.png")
        check_png(path)
        assert arrays["kernels"].shape == (n, 3, 5, 5)
        assert set(arrays["towers"]) == set(range(len(m.devices)))


def test_predictions(run, tmp_path):
    path, arrays = visualize.predictions(run, out=tmp_path / "pred.png", n=6, seed=3)
    check_png(path)
    assert arrays["top_classes"].shape == (6, 5) and arrays["top_probs"].shape == (6, 5)
    assert np.all(np.diff(arrays["top_probs"], axis=1) <= 0) and np.all(arrays["top_probs"].sum(1) <= 1 + 1e-9)
    model, _, spec = load_run(run)
    test = open_split(spec, "test")
    np.testing.assert_array_equal(arrays["labels"], np.asarray(test.labels)[arrays["indices"]])
    _, evalt = make_transforms(spec, model.input_size)
    logits = model.forward(evalt(test.get_batch(arrays["indices"])))
    np.testing.assert_array_equal(arrays["top_classes"][:, 0], logits.argmax(1))


def test_neighbours_equal_a_brute_force_search(run, tmp_path):
    limit = 300
    path, arrays = visualize.neighbours(run, out=tmp_path / "nn.png", queries=3, k=4, limit=limit, batch_size=128)
    check_png(path)
    idx, dist = arrays["indices"], arrays["distances"]
    assert idx.shape == (3, 4) and dist.shape == (3, 4) and arrays["searched"] == limit
    assert np.all(idx < limit) and np.all(np.diff(dist, axis=1) >= 0)
    # direct: every fc7 vector of the searched subset at once, all distances
    model, _, spec = load_run(run)
    _, evalt = make_transforms(spec, model.input_size)
    train, test = open_split(spec, "train"), open_split(spec, "test")
    model.eval()
    f = model.features(evalt(train.get_batch(np.arange(limit))), "fc7").astype(np.float64)
    q = model.features(evalt(test.get_batch(arrays["query_indices"])), "fc7").astype(np.float64)
    assert f.shape == (limit, MINI.fcs[1].out_features)
    d = np.sqrt(((q[:, None, :] - f[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1)[:, :4]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_allclose(dist, np.take_along_axis(d, order, axis=1), rtol=1e-4, atol=1e-6)


def _rf_mini(layer, y, x):
    """Receptive fields in mini, by hand: conv1 5x5 p2, pool 3/2, conv2 5x5 p2, pool 3/2, conv3-5 3x3 p1."""
    assert [(c.kernel_size, c.stride, c.padding) for c in MINI.convs[:2]] == [(5, 1, 2), (5, 1, 2)]
    assert MINI.pool == dict(kernel_size=3, stride=2) and MINI.input_size == 28
    def span(c):
        if layer == "conv1":
            lo, hi = c - 2, c + 2
        else:   # conv2: [c-2, c+2] in pool1 coords -> [2(c-2), 2(c+2)+2] -> conv1 [.. -2, .. +2]
            lo, hi = 2 * (c - 2) - 2, 2 * (c + 2) + 2 + 2
        return max(lo, 0), min(hi + 1, 28)
    return span(y) + span(x)


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_deconv_projection_lies_in_the_receptive_field(run, tmp_path, layer):
    path, arrays = visualize.deconv(run, out=tmp_path / "deconv.png", layer=layer, index=7, top=3)
    check_png(path)
    proj = arrays["projections"]
    assert arrays["image"].shape == (1, 28, 28) and proj.shape == (3, 1, 28, 28)
    assert np.all(np.diff(arrays["activations"]) <= 0) and np.all(arrays["activations"] > 0)
    for i in range(3):
        y, x = arrays["positions"][i]
        y0, y1, x0, x1 = _rf_mini(layer, int(y), int(x))
        assert tuple(arrays["fields"][i]) == (y0, y1, x0, x1)
        inside = np.zeros((28, 28), bool)
        inside[y0:y1, x0:x1] = True
        assert np.abs(proj[i][:, inside]).max() > 0
        assert np.all(proj[i][:, ~inside] == 0)
    if layer == "conv1":        # one activation through the transposed conv: activation x its kernel
        model = checkpoint.load(run / "checkpoints" / "best.npz")["model"]
        w = np.concatenate([model["conv1.tower0.weight"], model["conv1.tower1.weight"]])
        for i in range(3):
            c, (y, x), a = int(arrays["channels"][i]), arrays["positions"][i], arrays["activations"][i]
            full = np.zeros((1, 32, 32), np.float32)                # 28 + 2 * padding 2
            full[:, y:y + 5, x:x + 5] = a * w[c]
            np.testing.assert_allclose(proj[i], full[:, 2:30, 2:30], rtol=1e-5, atol=1e-6)


def test_deconv_crosses_towers_at_conv3(monkeypatch):
    """A conv4 unit of tower 0 goes down its own tower to conv3, which read both towers, and then
    down both; a conv2 unit of tower 1 never leaves tower 1."""
    model = build_model("mini", seed=0).eval()
    x = np.random.default_rng(0).normal(size=(1, 1, 28, 28)).astype(np.float32)
    calls = []
    orig = md.Conv2D.transpose

    def spy(conv, y, x_shape):
        calls.append(id(conv))
        return orig(conv, y, x_shape)

    monkeypatch.setattr(md.Conv2D, "transpose", spy)
    ids = {f"{s}.{t}": id(getattr(model, s).blocks[t].conv) for s in ("conv1", "conv2", "conv3", "conv4")
           for t in (0, 1)}
    names = {v: k for k, v in ids.items()}
    res = deconv.deconv_projections(model, x, "conv4", channels=[5])            # tower 0
    assert res["projections"].shape == (1, 1, 28, 28) and np.abs(res["projections"]).max() > 0
    assert sorted(names[c] for c in calls) == ["conv1.0", "conv1.1", "conv2.0", "conv2.1", "conv3.0", "conv4.0"]
    calls.clear()
    deconv.deconv_projections(model, x, "conv2", channels=[MINI.convs[1].out_channels // 2 + 3])   # tower 1
    assert sorted(names[c] for c in calls) == ["conv1.1", "conv2.1"]


def test_cli_writes_every_figure_and_reports_user_errors(run, tmp_path, capsys):
    for cmd, extra in (("filters", []), ("predictions", ["--n", "4"]),
                       ("neighbours", ["--limit", "200", "--queries", "2", "--k", "3", "--no-progress"]),
                       ("deconv", ["--layer", "conv5", "--top", "2"])):
        out = tmp_path / f"{cmd}.png"
        assert visualize.main(["--run", str(run), cmd, "--out", str(out), *extra]) == 0
        check_png(out)
    assert visualize.main(["--run", str(run), "filters"]) == 0            # default: inside the run folder
    check_png(run / "filters.png")
    capsys.readouterr()
    assert visualize.main(["--run", str(tmp_path), "filters"]) == 2
    assert "not a training run" in capsys.readouterr().err
    assert visualize.main(["--run", str(run), "deconv", "--layer", "fc6"]) == 2
    assert "layer must be one of conv1" in capsys.readouterr().err


def test_drawing_keeps_a_backend_already_in_use(tmp_path):
    # a notebook's inline backend must survive a figure drawn to a file
    code = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt\n"
            "from alexnet import build_model, visualize\n"
            f"visualize.plot_filters(build_model('mini', seed=0), {str(tmp_path / 'f.png')!r})\n"
            "import numpy as np; from alexnet import plots\n"
            f"plots.plot_confusion(np.eye(2, dtype=int), ['a', 'b'], {str(tmp_path / 'c.png')!r})\n"
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
            "assert plt.get_fignums() == []\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    check_png(tmp_path / "f.png")
    check_png(tmp_path / "c.png", min_w=100, min_h=100)
    # and without pyplot imported first, drawing needs no display (Agg)
    code = ("import matplotlib\nfrom alexnet import build_model, visualize\n"
            f"visualize.plot_filters(build_model('mini', seed=0), {str(tmp_path / 'g.png')!r})\n"
            "assert matplotlib.get_backend().lower() == 'agg', matplotlib.get_backend()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("preset, towers, exchanges", [("paper", 2, 8), ("mini", 2, 8), ("bvlc", 1, 0)])
def test_the_architecture_figure_is_drawn_from_the_model(tmp_path, preset, towers, exchanges):
    from alexnet import build_model
    from alexnet.plots import plot_architecture

    model = build_model(preset, num_classes=1000 if preset == "paper" else 10)
    out = tmp_path / f"{preset}.png"
    fig = plot_architecture(model, out)
    assert out.stat().st_size > 0
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    for st in model.stages:                       # every stage once per tower
        assert sum(t.startswith(st.name + "\n") for t in texts) == towers
    # conv3, fc6, fc7 and fc8 read both towers: two crossing arrows each
    assert sum(p.get_gid() == "exchange" for p in ax.patches) == exchanges
    if preset == "paper":
        assert "conv1\n11×11 /4\n+lrn+pool\n48×27×27" in texts and "fc6\nfully connected\n+dropout\n2048" in texts
        assert "60,965,224 parameters" in ax.get_title()
