"""The array-module shim: one code path for NumPy (CPU) and CuPy (GPU).

Layers never ask which library they run on. They take it from their input::

    xp = get_array_module(x)      # numpy or cupy
    y = xp.maximum(x, 0)

CuPy is optional and imported lazily, the first time a CUDA device is asked
for, so a CPU-only install never needs it.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = [
    "Device",
    "DeviceUnavailableError",
    "as_device",
    "get_array_module",
    "get_device",
    "to_device",
    "asnumpy",
    "cupy_available",
    "is_cupy_array",
]


class DeviceUnavailableError(RuntimeError):
    """A CUDA device was asked for but cannot be used here."""


_CUPY = None


def _import_cupy():
    """Import CuPy once, or raise one error that says how to get it."""
    global _CUPY
    if _CUPY is None:
        try:
            import cupy  # noqa: F401  (optional dependency)
        except ImportError as exc:
            raise DeviceUnavailableError(
                "a CUDA device was requested but CuPy is not installed "
                f"({exc}). Install the CuPy of your driver's CUDA version (nvidia-smi's "
                "'CUDA Version'): `pip install -e .[cuda13]` (cupy-cuda13x) for CUDA 13, "
                "`pip install -e .[cuda12]` (cupy-cuda12x) for CUDA 12; or run on the CPU "
                "with device 'cpu' / --backend numpy."
            ) from None
        _CUPY = cupy
    return _CUPY


def cupy_available() -> bool:
    """True if CuPy imports and at least one CUDA device answers."""
    try:
        cp = _import_cupy()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "no"
        return False


def is_cupy_array(x) -> bool:
    # Checked by module name so that NumPy-only code never imports CuPy.
    return type(x).__module__.split(".")[0] == "cupy"


class Device:
    """Where arrays live: ``Device('cpu')`` or ``Device('cuda', i)``.

    Also parsed from strings: ``Device('cpu')``, ``Device('cuda:1')``,
    ``Device('cuda')`` (GPU 0). A device is a context manager; on CUDA it
    makes GPU ``i`` current (``cupy.cuda.Device(i)``) for the block, so arrays
    created inside land there::

        with Device('cuda:1') as dev:
            w = dev.xp.zeros((3, 3), dtype='float32')
    """

    __slots__ = ("type", "index", "_cuda_ctx")  # _cuda_ctx: a stack, so `with d:` may nest

    def __init__(self, type="cpu", index=None):
        if isinstance(type, Device):
            type, index = type.type, type.index if index is None else index
        if not isinstance(type, str):
            raise ValueError(f"Device: expected 'cpu', 'cuda' or 'cuda:N', got {type!r}")
        spec = type.strip().lower()
        if ":" in spec:
            if index is not None:
                raise ValueError(f"Device: index given twice in {type!r} and index={index!r}")
            spec, _, idx = spec.partition(":")
            if not idx.isdigit():
                raise ValueError(f"Device: bad GPU index in {type!r}; expected e.g. 'cuda:0'")
            index = int(idx)
        if spec in ("gpu", "cupy"):
            spec = "cuda"
        if spec in ("numpy",):
            spec = "cpu"
        if spec not in ("cpu", "cuda"):
            raise ValueError(f"Device: unknown device {type!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        if spec == "cpu":
            if index not in (None, 0):
                raise ValueError(f"Device: the CPU has no index, got 'cpu:{index}'")
            index = None
        else:
            index = 0 if index is None else int(index)
            if index < 0:
                raise ValueError(f"Device: GPU index must be >= 0, got {index}")
        self.type = spec
        self.index = index
        self._cuda_ctx = []

    # -- identity -----------------------------------------------------------
    def __repr__(self):
        return f"Device('{self}')"

    def __str__(self):
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except ValueError:
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash(str(self))  # equal to the hash of 'cpu' / 'cuda:N', as __eq__ accepts strings

    @property
    def is_cuda(self) -> bool:
        return self.type == "cuda"

    # -- the array module ---------------------------------------------------
    @property
    def xp(self):
        """``numpy`` for the CPU, ``cupy`` for a GPU (checked to exist)."""
        if self.type == "cpu":
            return np
        self.check()
        return _CUPY

    def check(self):
        """Raise DeviceUnavailableError unless this device can be used."""
        if self.type == "cpu":
            return self
        cp = _import_cupy()
        try:
            count = cp.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError: no driver, driver too old
            raise DeviceUnavailableError(
                f"{self}: CUDA is not usable here ({exc}). Check that an NVIDIA "
                "driver new enough for your CuPy build is installed (nvidia-smi), "
                "or run on the CPU with --backend numpy."
            ) from None
        if self.index >= count:
            have = ", ".join(f"cuda:{i}" for i in range(count)) or "none"
            raise DeviceUnavailableError(
                f"{self}: no such GPU; this machine has {count} "
                f"(available: {have}). Pick one of those, e.g. --gpus 0,0 "
                "to put both towers on the first GPU."
            )
        return self

    def __enter__(self):
        if self.type == "cuda":
            self.check()
            ctx = _CUPY.cuda.Device(self.index)
            ctx.__enter__()
            self._cuda_ctx.append(ctx)
        return self

    def __exit__(self, *exc):
        if self._cuda_ctx:
            self._cuda_ctx.pop().__exit__(*exc)
        return False


def as_device(device) -> Device:
    """Accept a Device, a string such as 'cuda:1', or None (meaning the CPU)."""
    if device is None:
        return Device("cpu")
    return device if isinstance(device, Device) else Device(device)


def get_array_module(*arrays):
    """``numpy`` or ``cupy``, whichever the arrays belong to (NumPy if unsure)."""
    for x in arrays:
        if is_cupy_array(x):
            return sys.modules["cupy"]
    return np


def get_device(x) -> Device:
    """The device an array lives on."""
    if is_cupy_array(x):
        return Device("cuda", x.device.id)
    return Device("cpu")


def to_device(x, device):
    """Copy ``x`` to ``device`` (no copy if it is already there).

    This is the one way arrays move between devices. GPU-to-GPU copies go
    peer to peer where the hardware allows; CuPy orders them after the source
    device's pending work on its current stream. CuPy copies only contiguous
    arrays between devices, so another layout (a slice of columns, a
    transposed activation) is first made contiguous on its own device.
    """
    device = as_device(device)
    if device.type == "cpu":
        return asnumpy(x)
    cp = device.check().xp
    if is_cupy_array(x):
        if x.device.id == device.index:
            return x
        if not x.flags.c_contiguous:
            with cp.cuda.Device(x.device.id):
                x = cp.ascontiguousarray(x)
    with cp.cuda.Device(device.index):
        return cp.asarray(x)


def asnumpy(x):
    """A NumPy array with the contents of ``x`` (synchronises if on a GPU)."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)
