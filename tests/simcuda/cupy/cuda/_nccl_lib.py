"""The NCCL library's bindings (cupy_backends/cuda/libs/nccl.pyx), re-exported
by ``cupy.cuda.nccl``: NCCL's all-reduce between the processes of an MPI job.

The simulated machine has no interconnect, so the stand-in sums over MPI
(mpi4py, imported when a communicator is made), on the host memory behind
each simulated device array. What it keeps of NCCL's and CuPy's rules:

- ``get_unique_id()`` is 128 bytes (CuPy 14; a tuple of ints before).
  ``NcclCommunicator(ndev, commId, rank)`` takes them as Cython's ``bytes
  commId`` does (another type is a TypeError, another length CuPy's
  ValueError). It is collective: every process of the job makes it, in the
  same order; ``ndev`` is the number of processes and ``rank`` this one's.
  It belongs to the device current when it is made.
- ``allReduce(sendbuf, recvbuf, count, datatype, op, stream)`` takes raw
  device addresses (``x.data.ptr``), a count of elements and NCCL's type and
  operation codes; it must be called with the communicator's device current
  (CuPy's wrapper does not switch devices, and NCCL launches on that device).
- One process per GPU: two processes of one machine whose communicators
  would share a device fail as NCCL does ("Duplicate GPU detected").
"""

import ctypes
import os
import socket

import numpy as np

from . import runtime

available = True
NCCL_UNIQUE_ID_BYTES = 128
# nccl.h: ncclDataType_t and ncclRedOp_t
NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3

_C_TYPES = {NCCL_FLOAT32: ctypes.c_float, NCCL_FLOAT64: ctypes.c_double}


class NcclError(RuntimeError):
    pass


def get_unique_id():
    """The bytes that name one communicator (nccl.pyx get_unique_id)."""
    return os.urandom(NCCL_UNIQUE_ID_BYTES)


class NcclCommunicator:
    def __init__(self, ndev, commId, rank, config=None):
        from .._core import typename

        if commId is not None and type(commId) is not bytes:       # the Cython signature's ``bytes commId``
            raise TypeError(f"Argument 'commId' has incorrect type (expected bytes, got {typename(commId)})")
        if len(commId) != NCCL_UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(commId)} != {NCCL_UNIQUE_ID_BYTES}.")
        if config is not None:
            raise NotImplementedError("NcclConfig is not simulated")
        from mpi4py import MPI

        world = MPI.COMM_WORLD
        if ndev != world.Get_size() or not 0 <= rank < ndev or rank != world.Get_rank():
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: ndev={ndev}, rank={rank} in a job of "
                            f"{world.Get_size()} processes (this one is rank {world.Get_rank()})")
        ids = world.allgather(commId)
        if any(i != commId for i in ids):
            raise NcclError("NCCL_ERROR_INVALID_USAGE: the processes were given different unique ids")
        self._device = runtime.getDevice()
        where = world.allgather((socket.gethostname(), self._device))
        if len(set(where)) != len(where):
            raise NcclError("NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected: two processes of one machine "
                            f"on one device ({where})")
        self._comm = world.Dup()
        self._rank, self._size = rank, ndev

    def device_id(self):
        return self._device

    def rank_id(self):
        return self._rank

    def size(self):
        return self._size

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        from mpi4py import MPI

        if runtime.getDevice() != self._device:
            raise NcclError(f"NCCL_ERROR_INVALID_USAGE: communicator of device {self._device} used with "
                            f"device {runtime.getDevice()} current")
        if datatype not in _C_TYPES:
            raise NcclError(f"datatype {datatype} is not simulated (float32 = {NCCL_FLOAT32}, "
                            f"float64 = {NCCL_FLOAT64})")
        if op != NCCL_SUM:
            raise NcclError(f"reduction {op} is not simulated (sum = {NCCL_SUM})")
        if not all(isinstance(v, int) for v in (sendbuf, recvbuf, count)):
            raise NcclError("sendbuf, recvbuf and count are integers (device addresses: x.data.ptr)")
        ctype = _C_TYPES[datatype] * int(count)
        recv = np.ctypeslib.as_array(ctype.from_address(recvbuf))
        if sendbuf == recvbuf:
            self._comm.Allreduce(MPI.IN_PLACE, recv, op=MPI.SUM)
        else:
            self._comm.Allreduce(np.ctypeslib.as_array(ctype.from_address(sendbuf)), recv, op=MPI.SUM)

    def destroy(self):
        self._comm.Free()
