"""A run's data: which dataset --data names, its preprocessing (DataSpec), its splits and transforms."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from minidl.data import EvalTransform, FashionMNIST, ImageFolder, PreparedDataset, TrainTransform, subset_indices
from minidl.data.transforms import IMAGENET_EIGVAL, IMAGENET_EIGVEC

from .cli import UserError
from .configs import get_config

# Per-channel statistics of the Fashion-MNIST training images, on the 0..255 scale.
FASHION_MEAN = (72.940,)
FASHION_STD = (90.021,)
# The usual ImageNet RGB mean and standard deviation, 0..255.
IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
# Initialisations that expect raw mean-subtracted pixels (the paper's N(0, 0.01^2));
# the others (He) expect unit-variance inputs.
RAW_PIXEL_INITS = ("paper", "caffe", "original")


@dataclass
class DataSpec:
    """Everything needed to rebuild a run's datasets and transforms (saved in config.json)."""

    kind: str                 # 'fashion-mnist', 'prepared' or 'folder'
    path: str | None          # the prepared/folder root, or the Fashion-MNIST --data-dir
    num_classes: int
    in_channels: int
    classes: list
    mean: list                # per-channel (0..255), or None when a mean image is used
    std: list | None
    mean_image: bool          # prepared sets: subtract the per-pixel mean image (cuda-convnet)
    pca: bool                 # PCA colour augmentation
    padding: int              # zero-padding before the random crop (small images)
    resize_to: int | None     # resize before cropping (small images into a big net)

    def check(self):
        """Raise a ValueError naming the first field that cannot be right (a hand-edited config.json)."""
        def numbers(v, n, positive=False):
            return (isinstance(v, list) and len(v) == n and all(isinstance(a, (int, float)) and np.isfinite(a)
                                                                 and (a > 0 or not positive) for a in v))
        count = lambda v, low: isinstance(v, int) and not isinstance(v, bool) and v >= low  # noqa: E731
        if self.kind not in ("fashion-mnist", "prepared", "folder"):
            raise ValueError(f"kind {self.kind!r}")
        if not count(self.num_classes, 2) or self.in_channels not in (1, 3):
            raise ValueError(f"num_classes {self.num_classes!r}, in_channels {self.in_channels!r}")
        if not (isinstance(self.classes, list) and len(self.classes) == self.num_classes
                and all(isinstance(c, str) for c in self.classes)):
            raise ValueError(f"classes: expected {self.num_classes} names")
        if not numbers(self.mean, self.in_channels):
            raise ValueError(f"mean {self.mean!r}")
        if self.std is not None and not numbers(self.std, self.in_channels, positive=True):
            raise ValueError(f"std {self.std!r}")
        if not count(self.padding, 0) or not (self.resize_to is None or count(self.resize_to, 1)):
            raise ValueError(f"padding {self.padding!r}, resize_to {self.resize_to!r}")
        if self.kind != "fashion-mnist" and not isinstance(self.path, str):
            raise ValueError(f"path {self.path!r}")
        return self


def _crop_plan(source, size):
    """(padding, resize_to) to get random ``size`` crops from ``source``-pixel images.

    Images of the crop size are used whole (Fashion-MNIST into mini: its
    items are centred and aligned, and zero-padded 2-pixel shifts cost about
    3 points of test accuracy after one epoch for no gain within a six-epoch
    run; flips are still applied); images much larger or
    smaller are first resized so the crop keeps the paper's 224/256 ratio
    (256 -> 32 for mini's 28, 28 -> 259 for the paper's 227); 256-pixel
    images and a 224-227 crop are cropped directly, as in the paper.
    """
    if abs(source - size) <= 4:
        return 0, None
    if 1.05 <= source / size <= 1.25:
        return 0, None
    return 0, round(size * 256 / 224)


