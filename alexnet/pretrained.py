"""Trained AlexNet weights from elsewhere: torchvision and Caffe's bvlc_alexnet.

    from alexnet.pretrained import load_torchvision, load_caffe_npy, imagenet_classes
    model = load_torchvision("alexnet-owt-7be5be79.pth")       # or .safetensors / .npz
    model = load_caffe_npy("bvlc_alexnet.npy")                 # Caffe's net, exactly (preset 'bvlc')
    model = load_caffe_npy("bvlc_alexnet.npy", towers=2)       # the paper's two towers (see below)

torchvision
    ``load_torchvision`` builds the ``torchvision`` preset (one tower, 224x224
    input) and copies a torchvision ``alexnet`` state dict into it
    (``features.{0,3,6,8,10}`` -> conv1..conv5, ``classifier.{1,4,6}`` ->
    fc6..fc8). minidl stores conv weights (out, in, kh, kw) and linear weights
    (out, in) as PyTorch does and flattens (c, h, w) as ``torch.flatten``
    does, so every array is used as it is. The file may be a ``.pth`` (read
    only with ``torch.load(weights_only=True)``; needs PyTorch), a
    ``.safetensors`` (read by this module, no dependency) or an ``.npz``
    (``allow_pickle=False``). ``export_torchvision`` writes the reverse, so
    weights round-trip. The weights expect RGB on [0, 1] normalised with
    ``TORCHVISION_MEAN``/``TORCHVISION_STD``.

Caffe (bvlc_alexnet.npy, the file the TensorFlow ports load)
    A pickled 0-d object array holding ``{name: [W, b]}``: conv W in
    (h, w, in, out) order, fc W (in, out) with fc6's rows in (h, w, c) order,
    BGR input with ``CAFFE_MEAN_BGR`` subtracted (``caffe_preprocess``). It is
    read with a restricted unpickler that builds numpy arrays and plain
    containers and nothing else: a file that names any other callable (e.g.
    ``os.system``) is refused before anything runs.

    Caffe ran bvlc_alexnet on ONE device, with group=2 in conv2/4/5, so its
    LRN window crosses the boundary between the two groups. ``towers=1``
    (default) loads the ``bvlc`` preset, which does the same: outputs equal
    Caffe's. ``towers=2`` loads the paper's two-tower net (with LRN k=1, as
    Caffe): group g becomes tower g, and the LRN no longer crosses between
    towers, so the 2 channels on each side of the tower boundary (conv1 maps
    46-49, conv2 maps 126-129) are normalised differently and the outputs
    differ slightly from Caffe's (logits typically by well under 1%).

Parameters are named ``<stage>.tower<t>.weight|bias`` (conv1..conv5,
fc6..fc8); in a two-tower model fc8 is split by classes over the towers
(``model.class_splits``).

Fine-tuning (``python -m alexnet.train --init-from FILE``) uses
``init_from`` and ``freeze``; ``predict_setup`` gives ``alexnet.predict`` a
model and a data spec for a weights file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import warnings
from importlib import resources

import numpy as np

from minidl import checkpoint
from minidl.atomic import atomic_write
from minidl.backend import asnumpy

from .configs import PAPER, get_config
from .model import build_model

__all__ = [
    "CAFFE_MEAN_BGR", "TORCHVISION_MEAN", "TORCHVISION_STD", "TORCHVISION_KEYS", "WeightsError",
    "UnsafePickleError", "imagenet_classes", "load_torchvision", "read_torchvision_state", "export_torchvision",
    "read_safetensors", "write_safetensors", "load_caffe_npy", "read_caffe_npy", "caffe_preprocess",
    "caffe_two_tower_config", "init_from", "freeze", "data_normalisation", "adapt_data_spec", "guess_format",
    "format_preset", "predict_setup",
]

# Caffe's per-channel mean in B, G, R order (0..255), as the TF ports subtract it.
CAFFE_MEAN_BGR = (104, 117, 124)
# torchvision's normalisation, on the 0..255 scale: (x/255 - m) / s == (x - 255 m) / (255 s).
TORCHVISION_MEAN = (123.675, 116.28, 103.53)
TORCHVISION_STD = (58.395, 57.12, 57.375)

# torchvision state-dict module -> minidl stage
TORCHVISION_KEYS = {
    "features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
    "features.10": "conv5", "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8",
}
CAFFE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
FORMATS = ("torchvision", "caffe", "run")
FORMAT_PRESETS = {"torchvision": "torchvision", "caffe": "bvlc"}


class WeightsError(ValueError):
    """A weights file that cannot be used: missing, unreadable, or not the expected network."""


class UnsafePickleError(WeightsError):
    """A pickle that asks for something other than numpy arrays and plain containers."""


def imagenet_classes() -> list:
    """ImageNet's 1000 class names, in torchvision's (= Caffe's synset) order."""
    text = resources.files("alexnet").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# safetensors (the safetensors package)


def write_safetensors(path, tensors, metadata=None):
    """Write ``{name: array}`` as a .safetensors file (atomically). Returns the path."""
    from safetensors import SafetensorError
    from safetensors.numpy import save

    arrays = {name: np.ascontiguousarray(asnumpy(a)) for name, a in tensors.items()}
    try:
        data = save(arrays, metadata=None if not metadata else {str(k): str(v) for k, v in metadata.items()})
    except (SafetensorError, TypeError, ValueError) as exc:
        raise WeightsError(f"write_safetensors: {exc}") from None
    return _atomic_write(path, lambda f: f.write(data))


def read_safetensors(path):
    """``{name: numpy array}`` of a .safetensors file.

    bfloat16 tensors, which NumPy has no type for, are read through PyTorch
    (when installed) and widened to float32.
    """
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    _check_exists(path)
    try:
        with safe_open(path, framework="numpy") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except SafetensorError as exc:
        raise WeightsError(f"{path}: not a safetensors file, or a damaged one ({exc})") from None
    except TypeError as exc:                          # NumPy has no bfloat16
        if "bfloat16" not in str(exc):
            raise
    if importlib.util.find_spec("torch") is None:
        raise WeightsError(f"{path}: holds bfloat16 tensors, which NumPy cannot hold; install torch to read them "
                           "(they are widened to float32), or save the weights as float32")
    with safe_open(path, framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    return {name: (t.float() if t.is_floating_point() else t).numpy() for name, t in tensors.items()}


def _atomic_write(path, write):
    """``write(f)`` into a file that appears at ``path`` only once complete (minidl.atomic)."""
    with atomic_write(path) as f:
        write(f)
    return os.fspath(path)


def _check_exists(path):
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such file")
    if os.path.isdir(path):
        raise WeightsError(f"{path} is a folder, not a weights file")
    if not os.path.isfile(path):
        raise WeightsError(f"{path} is not a regular file")


# ---------------------------------------------------------------------------
# torchvision


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
    import zipfile

    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):       # a .npy array under an .npz name
            raise ValueError("it holds a single array, not named arrays")
        with data:
            return {k: data[k] for k in data.files}
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


def _check_keys(state, expected, what, path):
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(repr(k) for k in missing)}")
        if unexpected:
            parts.append(f"unexpected key{'s' if len(unexpected) > 1 else ''} "
                         f"{', '.join(repr(k) for k in unexpected)}")
        raise WeightsError(f"{path}: not {what}: {'; '.join(parts)}")


