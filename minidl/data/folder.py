"""ImageNet-style image folders: their files listed by class, and read on the fly.

Layout read::

    ROOT/train/<class>/<image files>      (any depth below <class>)
    ROOT/val/<class>/<image files>        (optional; classes a subset of train's)

Class index k is the k-th class folder name of ``train`` in sorted order (for
ImageNet: the sorted WordNet ids, the usual 0..999 order); ``val`` uses
train's indices.

``ImageFolder`` decodes on the fly, for small sets; ``prepare_folder``
(``minidl.data.prepare``) packs a folder once for training instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .fashion_mnist import DatasetError, DatasetNotFoundError
from .images import DEFAULT_RESAMPLE, ImageDecodeError, load_image, resize_center_crop

__all__ = ["scan_split", "ImageFolder", "PrepareError"]


class PrepareError(DatasetError):
    """The input folder or output location cannot be used as asked."""


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
            img = resize_center_crop(load_image(self.paths[i], self.size), self.size, self.resample)
        except ImageDecodeError as exc:
            if str(self.paths[i]) in str(exc):
                raise
            raise ImageDecodeError(f"{self.paths[i]}: {exc}") from None
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    def __getitem__(self, i):
        return self.load(i), int(self.labels[i])

    def unreadable(self):
        """[(file, why)] for each file whose header Pillow cannot read (nothing is decoded: about one file
        system read per file). A file cut short after its header is only found when it is decoded."""
        bad = []
        for path in self.paths:
            if path.is_symlink() and not path.exists():
                bad.append((path, f"{path} is a link to {os.readlink(path)}, which does not exist"))
                continue
            try:
                with Image.open(path):
                    pass
            except Exception as exc:       # Pillow raises OSError, SyntaxError, ValueError, ...
                bad.append((path, f"{path}: not a readable image ({type(exc).__name__}: {exc})"))
        return bad

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
