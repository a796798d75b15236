"""minidl.backend: Device parsing and identity, the array-module shim, and the
errors a CPU-only machine gives when a GPU is asked for."""

import sys
import types

import numpy as np
import pytest

import minidl
import minidl.backend as backend
from minidl import Device, DeviceUnavailableError, as_device, asnumpy, get_array_module, get_device, to_device


# -- parsing -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, kind, index, text",
    [
        (("cpu",), "cpu", None, "cpu"),
        (("CPU",), "cpu", None, "cpu"),
        ((" cpu ",), "cpu", None, "cpu"),
        (("cpu:0",), "cpu", None, "cpu"),
        (("numpy",), "cpu", None, "cpu"),
        ((), "cpu", None, "cpu"),
        (("cuda",), "cuda", 0, "cuda:0"),
        (("cuda:0",), "cuda", 0, "cuda:0"),
        (("cuda:1",), "cuda", 1, "cuda:1"),
        (("cuda:12",), "cuda", 12, "cuda:12"),
        (("cuda", 2), "cuda", 2, "cuda:2"),
        (("gpu:3",), "cuda", 3, "cuda:3"),
        (("cupy",), "cuda", 0, "cuda:0"),
    ],
)
def test_device_parsing(args, kind, index, text):
    d = Device(*args)
    assert d.type == kind
    assert d.index == index
    assert str(d) == text
    assert repr(d) == f"Device('{text}')"
    assert d.is_cuda == (kind == "cuda")


@pytest.mark.parametrize(
    "args",
    [
        ("tpu",),
        ("cuda:x",),
        ("cuda:",),
        ("cuda:-1",),
        ("cuda:1:2",),
        ("cuda", -1),
        ("cpu", 1),
        ("cpu:1",),
        ("cuda:1", 1),  # index given twice
        ("",),
        (3,),
        (None,),
    ],
)
def test_device_bad_specs_raise_valueerror(args):
    with pytest.raises(ValueError, match="Device"):
        Device(*args)


def test_device_copy_constructor():
    d = Device("cuda", 3)
    assert Device(d) == d and Device(d).index == 3
    assert Device(d, 1) == Device("cuda:1")
    assert as_device(d) is d
    assert as_device(None) == Device("cpu")
    assert as_device("cuda:2") == Device("cuda", 2)


def test_device_equality_and_hash():
    assert Device("cuda:1") == Device("cuda", 1)
    assert Device("cuda") == Device("cuda:0")
    assert Device("cuda:0") != Device("cuda:1")
    assert Device("cpu") != Device("cuda:0")
    assert Device("cuda:1") == "cuda:1"
    assert Device("cpu") == "cpu"
    assert Device("cpu") != "cuda"
    assert Device("cpu") != "not a device"  # unparsable strings compare unequal, no exception
    assert Device("cpu") != 0
    assert hash(Device("cuda:1")) == hash(Device("cuda", 1))
    assert len({Device("cpu"), Device("cpu"), Device("cuda", 0), Device("cuda:0"), Device("cuda:1")}) == 3


def test_cpu_device_is_a_context_manager():
    d = Device("cpu")
    with d as entered:
        assert entered is d
        assert d.xp is np
        a = d.xp.zeros(3, dtype="float32")
    assert isinstance(a, np.ndarray)
    # an exception inside the block propagates (the device does not swallow it)
    with pytest.raises(KeyError):
        with Device("cpu"):
            raise KeyError("boom")


def test_cpu_check_and_xp():
    assert Device("cpu").check() == Device("cpu")
    assert Device("cpu").xp is np


# -- the array-module shim ------------------------------------------------------------
def test_get_array_module_numpy():
    a = np.zeros(3)
    assert get_array_module(a) is np
    assert get_array_module(a, np.ones(2)) is np
    assert get_array_module() is np
    assert get_array_module([1, 2], 3.0) is np
    assert get_device(a) == Device("cpu")


def test_to_device_cpu_and_asnumpy():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = to_device(a, "cpu")
    assert isinstance(b, np.ndarray) and b.dtype == np.float32
    np.testing.assert_array_equal(b, a)
    b2 = to_device(a, Device("cpu"))
    np.testing.assert_array_equal(b2, a)
    c = asnumpy([[1.0, 2.0]])
    assert isinstance(c, np.ndarray) and c.shape == (1, 2)
    np.testing.assert_array_equal(asnumpy(a), a)


def test_minidl_exports():
    for name in ("Device", "DeviceUnavailableError", "asnumpy", "to_device", "get_array_module"):
        assert hasattr(minidl, name)
    assert issubclass(DeviceUnavailableError, Exception)


# -- without CuPy ---------------------------------------------------------------------
def _assert_helpful(exc_info):
    msg = str(exc_info.value)
    assert "pip install" in msg
    assert "--backend numpy" in msg


def test_cuda_xp_without_cupy_says_how_to_fix(no_cupy):
    with pytest.raises(DeviceUnavailableError) as ei:
        Device("cuda:0").xp
    _assert_helpful(ei)


