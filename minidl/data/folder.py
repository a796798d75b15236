"""ImageNet-style image folders: decoding, the paper's preprocessing, packing.

Layout read::

    ROOT/train/<class>/<image files>      (any depth below <class>)
    ROOT/val/<class>/<image files>        (optional; classes a subset of train's)

Class index k is the k-th class folder name of ``train`` in sorted order (for
ImageNet: the sorted WordNet ids, the usual 0..999 order); ``val`` uses
train's indices.

``prepare_folder(ROOT, OUT)`` applies the paper's preprocessing once (shorter
side to 256, central 256x256 crop) and packs each split into one uint8 array
file that training memory-maps; ``PreparedDataset`` reads it back.
``ImageFolder`` decodes on the fly instead, for small sets.

Layout written (``OUT``)::

    train_images.npy   uint8 (N, 3, S, S)    val_images.npy / val_labels.npy likewise
    train_labels.npy   int64 (N,)
    classes.json       the class folder names, index order
    stats.npz          from train only: mean_image float32 (3, S, S) and
                       mean_rgb float32 (3,) on the 0..255 scale; eigval float32 (3,)
                       (descending) and eigvec float32 (3, 3) (column i is the
                       eigenvector of eigval[i]) of the RGB covariance on the [0, 1] scale
    meta.json          counts, size, filter, source
    skipped.txt        unreadable files: split, path, reason (one per line)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from ..atomic import remove_stale, temporary_name
from ..checks import whole
from .fashion_mnist import DatasetError, DatasetNotFoundError
from .loader import ArrayDataset

__all__ = ["load_image", "resize_center_crop", "scan_split", "prepare_folder", "PrepareReport",
           "PreparedDataset", "ImageFolder", "ImageDecodeError", "PrepareError"]

# A truncated JPEG must fail, not come back silently padded with grey: Pillow
# only raises on truncation while this (process-wide) switch is off, its default.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow warns about images over 89M pixels and refuses those over 179M (a decompression
# bomb: ImageDecodeError here). Below that a big photograph is read like any other; the
# warning would only break a command's one-line output.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "lanczos": Image.Resampling.LANCZOS}
DEFAULT_RESAMPLE = "bicubic"
# Longest side over shortest that resize_center_crop accepts: bounds the resized copy to
# MAX_ASPECT * size * size pixels (48 MiB at 256); panoramas are ~4:1.
MAX_ASPECT = 256
# Largest prepared image side: the mean image alone takes 24 * size**2 bytes while packing.
MAX_SIZE = 2048
PREPARE_HINT = "python -m alexnet.prepare ROOT OUT"


class ImageDecodeError(DatasetError):
    """A file is not a usable image (corrupt, truncated, not an image, or of absurd proportions)."""


class PrepareError(DatasetError):
    """The input folder or output location cannot be used as asked."""


# -- decoding ------------------------------------------------------------------

def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """High-bit-depth grey (H, W) -> uint8, by scaling the range, never clipping.

    I;16*: v8 = round(v16 * 255 / 65535). 'I' (32-bit) is read as 16-bit when
    it lies in [0, 65535] (how Pillow opens many 16-bit files), 'F' as [0, 1]
    when it lies there; anything else is stretched from its min..max.
    """
    if mode.startswith("I;16") or (mode == "I" and a.size and 0 <= a.min() and a.max() <= 65535):
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    a = a.astype(np.float64)
    lo, hi = (0.0, 1.0) if (mode == "F" and a.size and 0 <= a.min() and a.max() <= 1) \
        else (float(a.min()), float(a.max()))
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _to_rgb(im: Image.Image) -> np.ndarray:
    """A loaded PIL image -> uint8 (H, W, 3).

    Transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is
    composited over white: the colour under alpha = 0 is arbitrary (often
    black), and white is the background photographs of objects are shot on.
    CMYK, YCbCr, P and 1-bit go through Pillow's conversion to RGB.
    """
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return np.asarray(im)
    if mode in ("I", "F") or mode.startswith("I;16"):
        grey = _scale_to_uint8(np.asarray(im), mode)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if "A" in mode or "a" in mode or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        alpha = rgba[:, :, 3:]
        # out = (rgb * a + 255 * (255 - a)) / 255, rounded
        out = (rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return out.astype(np.uint8)
    return np.asarray(im.convert("RGB"))


def load_image(path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB (first frame if animated).

    Every Pillow mode is converted (see ``_to_rgb``: alpha over white, 16-bit
    scaled to 8-bit). EXIF orientation is not applied (as in the reference
    ImageNet pipelines). Raises ImageDecodeError (a ValueError) naming the
    file if it is not an image, is truncated, or is corrupt.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ImageDecodeError(f"{path} is a link to {os.readlink(path)}, which does not exist")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncation and corruption surface here
            arr = _to_rgb(im)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ImageDecodeError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageDecodeError(f"{path}: decoded to an unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def resize_center_crop(image: np.ndarray, size: int = 256, resample: str = DEFAULT_RESAMPLE):
    """The paper's preprocessing: shorter side to ``size``, then the central crop.

    image: uint8 (H, W, 3). The shorter side becomes exactly ``size``, the
    longer ``floor(long * size / short + 0.5)``; the crop starts at
    ``((H' - size) // 2, (W' - size) // 2)``. Pillow's antialiased filter
    (``resample``: 'bicubic' default, 'bilinear', 'lanczos').
    Returns uint8 (size, size, 3). An image longer than MAX_ASPECT times its
    width (or the reverse) raises ImageDecodeError: its resized copy would
    take up to MAX_ASPECT times more memory than a square one.
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"resize_center_crop: expected a uint8 (H, W, 3) image, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    size = whole(size, "resize_center_crop", "size", low=1)
    if resample not in _RESAMPLE:
        raise ValueError(f"resize_center_crop: resample must be one of {', '.join(sorted(_RESAMPLE))}, "
                         f"got {resample!r}")
    h, w = image.shape[:2]
    if max(h, w) > MAX_ASPECT * min(h, w):
        # resizing the shorter side first would make the longer one huge (1 x 8000 -> 256 x 2,048,000)
        raise ImageDecodeError(f"{w}x{h} pixels: an aspect ratio beyond {MAX_ASPECT}:1 is not a photograph "
                               "this pipeline can use; crop it first")
    if h <= w:
        nh, nw = size, max(size, int(w * size / h + 0.5))
    else:
        nh, nw = max(size, int(h * size / w + 0.5)), size
    pil = Image.fromarray(image)
    if (nh, nw) != (h, w):
        pil = pil.resize((nw, nh), _RESAMPLE[resample])
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.asarray(pil)[top:top + size, left:left + size]


# -- listing -------------------------------------------------------------------

def _visible_dirs(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _files_under(folder: Path, root: str, links: list):
    """Regular, non-hidden files below ``folder``, sorted, any depth.

    A link to a folder is followed unless it leads back into ``root`` (the
    dataset's real path: a loop, or images listed a second time under
    another class), to a folder that holds ``root`` (a loop too), or to a
    folder already visited; those links are appended to ``links`` as (link,
    where it leads). Files that are not regular files (FIFOs, devices) are
    left out.
    """
    found = []
    seen = {os.path.realpath(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            full = os.path.join(dirpath, d)
            real = os.path.realpath(full)
            if real in seen or (os.path.islink(full) and (_inside(real, root) or _inside(root, real))):
                links.append((full, real))
                continue
            seen.add(real)
            keep.append(d)
        dirnames[:] = keep
        # regular files only: a FIFO or a device would block or never end when read. A link to a
        # file that is gone is listed: reading it fails and says so (skipped.txt, or an error)
        found += [Path(dirpath) / f for f in sorted(filenames)
                  if not f.startswith(".") and (os.path.isfile(os.path.join(dirpath, f))
                                                or not os.path.exists(os.path.join(dirpath, f)))]
    return found


def scan_split(root, split: str, classes=None, links=None):
    """List ``ROOT/<split>/<class>/*``: (paths, labels int64 (N,), classes).

    classes: the class list to index by (train's, for val); default the
    split's own sorted class folders. Every file is listed; whether it decodes
    is found out later. Links to folders inside ROOT are not followed (see
    ``_files_under``); pass a list as ``links`` to receive them. Raises
    PrepareError for a missing split folder, one with no class folders, class
    folders not in ``classes``, or a training class folder with no file.
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise PrepareError(f"{folder}: no such folder; expected {Path(root)}/{split}/<class>/<images>")
    own = _visible_dirs(folder)
    if not own:
        loose = [f for f in folder.iterdir() if f.is_file()]
        hint = (f" ({len(loose)} files lie directly in it: sort them into one folder per class,"
                " e.g. ImageNet's val/<wnid>/...)" if loose else "")
        raise PrepareError(f"{folder}: no class folders{hint}; expected {folder}/<class>/<images>")
    if classes is None:
        classes = own
    classes = list(classes)
    unknown = sorted(set(own) - set(classes))
    if unknown:
        shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise PrepareError(
            f"{folder}: {len(unknown)} class folder(s) not in the training classes: {shown}. "
            "Every val class must also be a train class (the label indices come from train)."
        )
    real_root = os.path.realpath(root)
    links = [] if links is None else links
    index = {c: k for k, c in enumerate(classes)}
    paths, labels = [], []
    for c in own:
        class_dir = folder / c
        target = os.path.realpath(class_dir)
        if class_dir.is_symlink() and (_inside(target, real_root) or _inside(real_root, target)):
            links.append((str(class_dir), target))
            files = []
        else:
            files = _files_under(class_dir, real_root, links)
        if not files and split == "train":
            why = (" (it is a link back into the dataset, which is not followed)"
                   if class_dir.is_symlink() else "")
            raise PrepareError(f"{class_dir}: no files{why}; every training class needs images. "
                               "Add some, or remove the folder")
        paths += files
        labels += [index[c]] * len(files)
    return paths, np.asarray(labels, dtype=np.int64), classes


# -- packing -------------------------------------------------------------------

@dataclass
class PrepareReport:
    """What ``prepare_folder`` did: counts per split and the files it skipped."""

    out: Path
    size: int
    classes: list
    counts: dict = field(default_factory=dict)      # split -> images written
    skipped: list = field(default_factory=list)     # (split, path, reason)
    removed: list = field(default_factory=list)     # partial files of an interrupted run, deleted
    links: list = field(default_factory=list)       # (link, target) not followed: they lead back into ROOT

    def skipped_in(self, split):
        return [s for s in self.skipped if s[0] == split]

    def summary(self, max_listed: int = 20) -> str:
        lines = [f"Prepared {self.out} ({self.size}x{self.size}, {len(self.classes)} classes):"]
        if self.removed:
            lines.append(f"  removed {len(self.removed)} unfinished file(s) of an interrupted run: "
                         + ", ".join(self.removed))
        for split, n in self.counts.items():
            k = len(self.skipped_in(split))
            lines.append(f"  {split}: {n} images" + (f" ({k} skipped)" if k else ""))
        if self.links:
            lines.append(f"Did not follow {len(self.links)} folder link(s) leading back into the dataset "
                         f"(a loop, or images already listed): " + ", ".join(
                             f"{link} -> {target}" for link, target in self.links[:3])
                         + (" ..." if len(self.links) > 3 else ""))
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} unreadable file(s) "
                         f"(all listed in {self.out / 'skipped.txt'}):")
            for split, path, reason in self.skipped[:max_listed]:
                lines.append(f"  {path}: {reason}")
            if len(self.skipped) > max_listed:
                lines.append(f"  ... and {len(self.skipped) - max_listed} more")
        else:
            lines.append("No files skipped.")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


class _RGBStats:
    """Streaming mean image and RGB covariance, in float64, one image at a time.

    For pixels x (3-vectors, 0..255) over all training images:
    mean_rgb = S1 / n, cov = (S2 - n m m^T) / (n - 1) with S1 = sum x,
    S2 = sum x x^T (the same estimate as ``np.cov``), then /255^2.
    """

    def __init__(self, size):
        self.sum_image = np.zeros((3, size, size), np.float64)
        self.s1 = np.zeros(3, np.float64)
        self.s2 = np.zeros((3, 3), np.float64)
        self.images = 0
        self.pixels = 0

    def add(self, chw: np.ndarray):
        self.sum_image += chw
        x = chw.reshape(3, -1).astype(np.float64)
        self.s1 += x.sum(axis=1)
        self.s2 += x @ x.T
        self.images += 1
        self.pixels += x.shape[1]

    def result(self):
        n = self.pixels
        mean = self.s1 / n
        cov = (self.s2 - n * np.outer(mean, mean)) / max(n - 1, 1) / 255.0 ** 2
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = eigval[order], eigvec[:, order]
        eigvec *= np.where(eigvec.sum(axis=0) < 0, -1.0, 1.0)  # a fixed sign convention
        return {
            "mean_image": (self.sum_image / self.images).astype(np.float32),
            "mean_rgb": mean.astype(np.float32),
            "eigval": np.maximum(eigval, 0).astype(np.float32),
            "eigvec": eigvec.astype(np.float32),
        }


def _decode_one(path, size, resample):
    """(uint8 (3, size, size) or None, reason it could not be read)."""
    try:
        img = resize_center_crop(load_image(path), size, resample)
    except ImageDecodeError as exc:
        cause = exc.__cause__
        return None, (f"{type(cause).__name__}: {cause}" if cause is not None else str(exc))
    return img.transpose(2, 0, 1), None


def _shrink_npy(path: Path, n: int):
    """Cut an .npy array file to its first ``n`` rows in place.

    The header is rewritten with the new shape, padded with spaces to its old
    length (the NPY format allows this), and the data truncated.
    """
    fmt = np.lib.format
    with open(path, "r+b") as f:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
        new_shape = (n,) + tuple(shape[1:])
        text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
            fmt.dtype_to_descr(dtype), new_shape)
        prefix = 8 + (2 if version == (1, 0) else 4)  # magic + version, then the length field
        room = offset - prefix
        if len(text) + 1 > room:  # cannot happen: the shape only got shorter
            raise RuntimeError(f"{path}: no room to rewrite the .npy header")
        f.seek(prefix)
        f.write((text.ljust(room - 1) + "\n").encode("latin1"))
        f.truncate(offset + int(np.prod(new_shape, dtype=np.int64)) * dtype.itemsize)


def _pack_split(split, folder, paths, labels, tmp_images, size, resample, stats, progress, workers):
    """Decode, resize and crop every file into an (N, 3, S, S) memmap at ``tmp_images``.

    Returns (labels of the images kept, [(split, path, reason) skipped]).
    """
    from tqdm.auto import tqdm

    images = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8,
                                       shape=(len(paths), 3, size, size))
    keep = np.zeros(len(paths), bool)
    skipped = []
    n = 0
    chunk = max(16, 8 * workers)
    bar = tqdm(total=len(paths), desc=f"prepare {split}", unit="img", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow releases the GIL
            for lo in range(0, len(paths), chunk):
                batch = paths[lo:lo + chunk]
                for j, (img, reason) in enumerate(pool.map(
                        lambda p: _decode_one(p, size, resample), batch)):
                    if img is None:
                        skipped.append((split, str(batch[j]), reason))
                    else:
                        images[n] = img
                        if stats is not None:
                            stats.add(img)
                        keep[lo + j] = True
                        n += 1
                    bar.update(1)
                if skipped:
                    bar.set_postfix(skipped=len(skipped), refresh=False)
        images.flush()
    finally:
        bar.close()
        del images
    if n == 0:
        raise PrepareError(f"{folder}: no readable image among its {len(paths)} file(s) "
                           f"(first: {skipped[0][1]}: {skipped[0][2]})")
    if n < len(paths):
        _shrink_npy(tmp_images, n)
    return labels[keep], skipped


def _write_json(path, obj):
    # ASCII with escapes: a name that is not valid UTF-8 (kept by Python as surrogates) round-trips
    with open(path, "w", encoding="ascii") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def prepare_folder(root, out, size=256, progress=True, verbose=True, workers=None,
                   resample=DEFAULT_RESAMPLE) -> PrepareReport:
    """Preprocess an image-folder dataset once, into memory-mappable arrays.

    root: holds ``train/<class>/*`` and optionally ``val/<class>/*``.
    out: output folder (created). For each split: every file is decoded
    (``load_image``), its shorter side resized to ``size`` and the central
    ``size x size`` crop taken (``resize_center_crop``), written to
    ``<split>_images.npy`` as uint8 (N, 3, size, size) through a memmap (the
    set never sits in RAM) under a temporary name, renamed at the end so an
    interrupted run leaves no half-written file. Unreadable files are skipped
    and listed. ``stats.npz`` (mean image, mean RGB, PCA of the RGB
    covariance) comes from the train split only. See the module docstring for
    every file written.

    workers: decoding threads (default: the CPU count). progress: a tqdm bar
    on stderr. verbose: print the summary. Returns a PrepareReport.
    Raises DatasetNotFoundError (ROOT missing) or PrepareError (no train
    folder, no class folders, unknown val classes, no readable image in a
    split, OUT unusable or too small a disk).
    """
    root, out = Path(root), Path(out)
    size = int(size)
    if not 1 <= size <= MAX_SIZE:
        raise PrepareError(f"size must be 1 to {MAX_SIZE} pixels (the paper's is 256), got {size}")
    if resample not in _RESAMPLE:
        raise PrepareError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
    workers = (os.cpu_count() or 1) if workers is None else whole(workers, "prepare_folder", "workers", low=1)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: no such folder (expected {root}/train/<class>/<images>)")
    if not root.is_dir():
        raise PrepareError(f"{root}: not a folder (expected {root}/train/<class>/<images>)")
    if not (root / "train").is_dir():
        raise PrepareError(f"{root}: no 'train' folder; expected {root}/train/<class>/<images> "
                           f"(and optionally {root}/val/<class>/<images>)")

    scans, links = {}, []
    paths, labels, classes = scan_split(root, "train", links=links)
    scans["train"] = (paths, labels)
    if (root / "val").is_dir():
        vpaths, vlabels, _ = scan_split(root, "val", classes, links=links)
        scans["val"] = (vpaths, vlabels)
    for split, (paths, _) in scans.items():
        if not paths:
            raise PrepareError(f"{root / split}: no files in its class folders")

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PrepareError(f"{out}: cannot write the output there ({exc.strerror or exc})") from None
    removed = remove_stale(out)          # what a killed run left; it would also take up the disk
    need = sum(len(p) for p, _ in scans.values()) * 3 * size * size
    free = shutil.disk_usage(out).free
    if need > free:
        raise PrepareError(f"{out}: needs up to {need / 1e9:.1f} GB for the image arrays but only "
                           f"{free / 1e9:.1f} GB are free; choose another OUT")

    report = PrepareReport(out=out, size=size, classes=classes, removed=removed, links=links)
    pending = []  # (temporary file, final name), renamed once everything is written

    def tmp_for(name):
        pending.append((Path(temporary_name(out / name)), out / name))
        return pending[-1][0]

    stats = _RGBStats(size)
    try:
        for split, (paths, labels) in scans.items():
            tmp_images = tmp_for(f"{split}_images.npy")
            kept, skipped = _pack_split(split, root / split, paths, labels, tmp_images, size, resample,
                                        stats if split == "train" else None, progress, workers)
            tmp_labels = tmp_for(f"{split}_labels.npy")
            with open(tmp_labels, "wb") as f:
                np.save(f, kept.astype(np.int64), allow_pickle=False)
            report.counts[split] = int(len(kept))
            report.skipped += skipped

        tmp = tmp_for("stats.npz")
        with open(tmp, "wb") as f:
            np.savez(f, **stats.result())
        tmp = tmp_for("classes.json")
        _write_json(tmp, classes)
        tmp = tmp_for("skipped.txt")
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:     # names as their bytes
            f.write("# split\tpath\treason  (files prepare_folder could not decode)\n")
            for split, path, reason in report.skipped:
                f.write(f"{split}\t{path}\t{reason}\n")
        tmp = tmp_for("meta.json")
        _write_json(tmp, {
            "format": "minidl-prepared-v1",
            "source": str(root.resolve()),
            "size": size,
            "resample": resample,
            "preprocessing": f"shorter side to {size} ({resample}), central {size}x{size} crop",
            "num_classes": len(classes),
            "splits": {s: {"images": report.counts[s], "files": len(scans[s][0]),
                           "skipped": len(report.skipped_in(s)),
                           "shape": [report.counts[s], 3, size, size]} for s in scans},
            "stats_from": "train",
            "train_pixels": stats.pixels,
        })
        for tmp, final in pending:
            os.replace(tmp, final)
        pending = []
        # A split that this run did not produce must not linger from an older run.
        for split in ("train", "val"):
            if split not in scans:
                for name in (f"{split}_images.npy", f"{split}_labels.npy"):
                    (out / name).unlink(missing_ok=True)
    finally:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
    if verbose:
        print(report.summary())
    return report


# -- reading -------------------------------------------------------------------

class PreparedDataset(ArrayDataset):
    """A split written by ``prepare_folder``, memory-mapped.

    images: np.memmap uint8 (N, 3, S, S) (read-only; pages load on access);
    labels: int64 (N,); classes: list of names; stats: dict with mean_image
    (3, S, S), mean_rgb (3,), eigval (3,), eigvec (3, 3) (train statistics,
    shared by every split); meta: the meta.json dict.
    """

    def __init__(self, path, split="train"):
        path = Path(path)
        files = [path / f"{split}_images.npy", path / f"{split}_labels.npy",
                 path / "classes.json", path / "stats.npz"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise DatasetNotFoundError(
                f"{path}: no prepared '{split}' split (missing {', '.join(missing)}). Create it "
                f"with `{PREPARE_HINT}`, where ROOT holds train/<class>/ (and val/<class>/) "
                "image folders and OUT is this folder."
            )
        for f, magic in ((files[0], b"\x93NUMPY"), (files[1], b"\x93NUMPY"), (files[3], b"PK")):
            with open(f, "rb") as fh:
                head = fh.read(len(magic))
            if head != magic:
                raise DatasetError(f"{f}: not an {f.suffix} array file (it starts with {head!r}); re-run "
                                   f"`{PREPARE_HINT}`")
        current = files[0]
        try:
            images = np.load(current, mmap_mode="r", allow_pickle=False)
            current = files[1]
            labels = np.load(current, allow_pickle=False)
            current = files[2]
            with open(current, encoding="utf-8") as f:
                classes = json.load(f)
            current = files[3]
            with np.load(current, allow_pickle=False) as z:
                self.stats = {k: z[k] for k in z.files}
            current = path / "meta.json"
            self.meta = json.loads(current.read_text(encoding="utf-8")) if current.is_file() else {}
        except (OSError, EOFError, ValueError, AttributeError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"{current}: damaged ({type(exc).__name__}: {exc}); re-run `{PREPARE_HINT}`") \
                from None
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1] != 3 \
                or images.dtype != np.uint8 or images.shape[2] != images.shape[3]:
            raise DatasetError(f"{files[0]}: expected uint8 (N, 3, S, S), got {getattr(images, 'dtype', '?')} "
                               f"{getattr(images, 'shape', '?')}; re-run `{PREPARE_HINT}`")
        if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
            raise DatasetError(f"{files[1]}: labels must be integers, got {getattr(labels, 'dtype', '?')}; re-run "
                               f"`{PREPARE_HINT}`")
        if labels.shape != (len(images),):
            raise DatasetError(f"{files[1]}: {labels.shape[0] if labels.ndim else 0} labels for {len(images)} images; "
                               f"re-run `{PREPARE_HINT}`")
        if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
            raise DatasetError(f"{files[2]}: expected a list of class names; re-run `{PREPARE_HINT}`")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DatasetError(f"{files[1]}: labels outside 0..{len(classes) - 1}; re-run `{PREPARE_HINT}`")
        size = images.shape[-1]
        want = {"mean_image": (3, size, size), "mean_rgb": (3,), "eigval": (3,), "eigvec": (3, 3)}
        bad = [k for k, shape in want.items() if k not in self.stats or self.stats[k].shape != shape
               or not np.isfinite(self.stats[k]).all()]
        if bad:
            raise DatasetError(f"{files[3]}: {', '.join(bad)} missing or wrong; re-run `{PREPARE_HINT}`")
        super().__init__(images, labels, classes)
        self.path = path
        self.split = split

    def __repr__(self):
        return (f"PreparedDataset('{self.path}', split={self.split!r}, N={len(self)}, "
                f"size={self.images.shape[-1]}, classes={len(self.classes)})")


class _LazyImages:
    """``ImageFolder.images``: indexable like the images array, decoding on access."""

    def __init__(self, folder):
        self._folder = folder

    def __len__(self):
        return len(self._folder)

    @property
    def shape(self):
        s = self._folder.size
        return (len(self._folder), 3, s, s)

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self._folder.load(int(idx))
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        return self._folder.get_batch(np.asarray(list(idx) if isinstance(idx, range) else idx))


class ImageFolder:
    """An image folder read on the fly (decode, resize, centre crop per item).

    For small sets that are not worth preparing; same protocol as the other
    datasets. classes: train's class folders (so val gets train's indices),
    or the split's own when ROOT has no train folder. An unreadable file
    raises ImageDecodeError when it is read (``prepare_folder`` skips them).
    """

    def __init__(self, root, split="train", size=256, resample=DEFAULT_RESAMPLE):
        root = Path(root)
        if not (root / split).is_dir():
            raise DatasetNotFoundError(f"{root / split}: no such folder; expected "
                                       f"{root}/{split}/<class>/<images>")
        classes = scan_split(root, "train")[2] if (root / "train").is_dir() else None
        self.skipped_links = []          # (link, target): folder links back into ROOT, not followed
        self.paths, self.labels, self.classes = scan_split(root, split, classes, links=self.skipped_links)
        self.root, self.split, self.size, self.resample = root, split, int(size), resample
        self.images = _LazyImages(self)

    def __len__(self):
        return len(self.paths)

    def load(self, i) -> np.ndarray:
        """uint8 (3, size, size) of example ``i``."""
        try:
            img = resize_center_crop(load_image(self.paths[i]), self.size, self.resample)
        except ImageDecodeError as exc:
            if str(self.paths[i]) in str(exc):
                raise
            raise ImageDecodeError(f"{self.paths[i]}: {exc}") from None
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    def __getitem__(self, i):
        return self.load(i), int(self.labels[i])

    def get_batch(self, indices) -> np.ndarray:
        """uint8 (B, 3, size, size), decoded in the order given."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), 3, self.size, self.size), np.uint8)
        for j, i in enumerate(idx):
            out[j] = self.load(int(i))
        return out

    def __repr__(self):
        return (f"ImageFolder('{self.root}', split={self.split!r}, N={len(self)}, "
                f"size={self.size}, classes={len(self.classes)})")
