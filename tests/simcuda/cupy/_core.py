"""cupy.ndarray on a NumPy buffer, and the rules CuPy applies around it.

An array is a NumPy array ``_a`` holding its elements (a view's ``_a`` is a
NumPy view of its base's, so writes through views are real), the id
``_dev`` of the device it was allocated on, and ``_base``, the array owning
the memory (None if it owns it). Citations are to CuPy v14's sources
(cupy/_core/*.pyx).
"""

import contextlib
import functools
import math
import operator
import os
import sys
import warnings
import weakref

import numpy as np

from . import _machine, _util
from .cuda import Device, MemoryPointer, memory, runtime

_PYTHON_SCALARS = (bool, int, float, complex)
_PKG = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel():
    """The stack level of the first frame outside this package: CuPy warns
    from Cython, so its warnings point at the user's line."""
    frame, level = sys._getframe(2), 2      # 1: our caller, who calls warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(_PKG):
        frame, level = frame.f_back, level + 1
    return level


def silent(func):
    """``func`` computing as a GPU does: overflow, division by zero and invalid
    operations give inf and nan without NumPy's RuntimeWarnings."""
    @functools.wraps(func)
    def computed(*args, **kwargs):
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)
    return computed


@contextlib.contextmanager
def _empty_slices_silent():
    """NumPy warns of the mean or variance of an empty slice; CuPy's is nan, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# -- the device and type rules every kernel applies ---------------------------

def check_peer(arr, what="a kernel", write=False):
    """_check_peer_access (_kernel.pyx:128), run on every array a kernel
    touches: kernels run on the current device. Then the stream order: the
    kernel, issued on the current device, must be ordered after the last
    write to the array's memory (cupy._machine, "Stream ordering")."""
    cur = runtime.getDevice()
    if arr._dev != cur:
        msg = (f"The device where the array resides ({arr._dev}) is "
               f"different from the current device ({cur}).")
        if not runtime.deviceCanAccessPeer(cur, arr._dev):
            raise ValueError(f"{msg} Peer access is unavailable between these devices.")
        warnings.warn(f"{msg} Peer access has been activated automatically.",
                      _util.PerformanceWarning, stacklevel=_user_stacklevel())
    _machine.access(arr, what, write)


def check_same_device(arr, what, write=False):
    """matmul/dot (cuBLAS) and RawKernel do not check in CuPy: another device's
    memory is read with undefined results. The simulator always refuses."""
    cur = runtime.getDevice()
    if arr._dev != cur:
        raise ValueError(
            f"The device where the array resides ({arr._dev}) is different from the "
            f"current device ({cur}). CuPy's {what} does not check this and reads the "
            "other device's memory (undefined behaviour on a GPU): the simulator refuses it.")
    _machine.access(arr, what, write)


def operand(x, what="a kernel"):
    """A kernel argument as NumPy computes with it (_kernel.pyx _preprocess_arg):
    a cupy array (device-checked), or a Python or NumPy scalar. Anything else,
    a NumPy array in particular, is CuPy's TypeError (_scalar.pyx:344)."""
    if isinstance(x, ndarray):
        check_peer(x, what)
        return x._a
    if type(x) in _PYTHON_SCALARS or isinstance(x, np.generic):
        return x
    raise TypeError(f"Unsupported type {type(x)}")


def out_operand(out, what="a kernel"):
    """A given output: a kernel argument that must be a cupy array."""
    if not isinstance(out, ndarray):
        operand(out)
        raise TypeError("Output arguments type must be cupy.ndarray")
    check_peer(out, what, write=True)
    return out._a


def typename(x):
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


def check_ndarray_arg(name, x):
    """A Cython argument typed ``_ndarray_base``."""
    if not isinstance(x, ndarray):
        raise TypeError(f"Argument '{name}' has incorrect type (expected "
                        f"cupy._core.core._ndarray_base, got {typename(x)})")


