"""Data parallelism over MPI: K processes train one model as one process would.

Every rank (process) holds a replica of the model and computes the gradient
of its share of each global batch of B images, rows [r B/K, (r+1) B/K). The
loss is a mean over the batch, so the global gradient is the mean of the K
shares' gradients:

    g = (1/B) sum_i grad l_i = (1/K) sum_r g_r,   g_r = (1/(B/K)) sum_{i in r} grad l_i

One allreduce (the sum over ranks, left on every rank) per step gives each
rank g, and every rank applies the same SGD update to the same weights, so
the replicas never drift apart. The gradients travel in one flat contiguous
buffer per device: through mpi4py's buffer interface (``Allreduce``; no
pickling) from host memory, or, where every process's gradients are on GPUs
and CuPy has NCCL, with NCCL's all-reduce from device memory (one NCCL
communicator per tower device, its unique id sent over MPI).

``group()`` is the one entry point: a ``Group`` of one process when the
program was not started by ``mpirun`` (mpi4py is then never imported), an
``MPIGroup`` over ``MPI.COMM_WORLD`` when it was.
"""

from __future__ import annotations

import os
import sys
import traceback

import numpy as np

from .backend import asnumpy, get_array_module, to_device

INSTALL_HINT = 'pip install -e ".[mpi]" (mpi4py; it needs an MPI library such as Debian\'s openmpi-bin)'

# What mpirun/mpiexec put in each rank's environment: Open MPI, MPICH and
# Intel MPI (Hydra), and any PMIx launcher.
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE")
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")


def _launcher_says(names, default):
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def launched_size():
    """How many processes the MPI launcher started (1 when not under mpirun)."""
    return max(1, _launcher_says(_SIZE_VARIABLES, 1))


def launched_rank():
    """This process's rank as the launcher numbered it (0 when not under mpirun)."""
    return _launcher_says(_RANK_VARIABLES, 0)


class MPIUnavailable(RuntimeError):
    """Started by mpirun, but mpi4py cannot be imported."""


