"""The CuPy stand-in (tests/simcuda): each of its rules, broken and kept.

Every test shows code that breaks a CuPy rule failing as it fails in CuPy
(and would not fail with plain NumPy), next to the legal form working.
Rule numbers refer to tests/simcuda/README.md.
"""

import importlib.util
import operator
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

_SIMCUDA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simcuda")


def _is_simulator(origin):
    return bool(origin) and os.path.abspath(origin).startswith(_SIMCUDA + os.sep)


if "cupy" in sys.modules and not _is_simulator(getattr(sys.modules["cupy"], "__file__", None)):
    pytest.skip("a real CuPy is imported: these tests are about the CuPy simulator",
                allow_module_level=True)
_spec = importlib.util.find_spec("cupy")
if _spec is None or not _is_simulator(_spec.origin):
    sys.path.insert(0, _SIMCUDA)

import cupy  # noqa: E402
from cupy import _sim  # noqa: E402
from cupy.cuda import Device, runtime  # noqa: E402

from minidl.backend import cupy_available, is_cupy_array  # noqa: E402

PEER_MSG = ("The device where the array resides (1) is different from the current device (0). "
            "Peer access is unavailable between these devices.")
NUMPY_OPERAND = "Unsupported type <class 'numpy.ndarray'>"


@pytest.fixture(autouse=True)
def two_devices():
    """Each test starts on device 0 of two, without peer access."""
    saved = _sim.peer_access()
    with _sim.devices(2):
        _sim.set_peer_access(False)
        runtime.setDevice(0)
        yield
        runtime.setDevice(0)
    _sim.set_peer_access(saved)


def on(device, make):
    with Device(device):
        return make()


def host(x):
    return cupy.asnumpy(x)


# -- 1. arrays: their own type, on one device; views share memory and device --

def test_arrays_are_not_numpy_arrays():
    x = cupy.zeros(3)
    assert type(x) is cupy.ndarray and not isinstance(x, np.ndarray)
    assert type(x).__module__.startswith("cupy") and is_cupy_array(x)
    assert not is_cupy_array(np.zeros(3))


def test_an_array_belongs_to_the_device_current_when_allocated():
    x = on(1, lambda: cupy.zeros(3))
    assert isinstance(x.device, Device) and x.device.id == 1 and x.device == Device(1)
    assert x.data.device_id == 1
    assert cupy.zeros(3).device.id == 0


@pytest.mark.parametrize("view", [
    lambda x: x[1:], lambda x: x.reshape(6, 4), lambda x: x.transpose(1, 0, 2), lambda x: x.T,
    lambda x: x.ravel(), lambda x: x[:, :1].squeeze(1), lambda x: x.swapaxes(0, 2),
    lambda x: x.view(), lambda x: x[0],
])
def test_views_share_memory_and_stay_on_the_source_device(view):
    x = on(1, lambda: cupy.zeros((2, 3, 4), dtype=cupy.float32))
    v = view(x)
    assert v.device.id == 1
    with Device(1):
        v += 1      # a write through the view is a write into x
        assert int((x == 1).sum()) == v.size


def test_a_reshape_that_needs_a_copy_lands_on_the_current_device():
    x = on(1, lambda: cupy.arange(6.0).reshape(2, 3))
    y = x.T.reshape(-1)        # not expressible as a view: CuPy's x.copy(), a memcpy
    assert y.device.id == 0 and y.base is None
    assert host(y).tolist() == [0, 3, 1, 4, 2, 5]


def test_view_pointers_are_offset_into_the_base():
    x = cupy.zeros(10, dtype=cupy.float32)
    assert x[3:].data.ptr == x.data.ptr + 12
    assert x[3:].base is x and x.flags.owndata and not x[3:].flags.owndata
    assert x.flags["C_CONTIGUOUS"] and x.T.flags.f_contiguous
    with pytest.raises(KeyError, match="is not defined for cupy.ndarray.flags"):
        x.flags["WRITEABLE"]


# -- 2. devices: per-thread current device, context manager, runtime calls ------

def test_device_context_restores_the_previous_device_and_nests():
    with Device(1) as d:
        assert d.id == 1 and runtime.getDevice() == 1 and Device().id == 1
        with Device(0):
            assert runtime.getDevice() == 0
        assert runtime.getDevice() == 1
        Device(0).use()         # undone when the block ends
    assert runtime.getDevice() == 0
    Device(1).use()
    assert cupy.zeros(1).device.id == 1


def test_a_new_thread_starts_on_device_0():
    seen = []
    with Device(1):
        t = threading.Thread(target=lambda: seen.append((runtime.getDevice(), cupy.zeros(1).device.id)))
        t.start()
        t.join()
        assert runtime.getDevice() == 1
    assert seen == [(0, 0)]


def test_devices_compare_by_id_and_only_with_devices():
    assert Device(1) == Device(1) and Device(0) != Device(1) and Device(0) < Device(1)
    assert not Device(0) == 0 and int(Device(1)) == 1
    with pytest.raises(TypeError):
        hash(Device(0))


def test_a_device_that_does_not_exist_fails_when_used_not_when_named():
    d = Device(2)       # no check at construction, as in CuPy
    for use in (d.use, d.__enter__, d.synchronize):
        with pytest.raises(runtime.CUDARuntimeError) as e:
            use()
        assert str(e.value) == "cudaErrorInvalidDevice: invalid device ordinal"
        assert isinstance(e.value, RuntimeError)
    with Device(0):
        assert runtime.getDevice() == 0


