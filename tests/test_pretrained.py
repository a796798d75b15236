"""alexnet.pretrained: torchvision and Caffe (bvlc_alexnet.npy) weights, and fine-tuning.

- torchvision: an AlexNet written here in PyTorch, module for module, with random
  weights; its state dict loads from .pth, .safetensors and .npz (the last two
  without importing torch) and gives the same logits; export round-trips.
- Caffe: a bvlc_alexnet.npy-format file with random weights matches an
  independent PyTorch forward of Caffe's net (groups=2, LRN k=1, fc6 rows in
  (h, w, c) order); two towers differ only through the LRN at the tower
  boundary; pickles that carry code are refused and never run.
- Fine-tuning through ``python -m alexnet.train --init-from``: frozen
  parameters stay bit-identical and the new head learns.
"""

import importlib.util
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet import build_model, pretrained, train
from alexnet.dataspec import make_transforms, open_split
from alexnet.runs import load_run
from minidl import checkpoint

TV_KEYS = [f"{m}.{p}" for m in ("features.0", "features.3", "features.6", "features.8", "features.10",
                                 "classifier.1", "classifier.4", "classifier.6") for p in ("weight", "bias")]


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_bvlc_preset_is_caffes_one_device_net():
    m = build_model("bvlc")
    assert m.num_parameters() == 60_965_224
    assert len(m.devices) == 1 and m.input_size == 227
    assert [getattr(m, s).blocks[0].conv.groups for s in ("conv1", "conv2", "conv3", "conv4", "conv5")] == \
        [1, 2, 1, 2, 2]
    assert m.conv1.blocks[0].order == ["conv", "relu", "lrn", "pool"]      # norm before pool, as bvlc_alexnet
    assert m.conv2.blocks[0].order == ["conv", "relu", "lrn", "pool"]
    assert m.conv1.blocks[0].lrn.k == 1.0 and m.init_scheme == "caffe"


def test_imagenet_classes():
    names = pretrained.imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998
    assert names[0] == "tench" and names[1] == "goldfish"


# ---------------------------------------------------------------------------
# torchvision


def _torchvision_alexnet(torch, num_classes=1000):
    nn = torch.nn

    class AlexNet(nn.Module):                 # torchvision.models.alexnet, module for module
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


def write_safetensors_by_hand(path, arrays):
    """The format, written independently of alexnet.pretrained (no padding, F32 only)."""
    header, blobs, offset = {}, [], 0
    for k, a in arrays.items():
        data = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


