"""What train, evaluate and predict share: data setup, devices, runs, user errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass

import numpy as np

from minidl import checkpoint
from minidl.atomic import atomic_write
from minidl.backend import Device, DeviceUnavailableError
from minidl.data import (
    DatasetError, DatasetNotFoundError, EvalTransform, FashionMNIST, ImageFolder, PreparedDataset, TrainTransform,
)
from minidl.data.transforms import IMAGENET_EIGVAL, IMAGENET_EIGVEC

from .configs import PRESETS, get_config
from .model import build_model

# Per-channel statistics of the Fashion-MNIST training images, on the 0..255 scale.
FASHION_MEAN = (72.940,)
FASHION_STD = (90.021,)
# The usual ImageNet RGB mean and standard deviation, 0..255.
IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
# Initialisations that expect raw mean-subtracted pixels (the paper's N(0, 0.01^2));
# the others (He) expect unit-variance inputs.
RAW_PIXEL_INITS = ("paper", "caffe", "original")


class UserError(Exception):
    """A mistake in how a command was called: reported as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def is_gpu_out_of_memory(exc):
    """True for CuPy's OutOfMemoryError (checked by name: CuPy is optional)."""
    return type(exc).__name__ == "OutOfMemoryError" and type(exc).__module__.startswith("cupy")


def gpu_memory_error(exc, batch_size, devices):
    """The UserError for a GPU that ran out of memory at ``batch_size``."""
    smaller = max(1, batch_size // 2)
    where = ", ".join(dict.fromkeys(str(d) for d in devices))
    hint = f"try --batch-size {smaller}" if batch_size > 1 else "the model alone does not fit"
    if len(set(str(d) for d in devices)) == 1 and len(devices) > 1:
        hint += ", or put the towers on two GPUs (--gpus 0,1)"
    return UserError(f"out of GPU memory on {where} at batch size {batch_size} ({str(exc).strip()}); {hint}")


def pyplot():
    """matplotlib.pyplot, on the file-only Agg backend unless pyplot is already in use (a
    notebook's inline backend, an interactive session): then its backend is left as it is."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_format(path):
    """The picture format a file name asks for ('png', 'pdf', 'svg', ...), checked against matplotlib's."""
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    known = FigureCanvasBase.get_supported_filetypes()
    if ext not in known:
        raise UserError(f"{path}: cannot save a picture as {'.' + ext if ext else 'a file without an extension'}; "
                        f"use one of {', '.join('.' + k for k in sorted(known))}")
    return ext


def run_cli(prog, fn, argv):
    """Call ``fn(argv)``; turn user errors into one line on stderr and exit code 2.

    User errors: UserError, and the errors the library raises about files and
    devices (missing or damaged datasets and checkpoints, unusable GPUs). A
    file that cannot be read or written, and running out of memory, are
    reported the same way, as what to do about them.
    """
    def fail(msg):
        msg = " ".join(display_text(str(msg)).split())
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2

    try:
        return fn(argv)
    except (UserError, DatasetNotFoundError, DatasetError, DeviceUnavailableError,
            checkpoint.CheckpointError) as exc:
        return fail(exc)
    except MemoryError:
        return fail("out of memory; use a smaller --batch-size (or fewer images at once)")
    except OSError as exc:
        if exc.filename is None:
            raise
        return fail(f"cannot use {exc.filename}: {exc.strerror or exc}")


def display_text(text):
    """``text`` printable anywhere: file names that are not UTF-8 (surrogates in Python) shown as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def bounded_int(low, high=None):
    """An argparse type: a whole number >= ``low`` (and <= ``high``)."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {v}" if high is not None
                                             else f"must be >= {low}, got {v}")
        return v
    return parse


positive_int = bounded_int(1)
nonneg_int = bounded_int(0)


def _finite_float(text, allow_zero):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else 'a positive number'}, got {text}")
    return v


def positive_float(text):
    return _finite_float(text, allow_zero=False)


def momentum_float(text):
    """A momentum: a number in [0, 1)."""
    v = _finite_float(text, allow_zero=True)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


def nonneg_float(text):
    return _finite_float(text, allow_zero=True)


# ---------------------------------------------------------------------------
# devices


def tower_devices(backend, gpus, towers):
    """The device of each tower, from --backend and --gpus ('0,1': tower i on the i-th listed GPU)."""
    if backend == "numpy":
        if gpus:
            raise UserError("--gpus needs --backend cupy")
        return ["cpu"] * towers
    try:
        ids = [int(g) for g in gpus.split(",")] if gpus else None
        if ids is not None and min(ids) < 0:
            raise ValueError
    except ValueError:
        raise UserError(f"--gpus expects GPU numbers (0, 1, ...) separated by commas, e.g. 0,1; got {gpus!r}") \
            from None
    if ids is None:
        count = Device("cuda", 0).check().xp.cuda.runtime.getDeviceCount()
        ids = list(range(towers)) if count >= towers else [0] * towers
    if len(ids) == 1:
        ids = ids * towers
    if len(ids) != towers:
        raise UserError(f"--gpus lists {len(ids)} GPUs but the preset has {towers} towers; give {towers} "
                        f"(e.g. {','.join(['0'] * towers)} to put all on GPU 0)")
    devices = [Device("cuda", i) for i in ids]
    for d in devices:
        d.check()
    return [str(d) for d in devices]


