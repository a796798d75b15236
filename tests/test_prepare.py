"""Image folders: decoding every mode, prepare_folder, PreparedDataset, the CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from minidl.data import (DatasetNotFoundError, ImageDecodeError, ImageFolder, PreparedDataset,
                         PrepareError, load_image, prepare_folder)
from minidl.data import folder as folder_mod
from minidl.data import images as images_mod
from minidl.data import prepare as prepare_mod

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["animal", "object", "space"]
# Readable training files, in the sorted order prepare_folder visits them.
READABLE = ["animal/chelsea.jpg", "animal/chelsea_cmyk.jpg", "animal/palette.png",
            "object/camera.png", "object/coffee.jpg", "object/logo_rgba.png",
            "space/astronaut.png", "space/moon16.png", "space/rocket.jpg"]
BROKEN = ["object/x.jpg", "space/truncated.jpg"]
# Files whose decoding is plain Pillow `convert('RGB')`, so an independent
# reference is easy to write.
PLAIN = ["animal/chelsea.jpg", "animal/palette.png", "object/camera.png",
         "object/coffee.jpg", "space/astronaut.png", "space/rocket.jpg"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """ROOT/{train,val}/<class>/ from scikit-image's sample photographs, with
    every awkward kind of file a real image folder has."""
    import skimage.data as sd
    root = tmp_path_factory.mktemp("imagenet") / "root"
    for d in ("train/animal", "train/object", "train/space", "val/animal", "val/object"):
        (root / d).mkdir(parents=True)
    t = root / "train"
    chelsea = sd.chelsea()
    Image.fromarray(chelsea).save(t / "animal/chelsea.jpg", quality=92)
    Image.fromarray(chelsea[:, ::-1]).convert("CMYK").save(t / "animal/chelsea_cmyk.jpg", quality=95)
    Image.fromarray(chelsea).quantize(64).save(t / "animal/palette.png")
    (t / "animal/.DS_Store").write_bytes(b"\0\1junk")          # hidden: ignored, not "skipped"
    Image.fromarray(sd.coffee()).save(t / "object/coffee.jpg", quality=90)
    Image.fromarray(sd.camera()).save(t / "object/camera.png")          # mode L
    Image.fromarray(sd.logo()).save(t / "object/logo_rgba.png")         # RGBA, real alpha
    (t / "object/x.jpg").write_text("this is not a JPEG\n")
    Image.fromarray(sd.astronaut()).save(t / "space/astronaut.png")
    Image.fromarray(sd.rocket()).save(t / "space/rocket.jpg", quality=90)
    Image.fromarray(sd.moon().astype(np.uint16) * 200).save(t / "space/moon16.png")  # 16-bit grey
    data = (t / "space/rocket.jpg").read_bytes()
    (t / "space/truncated.jpg").write_bytes(data[:len(data) * 6 // 10])
    v = root / "val"
    Image.fromarray(chelsea[50:250, 100:400]).save(v / "animal/cat_crop.jpg", quality=90)
    Image.fromarray(sd.coffee()[::2, ::2]).save(v / "object/coffee_small.png")
    return root


@pytest.fixture(scope="module")
def prepared(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "out"
    report = prepare_folder(tree, out, size=256, progress=False, verbose=False)
    return out, report


def reference_256(path, size=256):
    """Independent preprocessing: Pillow decode, shorter side -> size (bicubic), centre crop."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = size / min(w, h)
    nw, nh = (size, int(h * s + 0.5)) if w <= h else (int(w * s + 0.5), size)
    im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


# -- decoding --------------------------------------------------------------------

def test_load_image_converts_every_mode(tree):
    t = tree / "train"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    for rel in READABLE:
        img = load_image(t / rel)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, rel
    cam = load_image(t / "object/camera.png")
    import skimage.data as sd
    assert np.array_equal(cam[..., 0], sd.camera()) and np.array_equal(cam[..., 0], cam[..., 2])
    # CMYK JPEG comes back close to the RGB it was made from.
    cmyk = load_image(t / "animal/chelsea_cmyk.jpg").astype(int)
    assert np.abs(cmyk - sd.chelsea()[:, ::-1]).mean() < 4
    # Palette PNG: exactly Pillow's palette lookup.
    assert np.array_equal(load_image(t / "animal/palette.png"),
                          np.asarray(Image.open(t / "animal/palette.png").convert("RGB")))
    # 16-bit grey: scaled by 255/65535 and rounded (not clipped to 255, not >> 8).
    v16 = sd.moon().astype(np.int64) * 200
    moon = load_image(t / "space/moon16.png")
    assert np.array_equal(moon[..., 1], np.floor(v16 * 255 / 65535 + 0.5).astype(np.uint8))
    assert moon.max() < 255
    # RGBA: composited over white.
    rgba = sd.logo().astype(np.float64)
    a = rgba[..., 3:] / 255
    expect = rgba[..., :3] * a + 255 * (1 - a)
    logo = load_image(t / "object/logo_rgba.png")
    assert np.abs(logo - expect).max() <= 0.5 + 1e-9
    assert (logo[rgba[..., 3] == 0] == 255).all()


