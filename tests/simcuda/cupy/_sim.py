"""``cupy._sim``: the control API tests use over the simulated machine.

    sync_count() / reset_sync_count()   host synchronisations so far
    set_peer_access(enabled)            simulate P2P between all devices
    peer_access()                       is it simulated now
    device_count()                      how many devices are reported
    devices(n)                          context manager: report n devices
                                        inside the block
    StreamOrderError                    what an access unordered between two
                                        devices' streams raises

The state lives in ``cupy._machine``. With SIMCUDA_CONTROL=0 this module
cannot be imported, as on a GPU, where CuPy has no ``_sim``.
"""

import contextlib

from . import _machine
from ._machine import StreamOrderError  # noqa: F401

if not _machine.CONTROL:
    raise ImportError("cupy._sim, the CuPy simulator's control API, is hidden (SIMCUDA_CONTROL=0), "
                      "as on a real GPU, where CuPy has no _sim")


def sync_count():
    """How many times the host has waited for a device since the last reset."""
    return _machine.syncs


def reset_sync_count():
    with _machine.lock:
        _machine.syncs = 0


def set_peer_access(enabled):
    """Simulate (True) or withhold (False) peer access between every pair of devices."""
    _machine.peer = bool(enabled)


def peer_access():
    return _machine.peer


def device_count():
    return _machine.device_count


@contextlib.contextmanager
def devices(n):
    """Report ``n`` devices inside the block (0: a machine without a GPU)."""
    saved, _machine.device_count = _machine.device_count, int(n)
    try:
        yield
    finally:
        _machine.device_count = saved
