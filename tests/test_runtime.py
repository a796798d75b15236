"""minidl.runtime: process-wide settings applied for a block and undone after it, and train's use of them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet import train
from minidl import kernels, runtime

REPO = Path(__file__).resolve().parents[1]


def glibc_version():
    """(major, minor) of the glibc this process runs on; () for another C library."""
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")
    except (AttributeError, ValueError, OSError):
        return ()
    return tuple(int(v) for v in version.split(".")[:2]) if name == "glibc" else ()


# In a fresh interpreter (the settings are process-wide), through glibc's mallinfo2: by default
# a 64 MiB array is an mmap'ed block, unmapped when freed (the next step faults its pages in
# again); in the block it lives in the heap, which keeps the memory after the array is freed;
# the same for an 80 MiB array made in another thread, which glibc would otherwise map outside
# its 64 MiB thread heaps. After the block, glibc maps big arrays again.
_HEAP = """
import ctypes, json, sys, threading, numpy as np
from minidl.runtime import tuned
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in 'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'.split()]
libc = ctypes.CDLL('libc.so.6')
libc.mallinfo2.restype = Info

def measure():
    a = np.ones(16 << 20, np.float32)
    live = libc.mallinfo2()
    del a
    freed = libc.mallinfo2()
    seen = []
    def big():
        b = np.ones(20 << 20, np.float32)
        seen.append(libc.mallinfo2().hblkhd >> 20)
    t = threading.Thread(target=big)
    t.start(); t.join()
    return [live.hblkhd >> 20, freed.arena >> 20, seen[0]]

out = {}
if sys.argv[1] == "1":
    with tuned(keep_freed_memory=True) as applied:
        out["applied"] = applied["keep_freed_memory"]
        out["inside"] = measure()
    b = np.ones(16 << 20, np.float32)
    out["after"] = libc.mallinfo2().hblkhd >> 20
else:
    out["inside"] = measure()
print(json.dumps(out))
"""


def test_keep_freed_memory_serves_big_arrays_from_the_heap_only_inside_the_block(tmp_path):
    if glibc_version() < (2, 33):
        have = ".".join(map(str, glibc_version())) or "none"
        pytest.skip(f"reads glibc's mallinfo2 (glibc 2.33 or later); glibc here: {have}")
    runs = {}
    for flag in ("0", "1"):
        r = subprocess.run([sys.executable, "-c", _HEAP, flag], capture_output=True, text=True, timeout=120,
                           cwd=REPO)
        assert r.returncode == 0, r.stderr
        runs[flag] = json.loads(r.stdout)
    mapped, heap_after_free, thread_mapped = runs["0"]["inside"]
    assert mapped >= 64 and heap_after_free < 64 and thread_mapped >= 80      # glibc's default
    mapped, heap_after_free, thread_mapped = runs["1"]["inside"]
    assert runs["1"]["applied"] is True
    assert mapped == 0 and heap_after_free >= 64 and thread_mapped == 0       # kept in the heap
    assert runs["1"]["after"] >= 64                                           # glibc's default again


def test_blas_threads_for_the_block_only():
    before = runtime.blas_threads()
    if before is None:
        pytest.skip("threadpoolctl finds no BLAS to set")
    with runtime.tuned(blas_threads=1) as applied:
        assert applied == {"blas_threads": 1, "keep_freed_memory": False} and runtime.blas_threads() == 1
        a = np.arange(64, dtype=np.float64).reshape(8, 8)
        np.testing.assert_array_equal(a @ a, np.einsum("ij,jk->ik", a, a))   # BLAS still works
    assert runtime.blas_threads() == before
    with runtime.tuned() as applied:                                           # nothing asked, nothing done
        assert applied == {"blas_threads": None, "keep_freed_memory": False}


def test_tower_threads_pay_with_as_many_cores_as_towers_up_to_twice_as_many():
    assert [runtime.tower_threads_pay(2, cores) for cores in (1, 2, 3, 4)] == [False, True, True, False]
    assert runtime.tower_threads_pay(1, 1) is False


def test_training_records_its_settings_and_leaves_the_process_as_it_found_it(tmp_path, monkeypatch):
    before = runtime.blas_threads()
    monkeypatch.setattr(train, "tower_threads_pay", lambda towers, cores=None: True)     # as on two cores
    run = tmp_path / "run"
    assert train.main(["--train-subset", "64", "--val-size", "20", "--batch-size", "32", "--test-subset", "20",
                       "--max-steps", "1", "--no-progress", "--out", str(run)]) == 0
    recorded = json.loads((run / "config.json").read_text())["runtime"]
    blas = before is not None
    assert recorded == {"blas_threads": 1 if blas else None, "keep_freed_memory": bool(glibc_version()),
                        "tower_threads": blas, "kernels": "fast", "processes": 1}
    assert runtime.blas_threads() == before
    with kernels.using("reference"):            # the kernel set is recorded too, and said
        assert train.main(["--train-subset", "64", "--val-size", "20", "--batch-size", "32", "--test-subset", "20",
                           "--max-steps", "1", "--no-progress", "--out", str(tmp_path / "ref")]) == 0
    assert json.loads((tmp_path / "ref" / "config.json").read_text())["runtime"]["kernels"] == "reference"