def get_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind not in "biufc":      # _dtype.pyx: no object, string, datetime, void
        raise ValueError(f"Unsupported dtype {dtype}")
    return dtype


# -- allocation: always on the current device (memory.pyx MemoryPool.malloc) --

def _wrap(a, dev, base):
    x = object.__new__(ndarray)
    x._a, x._dev, x._base, x._w = a, dev, base, None
    return x


def _own(a, dev, charged):
    x = _wrap(a, dev, None)
    weakref.finalize(x, memory.default_pool._release, dev, charged)
    return x


def new(a):
    """The NumPy array ``a``, just computed by the current device, as an array allocated there."""
    dev = runtime.getDevice()
    x = _own(a, dev, memory.default_pool._charge(dev, a.nbytes))
    _machine.access(x, "", write=True)
    return x


def memset(x, what):
    """cudaMemsetAsync(0) on the current device's stream."""
    _machine.access(x, what, write=True)
    x._a[...] = 0


def result(r):
    """A NumPy result as a kernel output: C-contiguous on the current device."""
    r = np.asarray(r)
    return new(r if r.flags.c_contiguous else r.copy(order="C"))


def _shape(shape):
    try:
        shape = (operator.index(shape),)
    except TypeError:
        shape = tuple(operator.index(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError("negative dimensions are not allowed")
    return shape


def empty(shape, dtype=float, order="C"):
    return ndarray(shape, dtype, order=order)


def _empty_strided(shape, dtype, strides):
    """An owning array with the given (dense, permuted) strides."""
    out = empty(math.prod(shape), dtype)
    out._a = np.lib.stride_tricks.as_strided(out._a, shape, strides)
    return out


def k_strides(a, dtype, shape=None):
    """internal.pyx _get_strides_for_order_K: dense strides in ``a``'s axis order."""
    strides = [0] * a.ndim
    stride = dtype.itemsize
    for _, i in sorted((abs(s), -i) for i, s in enumerate(a.strides)):
        strides[-i] = stride
        stride *= shape[-i] if shape else a.shape[-i]
    return tuple(strides)


def update_order(c_contiguous, f_contiguous, order):
    """internal.pyx _update_order_char."""
    if order == "A":
        return "F" if f_contiguous and not c_contiguous else "C"
    if order == "K" and (c_contiguous or f_contiguous):
        return "C" if c_contiguous else "F"
    return order


@silent
def elementwise_copy(src, dst):
    """_core.elementwise_copy: a ufunc (casting 'unsafe'), so both arrays are device-checked."""
    value = operand(src, "a copy kernel")
    np.copyto(out_operand(dst, "a copy kernel"), value, casting="unsafe")


class _Flags:
    def __init__(self, a, owndata):
        self.c_contiguous = a.flags.c_contiguous
        self.f_contiguous = a.flags.f_contiguous
        self.owndata = owndata

    @property
    def fnc(self):
        return self.f_contiguous and not self.c_contiguous

    @property
    def forc(self):
        return self.f_contiguous or self.c_contiguous

    def __getitem__(self, name):
        names = {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                 "OWNDATA": self.owndata}
        if name not in names:
            raise KeyError("%s is not defined for cupy.ndarray.flags" % name)
        return names[name]

    def __repr__(self):
        return "  C_CONTIGUOUS : %s\n  F_CONTIGUOUS : %s\n  OWNDATA : %s" % (
            self.c_contiguous, self.f_contiguous, self.owndata)


def _prepare_index(key, shape):
    """The key as NumPy takes it, whether it has array (advanced) indices and
    whether one is a boolean mask. Index arrays are read by the indexing
    kernel, so cupy ones are device-checked; NumPy ones are uploaded. A
    trailing Ellipsis makes NumPy return 0-d arrays, never scalars.

    Integer index arrays wrap around: CuPy takes an out-of-range index
    modulo the axis length instead of raising as NumPy does (docs: user
    guide, "Out-of-bounds indices"; _routines_indexing.pyx takes indices
    with mode 'wrap')."""
    items = key if isinstance(key, tuple) else (key,)
    out, advanced, mask = [], False, False
    for k in items:
        if isinstance(k, ndarray):
            check_peer(k, "indexing")
            k = k._a
        if isinstance(k, (np.ndarray, list)):
            k = np.asarray(k)
            advanced, mask = True, mask or k.dtype == np.bool_
        out.append(k)
    if advanced and not mask:
        out = _wrap_integer_arrays(out, shape)
    if not any(k is Ellipsis for k in out):
        out.append(Ellipsis)
    return tuple(out), advanced, mask


def _wrap_integer_arrays(items, shape):
    """Each integer index array taken modulo the length of the axis it indexes."""
    given = sum(1 for k in items if k is not None and k is not Ellipsis)
    axis, out = 0, []
    for k in items:
        if k is Ellipsis:
            axis += len(shape) - given
        elif k is not None:
            if isinstance(k, np.ndarray) and k.dtype.kind in "iu" and axis < len(shape) and shape[axis]:
                k = k % shape[axis]
            axis += 1
        out.append(k)
    return out


class ndarray:
    """A CuPy array: its own type (not a NumPy subclass), on one device."""

    __slots__ = ("_a", "_dev", "_base", "_w", "__weakref__")     # _w: (device, operation) of the last write
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        """Allocates on the current device. Memory is charged before NumPy
        allocates it: an over-large request is CuPy's OutOfMemoryError."""
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy.ndarray(memptr=, strides=) is not simulated")
        shape, dtype = _shape(shape), get_dtype(dtype)
        dev = runtime.getDevice()
        charged = memory.default_pool._charge(dev, math.prod(shape) * dtype.itemsize)
        self._a, self._dev, self._base, self._w = np.empty(shape, dtype, order), dev, None, None
        weakref.finalize(self, memory.default_pool._release, dev, charged)

    def _view(self, a):
        """A NumPy view of ``_a`` as a view of this array, on its device."""
        return _wrap(a, self._dev, self if self._base is None else self._base)

    # -- attributes -------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    base = property(lambda self: self._base)
    flags = property(lambda self: _Flags(self._a, self._base is None))
    device = property(lambda self: Device(self._dev))
    data = property(lambda self: MemoryPointer(self._a.__array_interface__["data"][0], self._dev))
    T = property(lambda self: self._view(self._a.T))

    # -- NumPy interoperability (core.pyx:1803, 1969, 2026) ---------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inout = inputs
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            inout += out
            kwargs["out"] = out[0]
        func = getattr(sys.modules["cupy"], ufunc.__name__, None)
        if method != "__call__" or func is None:
            return NotImplemented
        for x in inout:
            # NumPy arrays are let through, to get CuPy's TypeError
            if not (type(x) in _PYTHON_SCALARS or isinstance(x, (np.generic, np.ndarray, ndarray))):
                return NotImplemented
        if ufunc.__name__ in _COMPARISONS:
            inputs = tuple(x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x
                           for x in inputs)
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        try:
            module = sys.modules["cupy"]
            for name in func.__module__.split(".")[1:]:
                module = getattr(module, name)
            cupy_func = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        if cupy_func is func or not all(issubclass(t, (ndarray, np.ndarray)) for t in types):
            return NotImplemented
        return cupy_func(*args, **kwargs)

    # -- host transfers: each is a synchronisation (core.pyx:2098, 2210) --------
    def _download(self, blocking):
        """The copy to the host, on this array's device's stream, and (``blocking``) the wait for it."""
        _machine.access(self, "ndarray.get (a copy to the host)", device=self._dev)
        if blocking:
            _machine.host_sync(self._dev)

    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained fromcupy.ndarray")
            if out.dtype != self.dtype:
                raise TypeError(f"{out.dtype} array cannot be obtained from {self.dtype} array")
            if out.shape != self.shape:
                raise ValueError("Shape mismatch. Expected shape: {}, actual shape: {}".format(
                    self.shape, out.shape))
            if not (out.flags.c_contiguous or out.flags.f_contiguous):
                raise RuntimeError("`out` cannot be specified when copying to non-contiguous ndarray")
            if self.size:
                self._download(blocking)
                np.copyto(out, self._a)
            return out
        if self.size == 0:
            return np.ndarray(self.shape, dtype=self.dtype)
        self._download(blocking)
        order = update_order(self.flags.c_contiguous, self.flags.f_contiguous, order.upper())
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError("Shape mismatch. Old shape: {}, new shape: {}".format(self.shape, arr.shape))
        if not (self.flags.c_contiguous or self.flags.f_contiguous):
            raise RuntimeError("Cannot set to non-contiguous array")
        _machine.access(self, "ndarray.set (a copy from the host)", write=True, device=self._dev)
        self._a[...] = arr

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self.get().item()

    def tolist(self):
        return self.get().tolist()

    def __float__(self):
        return float(self.get())

    def __int__(self):
        return int(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):     # core.pyx:1529
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous. Returning False, but in "
                          "future this will result in an error. Use `array.size > 0` to check that "
                          "an array is not empty.", DeprecationWarning, stacklevel=2)
            return False
        if self.size > 1:
            raise ValueError("The truth value of an array with more than one element is "
                             "ambiguous. Use a.any() or a.all()")
        return bool(self.get())

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, spec):
        return format(self.get(), spec)

    def __reduce__(self):
        return array, (self.get(),)

    # -- copies and casts (core.pyx:733, 861) -----------------------------------
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return self._astype(dtype, order, casting, subok, True if copy else None)

    def _astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if casting is not None:
            raise TypeError("casting is not supported yet")
        if subok is not None:
            raise TypeError("subok is not supported yet")
        order = "K" if order is None else order.upper()
        dtype = get_dtype(dtype)
        c, f = self.flags.c_contiguous, self.flags.f_contiguous
        if dtype == self.dtype and not copy and (
                order == "K" or order == "A" and (c or f) or order == "C" and c or order == "F" and f):
            return self
        if copy is False:
            raise ValueError("Unable to avoid copy while creating an array as requested.")
        order = update_order(c, f, order)
        if order == "K":
            out = _empty_strided(self.shape, dtype, k_strides(self, dtype))
        else:
            out = empty(self.shape, dtype, order)
        if self.size:
            elementwise_copy(self, out)
        return out

    def copy(self, order="C"):
        if self.size == 0 or self._dev == runtime.getDevice():
            return self.astype(self.dtype, order=order)
        # another device: made contiguous there, then one cudaMemcpy (core.pyx:861)
        with Device(self._dev):
            x = self.astype(self.dtype, order=order, copy=False)
        if not (x.flags.c_contiguous or x.flags.f_contiguous):
            raise NotImplementedError("CuPy cannot copy non-contiguous array between devices.")
        out = new(x._a.copy(order="A"))
        _machine.memcpy(x, out)
        return out

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        with self.device:
            return self.copy()

    def fill(self, value):      # core.pyx:1000
        if isinstance(value, ndarray):
            if value.shape != ():
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            value = value.astype(self.dtype, copy=False)
            check_peer(value, "fill")
            _machine.host_sync(runtime.getDevice())     # `value == 0` on a cupy array is read back
            v = value._a[()]
        else:
            v = np.asarray(value, dtype=self.dtype)
            if v.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            v = v[()]
        if v == 0 and self.flags.c_contiguous:
            memset(self, "fill (cudaMemsetAsync)")
            return
        check_peer(self, "fill", write=True)
        self._a[...] = v

    # -- shape manipulation: views stay on this array's device ------------------
    def _view_or_copy(self, r):
        """A NumPy reshape/ravel of ``_a``: a view, or where NumPy had to copy,
        CuPy's ``self.copy()`` (a cross-device memcpy onto the current device)."""
        if self.size == 0 or np.may_share_memory(r, self._a):
            return self._view(r)
        out = new(r)
        _machine.memcpy(self, out)
        return out

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        return self._view_or_copy(self._a.reshape(shape, order=order))

    def ravel(self, order="C"):
        return self._view_or_copy(self._a.ravel(order))

    def flatten(self, order="C"):
        order = update_order(self.flags.c_contiguous, self.flags.f_contiguous, order.upper())
        out = self.copy(order=order)
        out._a = out._a.reshape(-1, order=order)
        return out

    def transpose(self, *axes):
        return self._view(self._a.transpose(*axes))

    def swapaxes(self, axis1, axis2):
        return self._view(self._a.swapaxes(axis1, axis2))

    def squeeze(self, axis=None):
        return self._view(self._a.squeeze(axis))

    def view(self, dtype=None):
        return self._view(self._a.view() if dtype is None else self._a.view(get_dtype(dtype)))

    # -- indexing (_routines_indexing.pyx) ----------------------------------------
    def __getitem__(self, key):
        idx, advanced, mask = _prepare_index(key, self.shape)
        if not advanced:
            return self._view(self._a[idx])
        check_peer(self, "indexing")
        if mask:
            _machine.host_sync(runtime.getDevice())     # the number of True is read back (:802)
        r = self._a[idx]
        return result(r.copy() if np.may_share_memory(r, self._a) else r)

    def __setitem__(self, key, value):
        idx, advanced, mask = _prepare_index(key, self.shape)
        if advanced:
            # _scatter_op_single / _mask_single: a cupy value is read where it
            # is; anything else is uploaded with cupy.array
            if not isinstance(value, ndarray):
                value = array(value, dtype=self.dtype)
            check_peer(value, "indexed assignment")
            check_peer(self, "indexed assignment", write=True)
            if mask:
                _machine.host_sync(runtime.getDevice())
            with np.errstate(all="ignore"):     # the cast runs on the device
                self._a[idx] = value._a
            return
        y = self._view(self._a[idx])
        if not isinstance(value, ndarray):
            y.fill(value)       # "Refuse assignment from CPU arrays, see gh-2079"
            return
        x = value._squeeze_leading_unit_dims()
        if x.shape == y.shape and x.strides == y.strides:
            if x.data.ptr == y.data.ptr:
                return
            if y.flags.c_contiguous and x.dtype == y.dtype:
                _machine.memcpy(x, y)   # cudaMemcpyAsync(cudaMemcpyDefault): any two devices
                y._a[...] = x._a
                return
        elementwise_copy(x, y)

    def _squeeze_leading_unit_dims(self):
        n = 0
        while n < self.ndim and self.shape[n] == 1:
            n += 1
        return self if n == 0 else self._view(self._a[(0,) * n])

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def nonzero(self):
        check_peer(self, "cupy.nonzero")
        _machine.host_sync(runtime.getDevice())     # the count of nonzeros is read back (:123)
        return tuple(new(i) for i in np.nonzero(self._a))

    # -- reductions: _SimpleReductionKernel checks ``a`` and ``out`` (_reduction.pyx:607)
    @silent
    def _reduce(self, name, out, **kwargs):
        check_peer(self, f"cupy.{name}")
        with _empty_slices_silent() if self.size == 0 else contextlib.nullcontext():
            if out is None:
                return result(getattr(np, name)(self._a, **kwargs))
            getattr(np, name)(self._a, out=out_operand(out, f"cupy.{name}"), **kwargs)
        return out

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("sum", out, axis=axis, dtype=dtype, keepdims=keepdims)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("prod", out, axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduce("mean", out, axis=axis, dtype=dtype, keepdims=keepdims)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return self._reduce("var", out, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return self._reduce("std", out, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return self._reduce("max", out, axis=axis, keepdims=keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return self._reduce("min", out, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None, out=None, keepdims=False):
        return self._reduce("argmax", out, axis=axis, keepdims=keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        return self._reduce("argmin", out, axis=axis, keepdims=keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return self._reduce("any", out, axis=axis, keepdims=keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return self._reduce("all", out, axis=axis, keepdims=keepdims)

    def cumsum(self, axis=None, dtype=None, out=None):
        return self._reduce("cumsum", out, axis=axis, dtype=dtype)

    # -- other kernels ------------------------------------------------------------
    def repeat(self, repeats, axis=None):
        check_peer(self, "cupy.repeat")
        return result(np.repeat(self._a, repeats, axis))

    def clip(self, min=None, max=None, out=None):
        return elementwise(np.clip, self, min, max, out=out)

    def round(self, decimals=0, out=None):
        return elementwise(np.round, self, decimals, out=out)

    def dot(self, b, out=None):
        return _routines.dot(self, b, out)

    def __matmul__(self, other):
        return _routines.matmul(self, other)

    def __rmatmul__(self, other):
        return _routines.matmul(other, self)


ndarray.__module__ = "cupy"


@silent
def elementwise(func, *args, out=None):
    """``func`` (a NumPy function of arrays and scalars) as a CuPy elementwise
    kernel: operands checked as kernel arguments, ``None`` allowed for
    optional ones, output C-contiguous on the current device unless given."""
    what = f"cupy.{func.__name__}"
    values = [None if a is None else operand(a, what) for a in args]
    if out is None:
        return result(func(*values))
    func(*values, out=out_operand(out, what))
    return out


# -- ufuncs (_kernel.pyx ufunc.__call__), computed by NumPy's ------------------

# NumPy ufuncs CuPy v14 does not have (cupy/__init__.py exports none of these)
_NOT_IN_CUPY = {"matmul", "vecdot", "matvec", "vecmat", "isnat", "spacing", "pow", "acos",
                "acosh", "asin", "asinh", "atan", "atan2", "atanh", "bitwise_invert",
                "bitwise_left_shift", "bitwise_right_shift"}
_COMPARISONS = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal"}


class ufunc:
    def __init__(self, np_ufunc):
        self._np = np_ufunc
        self.name = self.__name__ = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs

    def __repr__(self):
        return f"<ufunc '{self.name}'>"

    @silent
    def __call__(self, *args, **kwargs):
        out = kwargs.pop("out", None)
        dtype = kwargs.pop("dtype", None)
        casting = kwargs.pop("casting", "same_kind")
        if kwargs:
            raise TypeError("Wrong arguments %s" % kwargs)
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        ins, outs = args[:self.nin], args[self.nin:]
        if out is not None:
            if outs:
                raise ValueError("Cannot specify 'out' as both a positional and keyword argument")
            outs = out if isinstance(out, tuple) else (out,)
            if len(outs) != self.nout:
                raise ValueError("The 'out' tuple must have exactly one entry per ufunc output")
        what = f"cupy.{self.name}"
        values = [operand(x, what) for x in ins]
        outs = list(outs) + [None] * (self.nout - len(outs))
        np_outs = tuple(None if o is None else out_operand(o, what) for o in outs)
        r = self._np(*values, out=np_outs, dtype=dtype, casting=casting)
        r = r if self.nout > 1 else (r,)
        ret = tuple(o if o is not None else result(v) for o, v in zip(outs, r))
        return ret if self.nout > 1 else ret[0]


ufuncs = {name: ufunc(getattr(np, name)) for name in dir(np)
          if isinstance(getattr(np, name), np.ufunc) and name not in _NOT_IN_CUPY}


# -- operators (core.pyx): all of them are the ufuncs -------------------------

def _binary(name):
    return lambda self, other: ufuncs[name](self, other)


def _reflected(name):
    return lambda self, other: ufuncs[name](other, self)


def _inplace(name):
    return lambda self, other: ufuncs[name](self, other, out=self)


for _op, _name in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                   ("truediv", "true_divide"), ("floordiv", "floor_divide"),
                   ("mod", "remainder"), ("pow", "power"), ("lshift", "left_shift"),
                   ("rshift", "right_shift"), ("and", "bitwise_and"), ("or", "bitwise_or"),
                   ("xor", "bitwise_xor")]:
    setattr(ndarray, f"__{_op}__", _binary(_name))
    setattr(ndarray, f"__r{_op}__", _reflected(_name))
    setattr(ndarray, f"__i{_op}__", _inplace(_name))
ndarray.__divmod__ = _binary("divmod")
ndarray.__rdivmod__ = _reflected("divmod")
ndarray.__neg__ = lambda self: ufuncs["negative"](self)
ndarray.__pos__ = lambda self: ufuncs["positive"](self)
ndarray.__abs__ = lambda self: ufuncs["absolute"](self)
ndarray.__invert__ = lambda self: ufuncs["invert"](self)


def _compare(name):
    def compare(self, other):       # core.pyx:1483 __richcmp__
        if isinstance(other, np.ndarray) and other.ndim == 0:
            other = other.item()
        if name in ("equal", "not_equal") and (
                other is None or type(other).__eq__ is object.__eq__):
            return full(self.shape, name == "not_equal", dtype=np.bool_)
        return ufuncs[name](self, other)
    return compare


for _op, _name in [("eq", "equal"), ("ne", "not_equal"), ("lt", "less"),
                   ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal")]:
    setattr(ndarray, f"__{_op}__", _compare(_name))
ndarray.__hash__ = None


def full(shape, fill_value, dtype=None, order="C"):
    if dtype is None:
        dtype = fill_value.dtype if isinstance(fill_value, ndarray) else np.array(fill_value).dtype
    a = empty(shape, dtype, order)
    a.fill(fill_value)
    return a


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """core.pyx:2818 array(); ``blocking``: the host waits for the copy from host data."""
    if subok:
        raise NotImplementedError
    a = _array(obj, dtype, copy, order, ndmin)
    if blocking and not isinstance(obj, ndarray):   # _array_from_cupy_ndarray does not wait
        _machine.host_sync(runtime.getDevice())
    return a


def _array(obj, dtype, copy, order, ndmin):
    order = "K" if order is None else order.upper()
    if isinstance(obj, ndarray):
        if dtype is None:
            dtype = obj.dtype
        if obj._dev == runtime.getDevice():
            a = obj._astype(dtype, order=order, copy=copy)
        else:       # copied over whatever ``copy`` says (_array_from_cupy_ndarray)
            a = obj.copy(order=order)._astype(dtype, copy=None)
        if ndmin > a.ndim:
            a = a._view(a._a.reshape((1,) * (ndmin - a.ndim) + a.shape))
        return a
    if isinstance(obj, (list, tuple)) and _has_cupy(obj):
        # _array_from_nested_cupy_sequence: concatenated on the current device
        a = _routines.stack([array(o) for o in obj])
        return a if dtype is None else a._astype(dtype, order=order, copy=None)
    # _array_default: a host-to-device copy, C order unless ``obj`` is F-ordered
    if order in "KA":
        order = "F" if isinstance(obj, np.ndarray) and obj.flags.fnc else "C"
    a = np.array(obj, dtype=dtype, order=order, ndmin=ndmin, copy=True)
    get_dtype(a.dtype)
    return new(a)


def _has_cupy(seq):
    return any(isinstance(o, ndarray) or isinstance(o, (list, tuple)) and _has_cupy(o) for o in seq)


from . import _routines  # noqa: E402  (it needs ndarray; matmul, dot and stack are there)