def _torchvision_keys():
    return [f"{m}.{p}" for m in TORCHVISION_KEYS for p in ("weight", "bias")]


def _split_rows(arr, sizes):
    bounds = np.cumsum([0] + list(sizes))
    return [arr[bounds[t]:bounds[t + 1]] for t in range(len(sizes))]


def _adapt_in_channels(w, channels, name):
    """conv1 weights for a model with another number of input channels.

    3 -> 1: the kernels summed over colour (a grey image seen as R = G = B);
    1 -> 3: the kernel shared by the three channels, divided by 3.
    """
    if w.shape[1] == channels:
        return w
    if channels == 1:
        return w.sum(axis=1, keepdims=True)
    if w.shape[1] == 1:
        return np.repeat(w, channels, axis=1) / channels
    raise WeightsError(f"{name}: the weights read {w.shape[1]} input channels; the model reads {channels}")


def _full_to_model(full, model, path, skip=()):
    """``{stage: (W, b)}`` in one-tower minidl layout -> the model's state dict (split over towers)."""
    state = {}
    for st in model.stages:
        if st.name in skip:
            continue
        w, b = full[st.name]
        if st.name == "conv1":
            w = _adapt_in_channels(w, model.in_channels, f"{path}: {st.name}")
        sizes = [blk.main.weight.shape[0] for blk in st.blocks]
        ws, bs = _split_rows(w, sizes), _split_rows(b, sizes)
        for t, blk in enumerate(st.blocks):
            for kind, arr, p in (("weight", ws[t], blk.main.weight), ("bias", bs[t], blk.main.bias)):
                if tuple(arr.shape) != tuple(p.shape):
                    raise WeightsError(f"{path}: {st.name}.tower{t}.{kind} would get shape {tuple(arr.shape)}, "
                                       f"the model has {tuple(p.shape)}")
                if not np.isfinite(arr).all():
                    raise WeightsError(f"{path}: the {st.name} {kind}s hold NaN or infinite values; the file is "
                                       "damaged")
                state[f"{st.name}.tower{t}.{kind}"] = arr
    return state


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


