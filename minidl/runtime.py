"""Process-wide tuning for training on the CPU: BLAS threads and the allocator.

Both settings change the whole process, so nothing in minidl applies them
behind a caller's back. The training command applies them explicitly, for
the length of the run, records what it did in the run's config.json, and
leaving the block puts the process back as it was::

    with runtime.tuned(blas_threads=1, keep_freed_memory=True) as applied:
        ...            # applied == {'blas_threads': 1, 'keep_freed_memory': True}

- BLAS threads through threadpoolctl, which knows OpenBLAS, MKL and BLIS.
- ``keep_freed_memory``: glibc's allocator keeps freed memory for the next
  training step instead of handing it back to the kernel (Linux only).
- ``tower_threads_pay``: when running the two towers in a thread each pays.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import ExitStack, contextmanager

__all__ = ["usable_cores", "blas_info", "blas_threads", "tower_threads_pay", "tuned"]


def usable_cores():
    """How many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


def blas_info():
    """NumPy's BLAS as threadpoolctl sees it: {'library', 'threads', 'architecture'}, or None."""
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl looks for)
    from threadpoolctl import threadpool_info

    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return None
    p = pools[0]
    return {"library": p.get("internal_api"), "threads": int(p["num_threads"]),
            "architecture": p.get("architecture")}


def blas_threads():
    """The number of threads NumPy's BLAS uses, or None if it cannot be told."""
    info = blas_info()
    return None if info is None else info["threads"]


def tower_threads_pay(towers, cores=None):
    """Whether CPU towers should run in a thread each (each with a one-thread BLAS).

    Measured on two cores: the mini step is about 1.2x faster, as the
    memory-bound pooling, LRN and im2col passes of the two towers run side by
    side instead of on one core between two-thread GEMMs. It pays with as many
    cores as towers, up to twice as many (beyond that, a multi-threaded BLAS
    per tower uses the cores better).
    """
    cores = usable_cores() if cores is None else cores
    return towers > 1 and towers <= cores < 2 * towers


# glibc's mallopt parameters (malloc.h) and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536, _M_ARENA_MAX: 0}


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):           # not glibc
        return None


def _keep_freed_memory():
    """Make glibc keep freed memory in the process for reuse; True if applied.

    A training step allocates and frees the same large arrays (columns,
    activations, gradients) every time. By default glibc gives blocks above
    its mmap threshold back to the kernel when they are freed, so every step
    has the kernel map and zero those pages again (notebook 11 measures it: on
    a 2-core EPYC the paper's step at batch 32 takes some 16,000 page faults
    with glibc's defaults and none with this; what that saves in time was within
    the run-to-run noise there). Serving every allocation from the heap and
    trimming it only past 2 GiB free keeps those pages mapped. The process's
    peak memory is unchanged; memory freed after the peak stays with it.

    One arena for every thread: glibc gives other threads arenas of their own,
    whose heaps hold at most 64 MiB and which map anything larger fresh from
    the kernel whatever M_MMAP_MAX says. With the towers in threads that was
    fc6's weight gradient every step (and at batch 128 conv1's activations):
    about 3,500 page faults per paper:32 step, and none with one arena.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # trimming off first: with the mmap path closed, the heap holds the big blocks
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok      # a C int: 2 GiB
    return mallopt(_M_ARENA_MAX, 1) == 1 and ok


def _glibc_defaults():
    """glibc's settings back, and the memory kept meanwhile handed back to the kernel."""
    mallopt = _mallopt()
    if mallopt is not None:
        for param, value in _GLIBC_DEFAULTS.items():
            mallopt(param, value)
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextmanager
def tuned(blas_threads=None, keep_freed_memory=False):
    """Apply the settings for the block; yield what was applied; put the process back after.

    ``blas_threads``: the BLAS thread count in the block (None: unchanged).
    ``keep_freed_memory``: keep freed memory in the process (glibc only;
    glibc's defaults are set back after). The yielded dict says what took
    effect: ``blas_threads`` (the count, or None when unchanged or when the
    BLAS cannot be told) and ``keep_freed_memory`` (True or False).
    """
    applied = {"blas_threads": None, "keep_freed_memory": False}
    with ExitStack() as stack:
        if blas_threads is not None and blas_info() is not None:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=int(blas_threads), user_api="blas"))
            applied["blas_threads"] = int(blas_threads)
        if keep_freed_memory and _keep_freed_memory():
            applied["keep_freed_memory"] = True
            stack.callback(_glibc_defaults)
        yield applied
