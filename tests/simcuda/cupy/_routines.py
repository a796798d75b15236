"""The array functions of the ``cupy`` namespace (creation, joining, products,
selection, padding), with CuPy's device and type rules."""

import sys

import numpy as np

from ._core import (_empty_strided, array, check_ndarray_arg, check_same_device, elementwise,
                    elementwise_copy, empty, full, get_dtype, k_strides, memset, ndarray, operand,
                    out_operand, result, silent, update_order)

# -- creation (cupy/_creation/*.py): always on the current device -------------


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    """A same-device array of the same dtype is returned as it is; an array on
    another device is copied over; host data is uploaded."""
    return array(a, dtype, copy, order, blocking=blocking)


def ascontiguousarray(a, dtype=None):
    """core.pyx:3221. Returns ``a`` itself when nothing changes, even from
    another device; otherwise a device-checked copy kernel."""
    check_ndarray_arg("a", a)
    dtype = a.dtype if dtype is None else get_dtype(dtype)
    if dtype == a.dtype and a.flags.c_contiguous:
        return a._view(a._a.reshape(1)) if a.ndim == 0 else a     # CuPy ravels 0-d input
    out = empty((1,) if a.ndim == 0 else a.shape, dtype)
    elementwise_copy(a, out)
    return out


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    a = np.asarray(a, order=order)
    if out is None:
        return a
    out[...] = a
    return out


def zeros(shape, dtype=float, order="C"):
    a = empty(shape, dtype, order)
    memset(a, "cupy.zeros")     # no kernel
    return a


def ones(shape, dtype=float, order="C"):
    return full(shape, 1, dtype, order)


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    """cupy/_creation/basic.py: the layout follows ``prototype`` (order 'K')
    unless ``shape`` changes the number of dimensions; ``shape=()`` means the
    prototype's shape; allocated on the current device whatever the
    prototype's (a NumPy prototype gives a cupy array too)."""
    if subok is not None:
        raise TypeError("subok is not supported yet")
    dtype = get_dtype(prototype.dtype if dtype is None else dtype)
    order = order.upper()
    if order not in ("C", "F", "K", "A"):
        raise ValueError("order not understood: {}".format(order))
    if np.isscalar(shape):
        shape = (shape,)
    strides = None
    if order == "K" and shape is not None and len(shape) != prototype.ndim:
        order = "C"
    else:
        order = update_order(prototype.flags.c_contiguous, prototype.flags.f_contiguous, order)
        if order == "K":
            strides = k_strides(prototype, dtype, shape)
    shape = shape if shape else prototype.shape
    if strides is not None:
        return _empty_strided(shape, dtype, strides)
    return empty(shape, dtype, order)


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    out = empty_like(a, dtype, order, subok, shape)
    memset(out, "cupy.zeros_like")
    return out


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    return full_like(a, 1, dtype, order, subok, shape)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    out = empty_like(a, dtype, order, subok, shape)
    out.fill(fill_value)
    return out


def arange(start, stop=None, step=1, dtype=None):
    r = np.arange(start, stop, step, dtype=dtype)
    get_dtype(r.dtype)
    return result(r)


# -- joining: concatenate is a device-checked kernel (_routines_manipulation.pyx:662)

def concatenate(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    values = [operand(a, "cupy.concatenate") for a in tup]
    if out is None:
        return result(np.concatenate(values, axis=axis, dtype=dtype, casting=casting))
    np.concatenate(values, axis=axis, out=out_operand(out, "cupy.concatenate"), dtype=dtype, casting=casting)
    return out


def stack(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    values = [operand(a, "cupy.stack") for a in tup]
    if out is None:
        return result(np.stack(values, axis=axis, dtype=dtype, casting=casting))
    np.stack(values, axis=axis, out=out_operand(out, "cupy.stack"), dtype=dtype, casting=casting)
    return out


# -- products: cuBLAS, arguments typed _ndarray_base, no device check in CuPy --

def _check_blas(name, a, b, out):
    check_ndarray_arg("a", a)
    check_ndarray_arg("b", b)
    if out is not None:
        check_ndarray_arg("out", out)
    for x in (a, b) if out is None else (a, b, out):
        check_same_device(x, f"{name} (cuBLAS)", write=x is out)


@silent
def matmul(a, b, out=None, *, dtype=None, casting="same_kind"):
    _check_blas("matmul", a, b, out)
    if out is None:
        return result(np.matmul(a._a, b._a, dtype=dtype, casting=casting))
    np.matmul(a._a, b._a, out=out._a, dtype=dtype, casting=casting)
    return out


@silent
def dot(a, b, out=None):
    _check_blas("dot", a, b, out)
    if out is None:
        return result(np.dot(a._a, b._a))
    np.dot(a._a, b._a, out=out._a)
    return out


# -- selection, clipping, rounding ---------------------------------------------

def where(condition, x=None, y=None):
    if x is None and y is None:
        return nonzero(condition)
    if x is None or y is None:
        raise ValueError("Must provide both 'x' and 'y' or neither.")
    return elementwise(np.where, condition.astype("?"), x, y)


def nonzero(a):
    return a.nonzero()


def clip(a, a_min, a_max, out=None):
    return a.clip(a_min, a_max, out=out)


def around(a, decimals=0, out=None):
    return a.round(decimals, out=out)


def pad(array, pad_width, mode="constant", **kwargs):
    """cupy/_padding/pad.py: ``array`` is assigned into the middle of a new
    array on the current device (``padded[interior] = array``: a memcpy when
    the layouts match, else a device-checked copy kernel; a NumPy array is
    refused as by any basic-index assignment), then the borders are filled."""
    if isinstance(array, np.ndarray) and array.ndim:
        raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
    check_ndarray_arg("array", array)
    values = np.pad(array._a, pad_width, mode, **kwargs)
    widths = np.broadcast_to(np.asarray(pad_width), (array.ndim, 2))
    padded = empty(values.shape, array.dtype, "F" if array.flags.fnc else "C")
    padded[tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, array.shape))] = array
    padded._a[...] = values
    return padded


# -- types and modules -----------------------------------------------------------

def result_type(*arrays_and_dtypes):
    return np.result_type(*[a.dtype if isinstance(a, ndarray) else a for a in arrays_and_dtypes])


def get_array_module(*args):
    return sys.modules["cupy"] if any(isinstance(a, ndarray) for a in args) else np


def method_function(name):
    """``cupy.<name>(a, ...)``: ``a.<name>(...)``, duck-typed as in CuPy."""
    def function(a, *args, **kwargs):
        return getattr(a, name)(*args, **kwargs)
    function.__name__ = name
    return function