def test_runtime_calls():
    assert runtime.getDeviceCount() == 2 and _sim.device_count() == 2
    runtime.setDevice(1)
    assert runtime.getDevice() == 1
    assert runtime.deviceCanAccessPeer(0, 1) == 0
    _sim.set_peer_access(True)
    assert runtime.deviceCanAccessPeer(0, 1) == 1 and runtime.deviceCanAccessPeer(1, 1) == 0
    with pytest.raises(runtime.CUDARuntimeError, match="invalid device ordinal"):
        runtime.setDevice(2)


def test_a_machine_without_devices():
    with _sim.devices(0):
        with pytest.raises(runtime.CUDARuntimeError) as e:
            runtime.getDeviceCount()
        assert str(e.value) == "cudaErrorNoDevice: no CUDA-capable device is detected"
        with pytest.raises(runtime.CUDARuntimeError):
            cupy.zeros(3)
        assert not cupy_available() and not cupy.is_available()
    assert cupy_available()


def test_the_environment_sets_devices_and_peer_access():
    code = "import cupy; print(cupy.cuda.runtime.getDeviceCount(), cupy._sim.peer_access())"
    env = dict(os.environ, SIMCUDA_DEVICES="3", SIMCUDA_PEER="1",
               PYTHONPATH=os.pathsep.join([_SIMCUDA, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["3", "True"]


def test_the_control_api_can_be_hidden_as_on_a_gpu():
    code = ("import cupy\n"
            "for statement in ('from cupy import _sim', 'import cupy._sim'):\n"
            "    try:\n"
            "        exec(statement)\n"
            "    except ImportError as e:\n"
            "        print('ImportError:', e)\n"
            "try:\n"
            "    cupy._sim\n"
            "except AttributeError:\n"
            "    print('AttributeError')\n"
            "with cupy.cuda.Device(1):\n"
            "    print(float((cupy.ones(2) * 2).sum()), cupy.cuda.runtime.getDeviceCount())\n")
    env = dict(os.environ, SIMCUDA_CONTROL="0",
               PYTHONPATH=os.pathsep.join([_SIMCUDA, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    hidden = ("ImportError: cupy._sim, the CuPy simulator's control API, is hidden (SIMCUDA_CONTROL=0), "
              "as on a real GPU, where CuPy has no _sim")
    assert out == [hidden, hidden, "AttributeError", "4.0 2"]


# -- 3. kernels reading another device's array ------------------------------------

CHECKED_OPS = {
    "operator": lambda a, b: a + b,
    "reflected operator": lambda a, b: 2.0 - a,
    "in-place operator": lambda a, b: b.__iadd__(a),
    "ufunc": lambda a, b: cupy.multiply(a, b),
    "numpy ufunc": lambda a, b: np.exp(a),
    "ufunc out=": lambda a, b: cupy.negative(b, out=a),
    "reduction": lambda a, b: a.sum(),
    "reduction out=": lambda a, b: b.sum(axis=0, out=a[0]),
    "concatenate": lambda a, b: cupy.concatenate([b, a]),
    "stack": lambda a, b: cupy.stack([b, a]),
    "kernel": lambda a, b: cupy.ElementwiseKernel("T x", "T y", "y = x", "copy")(a),
    "astype": lambda a, b: a.astype(cupy.float32),
    "ascontiguousarray": lambda a, b: cupy.ascontiguousarray(a[::2]),
    "where": lambda a, b: cupy.where(b > 0, a, b),
    "fill": lambda a, b: a.fill(2.0),
    "setitem, other layout": lambda a, b: b.__setitem__(Ellipsis, a[::-1]),
    "advanced index": lambda a, b: a[cupy.asarray([0, 1])],
}


@pytest.mark.parametrize("op", CHECKED_OPS.values(), ids=CHECKED_OPS.keys())
def test_a_kernel_refuses_an_array_of_another_device(op):
    a = on(1, lambda: cupy.arange(4.0))
    b = cupy.arange(4.0)
    with pytest.raises(ValueError) as e:
        op(a, b)
    assert str(e.value) == PEER_MSG
    with Device(1):     # the same operation with everything on the current device
        op(a, cupy.arange(4.0))


@pytest.mark.parametrize("op", CHECKED_OPS.values(), ids=CHECKED_OPS.keys())
def test_with_peer_access_it_warns_and_computes_on_the_current_device(op):
    _sim.set_peer_access(True)
    a = on(1, lambda: cupy.arange(4.0))
    Device(1).synchronize()     # device 0's kernel must not read a before device 1 has written it
    b = cupy.arange(4.0)
    with pytest.warns(cupy._util.PerformanceWarning,
                      match=r"current device \(0\)\. Peer access has been activated automatically\."):
        r = op(a, b)
    if isinstance(r, cupy.ndarray) and r.base is None and r is not a and r is not b:
        assert r.device.id == 0     # a new array


def test_the_peer_warning_points_at_the_calling_line():
    _sim.set_peer_access(True)
    a = on(1, lambda: cupy.ones(2))
    Device(1).synchronize()
    with pytest.warns(cupy._util.PerformanceWarning) as record:
        a * 2
    assert record[0].filename == __file__


def test_results_are_allocated_on_the_current_device():
    _sim.set_peer_access(True)
    a, b = cupy.ones(3), cupy.ones(3)
    Device(0).synchronize()
    with Device(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", cupy._util.PerformanceWarning)
        assert (a + b).device.id == 1 and a.sum().device.id == 1
        assert cupy.concatenate([a, b]).device.id == 1


@pytest.mark.parametrize("op", [lambda a, b: a @ b, lambda a, b: cupy.matmul(a, b),
                                lambda a, b: cupy.dot(a, b), lambda a, b: a.dot(b)])
@pytest.mark.parametrize("peer", [False, True])
def test_matmul_across_devices_is_always_refused(op, peer):
    """Undefined behaviour in CuPy (no check in cuBLAS calls): refused even with P2P."""
    _sim.set_peer_access(peer)
    a = on(1, lambda: cupy.ones((2, 2)))
    with pytest.raises(ValueError, match="undefined behaviour"):
        op(a, cupy.ones((2, 2)))
    assert host(op(cupy.ones((2, 2)), cupy.ones((2, 2)))).tolist() == [[2, 2], [2, 2]]


def test_a_raw_kernel_refuses_an_array_of_another_device_even_with_peer_access():
    _sim.set_peer_access(True)
    kern = cupy.RawKernel('extern "C" __global__ void z(float* x) { x[threadIdx.x] = 0; }', "z")
    with pytest.raises(ValueError, match="undefined behaviour"):
        kern((1,), (2,), (on(1, lambda: cupy.ones(2, dtype=cupy.float32)),))


# -- 4. NumPy arrays are not CuPy operands -------------------------------------------

NUMPY_MIXES = {
    "c + n": lambda c, n: c + n,
    "n + c": lambda c, n: n + c,
    "c * 0-d n": lambda c, n: c * np.array(2.0),
    "c += n": lambda c, n: c.__iadd__(n),
    "cupy ufunc": lambda c, n: cupy.add(c, n),
    "numpy ufunc": lambda c, n: np.add(c, n),
    "out=numpy": lambda c, n: cupy.add(c, c, out=n),
    "concatenate": lambda c, n: cupy.concatenate([c, n]),
    "numpy concatenate": lambda c, n: np.concatenate([c, n]),
    "kernel": lambda c, n: cupy.ElementwiseKernel("T x, T y", "T z", "z = x + y", "add")(c, n),
    "where": lambda c, n: cupy.where(c > 0, c, n),
}


@pytest.mark.parametrize("op", NUMPY_MIXES.values(), ids=NUMPY_MIXES.keys())
def test_a_numpy_array_operand_is_a_type_error(op):
    with pytest.raises(TypeError) as e:
        op(cupy.ones(3), np.ones(3))
    assert str(e.value) == NUMPY_OPERAND


@pytest.mark.parametrize("op", [lambda c, n: c @ n, lambda c, n: n @ c,
                                lambda c, n: cupy.matmul(c, n), lambda c, n: cupy.dot(c, n)])
def test_matmul_with_a_numpy_array_is_a_type_error(op):
    with pytest.raises(TypeError, match="has incorrect type .*got numpy.ndarray"):
        op(cupy.ones((2, 2)), np.ones((2, 2)))


def test_scalars_are_operands():
    c = cupy.ones(3, dtype=cupy.float32)
    for r in (c + 2, 2.0 * c, c * np.float32(2), np.float64(1) + c, cupy.add(c, True)):
        assert type(r) is cupy.ndarray
    assert (c * 2.0).dtype == np.float32 and (c * np.float64(2)).dtype == np.float64    # NEP 50
    assert bool((c == np.array(1.0)).all())     # comparisons take a 0-d NumPy array's value
    with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
        c + [1, 2, 3]


def test_numpy_functions_dispatch_to_cupy():
    c = cupy.arange(3.0)
    for r in (np.exp(c), np.add(c, c), np.concatenate([c, c]), np.sum(c), np.maximum(c, 1)):
        assert type(r) is cupy.ndarray
    with pytest.raises(TypeError):
        np.linalg.norm(c)       # not simulated: no silent NumPy fallback


@pytest.mark.parametrize("convert", [np.asarray, np.array, lambda c: np.ones(3) * 1 + np.asarray(c)])
def test_implicit_conversion_to_numpy_is_refused(convert):
    with pytest.raises(TypeError) as e:
        convert(cupy.ones(3))
    assert str(e.value) == ("Implicit conversion to a NumPy array is not allowed. "
                            "Please use `.get()` to construct a NumPy array explicitly.")


def test_basic_index_assignment_from_a_numpy_array_is_refused():
    c = cupy.zeros(4)
    for key in (Ellipsis, slice(None), slice(0, 2)):
        with pytest.raises(ValueError, match="^non-scalar numpy.ndarray cannot be used for fill$"):
            c[key] = np.ones(4)[key]
    c[...] = np.float32(2)          # scalars and 0-d arrays fill
    c[1:] = np.array(3.0)
    c[np.array([0])] = np.array([5.0])     # advanced indexing uploads the value
    c[...] = c + 0
    assert host(c).tolist() == [5, 3, 3, 3]
    c.set(np.arange(4.0))           # the explicit upload
    assert host(c).tolist() == [0, 1, 2, 3]


def test_out_of_range_integer_indices_wrap_around_as_in_cupy():
    """NumPy raises IndexError; CuPy takes the index modulo the axis length, silently."""
    x = cupy.arange(12).reshape(3, 4)
    with pytest.raises(IndexError):
        np.arange(12).reshape(3, 4)[np.arange(3), np.array([0, 4, -1])]
    got = x[cupy.arange(3), cupy.asarray(np.array([0, 4, -1]))]
    assert got.tolist() == [0, 4, 11]                     # columns 0, 4 % 4 = 0, -1 % 4 = 3
    x[cupy.asarray(np.array([3])), 0] = 100                # row 3 % 3 = 0
    assert x[0, 0].item() == 100 and x[1:, 0].tolist() == [4, 8]
    mask = cupy.asarray(np.array([True, False, True]))
    assert x[mask].shape == (2, 4)                         # boolean masks do not wrap


# -- 5. copies between devices -----------------------------------------------------

@pytest.mark.parametrize("copy", [cupy.asarray, cupy.array, lambda x: x.copy(),
                                  lambda x: cupy.asarray(x, dtype=cupy.float32)])
def test_copies_from_another_device_land_on_the_current_one(copy):
    x = on(1, lambda: cupy.arange(6.0).reshape(2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # a memcpy: no device check, no warning
        y = copy(x)
    assert y.device.id == 0 and host(y).tolist() == host(x).tolist()


def test_a_non_contiguous_array_cannot_be_copied_between_devices_in_order_k():
    x = on(1, lambda: cupy.arange(24.0).reshape(2, 3, 4))
    for strided in (x.transpose(1, 0, 2), x[:, :, ::2]):
        with pytest.raises(NotImplementedError,
                           match="^CuPy cannot copy non-contiguous array between devices.$"):
            cupy.asarray(strided)       # asarray/array default to order='K'
        assert strided.copy().device.id == 0            # order 'C' is made contiguous first
    assert cupy.asarray(x.T).flags.f_contiguous         # F-contiguous is contiguous


def test_asarray_of_a_current_device_array_is_the_array():
    x = cupy.ones(3)
    assert cupy.asarray(x) is x and cupy.array(x) is not x
    assert cupy.asarray(x, dtype=cupy.float32) is not x
    y = on(1, lambda: cupy.ones(3))
    assert cupy.asarray(y) is not y and cupy.asarray(y).device.id == 0


def test_asarray_of_host_data_uploads_to_the_current_device():
    with Device(1):
        a = cupy.asarray(np.arange(3))
        b = cupy.asarray([[1, 2], [3, 4]])
    assert a.device.id == 1 == b.device.id and type(a) is cupy.ndarray
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cupy.asarray(np.array(["a"]))


def test_ascontiguousarray_returns_a_contiguous_array_itself_even_from_another_device():
    x = on(1, lambda: cupy.ones(3))
    assert cupy.ascontiguousarray(x) is x
    with pytest.raises(TypeError, match="Argument 'a' has incorrect type"):
        cupy.ascontiguousarray(np.ones(3))


def test_same_layout_assignment_is_a_memcpy_between_devices():
    x = on(1, lambda: cupy.arange(4.0))
    y = cupy.zeros(4)
    y[...] = x          # works without peer access
    y[:2] = x[2:]
    assert host(y).tolist() == [2, 3, 2, 3]
    with pytest.raises(ValueError, match="Peer access is unavailable"):
        y[...] = x[::-1]        # other strides: a copy kernel on the current device


# -- stream ordering between devices ---------------------------------------------------

def pending_on_1():
    """An array that device 1's stream is uploading (cupy.asarray returns before the copy is done), and
    another array of device 1."""
    with Device(1):
        return cupy.asarray(np.arange(4.0)), cupy.empty(4)


def test_a_copy_issued_on_another_device_may_read_an_unfinished_upload():
    src, dst = pending_on_1()
    with pytest.raises(_sim.StreamOrderError) as e:
        dst[...] = src          # device 0 current: the copy runs on device 0's stream
    assert isinstance(e.value, RuntimeError)
    assert str(e.value).startswith(f"{__file__}:")     # the line that issued it
    assert ("a copy (cudaMemcpyAsync) on device 0 reads memory of device 1 that device 1 last wrote" in str(e.value)
            and "`with cupy.cuda.Device(1):`" in str(e.value) and "`cupy.cuda.Device(1).synchronize()`" in str(e.value))
    with Device(1):
        dst[...] = src          # on device 1's stream: after the upload
    assert host(dst).tolist() == [0, 1, 2, 3]


def test_a_kernel_with_peer_access_is_not_ordered_after_the_other_devices_work():
    _sim.set_peer_access(True)
    x = on(1, lambda: cupy.arange(4.0))
    kern = cupy.ElementwiseKernel("T x", "T y", "y = x", "copy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cupy._util.PerformanceWarning)
        for op in (lambda: x * 2, lambda: x.sum(), lambda: kern(x), lambda: cupy.concatenate([x, x])):
            with pytest.raises(_sim.StreamOrderError, match="on device 0 reads memory of device 1"):
                op()
        with pytest.raises(_sim.StreamOrderError, match="^.*: fill on device 0 writes memory of device 1"):
            x.fill(7.0)
        Device(1).synchronize()
        assert host(x * 2).tolist() == [0, 2, 4, 6]
        x.fill(7.0)         # written by device 0 now: device 1 is not ordered after that either
    with Device(1), pytest.raises(_sim.StreamOrderError,
                                  match="cupy.add on device 1 reads memory of device 1 that device 0 last wrote"):
        x + 1


ORDERING = {
    "Device.synchronize": lambda: Device(1).synchronize(),
    "deviceSynchronize": lambda: on(1, runtime.deviceSynchronize),
    "null stream synchronize": lambda: on(1, cupy.cuda.Stream.null.synchronize),
    "reading back a later result": lambda: float(on(1, lambda: cupy.ones(1).sum())),
    "event synchronize": lambda: on(1, lambda: cupy.cuda.get_current_stream().record()).synchronize(),
    "wait_event": lambda: cupy.cuda.get_current_stream().wait_event(
        on(1, lambda: cupy.cuda.get_current_stream().record())),
    "copy between the devices' memories": lambda: cupy.asarray(on(1, lambda: cupy.ones(2))),
    "a stream found done": lambda: on(1, lambda: cupy.cuda.Stream.null.done),
    "an event found done": lambda: on(1, lambda: cupy.cuda.get_current_stream().record()).done,
}


@pytest.mark.parametrize("order", ORDERING.values(), ids=ORDERING.keys())
def test_what_orders_device_0_after_device_1(order):
    src, dst = pending_on_1()
    order()
    dst[...] = src
    Device(0).synchronize()     # dst was written on device 0's stream, and get() reads it on device 1's
    assert host(dst).tolist() == [0, 1, 2, 3]


def device_1_waits_for_device_0():
    event = cupy.cuda.get_current_stream().record()         # on device 0
    with Device(1):
        cupy.cuda.get_current_stream().wait_event(event)


NOT_ORDERING = {
    "synchronizing device 0": lambda: Device(0).synchronize(),
    "making device 1 current for a while": lambda: on(1, lambda: None),
    "device 1 waits for device 0": device_1_waits_for_device_0,
    "an event recorded on device 0": lambda: cupy.cuda.get_current_stream().record().synchronize(),
    "a copy between device 0's memories": lambda: cupy.zeros(2).copy(),
    "an asynchronous read-back": lambda: on(1, lambda: cupy.ones(2)).get(blocking=False),
}


@pytest.mark.parametrize("other", NOT_ORDERING.values(), ids=NOT_ORDERING.keys())
def test_what_does_not_order_device_0_after_device_1(other):
    src, dst = pending_on_1()
    other()
    with pytest.raises(_sim.StreamOrderError):
        dst[...] = src


def test_an_event_stands_for_the_work_issued_before_it_was_recorded():
    with Device(1):
        before = cupy.cuda.get_current_stream().record()
        src, dst = cupy.asarray(np.arange(4.0)), cupy.empty(4)
        after = cupy.cuda.Event()
        after.record()
    before.synchronize()
    with pytest.raises(_sim.StreamOrderError):
        dst[...] = src
    cupy.cuda.get_current_stream().wait_event(after)       # device 0's stream waits for device 1's event
    dst[...] = src


def test_a_copy_between_two_devices_memories_is_ordered_with_the_work_of_both():
    with Device(1):
        x = cupy.asarray(np.arange(4.0))
        y = x * 2                   # device 1's work issued before the copy
    z = cupy.asarray(x)             # on device 0's null stream, from device 1's memory to device 0's
    _sim.set_peer_access(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cupy._util.PerformanceWarning)
        assert host(y + z).tolist() == [0, 3, 6, 9]         # y's kernel ran before the copy
        with Device(1):
            assert host(z * 1).tolist() == [0, 1, 2, 3]     # the copy ran before device 1's later work


def test_views_share_the_order_of_their_base_memory():
    _sim.set_peer_access(True)
    x = on(1, lambda: cupy.zeros((2, 3)))
    Device(1).synchronize()
    with Device(1):
        x[1] += 1                   # written through a view, on device 1
    with warnings.catch_warnings(), pytest.raises(_sim.StreamOrderError):
        warnings.simplefilter("ignore", cupy._util.PerformanceWarning)
        x[0].sum()                  # another view of the same memory, from device 0


# -- 6. layouts of results -----------------------------------------------------------

def test_elementwise_results_are_c_contiguous_whatever_the_inputs():
    f = cupy.arange(6.0).reshape(2, 3).T        # F-contiguous
    assert f.flags.f_contiguous and not f.flags.c_contiguous
    for r in (f + 1, np.exp(f), f * f, cupy.maximum(f, 0), f.clip(0, 1),
              cupy.ElementwiseKernel("T x", "T y", "y = x", "copy")(f)):
        assert r.flags.c_contiguous
    assert not (np.ones((2, 3)).T + 1).flags.c_contiguous       # NumPy keeps the layout


def test_empty_like_follows_cupy():
    f = cupy.arange(6.0).reshape(2, 3).T
    assert cupy.empty_like(f).flags.f_contiguous and cupy.zeros_like(f, order="C").flags.c_contiguous
    k = cupy.arange(24.0).reshape(2, 3, 4).transpose(1, 0, 2)
    assert cupy.empty_like(k).strides == k.strides          # order 'K': the same axis order
    assert cupy.empty_like(k, shape=(4, 6)).flags.c_contiguous
    assert cupy.empty_like(k, dtype=cupy.float32).strides == (16, 48, 4)
    assert cupy.ones_like(f, shape=()).shape == f.shape     # shape=() means the prototype's
    with Device(1):
        assert cupy.empty_like(f).device.id == 1 and cupy.zeros_like(np.ones(2)).device.id == 1


# -- 7. host synchronisations ---------------------------------------------------------

SYNCS = {
    "get": lambda x: x.get(), "asnumpy": cupy.asnumpy, "float": lambda x: float(x[0]),
    "int": lambda x: int(x[0]), "bool": lambda x: bool(x[0]), "item": lambda x: x[0].item(),
    "tolist": lambda x: x.tolist(), "repr": repr, "str": str, "format": lambda x: f"{x[0]:.1f}",
    "mask index": lambda x: x[x > 1],
    "device sync": lambda x: Device(0).synchronize(),
    "stream sync": lambda x: cupy.cuda.Stream().synchronize(),
    "event sync": lambda x: cupy.cuda.Event().synchronize(),
    "deviceSynchronize": lambda x: runtime.deviceSynchronize(),
}


@pytest.mark.parametrize("sync", SYNCS.values(), ids=SYNCS.keys())
def test_host_synchronisations_are_counted(sync):
    x = cupy.arange(3.0)
    _sim.reset_sync_count()
    sync(x)
    assert _sim.sync_count() == 1


def test_device_work_is_not_a_synchronisation():
    x = cupy.arange(6.0).reshape(2, 3)
    _sim.reset_sync_count()
    y = (x * 2).sum(axis=0) + x[0] + x.max()
    list(x)
    x[cupy.asarray([1])] = 7
    x.get(blocking=False)           # an asynchronous copy to the host
    assert cupy.cuda.Stream.null.done and cupy.cuda.get_current_stream().record().done     # queries
    assert _sim.sync_count() == 0 and type(y) is cupy.ndarray


def test_truth_of_a_multi_element_array_is_an_error_without_sync():
    _sim.reset_sync_count()
    with pytest.raises(ValueError, match="more than one element is ambiguous"):
        bool(cupy.ones(2))
    assert _sim.sync_count() == 0


def test_indexing_and_reductions_give_0d_arrays_and_no_index_protocol():
    x = cupy.arange(3)
    assert type(x[1]) is cupy.ndarray and x[1].shape == ()
    assert all(type(v) is cupy.ndarray and v.shape == () for v in x)
    assert type(x.sum()) is cupy.ndarray and x.max().shape == ()
    for use in (operator.index, range, lambda v: [0, 1][v]):
        with pytest.raises(TypeError):
            use(x[1])


def test_computations_raise_no_numpy_floating_point_warnings():
    """A GPU gives inf and nan silently; NumPy warns of overflow, division by zero and invalid values."""
    x = cupy.asarray([1000.0, 0.0, -1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [cupy.exp(x), np.log(x), x / 0, (x * 1e308).sum(), cupy.zeros((0, 2)).mean(axis=0),
               cupy.log(x).astype(cupy.int32), cupy.sqrt(x).max(), x @ cupy.asarray([1e308, 1.0, 1.0]),
               cupy.ElementwiseKernel("T x", "T y", "y = x / 0", "by_zero")(x)]
    with pytest.warns(RuntimeWarning):
        np.exp(np.float64(1000.0))          # as NumPy itself does
    e, log, div, total, mean = (host(g) for g in got[:5])
    assert e[0] == np.inf and log[1] == -np.inf and np.isnan(log[2]) and np.isnan(div[1])
    assert total == np.inf and mean.shape == (2,) and np.isnan(mean).all()
    assert np.isnan(host(got[6])) and host(got[7]) == np.inf


# -- 8. kernels: the CUDA source itself, compiled for the host -------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minidl_cuda_kernels_equal_the_numpy_ones(dtype):
    from minidl.kernels import cpu, cuda

    rng = np.random.default_rng(0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for n, c, h, w, k, s, p in [(2, 3, 9, 7, 3, 1, 1), (2, 2, 11, 13, 5, 4, 0)]:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        col = cuda.im2col(cupy.asarray(x), k, k, s, p)
        np.testing.assert_array_equal(host(col), cpu.im2col(x, k, k, s, p))
        dcol = rng.standard_normal(col.shape).astype(dtype)
        img = cuda.col2im(cupy.asarray(dcol), x.shape, k, k, s, p)
        np.testing.assert_allclose(host(img), cpu.col2im(dcol, x.shape, k, k, s, p), **tol)
    x = rng.integers(0, 3, (2, 3, 8, 7)).astype(dtype)          # ties: first maximum wins
    y, sw = cuda.maxpool_forward(cupy.asarray(x), 3, 2)
    y_ref, sw_ref = cpu.maxpool_forward(x, 3, 2)
    np.testing.assert_array_equal(host(y), y_ref)
    np.testing.assert_array_equal(host(sw), sw_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = cuda.maxpool_backward(cupy.asarray(dy), sw, x.shape, 3, 2)
    np.testing.assert_allclose(host(dx), cpu.maxpool_backward(dy, sw_ref, x.shape, 3, 2), **tol)
    x = rng.standard_normal((2, 7, 3, 4)).astype(dtype)
    out = cuda.channel_window_sum(cupy.asarray(x), 2, 1)
    np.testing.assert_allclose(host(out), cpu.channel_window_sum(x, 2, 1), **tol)


def test_a_kernel_runs_its_cuda_source_not_numpy():
    # C integer division truncates toward zero; NumPy's floor_divide does not
    half = cupy.ElementwiseKernel("int32 x", "int32 y", "y = x / 2", "half")
    assert host(half(cupy.asarray([-3, 3], dtype=cupy.int32))).tolist() == [-1, 1]
    assert (np.array([-3, 3]) // 2).tolist() == [-2, 1]


def test_kernel_types_come_from_the_arrays_only():
    k = cupy.ElementwiseKernel("float32 x, T a", "float32 y", "y = x * a", "scale")
    with pytest.raises(TypeError, match="^Type is mismatched. x float64 float32$"):
        k(cupy.ones(2), cupy.ones(2, dtype=cupy.float32))
    with pytest.raises(TypeError, match="^Type is mismatched. a int64 float32 T$"):
        cupy.ElementwiseKernel("T x, T a", "T y", "y = x * a", "k")(
            cupy.ones(2, dtype=cupy.float32), cupy.ones(2, dtype=cupy.int64))
    # scalars are cast to their parameter's type: 2.5 to int32 is 2
    k2 = cupy.ElementwiseKernel("T x, int32 n", "T y", "y = x * n", "times")
    assert host(k2(cupy.ones(2, dtype=cupy.float32), 2.5)).tolist() == [2, 2]
    with pytest.raises(OverflowError):
        k2(cupy.ones(2, dtype=cupy.float32), 2**40)


def test_kernel_calls_follow_cupy():
    add = cupy.ElementwiseKernel("T x, T y", "T z", "z = x + y", "add")
    with pytest.raises(TypeError, match=r"^Wrong number of arguments for 'add'. It must be "
                                        r"either 2 or 3 \(with outputs\), but given 1.$"):
        add(cupy.ones(2))
    r = add(cupy.ones((2, 1)), cupy.arange(3.0))        # non-raw arrays broadcast
    assert r.shape == (2, 3) and r.device.id == 0
    with pytest.raises(ValueError,
                       match=r"^operands could not be broadcast together with shapes \(3,\) \(4,\)$"):
        add(cupy.ones(3), cupy.ones(4))
    with pytest.raises(ValueError, match="^Out shape is mismatched$"):
        add(cupy.ones(3), cupy.ones(3), cupy.empty(1))   # outputs broadcast too
    out = cupy.zeros((3, 2)).T                  # a non-contiguous output is written through
    add(cupy.ones((2, 3)), 1.0, out)
    assert host(out).tolist() == [[2, 2, 2], [2, 2, 2]]
    gen = cupy.ElementwiseKernel("raw T x", "T y", "y = x[i] * 2", "double_raw")
    with pytest.raises(ValueError, match="^Loop size is undecided.$"):
        gen(cupy.ones(3))
    assert host(gen(cupy.arange(3.0), size=3)).tolist() == [0, 2, 4]
    with pytest.raises(ValueError, match="can be used only if all of the ndarray are 'raw'"):
        add(cupy.ones(3), cupy.ones(3), size=3)
    with pytest.raises(ValueError, match="^Output array size is Undecided$"):
        cupy.ElementwiseKernel("T x", "raw T y", "y[i] = x", "k")(cupy.ones(3))
    with pytest.raises(ValueError, match="Can not use 'i' as a parameter name"):
        cupy.ElementwiseKernel("T i", "T y", "y = i", "k")


def test_cached_codes_keep_the_first_module_of_each_signature_as_cupy():
    k = cupy.ElementwiseKernel("T x", "T y", "y = x + 1", "inc")
    k(cupy.ones(0, dtype=cupy.float32))             # nothing to run: nothing compiled
    with pytest.warns(UserWarning, match="^No codes are cached because compilation is deferred until "
                                         "the first function call.$"):
        assert k.cached_codes == {}
    with pytest.raises(StopIteration):
        k.cached_code
    k(cupy.ones(3, dtype=cupy.float32))
    first = k.cached_code
    assert "typedef float T;" in first and "CArray<float, 1, 1, 1> _raw_x" in first
    k(cupy.ones((3, 2), dtype=cupy.float32).T)      # the same dtypes: the first module stays
    k(cupy.ones(3), cupy.empty(3))
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    codes = k.cached_codes
    assert list(codes) == [(f32, f32), (f64, f64)] and codes[(f32, f32)] == first
    assert "typedef double T;" in codes[(f64, f64)]
    with pytest.warns(UserWarning, match="^The input types of the kernel could not be inferred. "
                                         "Please use `.cached_codes` instead.$"):
        assert k.cached_code == first               # the first compiled, not the last call's


def test_raw_parameters_use_a_logical_c_order_index():
    rev = cupy.ElementwiseKernel("raw T x", "T y", "y = x[x.size() - 1 - i]", "rev")
    x = cupy.arange(6.0).reshape(2, 3).T        # non-contiguous: read in logical C order
    assert host(rev(x, size=6)).tolist() == host(x).ravel()[::-1].tolist()


def test_raw_inputs_are_read_only_as_in_cupy():
    k = cupy.ElementwiseKernel("raw T x", "T y", "x[i] = 0; y = 1", "writes_input")
    with pytest.raises(cupy.cuda.compiler.CompileException):
        k(cupy.ones(3), size=3)


def test_compiled_kernels_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMCUDA_CACHE", str(tmp_path))
    code = ("import cupy; k = cupy.ElementwiseKernel('T x', 'T y', 'y = x * 7', 'seven'); "
            "print(k(cupy.ones(2)).sum())")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_SIMCUDA, os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]             # compiling the same kernel at once
    assert [p.communicate()[0].strip() for p in procs] == ["14.0"] * 3
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".so")


def test_raw_kernel_runs_every_block_and_thread():
    code = r'''
    extern "C" __global__ void iota(int* out, int n) {
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
            out[i] = i * 10;
    }'''
    kern = cupy.RawKernel(code, "iota")
    out = cupy.zeros(10, dtype=cupy.int32)
    kern((2,), (3,), (out, np.int32(10)))
    assert host(out).tolist() == list(range(0, 100, 10))
    with pytest.raises(TypeError, match="4-byte parameter, given a int64"):
        kern((2,), (3,), (out, 10))      # a Python int is an int64: a GPU would misread it
    with pytest.raises(TypeError, match=r"Argument 'grid' has incorrect type \(expected tuple, got int\)"):
        kern(2, (3,), (out, np.int32(10)))
    with pytest.raises(TypeError, match="Only numpy.ndarrays of size one can be passed by value"):
        kern((1,), (1,), (np.zeros(3, np.int32), np.int32(1)))


def test_threads_do_not_run_in_index_order_so_a_race_shows():
    """Two threads writing one element: the last writer wins, and CUDA says nothing of which is last."""
    last = cupy.ElementwiseKernel("int32 x", "raw int32 y", "y[i / 2] = x", "race")
    for n in (2, 6, 300):
        y = cupy.zeros(n // 2, dtype=cupy.int32)
        last(cupy.arange(n, dtype=cupy.int32), y)
        in_index_order = np.arange(1, n, 2)
        assert (host(y) != in_index_order).any(), n
    scatter = cupy.RawKernel(r'''
    extern "C" __global__ void scatter(int* y) {
        y[0] = blockIdx.x * blockDim.x + threadIdx.x;
    }''', "scatter")
    y = cupy.zeros(1, dtype=cupy.int32)
    scatter((3,), (4,), (y,))
    assert host(y)[0] != 11
    seen = cupy.zeros(300, dtype=cupy.int32)          # and every thread still runs once
    cupy.ElementwiseKernel("raw int32 x", "raw int32 y", "atomicAdd(&y[i], 1)", "once", no_return=True)(
        cupy.arange(1, dtype=cupy.int32), seen, size=300, block_size=32)
    assert (host(seen) == 1).all()


def test_raw_kernels_needing_threads_together_are_refused():
    code = 'extern "C" __global__ void k(float* x) { __shared__ float s[32]; __syncthreads(); }'
    with pytest.raises(NotImplementedError, match="__shared__ or __syncthreads"):
        cupy.RawKernel(code, "k")((1,), (1,), (cupy.ones(1, dtype=cupy.float32),))


# -- NCCL, as CuPy 14 has it (cupy/cuda/nccl.py, cupy_backends/cuda/libs/nccl.pyx) ----------

def test_nccl_unique_ids_are_bytes_and_communicators_check_them():
    from cupy.cuda import nccl

    uid = nccl.get_unique_id()
    assert nccl.available is True and type(uid) is bytes and len(uid) == 128
    with pytest.raises(TypeError) as e:
        nccl.NcclCommunicator(2, tuple(uid), 0)         # what get_unique_id returned before CuPy 14
    assert str(e.value) == "Argument 'commId' has incorrect type (expected bytes, got tuple)"
    with pytest.raises(ValueError) as e:
        nccl.NcclCommunicator(2, uid[:100], 0)
    assert str(e.value) == "commId length 100 != 128."


def test_without_the_nccl_library_the_module_imports_and_says_so():
    code = ("from cupy.cuda import nccl\n"
            "print(nccl.available, hasattr(nccl, 'NcclCommunicator'), hasattr(nccl, 'NCCL_FLOAT32'))\n"
            "nccl.get_unique_id()\n")
    env = dict(os.environ, SIMCUDA_NCCL="0",
               PYTHONPATH=os.pathsep.join([_SIMCUDA, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False", "False"]
    assert done.stderr.strip().splitlines()[-1] == \
        "AttributeError: module 'cupy.cuda.nccl' has no attribute 'get_unique_id'"


# -- 9. nothing silently falls back to NumPy ------------------------------------------

@pytest.mark.parametrize("name", ["fft", "linalg", "einsum", "cuda.cudnn", "random.permutation"])
def test_what_is_not_simulated_is_an_attribute_error(name):
    module, _, attr = ("cupy." + name).rpartition(".")
    with pytest.raises(AttributeError, match=f"cupy.{name} is not simulated"):
        getattr(sys.modules[module], attr)


def test_results_are_never_numpy_arrays():
    x = cupy.arange(6.0).reshape(2, 3)
    results = [x + 1, x.sum(), x[0], x[cupy.asarray([1])], x.T.copy(), x.astype(int), x.ravel(), x.flatten(),
               cupy.where(x > 1, x, 0), cupy.pad(x, 1), cupy.stack([x, x]), x.clip(1, 2),
               x.round(), x.repeat(2), x.cumsum(), cupy.random.default_rng(0).random(2),
               cupy.lib.stride_tricks.as_strided(x, (3,), (8,))]
    assert all(type(r) is cupy.ndarray for r in results)


# -- 10. the rest of the API ----------------------------------------------------------

def test_dtypes_and_modules():
    assert cupy.float32 is np.float32 and cupy.dtype("int8") == np.int8 and cupy.bool_ is np.bool_
    x = cupy.ones(2, dtype=cupy.float32)
    assert cupy.get_array_module(x) is cupy and cupy.get_array_module(np.ones(2)) is np
    assert cupy.result_type(x, np.float64) == np.float64


def test_pad_copies_its_input_with_a_kernel():
    x = on(1, lambda: cupy.ones((2, 2)))
    with pytest.raises(ValueError, match="Peer access is unavailable"):
        cupy.pad(x, 1)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        cupy.pad(np.ones((2, 2)), 1)
    assert host(cupy.pad(cupy.ones((2, 2)), 1)).sum() == 4


def test_as_strided_is_a_view_on_the_source_device():
    x = on(1, lambda: cupy.arange(6.0))
    w = cupy.lib.stride_tricks.as_strided(x, shape=(4, 3), strides=(8, 8))
    assert w.device.id == 1 and host(w)[3].tolist() == [3, 4, 5]


def test_random_draws_on_the_current_device():
    with Device(1):
        rng = cupy.random.default_rng(0)
        a = rng.standard_normal((2, 3), dtype=cupy.float32)
        assert a.device.id == 1 and a.dtype == np.float32
        assert rng.integers(0, 5, size=4).dtype == np.int64 and rng.uniform(size=3).device.id == 1
        assert cupy.random.rand(2).device.id == 1
    with pytest.raises(RuntimeError, match="This Generator state is allocated in a different device"):
        rng.random(2)
    with pytest.raises(AttributeError):
        rng.normal     # CuPy's Generator has no normal()
    with pytest.raises(TypeError, match="cupy.random only supports float32 and float64"):
        cupy.random.rand(2, dtype=np.int32)


def test_streams_and_events():
    s = cupy.cuda.Stream()
    with s:
        assert cupy.cuda.get_current_stream() == s
    assert cupy.cuda.get_current_stream() == cupy.cuda.Stream.null
    with Device(1), pytest.raises(RuntimeError, match=r"stream is created on \(0\) does not match"):
        s.use()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    end.record()
    assert cupy.cuda.get_elapsed_time(start, end) >= 0
    with pytest.raises(runtime.CUDARuntimeError):
        cupy.cuda.get_elapsed_time(start, cupy.cuda.Event())


def test_memory_pool_and_out_of_memory():
    pool = cupy.get_default_memory_pool()
    before = pool.used_bytes()
    x = cupy.empty(1000, dtype=cupy.uint8)
    assert pool.used_bytes() == before + 1024           # 512-byte blocks
    del x
    assert pool.used_bytes() == before
    free, total = Device(1).mem_info
    assert 0 < free <= total and Device(0).compute_capability == "90"
    pool.set_limit(size=4096)
    try:
        with pytest.raises(cupy.cuda.memory.OutOfMemoryError, match=(
                r"^Out of memory allocating 8,192 bytes \(allocated so far: .* bytes, "
                r"limit set to: 4,096 bytes\)\.$")):
            cupy.empty(1024)
    finally:
        pool.set_limit(size=0)
    assert issubclass(cupy.cuda.memory.OutOfMemoryError, MemoryError)
