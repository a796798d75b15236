"""cupy.cuda.nccl, as CuPy 14's cupy/cuda/nccl.py: the NCCL bindings
(``._nccl_lib``) when NCCL is there, else ``available = False`` and no
NCCL names. Importing it never fails; SIMCUDA_NCCL=0 simulates a machine
without the NCCL library."""

from .. import _machine

available = True

try:
    if not _machine.NCCL:
        raise ImportError("libnccl.so.2: cannot open shared object file (SIMCUDA_NCCL=0)")
    from ._nccl_lib import *  # noqa: F401,F403
except ImportError:
    available = False
