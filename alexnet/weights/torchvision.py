"""torchvision's AlexNet state dicts: read into the ``torchvision`` preset, and written back.

``load_torchvision`` builds the ``torchvision`` preset (one tower, 224x224
input) and copies a torchvision ``alexnet`` state dict into it
(``features.{0,3,6,8,10}`` -> conv1..conv5, ``classifier.{1,4,6}`` ->
fc6..fc8). minidl stores conv weights (out, in, kh, kw) and linear weights
(out, in) as PyTorch does and flattens (c, h, w) as ``torch.flatten``
does, so every array is used as it is. The file may be a ``.pth`` (read
only with ``torch.load(weights_only=True)``; needs PyTorch), a
``.safetensors`` (``read_safetensors``, no PyTorch needed) or an ``.npz``
(``allow_pickle=False``). ``export_torchvision`` writes the reverse, so
weights round-trip. The weights expect RGB on [0, 1] normalised with
``TORCHVISION_MEAN``/``TORCHVISION_STD``.
"""

from __future__ import annotations

import os
import pickle
import warnings
from importlib import resources

import numpy as np

from minidl.backend import asnumpy

from ..configs import get_config
from ..model import build_model
from .safetensors_io import read_safetensors, write_safetensors
from .state import WeightsError, _atomic_write, _check_exists, _check_keys, _full_to_model

# torchvision's normalisation, on the 0..255 scale: (x/255 - m) / s == (x - 255 m) / (255 s).
TORCHVISION_MEAN = (123.675, 116.28, 103.53)
TORCHVISION_STD = (58.395, 57.12, 57.375)

# The most classes a weights file may have (ImageNet-21k has 21,841): its fc8 is then at most 410 MB.
MAX_CLASSES = 25_000

# torchvision state-dict module -> minidl stage
TORCHVISION_KEYS = {
    "features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
    "features.10": "conv5", "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8",
}