def describe_data(data, data_dir, preset, init=None):
    """Find the dataset and decide its preprocessing for a preset (and its initialisation).

    Photographs are mean-subtracted on the 0..255 scale, as in the paper, for
    the paper's N(0, 0.01^2) initialisation; for He initialisation they are
    also divided by the per-channel standard deviation, which that scheme
    assumes (raw 0..255 inputs make a He-initialised net diverge).
    """
    cfg = get_config(preset)
    unit_variance = (init or cfg.init) not in RAW_PIXEL_INITS
    photo_std = list(IMAGENET_STD_RGB) if unit_variance else None
    if data_dir is not None:
        if data != "fashion-mnist":
            raise UserError(f"--data-dir is where the Fashion-MNIST files are; --data {data!r} is a folder of its own: "
                            "leave out --data-dir")
        if os.path.isfile(os.path.expanduser(data_dir)):
            raise UserError(f"--data-dir {data_dir!r} is a file, not a folder")
        if not os.path.isdir(os.path.expanduser(data_dir)):
            raise UserError(f"--data-dir {data_dir!r} does not exist")
    if data == "fashion-mnist":
        FashionMNIST("test", data_dir=data_dir)     # fail early, with the places looked at
        padding, resize_to = _crop_plan(28, cfg.input_size)
        return DataSpec("fashion-mnist", data_dir, 10, 1, list(FashionMNIST("train", data_dir=data_dir).classes),
                        list(FASHION_MEAN), list(FASHION_STD), False, False, padding, resize_to)
    path = os.path.abspath(os.path.expanduser(data))
    if os.path.isfile(path):
        raise UserError(f"--data {data!r} is a file; give 'fashion-mnist', a folder made by `python -m alexnet.prepare`, "
                        "or an ImageNet-style folder with train/<class>/ images")
    if not os.path.isdir(path):
        raise UserError(f"--data {data!r}: no such folder; give 'fashion-mnist', a folder made by "
                        "`python -m alexnet.prepare`, or an ImageNet-style folder with train/<class>/ images")
    if os.path.exists(os.path.join(path, "stats.npz")):
        train = _at_least_two_classes(PreparedDataset(path, "train"), path)
        padding, resize_to = _crop_plan(train.images.shape[-1], cfg.input_size)
        # the per-pixel mean image only fits when cropping directly from the prepared size
        return DataSpec("prepared", path, len(train.classes), 3, list(train.classes),
                        [float(v) for v in train.stats["mean_rgb"]], photo_std, resize_to is None, True,
                        padding, resize_to)
    if os.path.isdir(os.path.join(path, "train")):
        train = _at_least_two_classes(ImageFolder(path, "train"), path)
        if len(train) == 0:
            raise UserError(f"{path}/train has no images")
        padding, resize_to = _crop_plan(256, cfg.input_size)
        return DataSpec("folder", path, len(train.classes), 3, list(train.classes),
                        list(IMAGENET_MEAN_RGB), photo_std, False, True, padding, resize_to)
    raise UserError(f"--data {data!r} is neither a prepared dataset (no stats.npz) nor an ImageNet-style "
                    "folder (no train/ subfolder); see `python -m alexnet.prepare --help`")


def _at_least_two_classes(dataset, path):
    if len(dataset.classes) < 2:
        raise UserError(f"{path}: a classifier needs at least 2 classes, found {len(dataset.classes)} "
                        f"({', '.join(dataset.classes) or 'none'}); add a folder per class under train/")
    return dataset


def open_split(spec: DataSpec, split):
    """The dataset of ``split``: 'train', 'test' (a folder's test/, else its val/, as ImageNet's val is its test
    set), or 'val' (a folder's own validation folder, val/ beside test/)."""
    if spec.kind == "fashion-mnist":
        return FashionMNIST(split, data_dir=spec.path)
    name = {"train": "train", "val": "val", "test": "test" if has_own_validation(spec) else "val"}[split]
    cls = PreparedDataset if spec.kind == "prepared" else ImageFolder
    if spec.kind == "folder" and not os.path.isdir(os.path.join(spec.path, name)):
        raise UserError(f"{spec.path} has no {name}/ folder to evaluate on")
    try:
        dataset = cls(spec.path, name)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    if len(dataset) == 0:
        raise UserError(f"{spec.path}: its {name} split has no images")
    if spec.kind == "folder":               # found now, not when training or an evaluation reaches the file
        bad = dataset.unreadable()
        if bad:
            more = f"; {len(bad) - 1} more of the {len(dataset)} files in {name}/ cannot be read either" \
                if len(bad) > 1 else ""
            raise UserError(f"{bad[0][1]}{more}; remove {'them' if more else 'it'}, or pack the folder with "
                            "`python -m alexnet.prepare`, which skips unreadable files")
    return dataset


