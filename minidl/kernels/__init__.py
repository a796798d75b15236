"""The operations whose speed matters, in two interchangeable kernel sets.

A layer states its formula and calls one function here per operation; the
active kernel set decides how it is computed:

    "reference"  the textbook algorithm on whole arrays (``reference.py``): read this
    "fast"       the same results, arranged for caches and cores (``fast.py``, on
                 ``cpu.py`` for NumPy arrays and ``cuda.py``'s CUDA kernels for CuPy)

``fast`` is the default. Switch with ``minidl.kernels.use("reference")``, for a
block with ``with minidl.kernels.using("reference"):``, or for a whole process
with the environment variable ``MINIDL_KERNELS=reference``. Both sets run on
NumPy and CuPy arrays.

    conv2d_forward(x, w, stride, pad, groups)                 -> y, saved
    conv2d_backward(dy, saved, w, stride, pad, groups, need_dw, need_dx) -> dW, dx
    conv2d_transpose(y, w, x_shape, stride, pad, groups)      -> x  (the input gradient alone)
    maxpool_forward(x, k, stride)                             -> y, switches (int8 window offsets)
    maxpool_backward(dy, switches, x_shape, k, stride)        -> dx (also unpools)
    lrn_forward(x, size, alpha, beta, k)                      -> y, saved
    lrn_backward(dy, saved, size, alpha, beta, k)             -> dx
    momentum_update(w, g, v, lr, momentum, weight_decay)      in place

``saved`` is what the set that ran forward needs for backward; it is handed
back unchanged. Shared by both sets: ``conv_out_size`` and ``hash_uniform``
(dropout's random numbers, which must not depend on the set). Process-wide
settings (BLAS threads, the allocator) are not kernels: see ``minidl.runtime``.
"""

import contextlib
import os

from . import fast, reference
from .counter_rng import hash_uniform
from .reference import conv_out_size

__all__ = [
    "SETS", "KernelSetError", "use", "using", "active",
    "conv_out_size", "hash_uniform",
    "conv2d_forward", "conv2d_backward", "conv2d_transpose",
    "maxpool_forward", "maxpool_backward", "lrn_forward", "lrn_backward", "momentum_update",
]

SETS = {"fast": fast, "reference": reference}
ENV = "MINIDL_KERNELS"


class KernelSetError(ValueError):
    """An unknown kernel set was asked for (by ``use`` or ``MINIDL_KERNELS``)."""


def _check(name, where):
    if name not in SETS:
        raise KernelSetError(f"{where}: unknown kernel set {name!r}; expected one of {', '.join(map(repr, SETS))}")
    return name


_active = None      # None: read MINIDL_KERNELS on first use


def active():
    """The name of the kernel set in use: 'fast' unless changed."""
    global _active
    if _active is None:
        _active = _check(os.environ.get(ENV) or "fast", ENV)     # unset or empty: fast
    return _active


def use(name):
    """Make ``name`` ('fast' or 'reference') the kernel set of every later operation."""
    global _active
    _active = _check(name, "minidl.kernels.use")


@contextlib.contextmanager
def using(name):
    """``with using("reference"):`` runs the block on that kernel set, then restores the previous one."""
    before = active()
    use(name)
    try:
        yield
    finally:
        use(before)


def _set():
    return SETS[active()]


def conv2d_forward(x, w, stride, pad, groups):
    impl = _set()
    y, saved = impl.conv2d_forward(x, w, stride, pad, groups)
    return y, (impl, saved)


def conv2d_backward(dy, saved, w, stride, pad, groups, need_dw=True, need_dx=True):
    impl, saved = saved
    return impl.conv2d_backward(dy, saved, w, stride, pad, groups, need_dw, need_dx)


def conv2d_transpose(y, w, x_shape, stride, pad, groups):
    return _set().conv2d_transpose(y, w, tuple(x_shape), stride, pad, groups)


def maxpool_forward(x, k, stride):
    return _set().maxpool_forward(x, k, stride)


def maxpool_backward(dy, switches, x_shape, k, stride):
    return _set().maxpool_backward(dy, switches, tuple(x_shape), k, stride)


def lrn_forward(x, size, alpha, beta, k):
    impl = _set()
    y, saved = impl.lrn_forward(x, size, alpha, beta, k)
    return y, (impl, saved)


def lrn_backward(dy, saved, size, alpha, beta, k):
    impl, saved = saved
    return impl.lrn_backward(dy, saved, size, alpha, beta, k)


def momentum_update(w, g, v, lr, momentum, weight_decay):
    return _set().momentum_update(w, g, v, lr, momentum, weight_decay)
