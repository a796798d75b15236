"""The simulated machine: the state every module of the stand-in shares.

How many devices there are, whether they can reach each other's memory,
each host thread's current device and streams, how many times the host
waited for a device, and how the devices' streams are ordered with each
other ("Stream ordering" below). ``cupy._sim`` is the control API tests
use over it; the stand-in's own modules use this module, so they work when
``_sim`` is hidden (SIMCUDA_CONTROL=0).

Read from the environment when ``cupy`` is first imported: SIMCUDA_DEVICES
(default 2), SIMCUDA_PEER (1 = peer access on), SIMCUDA_CONTROL (0 = no
``cupy._sim``), SIMCUDA_NCCL (0 = no NCCL library).
"""

import os
import sys
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


# -- Stream ordering -----------------------------------------------------------
#
# Kernels run at once on the host, but on a GPU each device's stream runs its
# work later, in order, and two devices' streams run at the same time unless
# something orders them. The model is CUDA's legacy default stream, one per
# device: operations issued to it are numbered; the memory of each array
# (its base's) remembers the device and number of the operation that last
# wrote it; and each device knows, for every other, up to which of that
# device's operations its own stream is ordered after. That advances by
#
# - a host synchronisation of device e (deviceSynchronize, synchronize() of a
#   Device, Stream or Event, reading back to the host): the host has seen e's
#   work complete, so everything issued afterwards, anywhere, comes after it;
# - a copy in the null stream between the memories of two devices: it waits
#   for all work issued to either device before it, and work issued to either
#   after it waits for it (CUDA C++ Programming Guide, peer-to-peer memory copy);
# - Stream.wait_event(event): that stream's device waits for what the event
#   recorded.
#
# An operation issued on device d that reads or writes memory last written by
# device e != d, not ordered before it, is a race on a GPU: StreamOrderError.


class StreamOrderError(RuntimeError):
    """Two devices' streams touch one array's memory with nothing ordering them."""


_issued = {}        # device -> the number of operations issued to its stream
_after = {}         # device d -> {device e: the last of e's operations d's stream is ordered after}
_host = {}          # {device e: the last of e's operations the host saw complete}
_PKG = os.path.dirname(os.path.abspath(__file__))


def _join(into, clock):
    for e, n in clock.items():
        if n > into.get(e, 0):
            into[e] = n


def _clock(d):
    """What an operation issued on device ``d`` now is ordered after."""
    clock = dict(_host)
    _join(clock, _after.get(d, {}))
    clock[d] = _issued.get(d, 0)
    return clock


def _issue(d):
    _issued[d] = n = _issued.get(d, 0) + 1
    return n


def _owner(arr):
    return arr if arr._base is None else arr._base


def _check(arr, d, clock, what, write):
    last = _owner(arr)._w
    if last is None or last[0] == d or clock.get(last[0], 0) >= last[1]:
        return
    e, n = last
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PKG):
        frame = frame.f_back
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}: " if frame is not None else ""
    raise StreamOrderError(
        f"{where}{what} on device {d} {'writes' if write else 'reads'} memory of device {arr._dev} "
        f"that device {e} last wrote (operation {n} of its stream), and device {d}'s stream is not "
        f"ordered after that operation: on a GPU the two can run at the same time. Issue it with "
        f"device {e} current (`with cupy.cuda.Device({e}):`), or synchronise device {e} first "
        f"(`cupy.cuda.Device({e}).synchronize()`).")


def access(arr, what, write=False, device=None):
    """An operation issued on the stream of ``device`` (default: the current
    one) reads, or writes, ``arr``'s memory."""
    d = current_device() if device is None else device
    with lock:
        owner = _owner(arr)
        if owner._w is not None and owner._w[0] != d:
            _check(arr, d, _clock(d), what, write)
        if write:
            owner._w = (d, _issue(d))


def memcpy(src, dst, what="a copy (cudaMemcpyAsync)"):
    """``dst[...] = src``, one cudaMemcpyAsync on the current device's null stream."""
    a, b, d = src._dev, dst._dev, current_device()
    if a == b:
        access(src, what)
        access(dst, what, write=True)
        return
    with lock:          # between two devices' memories: ordered with all work of both
        clock = _clock(d)
        _join(clock, _clock(a))
        _join(clock, _clock(b))
        _check(src, d, clock, what, False)
        _check(dst, d, clock, what, True)
        clock[d] = n = _issue(d)
        for x in {a, b, d}:
            _join(_after.setdefault(x, {}), clock)
        _owner(dst)._w = (d, n)


def host_sync(device, count=True):
    """The host waited for all the work issued to ``device`` so far (``count``:
    it blocked; a query that found the work done does not count)."""
    global syncs
    with lock:
        syncs += count
        _join(_host, _clock(device))


def record(device):
    """What an event recorded on ``device``'s stream now stands for."""
    with lock:
        return _clock(device)


def wait(device, recorded):
    """``device``'s stream waits for an event that recorded ``recorded``."""
    with lock:
        _join(_after.setdefault(device, {}), recorded)


def event_sync(recorded, count=True):
    """The host waited for an event (``recorded``: None if it was never recorded)."""
    global syncs
    with lock:
        syncs += count
        _join(_host, recorded or {})
