""".safetensors files read and written through the safetensors package."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from minidl.backend import asnumpy

from .state import WeightsError, _atomic_write, _check_exists


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
