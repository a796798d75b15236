"""End-to-end tests of the command lines: alexnet.prepare / train / evaluate / predict.

User errors are one line on stderr with exit code 2 (never a traceback); an
ImageNet-style folder of real photographs goes through prepare, train,
evaluate (centre and ten-crop) and predict; on Fashion-MNIST, evaluate and
predict agree with the model they load.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from urllib.error import URLError

import numpy as np
import pytest
from PIL import Image

from alexnet import evaluate as evaluate_mod
from alexnet import predict as predict_mod
from alexnet import train as train_mod
from alexnet import visualize as visualize_mod
from alexnet.dataspec import describe_data, make_transforms
from alexnet.runs import load_run
from minidl.data import FASHION_MNIST_CLASSES, FashionMNIST, load_image
from minidl.data import fashion_mnist as fm

FAST = ["--train-subset", "256", "--val-size", "200", "--batch-size", "32", "--test-subset", "200", "--no-progress"]


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def cli(module, *args, cwd, timeout=300):
    """`python -m alexnet.<module> ARGS` in a fresh process."""
    return subprocess.run([sys.executable, "-m", f"alexnet.{module}", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def call(main, argv):
    """In-process main(argv) -> exit code (argparse errors raise SystemExit)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code


def one_line_error(err, prog):
    """The stderr of a user error: exactly one line, '<prog>: error: ...', no traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(rf"^(python -m alexnet\.)?{prog}: error: ", lines[0]), lines[0]
    return lines[0]


def assert_user_error(capsys, main, argv, prog, *fragments):
    capsys.readouterr()
    rc = call(main, argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    line = one_line_error(err, prog)
    for frag in fragments:
        assert frag in line, (frag, line)
    return line


@pytest.fixture(scope="module")
def fm_run(mini_run, tmp_path_factory):
    """A copy of the trained Fashion-MNIST run (conftest.mini_run) that tests may write into."""
    run = tmp_path_factory.mktemp("fm") / "run"
    shutil.copytree(mini_run, run)
    return run


# -- 6. user errors: one line, exit 2 --------------------------------------------------

def test_missing_fashion_mnist_lists_places_and_apt_package(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fm, "SYSTEM_DIRS", (str(tmp_path / "usr-share-datasets"),))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "minidl-data"))
    tried = []

    def no_network(url, *a, **k):
        tried.append(url)
        raise URLError("network is unreachable (test)")

    monkeypatch.setattr(fm, "urlopen", no_network)
    places = [str(d) for d in fm.search_dirs()]
    assert str(tmp_path / "home") in places[2]
    line = assert_user_error(capsys, train_mod.main, ["--out", tmp_path / "run", "--max-steps", "1"], "train",
                             "Fashion-MNIST", "not found", "apt-get install dataset-fashion-mnist",
                             "network is unreachable", *places)
    assert tried and tried[0].startswith(fm.URL)
    assert "--data-dir" in line
    assert not (tmp_path / "run").exists()                        # nothing created before the data was found
    cache = tmp_path / "home" / ".cache" / "minidl" / "fashion-mnist"
    assert not cache.exists() or not any(cache.iterdir())         # no partial download left


def test_data_folder_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert_user_error(capsys, train_mod.main, ["--data", tmp_path / "empty", "--out", tmp_path / "r1"], "train",
                      "neither a prepared dataset", "train/")
    assert_user_error(capsys, train_mod.main, ["--data", tmp_path / "nowhere", "--out", tmp_path / "r2"], "train",
                      "no such folder")
    (tmp_path / "noclass" / "train").mkdir(parents=True)
    assert_user_error(capsys, train_mod.main, ["--data", tmp_path / "noclass", "--out", tmp_path / "r3"], "train",
                      "no class folders")
    # train/ with files, none of them an image: found before training, naming the first file and the count
    junk = tmp_path / "junk"
    for d in ("train/a", "train/b", "val/a"):
        (junk / d).mkdir(parents=True)
    (junk / "train/a/x.jpg").write_text("not a JPEG\n")
    (junk / "train/b/y.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (junk / "val/a/z.jpg").write_text("not a JPEG\n")
    line = assert_user_error(capsys, train_mod.main, ["--data", junk, "--batch-size", "2", "--max-steps", "1",
                                                      "--no-progress", "--out", tmp_path / "r4"], "train",
                             "x.jpg: not a readable image", "1 more of the 2 files in train/ cannot be read either")
    assert "x.jpg" in line
    assert not (tmp_path / "r4" / "checkpoints").exists()


@pytest.mark.parametrize("argv, fragments", [
    (["--preset", "nope"], ["--preset", "invalid choice", "mini"]),
    (["--batch-size", "0"], ["--batch-size", ">= 1"]),
    (["--batch-size", "many"], ["--batch-size", "whole number"]),
    (["--epochs", "-1"], ["--epochs", ">= 1"]),
    (["--lr", "-1"], ["--lr", "positive"]),
    (["--lr", "nan"], ["--lr", "positive"]),
    (["--max-steps", "0"], ["--max-steps"]),
    (["--gpus", "0,1"], ["--gpus", "--backend cupy"]),
    (["--gpus", "0,1", "--backend", "numpy"], ["--gpus", "--backend cupy"]),
])
def test_bad_train_flags(argv, fragments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_user_error(capsys, train_mod.main, [*argv, "--out", tmp_path / "run"], "train", *fragments)
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_backend_cupy_without_cupy_says_how_to_install(tmp_path, monkeypatch, capsys, no_cupy):
    monkeypatch.chdir(tmp_path)
    assert_user_error(capsys, train_mod.main, ["--backend", "cupy", "--out", tmp_path / "run"], "train",
                      "CuPy is not installed", "pip install", "--backend numpy")


@pytest.mark.parametrize("main, prog, argv", [
    (train_mod.main, "train", ["--backend", "cupy", "--gpus", "0,1"]),
    (evaluate_mod.main, "evaluate", ["--backend", "cupy", "--gpus", "0,0"]),
])
def test_backend_cupy_with_gpus_without_cupy(main, prog, argv, tmp_path, monkeypatch, capsys, fm_run, no_cupy):
    monkeypatch.chdir(tmp_path)
    extra = ["--out", tmp_path / "run"] if prog == "train" else ["--run", fm_run]
    assert_user_error(capsys, main, [*argv, *extra], prog, "CuPy is not installed", "pip install",
                      "--backend numpy")


@pytest.mark.parametrize("folder", [False, True], ids=["fashion-subset", "folder-of-2-files"])
def test_batch_larger_than_training_set(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if folder:
        for d in ("train/a", "train/b", "val/a"):
            (tmp_path / "junk" / d).mkdir(parents=True)
        for name in ("train/a/x.png", "train/b/y.png", "val/a/z.png"):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "junk" / name)
        argv = ["--data", tmp_path / "junk"]          # default batch 128 > 2 files
    else:
        argv = ["--train-subset", "64", "--batch-size", "128"]
    assert_user_error(capsys, train_mod.main, [*argv, "--no-progress", "--out", tmp_path / "run"], "train",
                      "--batch-size")


def test_run_folder_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    afile = tmp_path / "file"
    afile.write_text("a regular file\n")
    assert_user_error(capsys, train_mod.main, [*FAST, "--out", afile / "run"], "train", "not writable",
                      str(afile / "run"))
    assert_user_error(capsys, train_mod.main, [*FAST, "--resume", "--out", tmp_path / "fresh"], "train",
                      "not a training run", "config.json")
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "last.npz").write_bytes(b"x")
    assert_user_error(capsys, train_mod.main, [*FAST, "--out", old], "train", "already holds a run", "--resume")
    assert (old / "checkpoints" / "last.npz").read_bytes() == b"x"
    # a damaged config.json or checkpoint to resume from is a user error too, not a traceback
    (old / "config.json").write_text(json.dumps({"args": {}}))
    assert_user_error(capsys, train_mod.main, [*FAST, "--resume", "--out", old], "train", "config.json",
                      "is damaged")
    spec = dataclasses.asdict(describe_data("fashion-mnist", None, "mini"))
    (old / "config.json").write_text(json.dumps({"preset": "mini", "args": {}, "data": spec}))
    assert_user_error(capsys, train_mod.main, [*FAST, "--resume", "--out", old], "train", "last.npz",
                      "is not an .npz file", "damaged")


def test_evaluate_and_predict_errors(tmp_path, capsys, fm_run):
    (tmp_path / "notarun").mkdir()
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    assert_user_error(capsys, evaluate_mod.main, ["--run", tmp_path / "notarun"], "evaluate",
                      "not a training run", "config.json")
    assert_user_error(capsys, predict_mod.main, [img, "--run", tmp_path / "notarun"], "predict",
                      "not a training run")
    assert_user_error(capsys, evaluate_mod.main, [], "evaluate", "--run")
    assert_user_error(capsys, predict_mod.main, ["--run", fm_run], "predict", "IMAGE")
    # a run without a best checkpoint says which one exists
    nobest = tmp_path / "nobest"
    (nobest / "checkpoints").mkdir(parents=True)
    shutil.copy(fm_run / "config.json", nobest / "config.json")
    shutil.copy(fm_run / "checkpoints" / "last.npz", nobest / "checkpoints" / "last.npz")
    assert_user_error(capsys, evaluate_mod.main, ["--run", nobest], "evaluate", "no best checkpoint",
                      "--checkpoint last")
    # image files: missing, not an image, truncated
    line = assert_user_error(capsys, predict_mod.main, [tmp_path / "missing.png", "--run", fm_run], "predict",
                             "missing.png")
    assert "no such file" in line.lower()
    (tmp_path / "text.png").write_text("hello\n")
    assert_user_error(capsys, predict_mod.main, [img, tmp_path / "text.png", "--run", fm_run], "predict",
                      "text.png", "not a readable image")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(
        tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert_user_error(capsys, predict_mod.main, [tmp_path / "cut.jpg", "--run", fm_run], "predict",
                      "cut.jpg", "not a readable image")


@pytest.mark.parametrize("module, args, fragments", [
    ("train", ["--batch-size", "0"], ["--batch-size", ">= 1"]),
    ("train", ["--out", "file/run"], ["not writable"]),
    ("evaluate", ["--run", "."], ["not a training run"]),
    ("predict", ["missing.png", "--run", "RUN"], ["missing.png"]),
])
def test_user_errors_in_a_fresh_process(module, args, fragments, tmp_path, fm_run):
    (tmp_path / "file").write_text("x")
    args = [str(fm_run) if a == "RUN" else a for a in args]
    r = cli(module, *args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    line = one_line_error(r.stderr, module)
    for frag in fragments:
        assert frag in line
    assert not (tmp_path / "runs").exists()


# -- 7. an ImageNet-style folder of photographs, end to end ----------------------------

def _variants(img, n, rng):
    """n random crops (55-90% of each side) of a photograph, every other one mirrored."""
    h, w = img.shape[:2]
    out = []
    for i in range(n):
        s = rng.uniform(0.55, 0.9)
        ch, cw = int(h * s), int(w * s)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[y:y + ch, x:x + cw]
        out.append(np.ascontiguousarray(crop[:, ::-1] if i % 2 else crop))
    return out


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """(clean, dirty): ROOT/{train,val}/{cat,thing}/ with 8 photos per class and split
    (JPEG and PNG); `dirty` adds a CMYK JPEG, a truncated JPEG and a text file named .jpg."""
    import skimage.data as sd

    base = tmp_path_factory.mktemp("photos")
    clean = base / "clean"
    photos = {"cat": [sd.chelsea(), sd.cat()], "thing": [sd.coffee(), sd.rocket()]}
    for split, seed in (("train", 0), ("val", 1)):
        rng = np.random.default_rng(seed)
        for cls, imgs in photos.items():
            (clean / split / cls).mkdir(parents=True)
            k = 0
            for img in imgs:
                for v in _variants(img, 4, rng):
                    if k % 2:
                        Image.fromarray(v).save(clean / split / cls / f"{cls}{k}.png")
                    else:
                        Image.fromarray(v).save(clean / split / cls / f"{cls}{k}.jpg", quality=90)
                    k += 1
    dirty = base / "dirty"
    shutil.copytree(clean, dirty)
    Image.fromarray(sd.chelsea()[::-1]).convert("CMYK").save(dirty / "train/cat/cmyk.jpg", quality=90)
    data = (clean / "train/thing/thing0.jpg").read_bytes()
    (dirty / "train/thing/truncated.jpg").write_bytes(data[: len(data) * 6 // 10])
    (dirty / "train/cat/notes.jpg").write_text("remember to buy cat food\n")
    return clean, dirty


def _parse_predictions(stdout, paths):
    """{path: [(percent, class name), ...]} from predict's output."""
    result, current = {}, None
    for line in stdout.splitlines():
        m = re.match(r"^\s+(\d+\.\d+)%\s+(\S.*)$", line)
        if m:
            assert current is not None, stdout
            result[current].append((float(m.group(1)), m.group(2)))
        else:
            current = line.strip()
            assert current in paths, (current, stdout)
            result[current] = []
    assert list(result) == list(paths), stdout
    return result


