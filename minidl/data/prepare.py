"""Packing an image folder once into memory-mappable arrays: ``prepare_folder``.

``prepare_folder(ROOT, OUT)`` applies the paper's preprocessing once (shorter
side to 256, central 256x256 crop) to a folder laid out as
``minidl.data.folder`` reads it, and packs each split into one uint8 array
file that training memory-maps; ``PreparedDataset`` (``minidl.data.prepared``)
reads it back.

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

import errno
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import remove_stale, temporary_name
from ..checks import whole
from .fashion_mnist import DatasetNotFoundError
from .folder import PrepareError, scan_split
from .images import _RESAMPLE, DEFAULT_RESAMPLE, ImageDecodeError, load_image, resize_center_crop

__all__ = ["prepare_folder", "PrepareReport"]

# Largest prepared image side: the mean image alone takes 24 * size**2 bytes while packing.
MAX_SIZE = 2048


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
        img = resize_center_crop(load_image(path, size), size, resample)
    except ImageDecodeError as exc:
        cause = exc.__cause__
        if cause is not None:
            return None, f"{type(cause).__name__}: {cause}"
        why = str(exc)           # the report lists the file beside its reason: said once
        return None, why[len(f"{path}: "):] if why.startswith(f"{path}: ") else why
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


def _size(n):
    """Bytes for people: '12.3 MB', never '0.0 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _reserve(path):
    """Allocate every block of ``path`` now. A memmap page that the disk has no room for kills the
    process with SIGBUS when it is written; allocated up front, a full disk is an ENOSPC error here."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):    # a file system without it: written as before
            raise
    finally:
        os.close(fd)


def _pack_split(split, folder, paths, labels, tmp_images, size, resample, stats, progress, workers):
    """Decode, resize and crop every file into an (N, 3, S, S) memmap at ``tmp_images``.

    Returns (labels of the images kept, [(split, path, reason) skipped]).
    """
    from tqdm.auto import tqdm

    images = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8,
                                       shape=(len(paths), 3, size, size))
    _reserve(tmp_images)
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
    target = out.resolve()
    inside = [d for d in (root / "train", root / "val") if target == d.resolve() or d.resolve() in target.parents]
    if target == root.resolve() or inside:
        # in a split folder it would become a class (or its files images) of the next prepare
        where = f"inside {inside[0]}, among the class folders" if inside else "the image folder itself"
        raise PrepareError(f"{out}: the output folder is {where}; give a folder of its own, e.g. {root}-prepared")

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
        raise PrepareError(f"{out}: needs up to {_size(need)} for the image arrays but only "
                           f"{_size(free)} are free; choose another OUT")

    report = PrepareReport(out=out, size=size, classes=classes, removed=removed, links=links)
    pending = []  # (temporary file, final name), renamed once everything is written

    def tmp_for(name):
        pending.append((Path(temporary_name(out / name)), out / name))
        return pending[-1][0]

    stats = _RGBStats(size)
    try:
        _write_all(scans, root, classes, size, resample, stats, progress, workers, report, tmp_for)
        for tmp, final in pending:
            os.replace(tmp, final)
        pending = []
        # A split that this run did not produce must not linger from an older run.
        for split in ("train", "val"):
            if split not in scans:
                for name in (f"{split}_images.npy", f"{split}_labels.npy"):
                    (out / name).unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise PrepareError(f"{out}: the disk filled up while the prepared arrays were written ({exc.strerror}); "
                           "nothing was left half-written and the folder holds what it held before; free some "
                           "space or choose another OUT") from None
    finally:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
    if verbose:
        print(report.summary())
    return report


def _write_all(scans, root, classes, size, resample, stats, progress, workers, report, tmp_for):
    """Every output file of prepare_folder, each at its temporary name (``tmp_for``)."""
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