@pytest.mark.parametrize("name", BROKEN)
def test_load_image_rejects_broken_files(tree, name):
    with pytest.raises(ImageDecodeError, match=Path(name).name):
        load_image(tree / "train" / name)


# -- prepare_folder --------------------------------------------------------------

def test_prepare_writes_the_layout(tree, prepared):
    out, report = prepared
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy",
        "classes.json", "stats.npz", "meta.json", "skipped.txt"])       # no temp files left
    assert json.loads((out / "classes.json").read_text()) == CLASSES
    assert report.counts == {"train": len(READABLE), "val": 2}
    assert sorted(Path(p).relative_to(tree / "train").as_posix() for _, p, _ in report.skipped) == BROKEN
    skipped = (out / "skipped.txt").read_text().splitlines()[1:]
    assert sorted(Path(line.split("\t")[1]).name for line in skipped) == ["truncated.jpg", "x.jpg"]
    assert "truncated" in report.summary() and "2 skipped" in report.summary()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["train"] == {"images": 9, "files": 11, "skipped": 2, "shape": [9, 3, 256, 256]}
    assert meta["size"] == 256 and meta["num_classes"] == 3
    # The .npy files are ordinary NumPy files: a full (non-mmap) read works too,
    # and the shrunk train file has exactly the bytes its header promises.
    full = np.load(out / "train_images.npy", allow_pickle=False)
    assert full.shape == (9, 3, 256, 256) and full.dtype == np.uint8
    assert (out / "train_images.npy").stat().st_size == 128 + full.nbytes


def test_prepared_images_equal_an_independent_pillow_pipeline(tree, prepared):
    out, _ = prepared
    ds = PreparedDataset(out, "train")
    assert isinstance(ds.images, np.memmap) and ds.images.shape == (9, 3, 256, 256)
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == [CLASSES.index(r.split("/")[0]) for r in READABLE]
    for rel in PLAIN:
        k = READABLE.index(rel)
        np.testing.assert_array_equal(ds.images[k], reference_256(tree / "train" / rel), err_msg=rel)
    val = PreparedDataset(out, "val")
    assert val.labels.tolist() == [0, 1]           # train's indices: animal, object
    np.testing.assert_array_equal(val.images[1], reference_256(tree / "val/object/coffee_small.png"))
    np.testing.assert_array_equal(ds.get_batch([8, 0, 8]), np.asarray(ds.images)[[8, 0, 8]])


def test_stats_equal_a_direct_numpy_computation(prepared):
    out, _ = prepared
    ds = PreparedDataset(out, "train")
    st = ds.stats
    imgs = np.asarray(ds.images, dtype=np.float64)
    px = imgs.transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
    cov = np.cov(px)
    w, V = np.linalg.eigh(cov)
    w, V = w[::-1], V[:, ::-1]
    assert st["eigval"].dtype == np.float32 and st["eigvec"].shape == (3, 3)
    np.testing.assert_allclose(st["eigval"], w, rtol=1e-5, atol=1e-7)
    assert np.all(np.diff(st["eigval"]) < 0)
    E = st["eigvec"].astype(np.float64)
    np.testing.assert_allclose(np.abs(np.sum(E * V, axis=0)), 1.0, atol=1e-5)   # same axes, up to sign
    np.testing.assert_allclose(E @ np.diag(st["eigval"]) @ E.T, cov, atol=1e-6)
    np.testing.assert_allclose(st["mean_rgb"], px.mean(axis=1) * 255, rtol=1e-6)
    np.testing.assert_allclose(st["mean_image"], imgs.mean(axis=0), rtol=1e-6, atol=1e-4)
    assert st["mean_image"].dtype == np.float32 and st["mean_image"].shape == (3, 256, 256)


def test_image_folder_reads_the_same_images_on_the_fly(tree, prepared):
    out, _ = prepared
    folder = ImageFolder(tree, "train", size=256)
    assert len(folder) == 11 and folder.classes == CLASSES
    names = [p.relative_to(tree / "train").as_posix() for p in folder.paths]
    keep = [names.index(r) for r in READABLE]
    ds = PreparedDataset(out, "train")
    np.testing.assert_array_equal(folder.get_batch(keep[::-1]), np.asarray(ds.images)[::-1])
    np.testing.assert_array_equal(folder.labels[keep], ds.labels)
    np.testing.assert_array_equal(folder.images[keep[2]], ds.images[2])
    with pytest.raises(ImageDecodeError, match="truncated.jpg"):
        folder.get_batch([names.index("space/truncated.jpg")])
    val = ImageFolder(tree, "val", size=256)
    np.testing.assert_array_equal(val.get_batch([0, 1]), PreparedDataset(out, "val").images)


