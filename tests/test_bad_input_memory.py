"""Hostile files cannot take memory out of proportion to what is used: large images are reduced while
decoded, .npz members are checked from their headers before they are read, and the Caffe pickle cannot
ask for allocations. Peak memory is measured in a child process (its maximum resident set size)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minidl import checkpoint, npz
from minidl.data import ImageDecodeError, load_image, resize_center_crop
from minidl.data.prepared import PreparedDataset

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


def peak_rss(argv):
    """(exit status, stderr, peak resident memory in bytes) of ``argv`` run in a child of a fresh Python."""
    probe = ("import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:], capture_output=True, "
             "text=True); print(json.dumps([r.returncode, r.stderr, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))")
    out = subprocess.run([sys.executable, "-c", probe, *map(str, argv)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return tuple(json.loads(out.stdout))


def python(code):
    return [sys.executable, "-c", code]


def one_line(rc, err, prog, words):
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), (rc, err)
    for w in words:
        assert w in lines[0], (w, lines[0])


# -- images -----------------------------------------------------------------------------------

BIG = 6000          # 36 M pixels: a solid colour compresses to a few hundred KB and is written in a second


@pytest.fixture(scope="module")
def big_rgba(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big_rgba.png"
    Image.new("RGBA", (BIG, BIG), (200, 40, 90, 128)).save(path, compress_level=1)
    return path


def _gradient(mode, w=1600, h=1100):
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 3) % 256).astype(np.uint8), (x * 37 + y * 11) % 65536


def test_a_large_rgba_image_is_decoded_reduced_and_in_bounded_memory(big_rgba):
    # before: alpha composited at full resolution through uint32 (about 47 bytes a pixel: 1.7 GB here)
    rc, err, peak = peak_rss(python(
        "import sys; from minidl.data import load_image, resize_center_crop; "
        f"img = resize_center_crop(load_image({str(big_rgba)!r}, 256), 256); "
        "assert img.shape == (256, 256, 3) and (img == [227, 147, 172]).all(), img[0, 0]"))
    assert rc == 0, err
    # the decode itself is 4 bytes a pixel (144 MB): Pillow cannot decode a PNG at reduced size
    assert peak < 400 * MB, peak / MB


def test_reduced_decoding_is_near_identical_and_small_images_are_untouched(tmp_path):
    y, x = np.mgrid[0:1100, 0:1600] / 1600                       # smooth, as photographs mostly are
    rgba = (255 * np.dstack([x, y, (x + y) / 2, 0.4 + 0.6 * x * y])).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    full = resize_center_crop(load_image(tmp_path / "a.png"), 64)
    reduced = load_image(tmp_path / "a.png", 64)
    assert reduced.shape == (138, 200, 3)            # factor 1100 // 128 = 8; a last part-block row
    assert np.abs(resize_center_crop(reduced, 64).astype(int) - full).max() <= 3
    small = rgba[:300, :400]
    Image.fromarray(small, "RGBA").save(tmp_path / "s.png")
    np.testing.assert_array_equal(load_image(tmp_path / "s.png", 256), load_image(tmp_path / "s.png"))


def test_16_bit_and_transparent_palette_images_are_scaled_and_composited_on_the_reduced_image(tmp_path):
    _, v16 = _gradient("I;16")
    Image.fromarray(v16.astype(np.uint16)).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
    ref = (v16.astype(np.uint32) * 255 + 32767) // 65535             # the 16 -> 8-bit rule, at full size
    got = load_image(tmp_path / "g16.png", 64)
    expect = np.asarray(Image.fromarray(ref.astype(np.uint8)).reduce(8))
    np.testing.assert_array_equal(got[:, :, 0], expect)
    pal = Image.fromarray((_gradient("L")[0] // 64).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    pal.save(tmp_path / "p.png", transparency=0)                     # index 0: transparent -> white
    la = Image.fromarray(np.dstack([_gradient("L")[0], np.full((1100, 1600), 0, np.uint8)]), "LA")
    la.save(tmp_path / "la.png")
    for name in ("p.png", "la.png"):
        full = load_image(tmp_path / name)
        got = load_image(tmp_path / name, 64)
        expect = np.asarray(Image.fromarray(full).reduce(8))
        np.testing.assert_array_equal(got, expect)
    assert (load_image(tmp_path / "la.png", 64) == 255).all()          # alpha 0 everywhere: white


def test_a_16_bit_image_takes_no_uint32_copy_at_full_size(tmp_path):
    Image.new("I;16", (BIG, BIG), 40000).save(tmp_path / "g16.png", compress_level=1)
    rc, err, peak = peak_rss(python(
        "from minidl.data import load_image; "
        f"img = load_image({str(tmp_path / 'g16.png')!r}, 256); assert (img == 156).all() and img.shape[:2] == (546, 546)"))
    assert rc == 0, err
    assert peak < 300 * MB, peak / MB            # before: 760 MB (uint32 and float copies of 36 M pixels)


def _png_header_only(path, w, h):
    """A PNG that announces w x h pixels and holds none: all Pillow reads before refusing."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    path = _png_header_only(tmp_path / "huge.png", 20000, 10000)
    with pytest.raises(ImageDecodeError) as info:
        load_image(path, 256)
    msg = str(info.value)
    assert "\n" not in msg
    for words in (str(path), "200,000,000 pixels", f"{2 * Image.MAX_IMAGE_PIXELS:,}", "scale it down first"):
        assert words in msg, (words, msg)