@pytest.fixture(scope="module")
def torch_net(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _torchvision_alexnet(torch).eval()
    d = tmp_path_factory.mktemp("tv")
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    assert sorted(state) == sorted(TV_KEYS)
    torch.save(net.state_dict(), d / "alexnet.pth")
    np.savez(d / "alexnet.npz", **state)
    write_safetensors_by_hand(d / "alexnet.safetensors", state)
    x = np.random.default_rng(1).normal(0, 1, size=(2, 3, 224, 224)).astype(np.float32)
    np.save(d / "x.npy", x)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    return {"dir": d, "state": state, "x": x, "logits": logits}


@pytest.fixture(scope="module")
def loaded_pth(torch_net):
    return pretrained.load_torchvision(torch_net["dir"] / "alexnet.pth")


def test_pth_gives_torchs_logits(torch_net, loaded_pth):
    m = loaded_pth
    assert m.config.name == "torchvision" and m.num_classes == 1000 and not m.training
    assert rel_err(m.forward(torch_net["x"]), torch_net["logits"]) < 1e-4
    for key, stage in pretrained.TORCHVISION_KEYS.items():
        np.testing.assert_array_equal(getattr(m, stage).tower0.main.weight.data, torch_net["state"][f"{key}.weight"])


def test_npz_and_safetensors_load_without_torch(torch_net, tmp_path):
    d = torch_net["dir"]
    files = [str(d / "alexnet.npz"), str(d / "alexnet.safetensors")]
    out = tmp_path / "logits.npz"
    code = (
        "import sys, numpy as np\n"
        "from alexnet.pretrained import load_torchvision\n"
        f"x = np.load({str(d / 'x.npy')!r})\n"
        f"outs = [load_torchvision(p).forward(x) for p in {files!r}]\n"
        "assert 'torch' not in sys.modules, 'loading imported torch'\n"
        f"np.savez({str(out)!r}, *outs)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with np.load(out) as got:
        for name in got.files:
            assert rel_err(got[name], torch_net["logits"]) < 1e-4


def test_export_round_trip(torch_net, loaded_pth, tmp_path):
    for ext in (".npz", ".safetensors"):
        path = pretrained.export_torchvision(loaded_pth, tmp_path / f"out{ext}")
        state = pretrained.read_torchvision_state(path)
        assert sorted(state) == sorted(TV_KEYS)
        for k in TV_KEYS:                          # exactly torch's arrays
            np.testing.assert_array_equal(state[k], torch_net["state"][k])
        again = pretrained.load_torchvision(path)
        for (n1, p1), (n2, p2) in zip(loaded_pth.named_parameters(), again.named_parameters()):
            assert n1 == n2 and p1.data.dtype == p2.data.dtype
            np.testing.assert_array_equal(p1.data, p2.data)
    from safetensors.torch import load_file

    theirs = load_file(str(tmp_path / "out.safetensors"))        # PyTorch reads what we wrote
    for k in TV_KEYS:
        np.testing.assert_array_equal(theirs[k].numpy(), torch_net["state"][k])


def test_safetensors_reader_dtypes_and_damage(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float64).reshape(2, 3), "b": np.array([1, -2], np.int64),
              "c": np.array([3], np.uint8), "h": np.array([0.5, -1.25], np.float16), "e": np.zeros((0, 4), np.float32)}
    p = pretrained.write_safetensors(tmp_path / "t.safetensors", arrays, metadata={"format": "pt"})
    raw = Path(p).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert (8 + n) % 8 == 0 and json.loads(raw[8:8 + n])["__metadata__"] == {"format": "pt"}
    got = pretrained.read_safetensors(p)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    # bfloat16: the top 16 bits of a float32; NumPy has no such type, PyTorch reads it
    f32 = np.array([1.5, -3.0, 0.15625], np.float32)
    bf = (f32.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    (tmp_path / "bf.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bf)
    if importlib.util.find_spec("torch"):
        np.testing.assert_array_equal(pretrained.read_safetensors(tmp_path / "bf.safetensors")["w"], f32)
    else:
        with pytest.raises(ValueError, match="holds bfloat16 tensors, which NumPy cannot hold; install torch"):
            pretrained.read_safetensors(tmp_path / "bf.safetensors")
    for name, content in (("cut", raw[:len(raw) - 4]), ("junk", b"\xff" * 64)):
        (tmp_path / f"{name}.safetensors").write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}.safetensors: not a safetensors file, or a damaged one"):
            pretrained.read_safetensors(tmp_path / f"{name}.safetensors")


def _small_state(shapes_ok=True):
    state = {k: np.zeros(1, np.float32) for k in TV_KEYS}
    if shapes_ok:
        return state
    state["features.0.weight"] = np.zeros((64, 3, 11, 10), np.float32)
    return state


def test_bad_state_dicts_name_the_key(tmp_path):
    st = _small_state()
    del st["features.8.bias"]
    np.savez(tmp_path / "missing.npz", **st)
    with pytest.raises(ValueError, match="missing key 'features.8.bias'"):
        pretrained.load_torchvision(tmp_path / "missing.npz")
    st = _small_state()
    st["classifier.7.weight"] = np.zeros(1, np.float32)
    np.savez(tmp_path / "extra.npz", **st)
    with pytest.raises(ValueError, match="unexpected key 'classifier.7.weight'"):
        pretrained.load_torchvision(tmp_path / "extra.npz")
    np.savez(tmp_path / "shape.npz", **_small_state(False))
    with pytest.raises(ValueError, match=r"'features.0.weight' has shape \(64, 3, 11, 10\).*\(64, 3, 11, 11\)"):
        pretrained.load_torchvision(tmp_path / "shape.npz")
    (tmp_path / "w.onnx").write_bytes(b"\0")
    with pytest.raises(ValueError, match="unknown weights file type '.onnx'"):
        pretrained.load_torchvision(tmp_path / "w.onnx")
    with pytest.raises(ValueError, match="no such file"):
        pretrained.load_torchvision(tmp_path / "nothing.npz")


def test_pth_without_torch_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "w.pth").write_bytes(b"PK\x03\x04")
    monkeypatch.setitem(sys.modules, "torch", None)          # import torch -> ImportError
    with pytest.raises(ValueError, match="needs PyTorch"):
        pretrained.load_torchvision(tmp_path / "w.pth")


# ---------------------------------------------------------------------------
# Caffe: bvlc_alexnet.npy


def _caffe_weights(num_classes=1000, seed=0):
    """Random weights in bvlc_alexnet.npy's layout, scaled so activations stay O(1..100)."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": (11, 11, 3, 96), "conv2": (5, 5, 48, 256), "conv3": (3, 3, 256, 384),
              "conv4": (3, 3, 192, 384), "conv5": (3, 3, 192, 256), "fc6": (9216, 4096), "fc7": (4096, 4096),
              "fc8": (4096, num_classes)}
    out = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[:-1]))
        w = (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
        b = (rng.standard_normal(shape[-1], dtype=np.float32) * np.float32(0.1))
        out[name] = [w, b] if name.startswith("conv") else (w, b)       # lists and tuples both occur
    return out


def caffe_reference(weights, x_bgr):
    """bvlc_alexnet's forward with PyTorch ops, straight from the (h, w, in, out) arrays."""
    import torch
    import torch.nn.functional as F

    def conv(x, name, stride=1, pad=0, groups=1):
        w, b = weights[name]
        return F.conv2d(x, torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))), torch.from_numpy(b),
                        stride=stride, padding=pad, groups=groups)

    lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    with torch.no_grad():
        x = torch.from_numpy(x_bgr)
        x = F.max_pool2d(lrn(F.relu(conv(x, "conv1", stride=4))), 3, 2)
        x = F.max_pool2d(lrn(F.relu(conv(x, "conv2", pad=2, groups=2))), 3, 2)
        x = F.relu(conv(x, "conv3", pad=1))
        x = F.relu(conv(x, "conv4", pad=1, groups=2))
        x = F.max_pool2d(F.relu(conv(x, "conv5", pad=1, groups=2)), 3, 2)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)          # TF's NHWC flatten: rows (h, w, c)
        for name in ("fc6", "fc7", "fc8"):
            w, b = weights[name]
            x = x @ torch.from_numpy(w) + torch.from_numpy(b)
            if name != "fc8":
                x = F.relu(x)
        return x.numpy()