def test_prepared_dataset_missing_files_say_how_to_make_them(tmp_path, prepared):
    with pytest.raises(DatasetNotFoundError, match=r"python -m alexnet\.prepare ROOT OUT"):
        PreparedDataset(tmp_path, "train")
    out, _ = prepared
    with pytest.raises(DatasetNotFoundError, match="test_images.npy"):
        PreparedDataset(out, "test")


def _copy_tree(tree, dst, drop=()):
    shutil.copytree(tree, dst)
    for d in drop:
        shutil.rmtree(dst / d)
    return dst


def test_prepare_user_errors(tree, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        prepare_folder(tmp_path / "nowhere", tmp_path / "o", progress=False, verbose=False)
    bad = _copy_tree(tree, tmp_path / "unknown")
    (bad / "val/zebra").mkdir()
    shutil.copy(tree / "val/animal/cat_crop.jpg", bad / "val/zebra")
    with pytest.raises(PrepareError, match="zebra"):
        prepare_folder(bad, tmp_path / "o", progress=False, verbose=False)
    # A split without one readable image is an error naming its folder.
    junk = tmp_path / "junk"
    (junk / "train/a").mkdir(parents=True)
    (junk / "train/a/x.jpg").write_text("no")
    with pytest.raises(PrepareError, match=r"junk/train: no readable image"):
        prepare_folder(junk, tmp_path / "o2", progress=False, verbose=False)
    assert not any(p.name.endswith(".npy") or p.name.startswith(".tmp-") for p in (tmp_path / "o2").iterdir())


def _size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_prepare_killed_mid_way_is_cleaned_up_by_the_next_run(tree, tmp_path):
    import signal
    import time

    many = tmp_path / "many"
    for k in range(60):                                      # enough work to be caught packing
        d = many / "train" / f"c{k % 2}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(tree / "train/space/astronaut.png", d / f"{k}.png")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "alexnet.prepare", str(many), str(out), "--workers", "1", "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, partial = time.monotonic() + 120, []
    try:
        while time.monotonic() < deadline and proc.poll() is None and not partial:
            full = 60 * 3 * 256 * 256                              # the memmap, at its full size
            partial = [p for p in out.glob(".tmp-*train_images.npy") if _size(p) >= full] if out.is_dir() else []
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
    assert partial and proc.returncode == -signal.SIGKILL, proc.returncode
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"removed 1 unfinished file(s) of an interrupted run: {partial[0].name}" in again.stdout
    assert not list(out.glob(".tmp-*"))
    assert PreparedDataset(out, "train").images.shape == (60, 3, 256, 256)


def _two_class_tree(root, n=6):
    for c in "ab":
        (root / "train" / c).mkdir(parents=True)
        for i in range(n):
            img = np.random.default_rng(i + 10 * ord(c)).integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / c / f"{i}.png")
    (root / "val" / "a").mkdir(parents=True)
    shutil.copy(root / "train/a/0.png", root / "val/a/0.png")
    return root


def test_folder_links_back_into_the_dataset_are_not_followed_and_are_reported(tmp_path):
    root = _two_class_tree(tmp_path / "ds")
    os.symlink("..", root / "train/a/up")                    # a loop: a/up/a/up/...
    os.symlink("../a", root / "train/b/also_a")              # class a's images again, under b
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(root / "train/b/0.png", outside / "extra.png")
    os.symlink(outside, root / "train/b/more")               # a folder outside the dataset: followed
    links = []
    paths, labels, classes = folder_mod.scan_split(root, "train", links=links)
    assert classes == ["a", "b"] and np.bincount(labels).tolist() == [6, 7]
    assert sorted(os.path.basename(a) for a, _ in links) == ["also_a", "up"]
    report = prepare_folder(root, tmp_path / "out", size=32, progress=False, verbose=False)
    assert report.counts == {"train": 13, "val": 1} and len(report.links) == 2
    assert "Did not follow 2 folder link(s) leading back into the dataset" in report.summary()
    assert np.bincount(PreparedDataset(tmp_path / "out", "train").labels).tolist() == [6, 7]
    ds = ImageFolder(root, "train", size=32)
    assert len(ds) == 13 and len(ds.skipped_links) == 2
    # a class folder that is itself a link back into the dataset is not read either
    os.symlink("a", root / "train/c")
    with pytest.raises(PrepareError, match=r"train/c: no files \(it is a link back into the dataset"):
        folder_mod.scan_split(root, "train")