def test_predict_reads_a_large_rgba_image_in_bounded_memory_and_refuses_an_oversized_one(mini_run, big_rgba, tmp_path):
    rc, err, peak = peak_rss([sys.executable, "-m", "alexnet.predict", big_rgba, "--run", mini_run])
    assert rc == 0, err
    assert peak < 500 * MB, peak / MB            # before: 2.1 GB for this image (7.8 GB at 13000 x 13000)
    huge = _png_header_only(tmp_path / "huge.png", 15000, 12000)
    rc, err, _ = peak_rss([sys.executable, "-m", "alexnet.predict", huge, "--run", mini_run])
    one_line(rc, err, "predict", [str(huge), "180,000,000 pixels", "decompression-bomb limit", "scale it down"])


def test_prepare_reads_a_large_rgba_image_in_bounded_memory(big_rgba, tmp_path):
    for c in ("a", "b"):
        (tmp_path / "ds" / "train" / c).mkdir(parents=True)
        Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "ds" / "train" / c / "small.png")
    os.link(big_rgba, tmp_path / "ds" / "train" / "a" / "big.png")
    _png_header_only(tmp_path / "ds" / "train" / "b" / "huge.png", 20000, 10000)
    rc, err, peak = peak_rss([sys.executable, "-m", "alexnet.prepare", tmp_path / "ds", tmp_path / "out",
                              "--size", "32", "--workers", "2", "-q"])
    assert rc == 0, err
    assert peak < 500 * MB, peak / MB            # before: 1.7 GB for this image (8.0 GB at 13000 x 13000)
    images = np.load(tmp_path / "out" / "train_images.npy")
    assert images.shape == (3, 3, 32, 32)
    assert (images == np.array([227, 147, 172], np.uint8)[:, None, None]).all(axis=(1, 2, 3)).sum() == 1
    skipped = (tmp_path / "out" / "skipped.txt").read_text()
    assert "huge.png" in skipped and "200,000,000 pixels" in skipped


# -- .npz members ----------------------------------------------------------------------------