def rows(n, rank, size):
    """The slice of a batch of ``n`` rows that rank ``rank`` of ``size`` takes: contiguous, in rank order."""
    return slice(n * rank // size, n * (rank + 1) // size)


class Group:
    """One process: every collective is the identity. The interface MPIGroup implements."""

    rank, size = 0, 1
    local_rank, local_size = 0, 1   # this process's rank among the group's processes on this machine, and their number

    @property
    def is_root(self):
        return self.rank == 0

    def prepare(self, params):
        """Choose how gradients will travel (collective: every process calls it, before the first step)."""

    def average_gradients(self, params):
        """Replace each parameter's gradient by its mean over the ranks."""

    def sum(self, values):
        """Element-wise sum over the ranks of a float64 NumPy array (returned, same shape)."""
        return np.asarray(values, dtype=np.float64)

    def broadcast(self, obj):
        """Rank 0's ``obj`` (a small picklable value of ours) on every rank."""
        return obj

    def gather_all(self, obj):
        """Every rank's ``obj`` (small, picklable), in rank order, on every rank."""
        return [obj]

    def barrier(self):
        pass

    def abort(self, code=1):
        raise SystemExit(code)

    def describe(self):
        return {"processes": 1}


class MPIGroup(Group):
    """Every process that mpirun started (MPI.COMM_WORLD)."""

    def __init__(self, comm):
        self.comm = comm
        from mpi4py import MPI

        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        host = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = host.Get_rank(), host.Get_size()
        host.Free()
        self._flat = {}              # dtype -> host buffer of all the gradients, reused every step
        self._nccl = {}              # tower device index -> NCCL communicator
        self.reduction = None        # "mpi" (through host memory) or "nccl"; agreed on at the first step

    def average_gradients(self, params):
        if self.reduction is None:
            self.prepare(params)
        params = [p for p in params if p.grad is not None]   # the same list, in the same order, everywhere
        if self.reduction == "nccl":
            by_device = {}                # the towers' devices, in the order the model lists them
            for p in params:
                by_device.setdefault(p.device, []).append(p)
            for i, (device, on_device) in enumerate(by_device.items()):
                self._nccl_average(i, device, on_device)
        else:
            self._host_average(params)

    def _host_average(self, params):
        # Pack every gradient of one dtype into one flat host buffer, sum it over the processes in
        # place, and unpack the mean: one message per step, whatever the number of layers.
        from mpi4py import MPI

        by_dtype = {}
        for p in params:
            by_dtype.setdefault(np.dtype(p.grad.dtype), []).append(p)
        for dtype, group in by_dtype.items():
            total = sum(p.grad.size for p in group)
            flat = self._flat.get(dtype)
            if flat is None or flat.size != total:
                flat = self._flat[dtype] = np.empty(total, dtype=dtype)
            offset = 0
            for p in group:              # from a GPU: the host synchronisation of the step
                flat[offset:offset + p.grad.size] = asnumpy(p.grad).reshape(-1)
                offset += p.grad.size
            self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            flat /= self.size
            offset = 0
            for p in group:
                part = flat[offset:offset + p.grad.size].reshape(p.grad.shape)
                if get_array_module(p.grad) is np:
                    p.grad[...] = part
                else:
                    # the upload runs on p.device's stream; with another device current, the copy into p.grad
                    # would run on that device's stream, not ordered after the upload (nor before p's next step)
                    with p.device:
                        p.grad[...] = to_device(part, p.device)
                offset += p.grad.size

    def prepare(self, params):
        """NCCL where every process has its parameters on GPUs of its own, as many as the others, and CuPy
        has NCCL (NCCL takes one process per GPU); else MPI through host memory. Collective."""
        import socket

        params = list(params)
        on_gpus = bool(params) and all(get_array_module(p.data) is not np for p in params)
        if on_gpus:
            try:
                from cupy.cuda import nccl
            except ImportError:
                on_gpus = False
            else:       # CuPy 14 imports nccl without the NCCL library, with available = False
                on_gpus = bool(getattr(nccl, "available", True))
        gpus = sorted({(socket.gethostname(), str(p.device)) for p in params}) if on_gpus else []
        everyone = self.gather_all((on_gpus, gpus))
        all_gpus = [g for _, mine in everyone for g in mine]
        same_shape = len({len(mine) for _, mine in everyone}) == 1
        ok = all(on for on, _ in everyone) and same_shape and len(all_gpus) == len(set(all_gpus))
        self.reduction = "nccl" if ok else "mpi"

    def _nccl_average(self, index, device, params):
        from cupy.cuda import nccl

        codes = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        with device:
            import cupy

            comm = self._nccl.get(index)
            if comm is None:     # collective: the processes' index-th tower devices form one communicator
                uid = self.broadcast(nccl.get_unique_id() if self.is_root else None)
                comm = self._nccl[index] = nccl.NcclCommunicator(self.size, uid, self.rank)
            flat = cupy.concatenate([p.grad.reshape(-1) for p in params])
            comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, codes[flat.dtype], nccl.NCCL_SUM,
                           cupy.cuda.get_current_stream().ptr)
            flat /= self.size
            offset = 0
            for p in params:
                p.grad[...] = flat[offset:offset + p.grad.size].reshape(p.grad.shape)
                offset += p.grad.size

    def sum(self, values):
        from mpi4py import MPI

        out = np.ascontiguousarray(values, dtype=np.float64).copy()
        self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        return out

    def broadcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def gather_all(self, obj):
        return self.comm.allgather(obj)

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        self.comm.Abort(code)

    def describe(self):
        return {"processes": self.size, "processes_per_host": self.local_size, "allreduce": self.reduction,
                "mpi": mpi_library()}


def mpi_library():
    """The MPI library mpi4py runs on, in a few words ('Open MPI v4.1.4')."""
    from mpi4py import MPI

    return MPI.Get_library_version().split(",")[0].strip("\x00 \n")


_GROUP = None


def group():
    """The process group of this program: created once, on first use."""
    global _GROUP
    if _GROUP is None:
        if launched_size() == 1:
            _GROUP = Group()
        else:
            try:
                from mpi4py import MPI
            except ImportError as exc:
                raise MPIUnavailable(f"started by mpirun, but mpi4py is not installed ({exc}); {INSTALL_HINT}") \
                    from None
            _GROUP = MPIGroup(MPI.COMM_WORLD)
    return _GROUP


def cores_per_process(group):
    """CPU cores this process should use: those the launcher bound it to, else a fair share of the host's."""
    from .runtime import usable_cores

    mine = usable_cores()
    if group.local_size == 1 or mine < (os.cpu_count() or mine):
        return mine                 # alone on the machine, or already bound to its cores by mpirun
    return max(1, mine // group.local_size)


def run_everywhere(group, fn):
    """Return ``fn()``; in a group of several processes, an exception here stops them all.

    A process that dies of an exception would otherwise leave the others
    waiting forever in their next allreduce: it says which process it is and
    why, and aborts the whole job (mpirun then ends every process).
    """
    if group.size == 1:
        return fn()
    try:
        return fn()
    except BaseException as exc:         # noqa: BLE001  (any cause: report it, then end the job)
        if not isinstance(exc, (SystemExit, KeyboardInterrupt)):
            traceback.print_exc()
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        print(f"process {group.rank} of {group.size}: {type(exc).__name__}; stopping all {group.size} processes",
              file=sys.stderr, flush=True)
        group.abort(code or 1)
