"""Shared test fixtures.

Tests marked ``@pytest.mark.gpu`` run only where CuPy and a CUDA device are
present; everywhere else they are skipped with the reason. The ``xp`` fixture
runs a test once per available array module (NumPy always, CuPy on a GPU).
"""

import os

# One BLAS thread for the tests: OpenBLAS's spinning threads slow small GEMMs down
# by 10-100x whenever another process shares the cores (CLI subprocesses inherit
# this). Speed is measured by benchmarks/, never by tests.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minidl.backend import cupy_available

HAS_GPU = cupy_available()


def pytest_collection_modifyitems(config, items):
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: numpy, and cupy where a GPU is present."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
