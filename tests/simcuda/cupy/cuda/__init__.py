"""cupy.cuda: devices, streams and events of the simulated machine.

Kernels run synchronously on the host; streams and events keep CuPy's
bookkeeping and errors, and the order they give between devices (each
device's work is modelled as one stream: ``cupy._machine``, "Stream
ordering"). Their ``synchronize()`` is counted as a host synchronisation
(``cupy._sim.sync_count()``).
"""

import itertools
import time

from .. import _machine
from . import compiler, memory, nccl, runtime  # noqa: F401  (public submodules)
from .memory import MemoryPointer, MemoryPool  # noqa: F401

_COMPUTE_CAPABILITY = "90"


def get_device_id():
    return runtime.getDevice()


class Device:
    """cupy/cuda/device.pyx Device: no validation until CUDA is called."""

    def __init__(self, device=None):
        self.id = runtime.getDevice() if device is None else int(device)

    def __int__(self):
        return self.id

    def __repr__(self):
        return "<CUDA Device %d>" % self.id

    def use(self):
        runtime.setDevice(self.id)
        return self

    def __enter__(self):
        # the previous device is pushed before setDevice can fail, as in CuPy
        prev = runtime.getDevice()
        _machine.with_stack().append(prev)
        if self.id != prev:
            runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc):
        runtime.setDevice(_machine.with_stack().pop())

    def synchronize(self):
        runtime.check_device(self.id)
        _machine.host_sync(self.id)

    @property
    def compute_capability(self):
        runtime.check_device(self.id)
        return _COMPUTE_CAPABILITY

    @property
    def mem_info(self):
        return memory.mem_info(self.id)

    # __richcmp__ (device.pyx:353): == only between Devices; no __hash__
    def __eq__(self, other):
        return isinstance(other, Device) and self.id == other.id

    def __ne__(self, other):
        return not self == other

    def __lt__(self, other):
        return self.id < other.id if isinstance(other, Device) else NotImplemented

    def __le__(self, other):
        return self.id <= other.id if isinstance(other, Device) else NotImplemented

    def __gt__(self, other):
        return self.id > other.id if isinstance(other, Device) else NotImplemented

    def __ge__(self, other):
        return self.id >= other.id if isinstance(other, Device) else NotImplemented

    __hash__ = None


# -- streams (cupy/cuda/stream.pyx) ------------------------------------------

_stream_ptrs = itertools.count(0x1000, 0x10)


def _check_stream_device(device_id):
    cur = runtime.getDevice()
    if device_id not in (-1, cur):
        raise RuntimeError(f"The device that the stream is created on ({device_id})"
                           f" does not match with the current device ({cur})")
    return cur


class Stream:
    null = None  # set below: the legacy default stream, usable on every device

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        if null or ptds:
            self.ptr, self.device_id = (0 if null else 2), -1
        else:
            self.device_id = runtime.getDevice()
            self.ptr = next(_stream_ptrs)

    def __repr__(self):
        return "<Stream %d (device %d)>" % (self.ptr, self.device_id)

    def __eq__(self, other):
        return isinstance(other, Stream) and self.ptr == other.ptr

    def __hash__(self):
        return self.ptr

    def use(self):
        _machine.stream_state()[0][_check_stream_device(self.device_id)] = self
        return self

    def __enter__(self):
        cur = _check_stream_device(self.device_id)
        current, stack = _machine.stream_state()
        stack.append((cur, current.get(cur, Stream.null)))
        current[cur] = self
        return self

    def __exit__(self, *exc):
        current, stack = _machine.stream_state()
        cur, prev = stack.pop()
        current[cur] = prev

    def _device(self):
        """The device whose work this stream orders (the null stream: the current one's)."""
        return runtime.getDevice() if self.device_id == -1 else self.device_id

    @property
    def done(self):     # all work is done: the host now knows it
        _machine.host_sync(self._device(), count=False)
        return True

    def synchronize(self):
        _machine.host_sync(self._device())

    def record(self, event=None):
        event = Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event):
        """cudaStreamWaitEvent: this stream's later work waits for what ``event`` recorded."""
        if event._recorded is not None:
            _machine.wait(self._device(), event._recorded)


Stream.null = Stream(null=True)


def get_current_stream(device_id=-1):
    if device_id == -1:
        device_id = runtime.getDevice()
    return _machine.stream_state()[0].get(device_id, Stream.null)


class Event:
    """Records the host's clock; ``get_elapsed_time`` reports milliseconds."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self._timing = not disable_timing
        self._time = None
        self._recorded = None       # the work it stands for, once recorded (cupy._machine.record)

    def record(self, stream=None):
        self._time = time.perf_counter()
        self._recorded = _machine.record((get_current_stream() if stream is None else stream)._device())

    @property
    def done(self):
        _machine.event_sync(self._recorded, count=False)
        return True

    def synchronize(self):
        _machine.event_sync(self._recorded)


def get_elapsed_time(start_event, end_event):
    # cudaEventElapsedTime on an event never recorded or without timing
    # fails with cudaErrorInvalidResourceHandle
    for e in (start_event, end_event):
        if e._time is None or not e._timing:
            raise runtime.CUDARuntimeError(400)
    return (end_event._time - start_event._time) * 1000.0


def __getattr__(name):
    raise AttributeError(f"cupy.cuda.{name} is not simulated by tests/simcuda "
                         "(add it there if the project needs it)")