@pytest.fixture(scope="module")
def caffe_file(tmp_path_factory):
    weights = _caffe_weights()
    path = tmp_path_factory.mktemp("caffe") / "bvlc_alexnet.npy"
    np.save(path, weights, allow_pickle=True)          # only the test writes pickles
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(2, 3, 256, 256), dtype=np.uint8)
    return {"path": path, "weights": weights, "images": images, "x": pretrained.caffe_preprocess(images)}


@pytest.fixture(scope="module")
def caffe_one_tower(caffe_file):
    return pretrained.load_caffe_npy(caffe_file["path"])


def test_caffe_preprocess(caffe_file):
    img = caffe_file["images"]
    x = caffe_file["x"]
    assert x.shape == (2, 3, 227, 227) and x.dtype == np.float32
    crop = img[:, :, 14:241, 14:241].astype(np.float32)
    np.testing.assert_array_equal(x[:, 0], crop[:, 2] - 104)             # B
    np.testing.assert_array_equal(x[:, 1], crop[:, 1] - 117)             # G
    np.testing.assert_array_equal(x[:, 2], crop[:, 0] - 124)             # R
    np.testing.assert_array_equal(pretrained.caffe_preprocess(img.transpose(0, 2, 3, 1)), x)   # NHWC too
    with pytest.raises(ValueError, match="smaller than"):
        pretrained.caffe_preprocess(img[:, :, :200, :200])


def test_caffe_npy_matches_an_independent_pytorch_forward(caffe_file, caffe_one_tower):
    pytest.importorskip("torch")
    m = caffe_one_tower
    assert m.config.name == "bvlc" and m.num_classes == 1000 and m.input_order == "bgr"
    ref = caffe_reference(caffe_file["weights"], caffe_file["x"])
    assert np.abs(ref).max() > 1.0                                      # a test with real signal in it
    assert rel_err(m.forward(caffe_file["x"]), ref) < 1e-4


