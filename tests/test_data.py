"""Fashion-MNIST loading, batch transforms and the data loader, on real data."""

import gc
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from PIL import Image

from minidl.data import fashion_mnist as fm
from minidl.data import (IMAGENET_EIGVAL, IMAGENET_EIGVEC, ArrayDataset, DataLoader,
                         DatasetNotFoundError, EvalTransform, FashionMNIST, TrainTransform,
                         center_crop, normalize, pca_lighting, random_crop, random_flip,
                         read_idx, resize, subset_indices, subtract_mean, ten_crop, to_float)

SYSTEM = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[1]
needs_fmnist = pytest.mark.skipif(
    not (SYSTEM / "t10k-images-idx3-ubyte.gz").exists(),
    reason="needs the Debian package dataset-fashion-mnist")


@pytest.fixture
def no_system_copy(monkeypatch, tmp_path):
    """Hide every place Fashion-MNIST could be found: fresh HOME, no $MINIDL_DATA,
    no system directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    monkeypatch.setattr(fm, "SYSTEM_DIRS", ())
    return tmp_path


# -- Fashion-MNIST ---------------------------------------------------------------

@needs_fmnist
def test_fashion_mnist_train_is_the_real_dataset():
    ds = FashionMNIST("train")
    assert len(ds) == 60000
    assert ds.images.shape == (60000, 1, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (60000,) and ds.labels.dtype == np.int64
    assert np.bincount(ds.labels).tolist() == [6000] * 10
    assert ds.classes[ds.labels[0]] == "Ankle boot"
    assert ds.classes == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    # The normalisation constants everybody quotes for Fashion-MNIST.
    x = ds.images.astype(np.float64) / 255
    assert abs(x.mean() - 0.2860) < 1e-4 and abs(x.std() - 0.3530) < 1e-4
    # Independent parse: skip the 16-byte header, the rest is the pixels.
    with gzip.open(SYSTEM / "train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16)
    np.testing.assert_array_equal(ds.images.reshape(-1), raw)


@needs_fmnist
def test_fashion_mnist_test_split_and_cache():
    ds = FashionMNIST("test")
    assert ds.images.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.labels).tolist() == [1000] * 10
    assert ds.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert int(ds.images.sum(dtype=np.int64)) == 573469082
    again = FashionMNIST("test")
    assert np.shares_memory(again.images, ds.images)  # parsed once per process: the same array again
    assert not ds.images.flags.writeable            # the cache cannot be corrupted
    batch = ds.get_batch([5, 0, 5])
    np.testing.assert_array_equal(batch, ds.images[[5, 0, 5]])


@needs_fmnist
def test_checksums_of_the_real_files():
    assert fm.GZ_MD5 == {  # the published sums of the official .gz files
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    # Debian re-gzips, so its .gz bytes differ but the content must match.
    for name, md5 in fm.RAW_MD5.items():
        with gzip.open(SYSTEM / f"{name}.gz") as f:
            assert hashlib.md5(f.read()).hexdigest() == md5, name


@needs_fmnist
def test_data_dir_is_the_only_place_looked_at_when_given_else_the_search_order(no_system_copy, monkeypatch):
    tmp = no_system_copy
    a, b = tmp / "a", tmp / "env" / "fashion-mnist"
    for d in (a, b):
        d.mkdir(parents=True)
        for name in fm.FILES["test"]:
            shutil.copy(SYSTEM / f"{name}.gz", d)
    monkeypatch.setenv("MINIDL_DATA", str(tmp / "env"))
    assert FashionMNIST("test", data_dir=a, download=False).root == a
    assert FashionMNIST("test", download=False).root == b
    # Uncompressed files are read too.
    c = tmp / "raw"
    c.mkdir()
    for name in fm.FILES["test"]:
        with gzip.open(SYSTEM / f"{name}.gz") as f:
            (c / name).write_bytes(f.read())
    ds = FashionMNIST("test", data_dir=c, download=False)
    assert ds.root == c and ds.labels[0] == 9
    # a named folder without the files is an error, not a silent switch to another copy or a download
    (tmp / "empty").mkdir()
    monkeypatch.setattr(fm, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(DatasetNotFoundError, match="was given as the data folder, so no other place"):
        FashionMNIST("test", data_dir=tmp / "empty")


def test_missing_dataset_lists_every_place(no_system_copy, monkeypatch):
    monkeypatch.setenv("MINIDL_DATA", str(no_system_copy / "mydata"))
    monkeypatch.setattr(fm, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(DatasetNotFoundError) as err:
        FashionMNIST("test", download=False)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for place in ("mydata", os.path.join("mydata", "fashion-mnist"),
                  os.path.join(".cache", "minidl", "fashion-mnist")):
        assert place in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg


def test_bad_idx_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad-magic.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + b"\0" * 8))
    with pytest.raises(ValueError, match="bad-magic.gz.*magic"):
        read_idx(bad)
    short = tmp_path / "short-idx3-ubyte"  # header says 2x2x2, only 5 bytes of data
    short.write_bytes(b"\0\0\x08\x03" + np.array([2, 2, 2], ">u4").tobytes() + b"\1" * 5)
    with pytest.raises(ValueError, match="short-idx3-ubyte.*truncated"):
        read_idx(short)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(b"\0\0\x08\x01" + np.array([100], ">u4").tobytes() + b"x" * 100)[:30])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(cut)
    good = tmp_path / "good"
    good.write_bytes(b"\0\0\x0b\x02" + np.array([2, 3], ">u4").tobytes()
                     + np.arange(6, dtype=">i2").tobytes())
    np.testing.assert_array_equal(read_idx(good), np.arange(6).reshape(2, 3))


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(files):
    """A stand-in for urlopen serving ``files`` (name -> bytes); records the URLs."""
    calls = []

    def urlopen(url, timeout=None):
        assert timeout is not None, "downloads must have a timeout"
        calls.append(url)
        return _FakeResponse(files[url.rsplit("/", 1)[1]])
    return urlopen, calls


@needs_fmnist
def test_download_with_correct_bytes(no_system_copy, monkeypatch):
    files = {f"{n}.gz": (SYSTEM / f"{n}.gz").read_bytes() for n in fm.FILES["test"]}
    opener, calls = _serve(files)
    monkeypatch.setattr(fm, "urlopen", opener)
    ds = FashionMNIST("test")  # Debian's bytes: .gz sum differs, content sum matches
    cache = no_system_copy / "home" / ".cache" / "minidl" / "fashion-mnist"
    assert ds.root == cache
    assert calls == [fm.URL + f"{n}.gz" for n in fm.FILES["test"]]
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)   # no temp files left
    np.testing.assert_array_equal(ds.images, FashionMNIST("test", data_dir=SYSTEM).images)
    # Exact official bytes pass on the .gz sum alone.
    monkeypatch.setattr(fm, "GZ_MD5", {**fm.GZ_MD5, **{
        n: hashlib.md5(files[f"{n}.gz"]).hexdigest() for n in fm.FILES["test"]}})
    monkeypatch.setattr(fm, "RAW_MD5", {k: "0" * 32 for k in fm.RAW_MD5})
    paths = fm.download_fashion_mnist("test", target_dir=no_system_copy / "elsewhere")
    assert [p.name for p in paths] == [f"{n}.gz" for n in fm.FILES["test"]]


def test_download_with_bad_checksum_is_discarded(no_system_copy, monkeypatch):
    payload = gzip.compress(b"\0\0\x08\x01" + np.array([3], ">u4").tobytes() + b"abc")
    opener, _ = _serve({f"{n}.gz": payload for n in fm.FILES["test"]})
    monkeypatch.setattr(fm, "urlopen", opener)
    with pytest.raises(DatasetNotFoundError, match="MD5 mismatch") as err:
        FashionMNIST("test")
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    cache = no_system_copy / "home" / ".cache" / "minidl" / "fashion-mnist"
    assert list(cache.iterdir()) == []


def test_download_offline_gives_the_clear_message(no_system_copy, monkeypatch):
    def offline(url, timeout=None):
        raise URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(fm, "urlopen", offline)
    monkeypatch.setenv("MINIDL_DATA", str(no_system_copy / "mine"))
    with pytest.raises(DatasetNotFoundError) as err:
        FashionMNIST("train")
    msg = str(err.value)
    assert "name resolution" in msg and "mine" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg
    assert "/usr/share/datasets" not in msg  # SYSTEM_DIRS was emptied: lists what it searched


# -- transforms ------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos():
    """Two real photographs as a uint8 batch (2, 3, 96, 128)."""
    import skimage.data as sd
    imgs = [sd.astronaut()[100:196, 150:278], sd.chelsea()[60:156, 150:278]]
    return np.stack(imgs).transpose(0, 3, 1, 2).copy()


def _crop_loop(x, size, rng, padding):
    """Reference: one image at a time, same draws as random_crop."""
    B = len(x)
    xp = np.pad(x, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    top = rng.integers(0, xp.shape[2] - size + 1, size=B)
    left = rng.integers(0, xp.shape[3] - size + 1, size=B)
    return np.stack([xp[b, :, top[b]:top[b] + size, left[b]:left[b] + size] for b in range(B)]), top, left


def test_random_crop_matches_a_loop(photos):
    x = np.concatenate([photos] * 8)                      # 16 images
    for padding in (0, 4):
        out = random_crop(x, 80, np.random.default_rng(3), padding=padding)
        ref, top, left = _crop_loop(x, 80, np.random.default_rng(3), padding)
        assert out.shape == (16, 3, 80, 80) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, ref)
        assert len(set(zip(top.tolist(), left.tolist()))) > 8   # per-image offsets
    # Padding is zeros: a crop at offset (0, 0) starts with `padding` zero rows.
    rng = np.random.default_rng(0)
    out = random_crop(x.astype(np.float64), 104, rng, padding=4)  # 104 = full padded height
    assert out.dtype == np.float64
    assert np.all(out[:, :, :4] == 0) and np.all(out[:, :, -4:] == 0)


def test_random_flip_matches_a_loop(photos):
    x = np.concatenate([photos] * 10).astype(np.float32)
    out = random_flip(x, np.random.default_rng(7))
    flags = np.random.default_rng(7).random(len(x)) < 0.5
    assert 0 < flags.sum() < len(x)
    for b in range(len(x)):
        np.testing.assert_array_equal(out[b], x[b, :, :, ::-1] if flags[b] else x[b])
    np.testing.assert_array_equal(random_flip(x, np.random.default_rng(0), p=0.0), x)
    np.testing.assert_array_equal(random_flip(x, np.random.default_rng(0), p=1.0), x[..., ::-1])


def test_center_and_ten_crop(photos):
    H, W, s = 96, 128, 64
    c = center_crop(photos, s)
    np.testing.assert_array_equal(c, photos[:, :, 16:80, 32:96])
    t = ten_crop(photos, s)
    assert t.shape == (10, 2, 3, s, s)
    expect = [photos[:, :, 16:80, 32:96], photos[:, :, :s, :s], photos[:, :, :s, W - s:],
              photos[:, :, H - s:, :s], photos[:, :, H - s:, W - s:]]
    for k in range(5):
        np.testing.assert_array_equal(t[k], expect[k])
        np.testing.assert_array_equal(t[k + 5], expect[k][..., ::-1])
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(photos, 100)


def test_resize_matches_pillow_and_torch(photos):
    # Upsampling a real 24x32 patch to 227 (the Fashion-MNIST -> paper-net case).
    patch = photos[:, :, 40:64, 50:82]
    out = resize(patch, 227)
    assert out.shape == (2, 3, 227, 227) and out.dtype == np.float32
    for b in range(2):
        pil = Image.fromarray(patch[b].transpose(1, 2, 0)).resize((227, 227), Image.Resampling.BILINEAR)
        diff = np.abs(out[b].transpose(1, 2, 0) - np.asarray(pil, np.float32))
        assert diff.max() <= 1.0 and diff.mean() < 0.3   # Pillow rounds to uint8 between passes
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.interpolate(torch.from_numpy(patch.astype(np.float32)), size=(227, 227),
                                          mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(out, ref, atol=2e-3)
    # Downsampling is antialiased like Pillow's (and torch's antialias=True).
    small = resize(photos.astype(np.float64), (40, 50))
    assert small.dtype == np.float64
    ref = torch.nn.functional.interpolate(torch.from_numpy(photos.astype(np.float64)), size=(40, 50),
                                          mode="bilinear", align_corners=False, antialias=True).numpy()
    np.testing.assert_allclose(small, ref, atol=1e-6)
    pil = Image.fromarray(photos[0].transpose(1, 2, 0)).resize((50, 40), Image.Resampling.BILINEAR)
    assert np.abs(small[0].transpose(1, 2, 0) - np.asarray(pil, np.float64)).max() <= 1.0


def test_imagenet_pca_constants_are_column_eigenvectors():
    V, lam = IMAGENET_EIGVEC.astype(np.float64), IMAGENET_EIGVAL.astype(np.float64)
    np.testing.assert_allclose(V.T @ V, np.eye(3), atol=2e-3)
    assert np.all(np.diff(lam) < 0)
    # Column 0 (largest eigenvalue) is brightness, ~ (1, 1, 1)/sqrt(3) up to sign ...
    assert abs(V[:, 0] @ np.ones(3) / np.sqrt(3)) > 0.999
    # ... and the covariance they describe has R, G, B positively correlated.
    cov = V @ np.diag(lam) @ V.T
    assert np.all(cov[~np.eye(3, dtype=bool)] > 0)
    # The top eigenvector of real photographs' RGB covariance agrees with column 0.
    import skimage.data as sd
    px = np.concatenate([im.reshape(-1, 3) for im in (sd.astronaut(), sd.coffee(), sd.chelsea())])
    w, U = np.linalg.eigh(np.cov(px.T / 255.0))
    assert abs(U[:, -1] @ V[:, 0]) > 0.95


def test_pca_lighting_matches_the_formula(photos):
    x = photos.astype(np.float32)
    x = np.concatenate([x] * 3)
    out = pca_lighting(x, IMAGENET_EIGVAL, IMAGENET_EIGVEC, np.random.default_rng(5), std=0.1)
    assert out.dtype == np.float32
    rng = np.random.default_rng(5)
    V, lam = IMAGENET_EIGVEC.astype(np.float64), IMAGENET_EIGVAL.astype(np.float64)
    for b in range(len(x)):
        alpha = rng.normal(0.0, 0.1, size=3)
        shift = 255.0 * sum(alpha[i] * lam[i] * V[:, i] for i in range(3))  # sum_i a_i l_i p_i
        np.testing.assert_allclose(out[b], x[b] + shift[:, None, None].astype(np.float32), atol=1e-3)
    with pytest.raises(TypeError, match="to_float"):
        pca_lighting(photos, IMAGENET_EIGVAL, IMAGENET_EIGVEC, rng)


def test_mean_subtraction_and_normalize(photos):
    x = to_float(photos)
    assert x.dtype == np.float32 and np.array_equal(x, photos)
    m = np.array([120.0, 110.0, 100.0])
    np.testing.assert_allclose(subtract_mean(x, m)[:, 1], x[:, 1] - 110.0)
    big = np.random.default_rng(0).random((3, 100, 130)) * 255
    np.testing.assert_allclose(subtract_mean(x, big), x - big[None, :, 2:98, 1:129].astype(np.float32))
    with pytest.raises(ValueError, match="does not cover"):
        subtract_mean(x, big[:, :50])
    std = np.array([50.0, 60.0, 70.0])
    np.testing.assert_allclose(normalize(x, m, std)[:, 2], (x[:, 2] - 100.0) / 70.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_crop(photos[0], 10, np.random.default_rng(0))


def test_train_transform_is_the_composition(photos):
    x = np.concatenate([photos] * 4)                      # uint8 (8, 3, 96, 128)
    mean_img = np.random.default_rng(1).random((3, 96, 128)).astype(np.float32) * 255
    t = TrainTransform(64, mean_img, flip=True, pca=(IMAGENET_EIGVAL, IMAGENET_EIGVEC))
    out = t(x, np.random.default_rng(11))
    assert out.shape == (8, 3, 64, 64) and out.dtype == np.float32
    # Reference: the mean image is cropped at each image's own offset.
    rng = np.random.default_rng(11)
    ref, top, left = _crop_loop(x.astype(np.float32) - mean_img, 64, rng, 0)
    ref = random_flip(ref, rng)
    ref = pca_lighting(ref, IMAGENET_EIGVAL, IMAGENET_EIGVEC, rng)
    np.testing.assert_allclose(out, ref, atol=1e-3)
    # Fashion-MNIST-like input smaller than the crop is resized up first.
    g = photos[:, :1, :28, :28]
    out = TrainTransform(227, mean=[72.94], std=[90.0], flip=False)(g, np.random.default_rng(0))
    assert out.shape == (2, 1, 227, 227)
    np.testing.assert_allclose(out, (resize(g, 227) - 72.94) / 90.0, atol=1e-4)


def test_eval_transform_center_and_ten_crop(photos):
    mean_rgb = np.array([120.0, 110.0, 100.0])
    out = EvalTransform(64, mean_rgb)(photos)
    np.testing.assert_allclose(out, center_crop(to_float(photos), 64) - mean_rgb[:, None, None].astype(np.float32))
    mean_img = np.full((3, 96, 128), 7.0)
    ten = EvalTransform(64, mean_img, std=2.0, ten_crop=True)(photos)
    assert ten.shape == (10, 2, 3, 64, 64)
    np.testing.assert_allclose(ten, (ten_crop(to_float(photos), 64) - 7.0) / 2.0)


@pytest.mark.gpu
def test_transforms_on_cupy_match_numpy(photos):
    from minidl.backend import cupy_available
    if not cupy_available():
        pytest.skip("needs CuPy and a GPU")
    import cupy as cp
    x = photos.astype(np.float32)
    for f in (lambda a, r: random_crop(a, 50, r, padding=3), lambda a, r: random_flip(a, r),
              lambda a, r: pca_lighting(a, IMAGENET_EIGVAL, IMAGENET_EIGVEC, r),
              lambda a, r: resize(a, 120), lambda a, r: ten_crop(a, 40),
              lambda a, r: TrainTransform(64, [1.0, 2.0, 3.0])(a.astype(np.uint8), r)):
        got = f(cp.asarray(x), np.random.default_rng(0))
        assert isinstance(got, cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(got), f(x, np.random.default_rng(0)), atol=1e-3)


# -- loader ----------------------------------------------------------------------

def _indexed(n=103, classes=5):
    """A dataset whose image k is filled with k (mod 256) and whose label is k % classes."""
    images = (np.arange(n) % 256).astype(np.uint8)[:, None, None, None] * np.ones((1, 1, 2, 2), np.uint8)
    return ArrayDataset(images, np.arange(n) % classes)


class _Ids(ArrayDataset):
    """get_batch also records which indices were read (as the label array)."""

    def __init__(self, n=103):
        super().__init__(np.zeros((n, 1, 1, 1), np.uint8), np.arange(n))


def test_take_batch_order_and_memmap(tmp_path):
    ds = _indexed(50)
    idx = [7, 3, 49, 3, 0]
    np.testing.assert_array_equal(ds.get_batch(idx)[:, 0, 0, 0], idx)
    path = tmp_path / "x.npy"
    np.save(path, ds.images)
    mm = ArrayDataset(np.load(path, mmap_mode="r"), ds.labels)
    np.testing.assert_array_equal(mm.get_batch(idx), ds.get_batch(idx))
    with pytest.raises(IndexError, match="50"):
        ds.get_batch([50])


def test_loader_epochs_are_deterministic_and_complete():
    ds = _Ids(103)
    a = DataLoader(ds, 10, seed=4, prefetch=2)
    b = DataLoader(ds, 10, seed=4, prefetch=0)
    assert len(a) == 11 and len(DataLoader(ds, 10, drop_last=True)) == 10
    e0 = [y for _, y in a.batches(0)]
    assert [y.tolist() for y in e0] == [y.tolist() for _, y in b.batches(0)]
    seen = np.concatenate(e0)
    assert sorted(seen.tolist()) == list(range(103))       # each index exactly once
    assert seen.tolist() != list(range(103))               # shuffled
    e1 = np.concatenate([y for _, y in a.batches(1)])
    assert e1.tolist() != seen.tolist() and sorted(e1.tolist()) == list(range(103))
    c = DataLoader(ds, 10, seed=5)
    assert np.concatenate([y for _, y in c.batches(0)]).tolist() != seen.tolist()
    # __iter__ runs loader.epoch and then advances it; set_epoch picks one.
    assert np.concatenate([y for _, y in a]).tolist() == seen.tolist() and a.epoch == 1
    a.set_epoch(0)
    assert np.concatenate([y for _, y in a]).tolist() == seen.tolist()
    # No shuffle: in order, labels match images.
    ordered = DataLoader(_indexed(30), 8, shuffle=False)
    xs, ys = zip(*ordered)
    assert np.concatenate(ys).tolist() == [k % 5 for k in range(30)]
    assert np.concatenate(xs)[:, 0, 0, 0].tolist() == list(range(30))
    assert xs[0].dtype == np.uint8 and ys[0].dtype == np.int64


def test_loader_resumes_mid_epoch():
    ds = _Ids(57)
    loader = DataLoader(ds, 8, seed=1)
    full = [y.tolist() for _, y in loader.batches(3)]
    assert [y.tolist() for _, y in loader.batches(3, start=4)] == full[4:]
    assert list(loader.batches(3, start=len(loader))) == []
    with pytest.raises(ValueError, match="start"):
        loader.batches(3, start=len(loader) + 1)


def test_loader_subset_and_stratified_indices():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    sub = subset_indices(labels, 20, seed=0)
    assert np.bincount(labels[sub], minlength=4).tolist() == [10, 6, 3, 1]
    assert np.array_equal(sub, subset_indices(labels, 20, seed=0))
    assert not np.array_equal(sub, subset_indices(labels, 20, seed=1))
    assert len(np.unique(sub)) == 20
    ds = ArrayDataset(np.zeros((100, 1, 1, 1), np.uint8), np.arange(100))
    loader = DataLoader(ds, 6, indices=sub, seed=2)
    assert len(loader) == 4
    assert sorted(np.concatenate([y for _, y in loader]).tolist()) == sorted(sub.tolist())


class _Slow(ArrayDataset):
    def __init__(self, fail_at=None):
        super().__init__(np.zeros((200, 1, 1, 1), np.uint8), np.arange(200))
        self.fail_at, self.reads = fail_at, 0

    def get_batch(self, indices):
        self.reads += 1
        if self.reads == self.fail_at:
            raise OSError(f"disk error at read {self.reads}")
        time.sleep(0.002)
        return super().get_batch(indices)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("minidl-DataLoader")]


def test_worker_exception_reaches_the_consumer():
    loader = DataLoader(_Slow(fail_at=3), 10, prefetch=2)
    got = []
    with pytest.raises(OSError, match="disk error at read 3"):
        for _, y in loader:
            got.append(y)
    assert len(got) == 2
    assert _prefetch_threads() == []              # the loader joined its thread before re-raising


def test_abandoned_iterator_stops_the_thread():
    ds = _Slow()
    loader = DataLoader(ds, 2, prefetch=2)
    for _ in loader:
        break                                     # the dropped iterator is closed: it joins its thread
    assert _prefetch_threads() == []
    assert ds.reads <= 4                          # the batch taken, two queued, one waiting for room
    it = iter(DataLoader(ds, 2, prefetch=3))
    next(it)
    del it
    gc.collect()
    assert _prefetch_threads() == []


def test_interpreter_exits_with_a_live_prefetch_thread():
    script = textwrap.dedent("""
        import time, numpy as np
        from minidl.data import ArrayDataset, DataLoader
        class Slow(ArrayDataset):
            def get_batch(self, idx):
                time.sleep(0.01)
                return super().get_batch(idx)
        loader = DataLoader(Slow(np.zeros((1000, 1, 1, 1), np.uint8), np.arange(1000)), 1)
        it = iter(loader)
        next(it)          # the thread is now blocked on a full queue; `it` stays alive
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_loader_argument_errors():
    ds = _Ids(10)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, 0)
    with pytest.raises(IndexError, match="out of range"):
        DataLoader(ds, 2, indices=[0, 10])
    with pytest.raises(TypeError, match="get_batch"):
        DataLoader(list(range(10)), 2)
