"""The simulator's state, and ``cupy._sim``, the control API tests use.

Everything the stand-in knows about "the machine" lives here: how many
devices there are, whether they can reach each other's memory, each
thread's current device, and how many times the host waited for a device.

    sync_count() / reset_sync_count()   host synchronisations so far
    set_peer_access(enabled)            simulate P2P between all devices
    peer_access()                       is it simulated now
    device_count()                      how many devices are reported
    devices(n)                          context manager: report n devices
                                        inside the block

Defaults come from the environment when ``cupy`` is first imported:
SIMCUDA_DEVICES (default 2), SIMCUDA_PEER (1 = peer access on).
"""

import contextlib
import os
import threading

_lock = threading.Lock()
_device_count = int(os.environ.get("SIMCUDA_DEVICES", "2"))
_peer = os.environ.get("SIMCUDA_PEER", "0") not in ("", "0")
_syncs = 0

# CUDA keeps the current device per host thread; a new thread starts on
# device 0 (cupy tests/cupy_tests/cuda_tests/test_device.py test_thread_safe).
_thread = threading.local()


def current_device():
    return getattr(_thread, "device", 0)


def set_current_device(device_id):
    _thread.device = device_id


def with_stack():
    """This thread's stack of devices saved by ``with Device(i):``."""
    if not hasattr(_thread, "stack"):
        _thread.stack = []
    return _thread.stack


def count_sync():
    global _syncs
    with _lock:
        _syncs += 1


# -- the control API ---------------------------------------------------------

def sync_count():
    """How many times the host has waited for a device since the last reset."""
    return _syncs


def reset_sync_count():
    global _syncs
    with _lock:
        _syncs = 0


def set_peer_access(enabled):
    """Simulate (True) or withhold (False) peer access between every pair of devices."""
    global _peer
    _peer = bool(enabled)


def peer_access():
    return _peer


def device_count():
    return _device_count


@contextlib.contextmanager
def devices(n):
    """Report ``n`` devices inside the block (0: a machine without a GPU)."""
    global _device_count
    saved, _device_count = _device_count, int(n)
    try:
        yield
    finally:
        _device_count = saved