def _write_npz(path, arrays, big=None):
    """An .npz like np.savez's (deflated); ``big``: (name, shape) of a zero float32 member streamed in, so
    a few hundred MB of zeros cost a few hundred KB of file and no memory here."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, a in arrays.items():
            with z.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)
        if big:
            name, shape = big
            with z.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
                chunk = bytes(16 * MB)
                left = int(np.prod(shape)) * 4
                while left:
                    f.write(chunk[:min(left, len(chunk))])
                    left -= min(left, len(chunk))
    return path


def _forged_checkpoint(run, tmp_path, big_name, toc_names_it):
    """best.npz of the mini run with ``big_name`` swapped for a 400 MB member (zeros: 400 KB deflated)."""
    state = checkpoint.load(run / "checkpoints" / "best.npz")
    arrays = {}
    skeleton = checkpoint._flatten(state, "", arrays)
    if toc_names_it:
        arrays.pop(big_name)
    else:
        skeleton["extra"] = {"value": 0}
    forged = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run), str(forged)], check=True)
    _write_npz(forged / "checkpoints" / "best.npz", {**arrays, "__meta__.json": np.array(json.dumps(skeleton))},
               big=(big_name, (100_000, 1024)))
    return forged


def test_an_inflating_checkpoint_member_is_refused_from_its_header(mini_run, tmp_path):
    # before: the 400 MB member was read whole, and only then found to have the wrong shape
    forged = _forged_checkpoint(mini_run, tmp_path, "model/fc8.tower0.bias", toc_names_it=True)
    rc, err, peak = peak_rss([sys.executable, "-m", "alexnet.predict", tmp_path / "photo.png", "--run", forged])
    one_line(rc, err, "predict", ["best.npz", "model/fc8.tower0.bias has shape (100000, 1024) but the model's is",
                                  "409,600,000 bytes", "nothing was read"])
    assert peak < 300 * MB, peak / MB


def test_an_unexpected_checkpoint_member_is_refused_before_it_is_read(mini_run, tmp_path, monkeypatch):
    forged = _forged_checkpoint(mini_run, tmp_path, "junk", toc_names_it=False)
    read = []
    real = npz.read
    monkeypatch.setattr(npz, "read", lambda path, members, names=None: read.append(names) or real(path, members, names))
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.load(forged / "checkpoints" / "best.npz")
    assert "holds the array 'junk' (float32 (100000, 1024) (409,600,000 bytes)), which its table of contents " \
           "does not name; nothing was read" in str(info.value)
    assert read == [["__meta__.json"]]            # the table of contents alone


def test_a_member_that_inflates_past_its_header_is_refused(tmp_path):
    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.zeros(4, np.float32))
        z.writestr("a.npy", buf.getvalue() + bytes(10 * MB))     # 16 bytes claimed, 10 MB inflated
    with pytest.raises(npz.NpzError, match=r"member 'a' claims float32 \(4,\) \(16 bytes\) but its zip entry "
                                           r"inflates to 10,485,776 bytes"):
        npz.headers(path)


def test_wrong_shape_weights_and_statistics_are_refused_before_they_are_read(tmp_path, monkeypatch):
    from alexnet import pretrained
    from alexnet.weights.torchvision import _torchvision_shapes

    read = []
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: read.append(a) or pytest.fail("read"))
    shapes = _torchvision_shapes(1000)
    small = {k: np.zeros(s, np.float32) for k, s in shapes.items() if k != "classifier.1.weight"}
    # torchvision's fc6 is 9216 -> 4096; this one claims 100000 rows (1.6 GB; 1.6 MB deflated)
    _write_npz(tmp_path / "tv.npz", small, big=("classifier.1.weight", (100_000, 4096)))
    with pytest.raises(pretrained.WeightsError) as info:
        pretrained.load_torchvision(tmp_path / "tv.npz")
    assert "'classifier.1.weight' has shape (100000, 4096) (float32, 1,638,400,000 bytes; nothing was read); " \
           "torchvision's AlexNet has floats of shape (4096, 9216)" in str(info.value)
    _write_npz(tmp_path / "tv.npz", {k: np.zeros(1, np.float32) for k in shapes if k != "classifier.6.weight"},
               big=("classifier.6.weight", (200_000, 16)))
    with pytest.raises(pretrained.WeightsError, match=r"claims float32 \(200000, 16\).*200,000 classes, more than "
                                                       "the 25,000 a weights file may have"):
        pretrained.load_torchvision(tmp_path / "tv.npz")
    ds = tmp_path / "ds"
    ds.mkdir()
    np.save(ds / "train_images.npy", np.zeros((2, 3, 8, 8), np.uint8))
    np.save(ds / "train_labels.npy", np.zeros(2, np.int64))
    (ds / "classes.json").write_text('["a"]')
    _write_npz(ds / "stats.npz", {"mean_rgb": np.zeros(3, np.float32), "eigval": np.zeros(3, np.float32),
                                  "eigvec": np.eye(3, dtype=np.float32)}, big=("mean_image", (3, 4096, 4096)))
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"stats.npz: member 'mean_image' has shape \(3, 4096, 4096\) .*stats.npz "
                                         r"has floats of shape \(3, 8, 8\); re-run"):
        PreparedDataset(ds)
    assert read == []


# -- the Caffe pickle ----------------------------------------------------------------------------

def _caffe_file(path, pickle_bytes):
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
    path.write_bytes(f.getvalue() + pickle_bytes)
    return path


def test_a_caffe_pickle_that_asks_for_gigabytes_is_refused_without_allocating(tmp_path):
    # bytearray(3000000000): 160 bytes that made the old reader allocate 2.9 GB before refusing
    bomb = _caffe_file(tmp_path / "bvlc_alexnet.npy", b"\x80\x02cbuiltins\nbytearray\n\x8a\x05"
                       + (3_000_000_000).to_bytes(5, "little") + b"\x85R.")
    rc, err, peak = peak_rss(python(
        "import sys; from alexnet.weights.caffe import read_caffe_npy\n"
        f"try: read_caffe_npy({str(bomb)!r})\nexcept ValueError as e: sys.exit(str(e))"))
    assert rc == 1 and "tries to load 'builtins.bytearray' and was refused" in err and "\n" not in err.strip()
    assert peak < 200 * MB, peak / MB
    # an array state that claims 10**9 floats and gives 4 bytes; an object array short of items (numpy crashed)
    for shape, dtype, data in (((10 ** 9,), "f4", b"abcd"), ((10 ** 6,), "O", [1, 2])):
        payload = (b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
                   + __import__("pickle").dumps((1, shape, np.dtype(dtype), False, data), protocol=2)[2:-1]
                   + b"b.")
        path = _caffe_file(tmp_path / "state.npy", payload)
        rc, err, peak = peak_rss(python(
            "import sys; from alexnet.weights.caffe import read_caffe_npy\n"
            f"try: read_caffe_npy({str(path)!r})\nexcept ValueError as e: sys.exit(str(e))"))
        assert rc == 1 and f"the pickle claims a {np.dtype(dtype)} array of shape {shape}" in err, err
        assert "refused before anything was allocated" in err and peak < 200 * MB
