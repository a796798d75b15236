"""A dataset packed by ``prepare_folder``, read back memory-mapped: ``PreparedDataset``."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .. import npz
from .fashion_mnist import DatasetError, DatasetNotFoundError
from .loader import ArrayDataset

__all__ = ["PreparedDataset"]

PREPARE_HINT = "python -m alexnet.prepare ROOT OUT"


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
            # memory-mapped first: a header claiming more labels than the file holds is refused, not allocated
            labels = np.array(np.load(current, mmap_mode="r", allow_pickle=False))
            current = files[2]
            with open(current, encoding="utf-8") as f:
                classes = json.load(f)
            current = files[3]
            # each member's header is checked against what training uses before any is read
            members = npz.headers(current)
            size = images.shape[-1] if isinstance(images, np.ndarray) and images.ndim == 4 else None
            npz.check_shapes(current, members, {"mean_image": ((3, size, size), "f"), "mean_rgb": ((3,), "f"),
                                                "eigval": ((3,), "f"), "eigvec": ((3, 3), "f")},
                             "stats.npz")
            self.stats = npz.read(current, members)
            current = path / "meta.json"
            self.meta = json.loads(current.read_text(encoding="utf-8")) if current.is_file() else {}
        except npz.NpzError as exc:
            raise DatasetError(f"{exc}; re-run `{PREPARE_HINT}`") from None
        except (OSError, EOFError, ValueError, AttributeError, zipfile.BadZipFile, RecursionError) as exc:
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
        twice = sorted({c for c in classes if classes.count(c) > 1})
        if twice:                           # two labels with one name: predictions could not be told apart
            raise DatasetError(f"{files[2]}: the class name {twice[0]!r} is listed {classes.count(twice[0])} times; "
                               f"names must be unique; re-run `{PREPARE_HINT}`")
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
