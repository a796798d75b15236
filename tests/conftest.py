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


# A Fashion-MNIST run of the mini preset long enough to have learned something on any
# processor: 160 steps of 32 images (2048-image subset: two epochs and a half), lr 0.01.
# Measured over 8 seeds on OpenBLAS's Haswell (AVX2) and SkylakeX (AVX-512) kernels:
# test top-1 0.69-0.75 on 500 test images (chance: 0.10), training loss ~2.5 -> ~0.9.
# (At lr 0.02, or after 30-50 steps, the same measurements spread from 0.17 to 0.74.)
MINI_RUN_ARGS = ["--train-subset", "2048", "--batch-size", "32", "--max-steps", "160", "--lr", "0.01",
                 "--test-subset", "500", "--log-every", "8", "--no-progress"]


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory):
    """The folder of a trained mini run (config, metrics, last and best checkpoints); read-only."""
    from alexnet import train

    run = tmp_path_factory.mktemp("mini-run") / "run"
    assert train.main(MINI_RUN_ARGS + ["--out", str(run)]) == 0
    return run