def test_caffe_two_towers_differ_only_by_the_lrn_at_the_boundary(caffe_file, caffe_one_tower):
    two = pretrained.load_caffe_npy(caffe_file["path"], towers=2)
    assert len(two.devices) == 2 and two.num_parameters() == 60_965_224 and two.class_splits == [500, 500]
    x = caffe_file["x"][:1]
    one_lrn, two_lrn = caffe_one_tower.features(x, "conv1.lrn"), two.features(x, "conv1.lrn")
    diff = np.abs(one_lrn - two_lrn).max(axis=(0, 2, 3)) / np.abs(one_lrn).max()
    changed = np.flatnonzero(diff > 1e-6)
    assert list(changed) == [46, 47, 48, 49]              # 2 channels each side of the tower boundary
    a, b = caffe_one_tower.forward(x), two.forward(x)
    err = rel_err(b, a)
    assert 1e-6 < err < 0.05                              # close, but not Caffe's numbers


def test_caffe_rgb_order_and_fine_tune_init(caffe_file, caffe_one_tower):
    rgb = pretrained.load_caffe_npy(caffe_file["path"], input_order="rgb")
    x_rgb = np.ascontiguousarray(caffe_file["x"][:1, ::-1])
    assert rel_err(rgb.forward(x_rgb), caffe_one_tower.forward(caffe_file["x"][:1])) < 1e-5
    m = build_model("bvlc", num_classes=3, seed=0)
    head = m.fc8.tower0.main.weight.data.copy()
    info = pretrained.init_from(m, caffe_file["path"], "caffe")
    assert info["head"] == "new" and info["classes"] == 1000
    np.testing.assert_array_equal(m.fc8.tower0.main.weight.data, head)
    np.testing.assert_array_equal(m.conv1.tower0.main.weight.data, rgb.conv1.tower0.main.weight.data)
    np.testing.assert_array_equal(m.fc6.tower0.main.weight.data, rgb.fc6.tower0.main.weight.data)


class _Payload:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _evil_npy(path, payload):
    weights = {"conv1": [np.zeros((2, 2), np.float32), np.zeros(2, np.float32)], "evil": payload}
    np.save(path, weights, allow_pickle=True)


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.eval"])
def test_pickles_that_carry_code_are_refused_and_never_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload, name = _Payload(os.system, (f"touch {marker}",)), os.system.__module__ + ".system"
    elif kind == "builtins.exec":
        payload, name = _Payload(exec, (f"open({str(marker)!r}, 'w').write('x')",)), "builtins.exec"
    else:
        payload, name = _Payload(eval, (f"open({str(marker)!r}, 'w').write('x')",)), "builtins.eval"
    path = tmp_path / "bvlc_alexnet.npy"
    _evil_npy(path, payload)
    with pytest.raises(ValueError, match=rf"tries to load '{name}' and was refused") as exc:
        pretrained.load_caffe_npy(path)
    assert isinstance(exc.value, pretrained.UnsafePickleError)
    assert not marker.exists()
    if kind == "os.system":                    # the file is live: numpy's own pickle loading runs it
        np.load(path, allow_pickle=True)
        assert marker.exists()


