"""A NumPy-backed stand-in for CuPy: simulated CUDA devices for the tests.

Importable as ``cupy`` only when tests/simcuda is on sys.path (see
tests/simcuda/README.md). It follows CuPy v14 where CuPy is strict (devices,
NumPy operands, host synchronisations, kernel typing); anything it does not
provide raises AttributeError rather than falling back to NumPy.
"""

from numpy import (  # noqa: F401  (the dtypes and constants CuPy re-exports)
    bool_, byte, complex64, complex128, complexfloating, double, dtype, e, finfo, float16,
    float32, float64, floating, generic, half, iinfo, inexact, inf, int8, int16, int32,
    int64, int_, intc, integer, intp, issubdtype, longlong, nan, newaxis, number, pi,
    promote_types, short, signedinteger, single, ubyte, uint, uint8, uint16, uint32, uint64,
    uintc, uintp, ulonglong, unsignedinteger, ushort)

from . import _machine, _util, cuda, lib, random  # noqa: F401

if _machine.CONTROL:
    from . import _sim  # noqa: F401  (the control API; hidden with SIMCUDA_CONTROL=0)
from ._core import array, full, ndarray, ufunc, ufuncs
from ._kernel import ElementwiseKernel, RawKernel  # noqa: F401
from ._routines import (  # noqa: F401
    arange, around, asarray, ascontiguousarray, asnumpy, clip, concatenate, dot, empty, empty_like,
    full_like, get_array_module, matmul, method_function, nonzero, ones, ones_like, pad,
    result_type, stack, where, zeros, zeros_like)

__version__ = "14.2.0+simcuda"

globals().update(ufuncs)
round = around
sum, prod, mean, var, std, max, min, argmax, argmin, any, all, cumsum = (
    method_function(name) for name in ("sum", "prod", "mean", "var", "std", "max", "min",
                                       "argmax", "argmin", "any", "all", "cumsum"))
amax, amin = max, min
del method_function


def is_available():
    try:
        return cuda.runtime.getDeviceCount() > 0
    except cuda.runtime.CUDARuntimeError:
        return False


def get_default_memory_pool():
    return cuda.memory.default_pool


def __getattr__(name):
    if name == "_sim":
        raise AttributeError("module 'cupy' has no attribute '_sim' (the simulator's control API is "
                             "hidden: SIMCUDA_CONTROL=0)")
    raise AttributeError(f"cupy.{name} is not simulated by tests/simcuda: the stand-in provides "
                         "only what the project uses (add it there, following CuPy)")