# ---------------------------------------------------------------------------
# Caffe's bvlc_alexnet.npy, through a restricted unpickler


def _numpy_globals():
    """What a pickled numpy array may name: (module, name) -> object."""
    try:
        from numpy._core import multiarray as ma
        from numpy._core import numeric as nm
    except ImportError:              # numpy 1.x
        from numpy.core import multiarray as ma
        from numpy.core import numeric as nm
    allowed = {}
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = ma._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = ma.scalar
        if hasattr(nm, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = nm._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    import collections

    for mod in ("builtins", "__builtin__"):       # Python 3 and Python 2 names
        for name, obj in (("dict", dict), ("list", list), ("tuple", tuple), ("set", set),
                          ("frozenset", frozenset), ("bytearray", bytearray)):
            allowed[(mod, name)] = obj
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    import codecs

    allowed[("_codecs", "encode")] = codecs.encode      # bytes in protocol-2 pickles (a pure function)
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays, dtypes and plain containers; refuses every other global."""

    def __init__(self, file, path, **kwargs):
        super().__init__(file, **kwargs)
        self._path = path
        self._allowed = _numpy_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: the file tries to load '{module}.{name}' and was refused: a weights file "
                "needs only numpy arrays and plain containers, and nothing in it was run") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._path}: the pickle asks for a persistent object {pid!r} and was refused")


def read_caffe_npy(path):
    """``{layer: (W, b)}`` of a bvlc_alexnet.npy, read without running any code from the file.

    The .npy header is parsed with numpy's own readers; the pickled payload
    goes through an unpickler that only builds numpy arrays and plain
    containers (``encoding='latin1'``: the real file is a Python 2 pickle).
    """
    from numpy.lib import format as npy_format

    path = os.fspath(path)
    _check_exists(path)
    with open(path, "rb") as f:
        try:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(f)
            else:
                raise WeightsError(f"{path}: .npy format version {version} is not supported (1.0 or 2.0)")
        except WeightsError:
            raise
        except (ValueError, EOFError, OSError) as exc:
            raise WeightsError(f"{path}: not a .npy file ({exc})") from None
        if not dtype.hasobject:
            raise WeightsError(f"{path}: holds a plain {dtype} array of shape {shape}, not the pickled "
                               "{name: [weights, biases]} dict of bvlc_alexnet.npy")
        try:
            obj = _NumpyOnlyUnpickler(f, path, encoding="latin1").load()
        except UnsafePickleError:
            raise
        except Exception as exc:     # a damaged pickle raises many kinds
            raise WeightsError(f"{path}: the pickled payload is unreadable ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.size == 1:
        obj = obj.reshape(()).item()
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict name -> [weights, biases], got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        name = key.decode("latin1") if isinstance(key, bytes) else str(key)
        if isinstance(value, dict):            # some converters store {'weights': W, 'biases': b}
            value = [value.get("weights", value.get(b"weights")), value.get("biases", value.get(b"biases"))]
        if not isinstance(value, (list, tuple)) or len(value) != 2 or \
                not all(isinstance(v, np.ndarray) for v in value):
            raise WeightsError(f"{path}: '{name}' should be [weights, biases] (two arrays), got "
                               f"{type(value).__name__}")
        out[name] = (value[0], value[1])
    return out


def caffe_two_tower_config():
    """The paper's two-tower preset with Caffe's LRN (k=1), for ``load_caffe_npy(towers=2)``."""
    return PAPER.with_(name="paper-caffe-lrn", lrn=dict(size=5, alpha=1e-4, beta=0.75, k=1.0), init="caffe",
                       doc="The paper's two towers with bvlc_alexnet's LRN constants (k=1).")


def _caffe_full(weights, path, c5_channels=256, input_order="bgr"):
    """bvlc_alexnet.npy arrays -> ``{stage: (W, b)}`` in one-tower minidl layout, and the class count."""
    _check_keys(weights, CAFFE_LAYERS, "a bvlc_alexnet.npy weights dict", path)
    full = {}
    for name in CAFFE_LAYERS:
        w, b = (np.asarray(a) for a in weights[name])
        if w.dtype.kind != "f" or b.dtype.kind != "f":
            raise WeightsError(f"{path}: '{name}' holds {w.dtype}/{b.dtype} arrays, expected floating point")
        if name.startswith("conv"):
            if w.ndim != 4 or b.shape != (w.shape[3],):
                raise WeightsError(f"{path}: '{name}' weights {tuple(w.shape)} / biases {tuple(b.shape)} are not "
                                   "a conv layer in (h, w, in, out) order with one bias per output")
            w = w.transpose(3, 2, 0, 1)                       # -> (out, in, h, w)
            if name == "conv1" and input_order == "rgb":
                w = w[:, ::-1]                                # BGR kernels read RGB images
        else:
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise WeightsError(f"{path}: '{name}' weights {tuple(w.shape)} / biases {tuple(b.shape)} are not "
                                   "an fc layer (in, out) with one bias per output")
            if name == "fc6":
                rows = w.shape[0]
                side = int(round((rows / c5_channels) ** 0.5))
                if side * side * c5_channels != rows:
                    raise WeightsError(f"{path}: 'fc6' has {rows} input rows, not {c5_channels} x s x s")
                # rows in (h, w, c) order -> columns in minidl's (c, h, w) flatten order
                w = w.reshape(side, side, c5_channels, -1).transpose(2, 0, 1, 3).reshape(rows, -1)
            w = w.T                                            # -> (out, in)
        full[name] = (np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32))
    return full, int(full["fc8"][0].shape[0])


def load_caffe_npy(path, devices=None, towers=1, input_order="bgr"):
    """bvlc_alexnet.npy (the TF ports' file) as a minidl AlexNet, in eval mode.

    ``towers=1``: the ``bvlc`` preset, Caffe's net exactly (one device,
    group=2 convs, LRN across the group boundary). ``towers=2``: the
    paper's two towers with LRN k=1 (``caffe_two_tower_config``): group g
    -> tower g; the LRN then does not cross towers at the 2x2 channels
    around each boundary, so outputs differ slightly from Caffe's.

    Input: 227x227, BGR minus ``CAFFE_MEAN_BGR`` (``caffe_preprocess``).
    ``input_order='rgb'`` reverses conv1's input channels so that the model
    reads RGB (minus the same means, in RGB order) instead.
    """
    path = os.fspath(path)
    if towers not in (1, 2):
        raise ValueError(f"load_caffe_npy: towers must be 1 or 2, got {towers}")
    if input_order not in ("bgr", "rgb"):
        raise ValueError(f"load_caffe_npy: input_order must be 'bgr' or 'rgb', got {input_order!r}")
    full, num_classes = _caffe_full(read_caffe_npy(path), path, input_order=input_order)
    cfg = get_config("bvlc") if towers == 1 else caffe_two_tower_config()
    model = build_model(cfg, num_classes=num_classes, devices=devices, input_order=input_order)
    model.load_state_dict(_full_to_model(full, model, path))
    return model.eval()


def caffe_preprocess(images, size=227):
    """RGB uint8 images -> Caffe's input: float32 BGR minus ``CAFFE_MEAN_BGR``, centre ``size`` crop.

    ``images``: (N, 3, H, W) (the project's layout), (N, H, W, 3), or one
    (H, W, 3) image; H, W >= size (resize first, e.g. with
    ``minidl.data.resize_center_crop(img, 256)``). Returns (N, 3, size, size).
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[3]):
        raise ValueError(f"caffe_preprocess: expected RGB images (N, 3, H, W) or (N, H, W, 3), got {x.shape}")
    if x.shape[1] != 3:
        x = x.transpose(0, 3, 1, 2)
    h, w = x.shape[2:]
    if h < size or w < size:
        raise ValueError(f"caffe_preprocess: images {h}x{w} are smaller than the {size}x{size} crop; resize "
                         "them first (e.g. resize_center_crop(image, 256))")
    top, left = (h - size) // 2, (w - size) // 2
    x = x[:, ::-1, top:top + size, left:left + size].astype(np.float32)
    return np.ascontiguousarray(x - np.asarray(CAFFE_MEAN_BGR, np.float32)[:, None, None])


# ---------------------------------------------------------------------------
# fine-tuning and prediction helpers


def guess_format(path):
    """'torchvision', 'caffe' or 'run' from a weights file's name (and, for .npz, its contents)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        _checkpoint_path(path)                 # a run folder, or a clear error
        return "run"
    if ext == ".npz" and checkpoint.is_checkpoint(path):
        return "run"
    if ext == ".npy":
        return "caffe"
    if ext in (".pth", ".pt", ".bin", ".safetensors", ".npz"):
        return "torchvision"
    raise WeightsError(f"{path}: cannot tell the format from the name; pass --format torchvision|caffe|run")


def _checkpoint_path(path):
    if os.path.isdir(path):
        for name in ("best", "last"):
            p = os.path.join(path, "checkpoints", f"{name}.npz")
            if os.path.exists(p):
                return p
        raise WeightsError(f"{path} is a folder without checkpoints/best.npz or last.npz: neither a weights file "
                           "nor a training run")
    return path


def format_preset(fmt, path=None):
    """The preset a format's weights load into (``run``: the checkpoint's own preset).

    With ``path``, also checks that the file exists.
    """
    if path is not None and not os.path.isdir(path):
        _check_exists(os.fspath(path))
    if fmt in FORMAT_PRESETS:
        return FORMAT_PRESETS[fmt]
    if fmt != "run":
        raise WeightsError(f"unknown weights format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ckpt = _checkpoint_path(os.fspath(path))
    _check_exists(ckpt)
    try:
        return checkpoint.load(ckpt, arrays=False)["run"]["preset"]
    except (checkpoint.CheckpointError, KeyError, TypeError):
        raise WeightsError(f"{ckpt}: not a minidl training checkpoint (no run/preset inside)") from None


def _source_full(path, fmt, model):
    """``({stage: (W, b)} one-tower layout, classes)`` of a weights file, for ``model``'s preset."""
    if fmt == "torchvision":
        return _torchvision_full(read_torchvision_state(path), path)
    if fmt == "caffe":
        return _caffe_full(read_caffe_npy(path), path, input_order="rgb")
    if fmt != "run":
        raise WeightsError(f"unknown weights format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ckpt = _checkpoint_path(path)
    try:
        state = checkpoint.load(ckpt)["model"]
    except (checkpoint.CheckpointError, KeyError) as exc:
        raise WeightsError(f"{ckpt}: not a minidl training checkpoint ({exc})") from None
    expected = [f"{s}.tower{t}.{k}" for s in model.stage_names for t in range(len(model.devices))
                for k in ("weight", "bias")]
    _check_keys(state, expected, f"a checkpoint of preset {model.config.name!r}", ckpt)
    towers = len(model.devices)
    for name, p in model.named_parameters():
        value = state[name]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise WeightsError(f"{ckpt}: {name} is not an array of floats; the checkpoint is damaged")
        if name.split(".")[0] not in ("conv1", "fc8") and tuple(value.shape) != tuple(p.shape):
            raise WeightsError(f"{ckpt}: {name} has shape {tuple(value.shape)} but the model's is {tuple(p.shape)}; "
                               "the checkpoint is damaged or of another preset")
    full = {s: tuple(np.concatenate([state[f"{s}.tower{t}.{k}"] for t in range(towers)])
                     for k in ("weight", "bias")) for s in model.stage_names}
    # a two-tower model's tower-t input slice of an 'own' conv is tower t's part: concatenating the towers'
    # weights along the output axis keeps every tower's own rows, which _full_to_model splits back
    return full, int(full["fc8"][1].shape[0])


def init_from(model, path, fmt):
    """Copy a weights file into ``model`` for fine-tuning.

    The fc8 head is kept when the file has as many classes as the model,
    else left as the model's freshly initialised head. conv1 is adapted to
    the model's input channels (summed over colour for grey images).
    Caffe weights are converted to read RGB. Returns a dict: ``classes``
    (the file's), ``head`` ('loaded' or 'new'), ``loaded`` (parameter names).
    """
    path = os.fspath(path)
    if model.input_order != "rgb":
        raise ValueError("init_from: the weights are loaded for RGB input, and this model expects BGR")
    full, classes = _source_full(path, fmt, model)
    skip = () if classes == model.num_classes else ("fc8",)
    state = _full_to_model(full, model, path, skip=skip)
    model.load_state_dict(state, strict=False)
    return {"classes": classes, "head": "new" if skip else "loaded", "loaded": sorted(state)}


def data_normalisation(fmt, path, in_channels):
    """The per-channel ``(mean, std)`` (0..255 scale; std may be None) the weights were trained with.

    torchvision: its ImageNet mean/std (grey data: None, the data's own
    standardisation is what torchvision's is, per channel); caffe: its mean,
    no scaling (read as RGB, see ``init_from``); run: the source run's
    (from ``RUN/config.json`` next to ``RUN/checkpoints/``), None if unknown
    or if that run subtracted a mean image.
    """
    if fmt == "torchvision":
        return (list(TORCHVISION_MEAN), list(TORCHVISION_STD)) if in_channels == 3 else None
    if fmt == "caffe":
        rgb = [float(v) for v in CAFFE_MEAN_BGR[::-1]]
        return (rgb, None) if in_channels == 3 else ([float(np.mean(rgb))] * in_channels, None)
    ckpt = os.path.abspath(_checkpoint_path(os.fspath(path)))
    cfg_path = os.path.join(os.path.dirname(os.path.dirname(ckpt)), "config.json")
    try:
        with open(cfg_path) as f:
            data = json.load(f)["data"]
    except (OSError, ValueError, KeyError):
        return None
    if data.get("mean_image") or data.get("mean") is None:
        return None

    def fit(values):
        if values is None:
            return None
        values = [float(v) for v in values]
        if len(values) == in_channels:
            return values
        if len(values) == 1:
            return values * in_channels
        return [float(np.mean(values))] * in_channels if in_channels == 1 else None

    mean, std = fit(data["mean"]), fit(data.get("std"))
    return None if mean is None or (data.get("std") is not None and std is None) else (mean, std)


def adapt_data_spec(spec, fmt, path):
    """Make a run's DataSpec feed the weights what they were trained on (see ``data_normalisation``).

    Changes ``spec.mean``/``spec.std`` in place (a dataset's mean image is
    kept; only its std is set). Returns True if anything changed.
    """
    norm = data_normalisation(fmt, path, spec.in_channels)
    if norm is None:
        return False
    mean, std = norm
    before = (spec.mean, spec.std)
    if spec.mean_image:
        spec.std = std
    else:
        spec.mean, spec.std = mean, std
    return (spec.mean, spec.std) != before


def freeze(model, train_layers):
    """Freeze every stage not in ``train_layers`` (names or a comma-separated string).

    Sets ``requires_grad`` on every parameter (False below/outside the
    trained stages); ``model.backward`` then stops below the lowest trained
    stage and SGD skips the frozen parameters. Returns the trained stages.
    """
    if isinstance(train_layers, str):
        train_layers = [s.strip() for s in train_layers.split(",") if s.strip()]
    train_layers = list(train_layers)
    unknown = [s for s in train_layers if s not in model.stage_names]
    if unknown or not train_layers:
        raise WeightsError(f"--train-layers: unknown stage(s) {', '.join(unknown) or '(none given)'}; "
                           f"the stages are {','.join(model.stage_names)}")
    for st in model.stages:
        for p in st.parameters():
            p.requires_grad = st.name in train_layers
    return [s for s in model.stage_names if s in train_layers]


def predict_setup(path, fmt=None, devices=None):
    """(model in eval mode, DataSpec) for classifying photos with a weights file (alexnet.predict).

    The DataSpec describes the weights' own preprocessing: 256-pixel images,
    centre crop, torchvision's mean/std or Caffe's per-channel mean (the
    Caffe model is loaded to read RGB).
    """
    from .dataspec import DataSpec

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