# ---------------------------------------------------------------------------
# data


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
    """The dataset of ``split`` ('train' or 'test'; folders call the test split 'val')."""
    if spec.kind == "fashion-mnist":
        return FashionMNIST(split, data_dir=spec.path)
    name = "train" if split == "train" else "val"
    cls = PreparedDataset if spec.kind == "prepared" else ImageFolder
    if spec.kind == "folder" and not os.path.isdir(os.path.join(spec.path, name)):
        raise UserError(f"{spec.path} has no {name}/ folder to evaluate on")
    try:
        dataset = cls(spec.path, name)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    if len(dataset) == 0:
        raise UserError(f"{spec.path}: its {name} split has no images")
    return dataset


def _stats(spec):
    if spec.kind == "prepared":
        return PreparedDataset(spec.path, "train").stats
    return None


def make_transforms(spec: DataSpec, input_size, ten_crop=False):
    """(train transform, eval transform) for a dataset spec and the model's input size."""
    stats = _stats(spec)
    mean = stats["mean_image"] if spec.mean_image and stats is not None else np.asarray(spec.mean, np.float32)
    std = None if spec.std is None else np.asarray(spec.std, np.float32)
    pca = None
    if spec.pca:
        pca = (stats["eigval"], stats["eigvec"]) if stats is not None else (IMAGENET_EIGVAL, IMAGENET_EIGVEC)
    train = TrainTransform(input_size, mean=mean, std=std, padding=spec.padding, flip=True, pca=pca,
                           resize_to=spec.resize_to)
    evalt = EvalTransform(input_size, mean=mean, std=std, resize_to=spec.resize_to, ten_crop=ten_crop)
    return train, evalt


# ---------------------------------------------------------------------------
# runs


def check_writable(out):
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"--out {out!r} is not writable ({exc.strerror or exc}); choose another folder") from None


def write_run_config(run_dir, config):
    """Write a run's config.json atomically."""
    with atomic_write(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def read_run_config(run_dir):
    """A run folder's config.json, checked; a UserError naming the file and the fault otherwise."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{run_dir} is not a training run (no config.json); pass the --out folder of "
                        "`python -m alexnet.train`")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is damaged ({exc}); it is not the config.json that `python -m alexnet.train` "
                        "writes") from None
    fields = {f.name for f in dataclasses.fields(DataSpec)}
    problem = None
    if not isinstance(config, dict):
        problem = "not a JSON object"
    elif config.get("preset") not in PRESETS:
        problem = f"unknown preset {config.get('preset')!r}"
    elif not isinstance(config.get("args"), dict):
        problem = "no 'args' object"
    elif not isinstance(config.get("data"), dict) or set(config["data"]) != fields:
        problem = "its 'data' entry is not a dataset description"
    else:
        try:
            DataSpec(**config["data"]).check()
        except (TypeError, ValueError) as exc:
            problem = f"its 'data' entry is wrong ({exc})"
    if problem:
        raise UserError(f"{path} is damaged: {problem}; it is not the config.json that `python -m alexnet.train` "
                        "writes")
    return config


def load_run(run_dir, which="best", backend="numpy", gpus=None):
    """Rebuild a trained run on the given backend: (model in eval mode, config dict, DataSpec)."""
    config = read_run_config(run_dir)
    ckpt = os.path.join(run_dir, "checkpoints", f"{which}.npz")
    if not os.path.exists(ckpt):
        raise UserError(f"{run_dir} has no {which} checkpoint ({ckpt}); train it first or use "
                        f"--checkpoint {'last' if which == 'best' else 'best'}")
    spec = DataSpec(**config["data"])
    devices = tower_devices(backend, gpus, get_config(config["preset"]).towers)
    model = build_model(config["preset"], num_classes=spec.num_classes, in_channels=spec.in_channels,
                        devices=devices, init=config.get("init"), seed=config.get("seed", 0))
    load_weights(model, checkpoint.load(ckpt), ckpt)
    return model.eval(), config, spec


def load_weights(model, state, path):
    """Copy a checkpoint's weights (``state['model']``) into ``model``, checked.

    A UserError names the file and what is wrong: no weights, a missing or
    unexpected array, a shape the model does not have (another run's
    checkpoint), or weights that are not all finite.
    """
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise UserError(f"{path} holds no model weights; it is not a checkpoint of `python -m alexnet.train`")
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        what = ([f"lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []) + \
               ([f"has unknown {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}"] if unexpected else [])
        raise UserError(f"{path} does not fit this {model.config.name} model: it {' and '.join(what)}")
    for name, p in own.items():
        value = weights[name]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise UserError(f"{path}: {name} is not an array of floats")
        if tuple(value.shape) != tuple(p.shape):
            raise UserError(f"{path}: {name} has shape {tuple(value.shape)} but the model's is {tuple(p.shape)}; "
                            "the checkpoint belongs to another run or preset")
        if not np.isfinite(value).all():
            raise UserError(f"{path}: {name} holds NaN or infinite values; the checkpoint is damaged")
    model.load_state_dict(weights)


def preset_names():
    return sorted(PRESETS)
