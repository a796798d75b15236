"""Classify image files with a trained run: the top-5 classes and their probabilities.

    python -m alexnet.predict photo.jpg shirt.png --run runs/mini-fashion-mnist

Each image is decoded (any Pillow mode, converted to RGB, or to grayscale
for a one-channel model), brought to the training images' size the way the
dataset was (shorter side, then the centre), and passed through the run's
evaluation transform.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from minidl.backend import to_device
from minidl.data import ImageDecodeError, load_image, resize_center_crop

from .cli import OneLineParser, UserError, display_name, positive_int, run_cli, user_path
from .configs import get_config
from .dataspec import DataSpec, make_transforms
from .finetune import FORMAT_PRESETS, guess_format
from .runs import load_run
from .weights.caffe import CAFFE_MEAN_BGR, load_caffe_npy
from .weights.state import WeightsError
from .weights.torchvision import TORCHVISION_MEAN, TORCHVISION_STD, imagenet_classes, load_torchvision


def source_size(spec):
    """The size of the images the run was trained on (before its transforms)."""
    return 28 if spec.kind == "fashion-mnist" else 256


def to_model_input(image, spec, invert=False):
    """uint8 (H, W, 3) RGB -> uint8 (C, S, S) like one training image of ``spec``."""
    img = resize_center_crop(image, source_size(spec))
    if spec.in_channels == 1:
        # ITU-R 601 luma, as Pillow's convert('L')
        gray = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        img = np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None]
    if invert:
        img = 255 - img
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def predict(model, spec, images, top=5, invert=False):
    """Top-``top`` (class index, probability) lists for uint8 (H, W, 3) images."""
    return rank(model, spec, np.stack([to_model_input(im, spec, invert) for im in images]), top)


def rank(model, spec, batch, top=5, chunk=32):
    """Top-``top`` (class index, probability) lists for a batch made by ``to_model_input``.

    The network sees ``chunk`` images at a time, so many files take no more memory than a few.
    """
    _, evalt = make_transforms(spec, model.input_size)
    home = model.devices[0]
    model.eval()
    probs = np.concatenate([model.probabilities(evalt(to_device(batch[lo:lo + chunk], home)))
                            for lo in range(0, len(batch), chunk)])
    order = np.argsort(-probs, axis=1)[:, :top]
    return [[(int(k), float(probs[i, k])) for k in row] for i, row in enumerate(order)]


def build_parser():
    p = OneLineParser(prog="python -m alexnet.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE", type=user_path, help="image files (JPEG, PNG, ...)")
    p.add_argument("--run", default=None, type=user_path, help="a run folder written by alexnet.train (--out)")
    p.add_argument("--weights", default=None, metavar="FILE", type=user_path,  # alexnet.pretrained
                   help="instead of --run: trained ImageNet weights (torchvision .pth/.safetensors/.npz, or "
                        "bvlc_alexnet.npy)")
    p.add_argument("--format", choices=["torchvision", "caffe"], default=None,
                   help="format of --weights (default: from the file name)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--top", type=positive_int, default=5, help="how many classes to show (default 5)")
    p.add_argument("--invert", action="store_true",
                   help="invert the pixels first (Fashion-MNIST items are light on a dark background)")
    p.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    p.add_argument("--gpus", default=None)
    return p


def _main(argv):
    args = build_parser().parse_args(argv)
    model, spec = _load_model(args)
    inputs = []
    for path in args.images:
        if not os.path.exists(path):
            raise UserError(f"{path}: no such file")
        if not os.path.isfile(path):
            raise UserError(f"{path} is {'a folder' if os.path.isdir(path) else 'not a regular file'}; give image "
                            "files")
        try:
            inputs.append(to_model_input(load_image(path, source_size(spec)), spec, args.invert))
        except ImageDecodeError as exc:
            raise UserError(str(exc) if str(exc).startswith(path) else f"{path}: {exc}") from None
    top = min(args.top, spec.num_classes)
    for path, ranked in zip(args.images, rank(model, spec, np.stack(inputs), top=top)):
        print(display_name(path))
        for k, p in ranked:
            print(f"  {100 * p:6.2f}%  {display_name(spec.classes[k])}")
    return 0


def predict_setup(path, fmt=None, devices=None):
    """(model in eval mode, DataSpec) for classifying photos with a weights file (``--weights``).

    The DataSpec describes the weights' own preprocessing: 256-pixel images,
    centre crop, torchvision's mean/std or Caffe's per-channel mean (the
    Caffe model is loaded to read RGB).
    """
    path = os.fspath(path)
    fmt = fmt or guess_format(path)
    if fmt == "torchvision":
        model = load_torchvision(path, devices=devices)
        mean, std = list(TORCHVISION_MEAN), list(TORCHVISION_STD)
    elif fmt == "caffe":
        model = load_caffe_npy(path, devices=devices, input_order="rgb")
        mean, std = [float(v) for v in CAFFE_MEAN_BGR[::-1]], None
    else:
        raise WeightsError(f"--format {fmt!r}: predict reads torchvision or caffe weights; for a minidl run "
                           "use --run")
    n = model.num_classes
    classes = imagenet_classes() if n == 1000 else [f"class {i}" for i in range(n)]
    spec = DataSpec("folder", None, n, 3, classes, mean, std, False, False, 0, None)
    return model, spec


def _load_model(args):
    """(model, DataSpec) of --run DIR, or of --weights FILE [--format F] (alexnet.pretrained)."""
    from .devices import tower_devices

    if args.weights is None:
        if args.run is None:
            raise UserError("give --run DIR (a training run) or --weights FILE (pretrained weights)")
        model, _, spec = load_run(args.run, args.checkpoint, backend=args.backend, gpus=args.gpus)
        return model, spec
    if args.run is not None:
        raise UserError("give either --run or --weights, not both")
    try:
        fmt = args.format or guess_format(args.weights)
        if fmt not in FORMAT_PRESETS:
            raise UserError(f"{args.weights} is a minidl checkpoint; pass its run folder with --run")
        devices = tower_devices(args.backend, args.gpus, get_config(FORMAT_PRESETS[fmt]).towers)
        return predict_setup(args.weights, fmt, devices=devices)
    except WeightsError as exc:
        raise UserError(str(exc)) from None


def main(argv=None):
    return run_cli("predict", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
