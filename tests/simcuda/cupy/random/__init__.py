"""cupy.random: the Generator API and the legacy RandomState, drawing with
NumPy's generators and allocating on the current device.

The numbers differ from CuPy's (cuRAND) for the same seed; the API, the
dtypes allowed and the device rules are CuPy's. CuPy's Generator has no
``normal`` method (cupy/random/_generator_api.pyx): neither has this one.
"""

import os

import numpy as np

from .. import _core
from ..cuda import runtime


class Generator:
    """cupy/random/_generator_api.pyx; its state lives on the device current
    when it was created (_bit_generator.pyx _check_device)."""

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)
        self._device = runtime.getDevice()

    def _check_device(self):
        if runtime.getDevice() != self._device:
            raise RuntimeError("This Generator state is allocated in a different device")

    def _into(self, y, dtype, size, out):
        """``y`` drawn on the host, as the result (written to ``out`` if given)."""
        if out is None:
            return _core.result(y)
        dtype = np.dtype(dtype)
        if out.dtype.char != dtype.char:
            raise TypeError(f"Supplied output array has the wrong type. Expected {dtype.name}, "
                            f"got {out.dtype.name}")
        if not (out.flags.c_contiguous or out.flags.f_contiguous):
            raise ValueError("Supplied output array is not contiguous, writable or aligned.")
        if size is not None and tuple(np.atleast_1d(size)) != out.shape:
            raise ValueError("size must match out.shape when used together")
        _core.elementwise_copy(_core.result(y), out)
        return out

    def random(self, size=None, dtype=np.float64, out=None):
        self._check_device()
        y = self._rng.random(size, np.float64 if np.dtype(dtype).char == "d" else np.float32)
        return self._into(y, dtype, size, out).astype(dtype, copy=False)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        self._check_device()
        dtype = np.dtype(dtype)
        if dtype.char not in "fd":
            raise TypeError(f"Unsupported dtype {dtype.name} for standard_normal")
        return self._into(self._rng.standard_normal(size, dtype), dtype, size, out)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        self._check_device()
        low, high = _core.array(low, copy=None), _core.array(high, copy=None)
        if size is None:
            size = np.broadcast_shapes(low.shape, high.shape)
        y = self.random(size, dtype)
        return (low + (high - low) * y).astype(dtype, copy=False)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        self._check_device()
        lo, hi = (0, int(low)) if high is None else (int(low), int(high))
        if not endpoint:
            hi -= 1
        if lo > hi:
            raise ValueError("low >= high")
        return _core.result(self._rng.integers(lo, hi, size, dtype=dtype, endpoint=True))


def default_rng(seed=None):
    return seed if isinstance(seed, Generator) else Generator(seed)


def _floating(dtype):
    dtype = np.dtype(dtype)
    if dtype.char not in "fd":
        raise TypeError("cupy.random only supports float32 and float64")
    return dtype


class RandomState:
    """The legacy API (cupy/random/_generator.py)."""

    def __init__(self, seed=None):
        self._rs = np.random.RandomState(seed)

    def seed(self, seed=None):
        self._rs.seed(seed)

    def random_sample(self, size=None, dtype=float):
        return _core.result(self._rs.random_sample(size).astype(_floating(dtype)))

    def rand(self, *size, dtype=float):
        return self.random_sample(size, dtype)

    def randn(self, *size, dtype=float):
        return self.normal(size=size, dtype=dtype)

    def standard_normal(self, size=None, dtype=float):
        return self.normal(size=size, dtype=dtype)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return _core.result(self._rs.normal(loc, scale, size).astype(_floating(dtype)))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return _core.result(self._rs.uniform(low, high, size).astype(_floating(dtype)))

    def randint(self, low, high=None, size=None, dtype=int):
        return _core.result(self._rs.randint(low, high, size, dtype=dtype))


# "resets the state ... for the current device. Be careful that generators
# for other devices are not affected." (cupy/random/_generator.py seed)
_states = {}


def get_random_state():
    device = runtime.getDevice()
    if device not in _states:
        seed = os.environ.get("CUPY_SEED")
        _states[device] = RandomState(None if seed is None else int(seed))
    return _states[device]


def seed(seed=None):
    get_random_state().seed(seed)


def rand(*size, dtype=float):
    return get_random_state().rand(*size, dtype=dtype)


def randn(*size, dtype=float):
    return get_random_state().randn(*size, dtype=dtype)


def random_sample(size=None, dtype=float):
    return get_random_state().random_sample(size, dtype)


random = random_sample


def normal(loc=0.0, scale=1.0, size=None, dtype=float):
    return get_random_state().normal(loc, scale, size, dtype)


def uniform(low=0.0, high=1.0, size=None, dtype=float):
    return get_random_state().uniform(low, high, size, dtype)


def randint(low, high=None, size=None, dtype=int):
    return get_random_state().randint(low, high, size, dtype)


def __getattr__(name):
    raise AttributeError(f"cupy.random.{name} is not simulated by tests/simcuda "
                         "(add it there if the project needs it)")
