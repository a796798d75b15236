"""Caffe's bvlc_alexnet.npy (the file the TensorFlow ports load), read without running code from it.

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
"""

from __future__ import annotations

import math
import os
import pickle

import numpy as np

from ..configs import PAPER, get_config
from ..model import build_model
from .state import WeightsError, _check_exists, _check_keys, _full_to_model

# Caffe's per-channel mean in B, G, R order (0..255), as the TF ports subtract it.
CAFFE_MEAN_BGR = (104, 117, 124)
CAFFE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


class UnsafePickleError(WeightsError):
    """A pickle that asks for something other than numpy arrays and plain containers."""


class _CheckedArray(np.ndarray):
    """The arrays the pickle builds: ``__setstate__`` checks the state's claims before numpy acts on them.

    numpy allocates the shape a state claims and copies the data in; with
    too little data for an object array it crashes outright. Here the data
    must be exactly what the shape and dtype say, and no larger than the
    file (``_limit``, set by ``_NumpyOnlyUnpickler``).
    """

    _limit = 0
    _path = ""

    def __setstate__(self, state):
        # numpy's state: (version, shape, dtype, is_fortran, data), or without the version
        parts = state[-4:] if isinstance(state, tuple) and len(state) in (4, 5) else (None,) * 4
        shape, dtype, _, data = parts
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
                and isinstance(dtype, np.dtype)):
            raise UnsafePickleError(f"{self._path}: the pickle gives an array a malformed state; refused")
        count = math.prod(shape)
        if dtype.hasobject:
            given, claimed = (len(data) if isinstance(data, list) else -1), count
            fits = dtype == object and given == count and count <= self._limit
        else:
            given = len(data) if isinstance(data, (bytes, str)) else -1
            claimed = count * dtype.itemsize
            fits = given == claimed <= self._limit
        if not fits:
            raise UnsafePickleError(f"{self._path}: the pickle claims a {dtype} array of shape {shape} "
                                    f"({claimed:,} {'items' if dtype.hasobject else 'bytes'}) but holds "
                                    f"{max(given, 0):,} (the file has {self._limit:,} bytes); refused before "
                                    "anything was allocated")
        super().__setstate__(state)


def _numpy_globals(path, limit):
    """What a pickled numpy array may name: (module, name) -> object.

    Only what numpy's own pickles of arrays use (``_reconstruct``, ``ndarray``,
    ``dtype``, ``scalar``, ``_codecs.encode`` for bytes in protocol 2), each
    bounded: nothing here allocates more than the file could fill.
    ``bytearray(n)`` is not among them (it allocates n zero bytes).
    """
    try:
        from numpy._core import multiarray as ma
        from numpy._core import numeric as nm
    except ImportError:              # numpy 1.x
        from numpy.core import multiarray as ma
        from numpy.core import numeric as nm

    def ndarray(*args):              # only ever passed to _reconstruct; called, it would allocate any shape
        raise UnsafePickleError(f"{path}: the pickle calls numpy.ndarray{args!r:.60} directly and was refused")

    def reconstruct(subtype, shape, dtype):
        if subtype is not ndarray or not (isinstance(shape, tuple) and len(shape) == 1 and shape[0] == 0):
            raise UnsafePickleError(f"{path}: the pickle asks numpy's _reconstruct for {shape!r:.60}, not an empty "
                                    "array to fill; refused")
        arr = ma._reconstruct(_CheckedArray, shape, dtype)
        arr._limit, arr._path = limit, path
        return arr

    def scalar(dtype, *obj):
        if not isinstance(dtype, np.dtype) or dtype.itemsize > limit:
            raise UnsafePickleError(f"{path}: the pickle asks for a scalar of {dtype!r:.60}; refused")
        return ma.scalar(dtype, *obj)

    def encode(obj, encoding="utf-8", errors="strict"):
        if not isinstance(obj, str) or encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
            raise UnsafePickleError(f"{path}: the pickle asks _codecs.encode for {encoding!r:.30}; only the latin1 "
                                    "bytes of protocol-2 pickles are read")
        return obj.encode("latin1", errors)

    allowed = {}
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = scalar
        if hasattr(nm, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = nm._frombuffer   # a view of bytes already read
    allowed[("numpy", "ndarray")] = ndarray
    allowed[("numpy", "dtype")] = np.dtype
    import collections

    for mod in ("builtins", "__builtin__"):       # Python 3 and Python 2 names
        for name, obj in (("dict", dict), ("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset)):
            allowed[(mod, name)] = obj
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = encode
    return allowed


class _Bounded:
    """A file whose reads never ask for more than remains: a pickle opcode that claims gigabytes of bytes
    gets what the file holds and fails as truncated, instead of having the buffer allocated first."""

    def __init__(self, f, end):
        self._f, self._end = f, end

    def _left(self, n):
        left = max(0, self._end - self._f.tell())
        return left if n is None or n < 0 else min(n, left)

    def read(self, n=-1):
        return self._f.read(self._left(n))

    def readinto(self, buf):
        with memoryview(buf) as view:
            return self._f.readinto(view[:self._left(len(view))])

    def readline(self, n=-1):
        return self._f.readline(self._left(n))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays, dtypes and plain containers; refuses every other global."""

    def __init__(self, file, path, **kwargs):
        end = os.fstat(file.fileno()).st_size
        super().__init__(_Bounded(file, end), **kwargs)
        self._path, self._limit = path, end
        self._allowed = _numpy_globals(path, end)

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
        out[name] = (value[0].view(np.ndarray), value[1].view(np.ndarray))   # plain arrays again
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