def test_caffe_npy_other_bad_files(tmp_path, caffe_file):
    np.save(tmp_path / "plain.npy", np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="plain float32 array"):
        pretrained.load_caffe_npy(tmp_path / "plain.npy")
    np.save(tmp_path / "few.npy", {"conv1": [np.zeros(1, np.float32)] * 2}, allow_pickle=True)
    with pytest.raises(ValueError, match="missing keys 'conv2', 'conv3'"):
        pretrained.load_caffe_npy(tmp_path / "few.npy")
    w = dict(caffe_file["weights"])
    w["conv2"] = [np.zeros((5, 5, 96, 256), np.float32), np.zeros(256, np.float32)]   # no groups
    np.save(tmp_path / "shape.npy", w, allow_pickle=True)
    with pytest.raises(ValueError, match=r"conv2\.tower0\.weight would get shape \(256, 96, 5, 5\)"):
        pretrained.load_caffe_npy(tmp_path / "shape.npy")
    # a protocol-2 pickle (how Python 2 wrote the real file) of the same structure loads
    p2 = tmp_path / "proto2.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {f"conv{i}": [np.full((3, 3, 2, 4), i, np.float32), np.zeros(4, np.float32)] for i in range(1, 6)}
    arr[()].update({"fc6": [np.ones((8, 4), np.float32), np.ones(4, np.float32)]})
    with open(p2, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(arr, f, protocol=2)
    got = pretrained.read_caffe_npy(p2)
    assert sorted(got) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6"]
    np.testing.assert_array_equal(got["conv3"][0], arr[()]["conv3"][0])


# ---------------------------------------------------------------------------
# fine-tuning: python -m alexnet.train --init-from


def _fashion_tree(root, classes, n_train, n_val):
    """ROOT/{train,val}/<class>/*.png: Fashion-MNIST items saved as RGB images."""
    from minidl.data import FashionMNIST

    for split, ds, n in (("train", FashionMNIST("train"), n_train), ("val", FashionMNIST("test"), n_val)):
        for label, name in classes:
            d = root / split / name
            d.mkdir(parents=True)
            for i in np.flatnonzero(ds.labels == label)[:n]:
                Image.fromarray(ds.images[i, 0]).convert("RGB").save(d / f"{i}.png")
    return root


def _accuracy_and_loss(model, spec):
    from alexnet.visualize import class_probabilities

    ds = open_split(spec, "train")
    _, evalt = make_transforms(spec, model.input_size)
    labels = np.asarray(ds.labels)
    p = class_probabilities(model, ds.get_batch(np.arange(len(ds))), evalt)
    return float((p.argmax(1) == labels).mean()), float(-np.log(p[np.arange(len(labels)), labels]).mean())


def test_fine_tune_head_from_a_run_learns_and_frozen_weights_stay(tmp_path, capsys, mini_run):
    """A mini run trained on Fashion-MNIST (10 classes), fine-tuned on a 3-class photo folder."""
    base = mini_run
    tree = _fashion_tree(tmp_path / "tree", [(1, "trouser"), (7, "sneaker"), (8, "bag")], 16, 4)
    run = tmp_path / "ft"
    rc = train.main(["--data", str(tree), "--init-from", str(base), "--train-layers", "fc6,fc7,fc8",
                     "--batch-size", "16", "--max-steps", "30", "--lr", "0.01", "--lr-schedule", "step",
                     "--lr-step", "100", "--epochs", "100", "--eval-every", "100", "--out", str(run), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "fc8 replaced by a new 3-class head (10 classes in the file)" in out
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "mini" and config["args"]["format"] == "run"
    assert config["data"]["std"] == [90.021] * 3          # the source run's normalisation, per channel

    # the model the run started from: same seed, same loading
    _, _, spec = load_run(run, "last")
    before = build_model("mini", num_classes=3, in_channels=3, seed=0)
    pretrained.init_from(before, base, "run")
    src = checkpoint.load(base / "checkpoints" / "best.npz")["model"]
    start = dict(before.state_dict())
    np.testing.assert_array_equal(start["conv2.tower1.weight"], src["conv2.tower1.weight"])
    np.testing.assert_array_equal(start["conv1.tower0.weight"], np.repeat(src["conv1.tower0.weight"], 3, 1) / 3)
    end = checkpoint.load(run / "checkpoints" / "last.npz")["model"]
    for name, value in start.items():
        if name.split(".")[0] in ("fc6", "fc7", "fc8"):
            assert not np.array_equal(end[name], value), name
        else:
            assert end[name].dtype == value.dtype and np.array_equal(end[name], value), f"{name} changed"
    after, _, _ = load_run(run, "last")
    # the run trained and evaluated with the normalisation config.json records (the weights'), so
    # evaluating the saved model the way `evaluate` does reproduces the run's own last evaluation
    from alexnet.evaluate import evaluate

    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    _, evalt = make_transforms(spec, after.input_size)
    again = evaluate(after, open_split(spec, "test"), evalt)
    assert logged["step"] == 30 and again["loss"] == pytest.approx(logged["test_loss"], rel=1e-6)
    acc0, loss0 = _accuracy_and_loss(before, spec)
    acc1, loss1 = _accuracy_and_loss(after, spec)
    print("fine-tune: train accuracy", acc0, "->", acc1, "loss", loss0, "->", loss1)
    # measured over 6 seeds on OpenBLAS's Haswell and SkylakeX kernels: accuracy 0.06-0.63 -> 0.98-1.0,
    # loss 1.05-1.16 -> 0.006-0.025 (chance: 1/3, ln 3 = 1.10)
    assert acc1 >= 0.9 and loss1 < 0.3 * loss0, (acc0, acc1, loss0, loss1)


@pytest.fixture(scope="module")
def random_torchvision_npz(tmp_path_factory):
    """torchvision-format weights (random), written with export_torchvision: no PyTorch needed."""
    path = tmp_path_factory.mktemp("tvw") / "alexnet.npz"
    return pretrained.export_torchvision(build_model("torchvision", init="he", seed=3), path)


def test_fine_tune_torchvision_weights_freezes_and_replaces_the_head(tmp_path, capsys, random_torchvision_npz):
    tree = _fashion_tree(tmp_path / "tree", [(1, "trouser"), (8, "bag")], 4, 2)
    run = tmp_path / "ft"
    rc = train.main(["--data", str(tree), "--init-from", random_torchvision_npz, "--train-layers", "fc6,fc7,fc8",
                     "--batch-size", "4", "--max-steps", "2", "--lr", "1e-5", "--out", str(run), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "fc8 replaced by a new 2-class head (1000 classes in the file)" in out
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "torchvision" and config["data"]["std"] == list(pretrained.TORCHVISION_STD)
    src = pretrained.read_torchvision_state(random_torchvision_npz)
    end = checkpoint.load(run / "checkpoints" / "last.npz")
    model = end["model"]
    for key, stage in pretrained.TORCHVISION_KEYS.items():
        for kind in ("weight", "bias"):
            got, want = model[f"{stage}.tower0.{kind}"], src[f"{key}.{kind}"]
            if stage in ("conv1", "conv2", "conv3", "conv4", "conv5"):
                assert np.array_equal(got, want), f"frozen {stage}.{kind} changed"
            elif stage in ("fc6", "fc7"):
                assert got.shape == want.shape and not np.array_equal(got, want)
            else:
                assert got.shape[0] == 2 and np.isfinite(got).all()
    assert len(end["optim"]["velocity"]) == 6             # SGD kept state for the trained parameters only


def test_fine_tune_user_errors(tmp_path, capsys, random_torchvision_npz):
    rc = train.main(["--init-from", random_torchvision_npz, "--preset", "mini", "--out", str(tmp_path / "a")])
    assert rc == 2 and "loads into preset 'torchvision'" in capsys.readouterr().err
    rc = train.main(["--init-from", str(tmp_path / "none.pth"), "--out", str(tmp_path / "b")])
    assert rc == 2 and "no such file" in capsys.readouterr().err
    rc = train.main(["--train-layers", "fc9", "--max-steps", "1", "--out", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown stage(s) fc9" in err and "conv1,conv2" in err


def test_predict_with_torchvision_weights(tmp_path, capsys, random_torchvision_npz):
    import skimage.data as sd

    from alexnet import predict
    from minidl.data import resize_center_crop

    img = sd.chelsea()
    Image.fromarray(img).save(tmp_path / "cat.png")
    assert predict.main([str(tmp_path / "cat.png"), "--weights", random_torchvision_npz]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("cat.png") and len(lines) == 6
    # the same top-1 by hand: 256 shorter side, centre 224, torchvision's normalisation
    m = pretrained.load_torchvision(random_torchvision_npz)
    x = resize_center_crop(img, 256)[16:240, 16:240].astype(np.float32)
    x = (x - np.float32(pretrained.TORCHVISION_MEAN)) / np.float32(pretrained.TORCHVISION_STD)
    top = int(np.argmax(m.forward(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))))
    assert lines[1].split("%", 1)[1].strip() == pretrained.imagenet_classes()[top]
    assert predict.main([str(tmp_path / "cat.png")]) == 2
    assert "--run DIR" in capsys.readouterr().err


def test_fine_tune_default_run_folder_is_named_after_the_weights_preset(tmp_path, monkeypatch, capsys,
                                                                         random_torchvision_npz):
    tree = _fashion_tree(tmp_path / "tree", [(1, "trouser"), (8, "bag")], 4, 2)
    monkeypatch.chdir(tmp_path)
    rc = train.main(["--data", str(tree), "--init-from", random_torchvision_npz, "--train-layers", "fc8",
                     "--batch-size", "4", "--max-steps", "1", "--lr", "1e-5", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    assert (tmp_path / "runs" / "torchvision-tree" / "checkpoints" / "last.npz").exists()
    assert not (tmp_path / "runs" / "mini-tree").exists()