@pytest.fixture(scope="module")
def prepared(photo_tree, tmp_path_factory):
    """`python -m alexnet.prepare DIRTY OUT`: (OUT, the finished process)."""
    _, dirty = photo_tree
    base = tmp_path_factory.mktemp("prepared")
    out = base / "out"
    return out, cli("prepare", dirty, out, "--quiet", cwd=base)


def test_prepare_photos_reports_skipped_files(prepared):
    out, r = prepared
    assert r.returncode == 0, r.stderr
    assert "train: 17 images (2 skipped)" in r.stdout and "val: 16 images" in r.stdout
    assert "truncated.jpg" in r.stdout and "notes.jpg" in r.stdout and "cmyk.jpg" not in r.stdout
    assert json.loads((out / "classes.json").read_text()) == ["cat", "thing"]
    assert np.load(out / "train_images.npy", mmap_mode="r").shape == (17, 3, 256, 256)
    assert np.load(out / "val_images.npy", mmap_mode="r").shape == (16, 3, 256, 256)


# The photo pipeline runs once with the paper's initialisation (raw mean-subtracted
# pixels) and, in the raw-folder test, with the preset's default (He, unit-variance inputs).
PAPER_INIT = ["--init", "paper"]


@pytest.mark.slow
def test_imagenet_style_train_evaluate_predict(photo_tree, prepared, tmp_path):
    clean, dirty = photo_tree
    out, prep = prepared
    assert prep.returncode == 0, prep.stderr
    run = tmp_path / "run"
    r = cli("train", "--data", out, "--preset", "mini", "--max-steps", "6", "--batch-size", "4", "--out", run,
            "--no-progress", *PAPER_INIT, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "on prepared (15 training images, 2 more held out for validation; 2 classes)" in r.stdout and "done: 6 steps" in r.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["kind"] == "prepared" and config["data"]["resize_to"] == 32
    assert config["data"]["classes"] == ["cat", "thing"] and config["data"]["in_channels"] == 3
    assert (run / "checkpoints" / "best.npz").exists() and (run / "curves.png").stat().st_size > 0

    for extra, png in (([], "confusion_best.png"), (["--ten-crop"], "confusion_best_tencrop.png")):
        r = cli("evaluate", "--run", run, *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        m = re.search(r"\((\d+) test images, (centre crop|ten-crop), best checkpoint\): "
                      r"top-1 error (\d+\.\d+)%, top-5 error (\d+\.\d+)%", lines[0])
        assert m, r.stdout
        assert m.group(1) == "16" and m.group(2) == ("ten-crop" if extra else "centre crop")
        assert float(m.group(4)) == 0.0                              # 2 classes: always in the top 5
        assert "rows: true, columns: predicted" in lines[1]
        rows = [line.split() for line in lines[2:4]]
        assert [row[0] for row in rows] == ["cat", "thing"]
        counts = np.array([[int(v) for v in row[1:]] for row in rows])
        assert counts.shape == (2, 2) and counts.sum(axis=1).tolist() == [8, 8]
        assert float(m.group(3)) == pytest.approx(100 * (1 - np.trace(counts) / 16), abs=0.006)
        assert (run / png).stat().st_size > 0 and f"confusion matrix written to {run / png}" in r.stdout
        with Image.open(run / png) as im:
            assert im.format == "PNG"

    imgs = [str(clean / "val/cat/cat0.jpg"), str(dirty / "train/cat/cmyk.jpg"), str(clean / "val/thing/thing1.png")]
    r = cli("predict", *imgs, "--run", run, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    preds = _parse_predictions(r.stdout, imgs)
    for path, ranked in preds.items():
        assert len(ranked) == 2 and {name for _, name in ranked} == {"cat", "thing"}
        assert ranked[0][0] >= ranked[1][0]
        assert sum(p for p, _ in ranked) == pytest.approx(100, abs=0.02)


def test_mini_with_default_init_trains_on_photos(prepared, tmp_path):
    out, prep = prepared
    assert prep.returncode == 0, prep.stderr
    run = tmp_path / "run"
    r = cli("train", "--data", out, "--max-steps", "6", "--batch-size", "4", "--log-every", "1", "--out", run,
            "--no-progress", cwd=tmp_path)
    losses = [json.loads(line).get("loss") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert losses and losses[0] < 3, losses
    assert r.returncode == 0, r.stderr
    assert all(np.isfinite(v) for v in losses if v is not None), losses


@pytest.mark.slow
def test_train_on_raw_image_folder(photo_tree, tmp_path):
    clean, _ = photo_tree
    run = tmp_path / "run"
    r = cli("train", "--data", clean, "--max-steps", "2", "--batch-size", "4", "--out", run, "--no-progress",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "on folder (14 training images, 2 more held out for validation; 2 classes)" in r.stdout and "done: 2 steps" in r.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["kind"] == "folder" and config["data"]["path"] == str(clean)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["type"] == "eval" and records[-1]["step"] == 2
    assert 0 <= records[-1]["test_top1"] <= 1 and np.isfinite(records[-1]["test_loss"])


# -- 8. Fashion-MNIST: evaluate and predict agree with the model -----------------------

def _forward_top1(model, images, transform):
    home = model.devices[0]
    with home:
        logits = np.asarray(model.forward(transform(images)))
    return logits.argmax(axis=1)


@pytest.mark.slow
def test_fashion_mnist_evaluate_and_predict(fm_run, tmp_path):
    n = 300
    r = cli("evaluate", "--run", fm_run, "--limit", n, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    m = re.search(rf"mini on fashion-mnist \({n} test images, centre crop, best checkpoint\): "
                  r"top-1 error (\d+\.\d+)%, top-5 error (\d+\.\d+)%", lines[0])
    assert m, r.stdout
    top1_err, top5_err = float(m.group(1)), float(m.group(2))
    assert 0 <= top5_err <= top1_err <= 100
    classes = list(FASHION_MNIST_CLASSES)
    rows = lines[2:12]
    counts = []
    for name, row in zip(classes, rows):
        assert row.startswith(name), row
        counts.append([int(v) for v in row[len(name):].split()])
    counts = np.array(counts)
    assert counts.shape == (10, 10) and counts.sum() == n
    test = FashionMNIST("test")
    np.testing.assert_array_equal(counts.sum(axis=1), np.bincount(test.labels[:n], minlength=10))
    assert (fm_run / "confusion_best.png").stat().st_size > 0

    # evaluate's numbers are those of the model load_run rebuilds
    model, config, spec = load_run(str(fm_run), "best")
    _, evalt = make_transforms(spec, model.input_size)
    top1 = _forward_top1(model, np.asarray(test.images[:n]), evalt)
    assert top1_err == pytest.approx(100 * (1 - np.mean(top1 == test.labels[:n])), abs=0.006)
    assert np.trace(counts) == int(np.sum(top1 == test.labels[:n]))
    assert top1_err < 50                          # it learned something: 25-31% measured; chance: 90%

    idx = [0, 1, 2, 3, 4, 5]
    paths = []
    for i in idx:
        p = tmp_path / f"test{i}_{classes[test.labels[i]].replace('/', '-')}.png"
        Image.fromarray(np.asarray(test.images[i, 0])).save(p)
        paths.append(str(p))
    r = cli("predict", *paths, "--run", fm_run, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    preds = _parse_predictions(r.stdout, paths)
    direct = _forward_top1(model, np.asarray(test.images[idx]), evalt)
    inproc = predict_mod.predict(model, spec, [load_image(p) for p in paths], top=5)
    for k, (path, ranked) in enumerate(preds.items()):
        assert len(ranked) == 5 and len({name for _, name in ranked}) == 5
        assert all(name in classes for _, name in ranked)
        probs = [p for p, _ in ranked]
        assert all(0 <= p <= 100 for p in probs) and sum(probs) <= 100.01 and probs == sorted(probs, reverse=True)
        assert ranked[0][1] == classes[direct[k]] == classes[inproc[k][0][0]], (path, ranked, direct[k])
        assert ranked[0][0] == pytest.approx(100 * inproc[k][0][1], abs=0.006)


def test_single_class_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one/train/cats").mkdir(parents=True)
    (tmp_path / "one/train/cats/x.jpg").write_text("not a JPEG\n")
    assert_user_error(capsys, train_mod.main, ["--data", tmp_path / "one", "--no-progress", "--out", tmp_path / "run"],
                      "train", "at least 2 classes", "cats")


def test_a_run_stored_with_the_project_is_read_not_written(fm_run, tmp_path, monkeypatch, capsys):
    # a run tracked by git, as notebooks/data/mini-fashion-mnist is: figures go to runs/figures/<name>
    repo = tmp_path / "repo"
    stored = repo / "data" / "stored-run"
    shutil.copytree(fm_run, stored)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "r"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert evaluate_mod.main(["--run", str(stored), "--limit", "50"]) == 0
    assert visualize_mod.main(["--run", str(stored), "filters"]) == 0
    out = capsys.readouterr().out
    figures = work / "runs" / "figures" / "stored-run"
    assert sorted(p.name for p in figures.iterdir()) == ["confusion_best.png", "filters.png"]
    assert "runs/figures/stored-run/filters.png: 32 conv1 kernels" in out
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                            capture_output=True, text=True).stdout
    assert status == ""                                           # not one file of the project changed
    # the user's own run keeps its figures, and --out puts them anywhere
    assert evaluate_mod.main(["--run", str(fm_run), "--limit", "50", "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "confusion_best.png").exists()
    assert visualize_mod.main(["--run", str(fm_run), "filters"]) == 0 and (fm_run / "filters.png").exists()