# -- the validation split: every decision (the plateau schedule, best.npz) is made on it; the test split only
# reports. Held out from the training images unless a folder brings its own (val/ beside test/).

VAL_SEED = 0          # one validation split per dataset, the same for every run and seed
VAL_FASHION = 5000    # Fashion-MNIST: 500 images of each class held out of the 60,000


def has_own_validation(spec: DataSpec):
    """Whether the dataset has a validation split of its own: a folder with val/ and test/ beside train/."""
    return spec.kind == "folder" and all(os.path.isdir(os.path.join(spec.path, d)) for d in ("val", "test"))


def default_val_size(spec: DataSpec, labels=None):
    """How many training images to hold out for validation (None: the folder's own val/ is the split).

    Fashion-MNIST: 5,000. Otherwise a tenth of the training images (at most 10,000), and at least one
    of each class when every class has two or more. ``labels``: the training labels (read if not given).
    """
    if has_own_validation(spec):
        return None
    if spec.kind == "fashion-mnist":
        return VAL_FASHION
    if labels is None:
        labels = open_split(spec, "train").labels
    counts = np.bincount(np.asarray(labels), minlength=spec.num_classes)
    n = min(10000, len(labels) // 10)
    if counts.min() >= 2:
        n = max(n, spec.num_classes)
    return n


@dataclass
class Splits:
    """A run's data: the images it trains on, its validation images and its test set."""

    train: object                     # the training dataset, and the indices trained on (None: all)
    train_indices: np.ndarray | None
    val: object | None                # the dataset validated on (None: no validation split) and its indices
    val_indices: np.ndarray | None
    test: object


def open_splits(spec: DataSpec, val_size=None, train_subset=None, seed=0):
    """The run's splits: ``val_size`` images held out of the training set for validation (class-balanced,
    the same for every seed; None: the dataset's default, 0: none), then ``train_subset`` of the rest
    (class-balanced, chosen by ``seed``)."""
    train = open_split(spec, "train")
    test = open_split(spec, "test")
    labels = np.asarray(train.labels)
    if val_size is None:
        val_size = default_val_size(spec, labels)
    val, val_idx, rest = None, None, np.arange(len(labels))
    if val_size is None:
        val = open_split(spec, "val")
    elif val_size > 0:
        if val_size >= len(labels):
            raise UserError(f"--val-size {val_size} leaves no training images of the {len(labels)}; hold out fewer")
        val, val_idx = train, subset_indices(labels, val_size, VAL_SEED)
        rest = np.setdiff1d(rest, val_idx)
    if train_subset:
        rest = rest[subset_indices(labels[rest], min(train_subset, len(rest)), seed)]
    return Splits(train, None if len(rest) == len(labels) else rest, val, val_idx, test)


def _stats(spec):
    if spec.kind == "prepared":
        return PreparedDataset(spec.path, "train").stats
    return None


def make_transforms(spec: DataSpec, input_size, ten_crop=False, augment=True):
    """(train transform, eval transform) for a dataset spec and the model's input size.

    ``augment=False``: the training transform is the test one (the centre crop,
    no flips, no colour noise), for the no-augmentation ablation.
    """
    stats = _stats(spec)
    mean = stats["mean_image"] if spec.mean_image and stats is not None else np.asarray(spec.mean, np.float32)
    std = None if spec.std is None else np.asarray(spec.std, np.float32)
    pca = None
    if spec.pca:
        pca = (stats["eigval"], stats["eigvec"]) if stats is not None else (IMAGENET_EIGVAL, IMAGENET_EIGVEC)
    train = TrainTransform(input_size, mean=mean, std=std, padding=spec.padding, flip=True, pca=pca,
                           resize_to=spec.resize_to)
    evalt = EvalTransform(input_size, mean=mean, std=std, resize_to=spec.resize_to, ten_crop=ten_crop)
    if not augment:
        train = _Unaugmented(EvalTransform(input_size, mean=mean, std=std, resize_to=spec.resize_to))
    return train, evalt


class _Unaugmented:
    """A training transform that draws nothing: the test transform's centre crop."""

    def __init__(self, evalt):
        self.evalt = evalt

    def __call__(self, batch, rng, rows=None):
        return self.evalt(batch)
