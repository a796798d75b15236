"""Shared test fixtures.

Tests marked ``@pytest.mark.gpu`` run on CuPy: on a real GPU where CuPy and
a CUDA device are present, and everywhere else on ``tests/simcuda``, a
simulated CuPy with two devices that is as strict as CuPy (see its README).
This file puts ``tests/simcuda`` on ``sys.path`` and ``PYTHONPATH`` (so the
command lines the tests start use it too) when there is no usable real
CuPy; ``minidl`` and ``alexnet`` never know which one they run on. The
``xp`` fixture runs a test once per array module (NumPy, then CuPy); the
``kernel_set`` fixture once per kernel set of ``minidl.kernels`` (fast, then
reference). Tests marked ``@pytest.mark.simulated`` use the simulated CuPy's
control API (``cupy._sim``, e.g. to count host synchronisations): they run
only where it is there, never on a real GPU.
"""

import importlib.util
import os
import subprocess
import sys

# One BLAS thread for the tests: OpenBLAS's spinning threads slow small GEMMs down
# by 10-100x whenever another process shares the cores (CLI subprocesses inherit
# this). Speed is measured by benchmarks/, never by tests.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

SIMCUDA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simcuda")


def _real_cupy_with_a_gpu():
    spec = importlib.util.find_spec("cupy")
    if spec is None or (spec.origin or "").startswith(SIMCUDA + os.sep):
        return False
    # asked in a child process: once this one imports a CuPy, it cannot switch to the other
    probe = "import cupy, sys; sys.exit(0 if cupy.cuda.runtime.getDeviceCount() > 0 else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=300).returncode == 0


REAL_GPU = _real_cupy_with_a_gpu()
if not REAL_GPU:
    sys.path.insert(0, SIMCUDA)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SIMCUDA, os.environ.get("PYTHONPATH")) if p)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minidl.backend import cupy_available  # noqa: E402

HAS_GPU = cupy_available()


def _simulator_control():
    """Is ``cupy._sim``, the simulated CuPy's control API, there? Never on a real GPU, nor in a rehearsal."""
    try:
        from cupy import _sim  # noqa: F401
    except ImportError:
        return False
    return True


SIMULATOR_CONTROL = HAS_GPU and _simulator_control()


# The longest tests (seconds on two AMD EPYC cores), started first: with `-n 2 --dist worksteal` the other worker
# takes the short ones meanwhile, so that no long test is left to run alone at the end of the suite.
LONG_FIRST = [
    "test_exercise_track.py::test_with_the_solutions_the_capstone_trains_to_its_stated_accuracy",     # 160
    "test_gpu_check.py::test_rehearsal_every_section_ends_ok_within_the_budget",                      # 123
    "test_notebooks.py::test_runs_with_quick_settings_in_place_and_leaves_no_file[08_training]",      # 50
    "test_notebooks.py::test_runs_with_quick_settings_in_place_and_leaves_no_file[12_what_each_idea_buys]",
    "test_notebooks.py::test_runs_with_quick_settings_in_place_and_leaves_no_file[03_relu_vs_tanh]",
    "test_benchmarks.py::test_time_to_accuracy_quick_run",
    "test_model.py::test_mini_gradcheck_on_gpu",                                                       # 22 each
    "test_notebooks.py::test_runs_with_quick_settings_in_place_and_leaves_no_file[10_what_it_learned]",
    "test_model.py::test_mini_fits_a_fixed_batch_of_real_images[fast]",                               # 20
    "test_gradients.py::test_conv2d_gradcheck[reference-cupy-",                                        # 13-17
    "test_gpu_check.py::test_a_run_killed_halfway_leaves_the_report_of_what_it_finished",              # 15
]


def _long_rank(item):
    nodeid = item.nodeid.split("tests/", 1)[-1]
    return next((i for i, prefix in enumerate(LONG_FIRST) if nodeid.startswith(prefix)), len(LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_long_rank)        # stable: every other test keeps its place
    needs_gpu = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    needs_simulator = pytest.mark.skip(reason="counts what only the simulated CuPy can count (cupy._sim); "
                                              "a real GPU has no such API")
    # CuPy's PerformanceWarning is a RuntimeWarning (cupy/_util.pyx), which setup.cfg makes an error: on a
    # GPU it says that pinned memory or peer access fell back to something slower, not that a result is wrong
    performance = pytest.mark.filterwarnings("default::cupy._util.PerformanceWarning")
    for item in items:
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(needs_gpu)
        elif "simulated" in item.keywords and not SIMULATOR_CONTROL:
            item.add_marker(needs_simulator)
        if HAS_GPU:
            item.add_marker(performance)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: numpy, then cupy (a real GPU's, or the simulated one)."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy


@pytest.fixture(params=["fast", "reference"])
def kernel_set(request):
    """The kernel set under test (``minidl.kernels.using``), restored afterwards."""
    from minidl import kernels

    with kernels.using(request.param):
        yield request.param


@pytest.fixture
def no_cupy(monkeypatch):
    """As on a machine without CuPy: ``import cupy`` fails, whatever is installed."""
    from minidl import backend

    monkeypatch.setattr(backend, "_CUPY", None)
    monkeypatch.setitem(sys.modules, "cupy", None)  # import raises ImportError


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# A Fashion-MNIST run of the mini preset long enough to have learned something on any
# processor: 160 steps of 32 images (2048-image subset: two epochs and a half), lr 0.01.
# Measured over 8 seeds on OpenBLAS's Haswell (AVX2) and SkylakeX (AVX-512) kernels:
# test top-1 0.69-0.75 on 500 test images (chance: 0.10), training loss ~2.5 -> ~0.9.
# (At lr 0.02, or after 30-50 steps, the same measurements spread from 0.17 to 0.74.)
MINI_RUN_ARGS = ["--train-subset", "2048", "--val-size", "500", "--batch-size", "32", "--max-steps", "160",
                 "--lr", "0.01",
                 "--test-subset", "500", "--log-every", "8", "--no-progress"]


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory):
    """The folder of a trained mini run (config, metrics, last and best checkpoints); read-only.

    Trained once per test session: the pytest-xdist workers share it through their common base folder (the
    first to take the lock trains, the others wait for it)."""
    import fcntl

    from alexnet import train

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent                     # the folder every worker of this session has in common
    folder = base / "mini-run"
    with open(base / "mini-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)       # released when the file closes, or when a worker dies
        if not (folder / "trained").exists():
            if folder.exists():
                import shutil
                shutil.rmtree(folder)          # a worker that died while training left it half-written
            assert train.main(MINI_RUN_ARGS + ["--out", str(folder / "run")]) == 0
            (folder / "trained").touch()
    return folder / "run"
