"""The simulated machine: the state every module of the stand-in shares.

How many devices there are, whether they can reach each other's memory,
each host thread's current device and streams, and how many times the host
waited for a device. ``cupy._sim`` is the control API tests use over it;
the stand-in's own modules use this module, so they work when ``_sim`` is
hidden (SIMCUDA_CONTROL=0).

Read from the environment when ``cupy`` is first imported: SIMCUDA_DEVICES
(default 2), SIMCUDA_PEER (1 = peer access on), SIMCUDA_CONTROL (0 = no
``cupy._sim``), SIMCUDA_NCCL (0 = no NCCL library).
"""

import os
import threading


def _flag(name, default):
    return os.environ.get(name, default) not in ("", "0")


CONTROL = _flag("SIMCUDA_CONTROL", "1")
NCCL = _flag("SIMCUDA_NCCL", "1")

lock = threading.Lock()
device_count = int(os.environ.get("SIMCUDA_DEVICES", "2"))
peer = _flag("SIMCUDA_PEER", "0")
syncs = 0

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


def stream_state():
    """This thread's current stream per device, and its ``with`` stack."""
    if not hasattr(_thread, "streams"):
        _thread.streams = ({}, [])
    return _thread.streams


def count_sync():
    global syncs
    with lock:
        syncs += 1