def test_the_install_hint_names_the_extra_of_each_cuda_major_and_setup_cfg_has_them(no_cupy):
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    extras = cfg["options.extras_require"]
    with pytest.raises(DeviceUnavailableError) as ei:
        Device("cuda:0").xp
    for major in (12, 13):            # a CUDA 13 driver's machine has cupy-cuda13x, not cupy-cuda12x
        assert f"pip install -e .[cuda{major}]` (cupy-cuda{major}x)" in str(ei.value)
        assert extras[f"cuda{major}"].split() == [f"cupy-cuda{major}x[ctk]>=14,<15"]


def test_to_device_cuda_without_cupy_says_how_to_fix(no_cupy):
    with pytest.raises(DeviceUnavailableError) as ei:
        to_device(np.zeros(3), "cuda:0")
    _assert_helpful(ei)


def test_enter_cuda_without_cupy_raises(no_cupy):
    with pytest.raises(DeviceUnavailableError) as ei:
        with Device("cuda:1"):
            pass
    _assert_helpful(ei)


def test_cupy_available_false_without_cupy(no_cupy):
    assert backend.cupy_available() is False


def test_layer_to_cuda_without_cupy_raises(no_cupy):
    lin = minidl.Linear(2, 3)
    with pytest.raises(DeviceUnavailableError):
        lin.to("cuda:0")


# -- the CUDA code paths, against a fake CuPy module (no GPU needed) --------------------
class _FakeCuda:
    def __init__(self, count, fail=False):
        self.count, self.fail = count, fail
        self.log = []
        fake = self

        class _Runtime:
            @staticmethod
            def getDeviceCount():
                if fake.fail:
                    raise RuntimeError("cudaErrorInsufficientDriver")
                return fake.count

        class _Dev:
            def __init__(self, i):
                self.i = i

            def __enter__(self):
                fake.log.append(("enter", self.i))
                return self

            def __exit__(self, *exc):
                fake.log.append(("exit", self.i))
                return False

        self.runtime = _Runtime
        self.Device = _Dev


@pytest.fixture
def fake_cupy(monkeypatch):
    def make(count=2, fail=False):
        mod = types.ModuleType("cupy")
        mod.cuda = _FakeCuda(count, fail)
        monkeypatch.setattr(backend, "_CUPY", mod)
        monkeypatch.setitem(sys.modules, "cupy", mod)
        return mod

    return make


def test_cuda_device_context_enters_cupy_device(fake_cupy):
    cp = fake_cupy(count=2)
    d = Device("cuda:1")
    assert d.xp is cp
    with d as entered:
        assert entered is d
        assert cp.cuda.log == [("enter", 1)]
    assert cp.cuda.log == [("enter", 1), ("exit", 1)]


def test_cuda_missing_index_lists_available(fake_cupy):
    fake_cupy(count=2)
    with pytest.raises(DeviceUnavailableError) as ei:
        Device("cuda:2").check()
    msg = str(ei.value)
    assert "cuda:2" in msg and "cuda:0, cuda:1" in msg


def test_cuda_driver_failure_is_device_unavailable(fake_cupy):
    fake_cupy(count=1, fail=True)
    with pytest.raises(DeviceUnavailableError, match="--backend numpy"):
        Device("cuda:0").xp
    assert backend.cupy_available() is False


def test_cuda_device_context_is_reentrant(fake_cupy):
    cp = fake_cupy(count=2)
    d = Device("cuda:1")
    with d:
        with d:
            pass
    enters = sum(1 for e in cp.cuda.log if e[0] == "enter")
    exits = sum(1 for e in cp.cuda.log if e[0] == "exit")
    assert enters == exits == 2


# -- on a real GPU ------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_roundtrip():
    import cupy

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    g = to_device(a, "cuda:0")
    assert isinstance(g, cupy.ndarray) and g.dtype == np.float32
    assert get_array_module(g) is cupy
    assert get_array_module(a, g) is cupy
    assert get_device(g) == Device("cuda:0")
    assert to_device(g, "cuda:0") is g
    back = to_device(g, "cpu")
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)
    np.testing.assert_array_equal(asnumpy(g), a)
    with Device("cuda:0") as dev:
        z = dev.xp.zeros((2, 2), dtype="float32")
    assert get_device(z) == Device("cuda:0")


@pytest.mark.gpu
def test_a_cupy_performance_warning_is_shown_not_an_error():
    # CuPy's PerformanceWarning subclasses RuntimeWarning, which setup.cfg turns into errors; CuPy warns it
    # when pinned memory or peer access falls back to something slower, with results still right
    import warnings

    import cupy

    assert issubclass(cupy._util.PerformanceWarning, RuntimeWarning)
    with pytest.warns(cupy._util.PerformanceWarning):
        warnings.warn("Using synchronous transfer as pinned memory could not be allocated.",
                      cupy._util.PerformanceWarning)
    warnings.warn("Peer access has been activated automatically.", cupy._util.PerformanceWarning)
