"""The towers' devices, from --backend and --gpus, and the error for a GPU out of memory."""

from __future__ import annotations

from minidl.backend import Device

from .cli import UserError


def tower_devices(backend, gpus, towers, local=(0, 1)):
    """The device of each tower, from --backend and --gpus ('0,1': tower i on the i-th listed GPU).

    ``local`` = (rank, size) of this process among the processes of a
    data-parallel job on this machine: --gpus may then list every process's
    GPUs in turn ('0,1,2,3' with two processes: 0,1 for the first, 2,3 for
    the second); a list for one process is shared by all of them.
    """
    local_rank, local_size = local
    if backend == "numpy":
        if gpus:
            raise UserError("--gpus needs --backend cupy")
        return ["cpu"] * towers
    try:
        ids = [int(g) for g in gpus.split(",")] if gpus else None
        if ids is not None and min(ids) < 0:
            raise ValueError
    except ValueError:
        raise UserError(f"--gpus expects GPU numbers (0, 1, ...) separated by commas, e.g. 0,1; got {gpus!r}") \
            from None
    if ids is None:
        count = Device("cuda", 0).check().xp.cuda.runtime.getDeviceCount()
        if count >= towers * local_size:     # each process of this machine on GPUs of its own
            ids = list(range(local_rank * towers, (local_rank + 1) * towers))
        else:
            ids = list(range(towers)) if count >= towers else [0] * towers
    if len(ids) == 1:
        ids = ids * towers
    if local_size > 1 and len(ids) == towers * local_size:
        ids = ids[local_rank * towers:(local_rank + 1) * towers]
    if len(ids) != towers:
        each = f" for each of the {local_size} processes on this machine in turn ({towers * local_size})" \
            if local_size > 1 else ""
        raise UserError(f"--gpus lists {len(ids)} GPUs but the preset has {towers} towers; give {towers}{each} "
                        f"(e.g. {','.join(['0'] * towers)} to put all on GPU 0)")
    devices = [Device("cuda", i) for i in ids]
    for d in devices:
        d.check()
    return [str(d) for d in devices]


def is_gpu_out_of_memory(exc):
    """True for CuPy's OutOfMemoryError (checked by name: CuPy is optional)."""
    return type(exc).__name__ == "OutOfMemoryError" and type(exc).__module__.startswith("cupy")


def gpu_memory_error(exc, batch_size, devices):
    """The UserError for a GPU that ran out of memory at ``batch_size``."""
    smaller = max(1, batch_size // 2)
    where = ", ".join(dict.fromkeys(str(d) for d in devices))
    hint = f"try --batch-size {smaller}" if batch_size > 1 else "the model alone does not fit"
    if len(set(str(d) for d in devices)) == 1 and len(devices) > 1:
        hint += ", or put the towers on two GPUs (--gpus 0,1)"
    return UserError(f"out of GPU memory on {where} at batch size {batch_size} ({str(exc).strip()}); {hint}")
