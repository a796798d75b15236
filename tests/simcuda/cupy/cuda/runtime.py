"""cupy.cuda.runtime: the CUDA runtime calls the project uses, on simulated devices.

Errors are CuPy's (cupy_backends/cuda/api/runtime.pyx): CUDARuntimeError,
a RuntimeError whose message is '<cudaGetErrorName>: <cudaGetErrorString>'.
"""

from .. import _machine

_ERRORS = {
    100: ("cudaErrorNoDevice", "no CUDA-capable device is detected"),
    101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
    400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
}


class CUDARuntimeError(RuntimeError):
    def __init__(self, status):
        self.status = status
        super().__init__("%s: %s" % _ERRORS[status])

    def __reduce__(self):
        return (type(self), (self.status,))


def getDeviceCount():
    n = _machine.device_count
    if n == 0:
        raise CUDARuntimeError(100)
    return n


def check_device(device_id):
    """What cudaSetDevice and every per-device call do with a bad ordinal."""
    if not 0 <= device_id < getDeviceCount():
        raise CUDARuntimeError(101)


def getDevice():
    getDeviceCount()
    return _machine.current_device()


def setDevice(device_id):
    check_device(device_id)
    _machine.set_current_device(device_id)


def deviceCanAccessPeer(device, peerDevice):
    check_device(device)
    check_device(peerDevice)
    # CUDA answers 0 for a device and itself.
    return int(_machine.peer and device != peerDevice)


def deviceSynchronize():
    _machine.host_sync(getDevice())


def getDeviceProperties(device):
    """A few of cudaGetDeviceProperties' fields, as CuPy returns them (a dict; the name in bytes)."""
    from . import _COMPUTE_CAPABILITY, memory

    check_device(device)
    return {"name": f"simulated CUDA device {device} (simcuda)".encode(), "totalGlobalMem": memory.mem_info(device)[1],
            "major": int(_COMPUTE_CAPABILITY[0]), "minor": int(_COMPUTE_CAPABILITY[1]), "multiProcessorCount": 1}


def runtimeGetVersion():
    return 12090


def driverGetVersion():
    """cudaDriverGetVersion: the newest CUDA version the driver supports."""
    return 12090


def memGetInfo():
    from . import memory

    return memory.mem_info(getDevice())