def test_an_empty_training_class_folder_is_an_error(tmp_path):
    root = _two_class_tree(tmp_path / "ds")
    (root / "train/c").mkdir()
    with pytest.raises(PrepareError, match=r"train/c: no files; every training class needs images"):
        prepare_folder(root, tmp_path / "out", size=32, progress=False, verbose=False)
    (root / "val/b").mkdir()                                 # an empty val class is harmless
    (root / "train/c").rmdir()
    assert prepare_folder(root, tmp_path / "out", size=32, progress=False, verbose=False).counts["val"] == 1


def test_an_extremely_long_image_is_refused_before_it_is_resized(tmp_path, monkeypatch):
    thin = np.zeros((1, 8000, 3), np.uint8)          # resized to 256 high, it would be 2,048,000 wide
    resized = []
    monkeypatch.setattr(Image.Image, "resize", lambda self, *a, **k: resized.append(a) or self)
    with pytest.raises(ImageDecodeError, match=r"8000x1 pixels: an aspect ratio beyond 256:1"):
        images_mod.resize_center_crop(thin, 256)
    assert resized == []
    monkeypatch.undo()
    assert images_mod.resize_center_crop(np.zeros((2, 500, 3), np.uint8), 32).shape == (32, 32, 3)
    root = _two_class_tree(tmp_path / "ds")
    Image.fromarray(thin).save(root / "train/a/thin.png")
    report = prepare_folder(root, tmp_path / "out", size=32, progress=False, verbose=False)
    assert report.counts["train"] == 12
    assert [(os.path.basename(p), why) for _, p, why in report.skipped] == [
        ("thin.png", "8000x1 pixels: an aspect ratio beyond 256:1 is not a photograph this pipeline can use; "
                     "crop it first")]
    with pytest.raises(ImageDecodeError, match=r"thin.png: 8000x1 pixels"):
        ImageFolder(root, "train", size=32).get_batch(np.arange(13))


def test_interrupted_prepare_leaves_no_broken_file(tree, tmp_path, monkeypatch):
    real = prepare_mod._decode_one
    calls = []

    def decode(*args):
        calls.append(args[0])
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(prepare_mod, "_decode_one", decode)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prepare_folder(tree, out, size=32, progress=False, verbose=False, workers=1)
    assert list(out.iterdir()) == []


def test_prepare_without_val_and_small_size(tree, tmp_path):
    root = _copy_tree(tree, tmp_path / "noval", drop=["val"])
    report = prepare_folder(root, tmp_path / "o", size=48, progress=False, verbose=False)
    assert report.counts == {"train": 9}
    ds = PreparedDataset(tmp_path / "o", "train")
    assert ds.images.shape == (9, 3, 48, 48) and ds.stats["mean_image"].shape == (3, 48, 48)
    assert not (tmp_path / "o/val_images.npy").exists()


# -- the command line ------------------------------------------------------------

def _run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "alexnet.prepare", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def test_cli_prepares_the_same_arrays(tree, prepared, tmp_path):
    r = _run_cli(tree, tmp_path / "cli", "--size", "256", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "train: 9 images (2 skipped)" in r.stdout and "truncated.jpg" in r.stdout
    assert "x.jpg" in r.stdout
    out, _ = prepared
    for name in ("train_images.npy", "val_images.npy", "train_labels.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "cli" / name), np.load(out / name))


def test_cli_user_errors_are_one_line_and_exit_2(tree, tmp_path, capsys):
    from alexnet.prepare import main as prepare_main
    (tmp_path / "empty").mkdir()
    junk = tmp_path / "junk"
    (junk / "train/a").mkdir(parents=True)
    (junk / "train/a/x.jpg").write_text("no")
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [
        ([tmp_path / "missing", tmp_path / "o"], "no such folder"),
        ([tmp_path / "empty", tmp_path / "o"], "no 'train' folder"),
        ([junk, tmp_path / "o"], "no readable image"),
        ([tree, afile / "out"], "cannot write"),
    ]
    for argv, message in cases:
        assert prepare_main([str(a) for a in argv] + ["-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("prepare: error:") and message in err, err
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    r = _run_cli(tmp_path / "missing", tmp_path / "o")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "Traceback" not in r.stderr
    assert "missing: no such folder" in r.stderr


def test_prepare_into_a_log_file_writes_no_progress_bar(tree, tmp_path, capsys):
    from alexnet import prepare
    assert prepare.main([str(tree), str(tmp_path / "out"), "--size", "32"]) == 0     # no -q; stderr is no terminal
    out, err = capsys.readouterr()
    assert "\r" not in out + err and "img/s" not in err
    assert "Prepared" in out