def imagenet_classes() -> list:
    """ImageNet's 1000 class names, in torchvision's (= Caffe's synset) order."""
    text = resources.files("alexnet").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_pth(path):
    try:
        import torch
    except ImportError:
        raise WeightsError(f"{path}: reading a .pth file needs PyTorch, which is not installed; install torch, "
                           "or convert the state dict to .safetensors or .npz (no PyTorch needed to read "
                           "those)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")           # torch's own advice would print lines of its own
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        with open(path, "rb") as f:
            head = f.read(4)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            raise WeightsError(f"{path}: not a PyTorch file (neither a zip archive nor a pickle)") from None
        # weights_only refuses every pickle opcode that is not plain tensors and containers
        first = str(exc).splitlines()[-1] if str(exc) else ""
        raise WeightsError(f"{path}: refused: the file asks to run code or build objects other than tensors "
                           f"while loading ({first.strip()[:200]}); only plain state dicts are read") from None
    except Exception as exc:       # torch raises many kinds (RuntimeError on a truncated zip, ...)
        raise WeightsError(f"{path}: torch.load(weights_only=True) could not read it "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    state = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            raise WeightsError(f"{path}: state dict entry '{k}' is a {type(v).__name__}, not a tensor")
        v = v.detach().cpu()
        state[k] = (v.float() if v.is_floating_point() else v).numpy()
    return state


def _read_npz(path):
    """The arrays of a torchvision state dict .npz, each checked from its header before it is read."""
    import zipfile

    from minidl import npz

    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":                # a .npy array under an .npz name
            raise WeightsError(f"{path}: not a readable .npz of arrays (it holds a single array, not named arrays)")
    try:
        members = npz.headers(path)
        _check_keys(members, _torchvision_keys(), "a torchvision AlexNet state dict", path)
        fc8 = members["classifier.6.weight"]
        num_classes = fc8.shape[0] if len(fc8.shape) == 2 else 0
        if num_classes > MAX_CLASSES:
            raise WeightsError(f"{path}: member 'classifier.6.weight' claims {fc8.describe()}: {num_classes:,} "
                               f"classes, more than the {MAX_CLASSES:,} a weights file may have; nothing was read")
        npz.check_shapes(path, members, {k: (s, "f") for k, s in _torchvision_shapes(num_classes).items()},
                         "torchvision's AlexNet")
        return npz.read(path, members)
    except WeightsError:
        raise
    except npz.NpzError as exc:
        raise WeightsError(str(exc)) from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable .npz of arrays ({exc})") from None


def read_torchvision_state(path):
    """The ``{key: numpy array}`` of a torchvision state dict file (.pth/.pt, .safetensors or .npz)."""
    path = os.fspath(path)
    _check_exists(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".pth", ".pt", ".bin"):
        return _read_pth(path)
    if ext == ".safetensors":
        return read_safetensors(path)
    if ext == ".npz":
        return _read_npz(path)
    raise WeightsError(f"{path}: unknown weights file type {ext or '(no extension)'!r}; expected .pth, "
                       ".safetensors or .npz")


def _torchvision_keys():
    return [f"{m}.{p}" for m in TORCHVISION_KEYS for p in ("weight", "bias")]


def _torchvision_full(state, path):
    """Check a torchvision state dict's keys and shapes; ``{stage: (W, b)}`` and the class count."""
    _check_keys(state, _torchvision_keys(), "a torchvision AlexNet state dict", path)
    num_classes = int(state["classifier.6.weight"].shape[0]) if state["classifier.6.weight"].ndim == 2 else 0
    expected = _torchvision_shapes(num_classes)
    full = {}
    for module, stage in TORCHVISION_KEYS.items():
        pair = []
        for kind in ("weight", "bias"):
            key = f"{module}.{kind}"
            arr = np.asarray(state[key])
            if tuple(arr.shape) != expected[key]:
                raise WeightsError(f"{path}: '{key}' has shape {tuple(arr.shape)}, torchvision's AlexNet has "
                                   f"{expected[key]}")
            if arr.dtype.kind != "f":
                raise WeightsError(f"{path}: '{key}' has dtype {arr.dtype}, expected floating point")
            pair.append(arr)
        full[stage] = tuple(pair)
    return full, num_classes


def _torchvision_shapes(num_classes):
    cfg = get_config("torchvision")
    shapes, ch = {}, cfg.in_channels
    for module, spec in zip(list(TORCHVISION_KEYS)[:5], cfg.convs):
        shapes[f"{module}.weight"] = (spec.out_channels, ch, spec.kernel_size, spec.kernel_size)
        shapes[f"{module}.bias"] = (spec.out_channels,)
        ch = spec.out_channels
    features = ch * 6 * 6
    for module, spec in zip(list(TORCHVISION_KEYS)[5:], cfg.fcs):
        out = num_classes if spec.out_features is None else spec.out_features
        shapes[f"{module}.weight"] = (out, features)
        shapes[f"{module}.bias"] = (out,)
        features = out
    return shapes


def load_torchvision(path, devices=None):
    """A torchvision AlexNet state dict (.pth, .safetensors or .npz) in the ``torchvision`` preset.

    The number of classes is taken from ``classifier.6``. Missing or
    unexpected keys and wrong shapes raise ``WeightsError`` (a ValueError)
    naming the key. Returns the model in eval mode; it expects RGB input
    normalised with ``TORCHVISION_MEAN``/``TORCHVISION_STD`` (0..255 scale),
    224x224.
    """
    path = os.fspath(path)
    full, num_classes = _torchvision_full(read_torchvision_state(path), path)
    model = build_model("torchvision", num_classes=num_classes, devices=devices)
    model.load_state_dict(_full_to_model(full, model, path))
    return model.eval()


def export_torchvision(model, path):
    """Write a one-tower, torchvision-shaped model as a torchvision AlexNet state dict.

    ``.npz`` or ``.safetensors`` (``.pth``/``.pt`` too when PyTorch is
    installed). ``load_torchvision`` of the file gives identical parameters.
    Returns the path.
    """
    path = os.fspath(path)
    if len(model.devices) != 1 or any(getattr(b, "conv", None) is not None and b.conv.groups != 1
                                      for st in model.stages for b in st.blocks):
        raise WeightsError("export_torchvision: torchvision's AlexNet has one tower and no conv groups; "
                           f"this model ({model.config.name!r}) has {len(model.devices)} tower(s)")
    if model.stage_names != list(TORCHVISION_KEYS.values()):
        raise WeightsError(f"export_torchvision: expected stages {list(TORCHVISION_KEYS.values())}, "
                           f"the model has {model.stage_names}")
    state = {}
    for module, stage in TORCHVISION_KEYS.items():
        main = getattr(model, stage).blocks[0].main
        state[f"{module}.weight"] = np.ascontiguousarray(asnumpy(main.weight.data))
        state[f"{module}.bias"] = np.ascontiguousarray(asnumpy(main.bias.data))
    expected = _torchvision_shapes(model.num_classes)
    for k, v in state.items():
        if tuple(v.shape) != expected[k]:
            raise WeightsError(f"export_torchvision: '{k}' has shape {tuple(v.shape)}, torchvision's AlexNet "
                               f"has {expected[k]} (is this the 'torchvision' preset with 3 input channels?)")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        return write_safetensors(path, state, metadata={"format": "pt"})
    if ext == ".npz":
        return _atomic_write(path, lambda f: np.savez(f, **state))
    if ext in (".pth", ".pt"):
        try:
            import torch
        except ImportError:
            raise WeightsError(f"export_torchvision: writing {ext} needs PyTorch; write .safetensors or .npz "
                               "instead") from None
        return _atomic_write(path, lambda f: torch.save({k: torch.from_numpy(v.copy()) for k, v in state.items()},
                                                        f))
    raise WeightsError(f"export_torchvision: unknown file type {ext or '(no extension)'!r}; use .npz or "
                       ".safetensors")
