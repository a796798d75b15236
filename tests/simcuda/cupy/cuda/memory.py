"""cupy.cuda.memory: allocation accounting for the simulated devices.

Every array that owns memory is charged to the device that was current when
it was allocated, rounded up to CuPy's 512-byte blocks, and released when
the array (and every view of it) is garbage. Each device has
SIMCUDA_MEMORY bytes (default 16 GiB); going past that, or past a pool
limit, raises CuPy's OutOfMemoryError.
"""

import os
import threading

from . import runtime

CAPACITY = int(os.environ.get("SIMCUDA_MEMORY", str(16 * 2**30)))
_lock = threading.Lock()


class OutOfMemoryError(MemoryError):
    """cupy/cuda/memory.pyx:55, same message format."""

    def __init__(self, size, total, limit=0):
        if limit == 0:
            msg = "Out of memory allocating {:,} bytes".format(size)
            if total != -1:
                msg += " (allocated so far: {:,} bytes).".format(total)
        else:
            msg = ("Out of memory allocating {:,} bytes (allocated so far: {:,} bytes, "
                   "limit set to: {:,} bytes).".format(size, total, limit))
        super().__init__(msg)


class MemoryPointer:
    """What ``x.data`` returns: a (host) address and the device it belongs to."""

    def __init__(self, ptr, device_id):
        self.ptr = ptr
        self.device_id = device_id

    @property
    def device(self):
        from . import Device

        return Device(self.device_id)

    def __int__(self):
        return self.ptr

    def __repr__(self):
        return f"<MemoryPointer 0x{self.ptr:x} on device {self.device_id}>"


class MemoryPool:
    """The default pool (``cupy.get_default_memory_pool()``); every method is
    about the current device, as in CuPy. Freed blocks are not cached, so
    ``total_bytes() == used_bytes()`` and ``free_bytes() == 0``."""

    def __init__(self):
        self._used = {}
        self._limit = {}

    def used_bytes(self):
        return self._used.get(runtime.getDevice(), 0)

    def total_bytes(self):
        return self.used_bytes()

    def free_bytes(self):
        return 0

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def set_limit(self, size=None, fraction=None):
        # cupy/cuda/memory.pyx SingleDeviceMemoryPool.set_limit
        if size is None:
            if fraction is None:
                size = 0
            else:
                if not 0 <= fraction <= 1:
                    raise ValueError("memory limit fraction out of range: {}".format(fraction))
                size = fraction * CAPACITY
        elif fraction is not None:
            raise ValueError("size and fraction cannot be specified at one time")
        if size < 0:
            raise ValueError("memory limit size out of range: {}".format(size))
        self._limit[runtime.getDevice()] = int(size)

    def get_limit(self):
        return self._limit.get(runtime.getDevice(), 0)

    def _charge(self, device_id, nbytes):
        """Charge an allocation to ``device_id`` or raise OutOfMemoryError."""
        size = -(-nbytes // 512) * 512
        with _lock:
            used = self._used.get(device_id, 0)
            limit = self._limit.get(device_id, 0)
            if limit and used + size > limit:
                raise OutOfMemoryError(size, used, limit)
            if used + size > CAPACITY:
                raise OutOfMemoryError(size, used)
            self._used[device_id] = used + size
        return size

    def _release(self, device_id, size):
        with _lock:
            self._used[device_id] -= size


default_pool = MemoryPool()


def mem_info(device_id):
    """(free, total) bytes of a device, as cudaMemGetInfo."""
    runtime.check_device(device_id)
    return CAPACITY - default_pool._used.get(device_id, 0), CAPACITY
