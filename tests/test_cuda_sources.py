"""The CUDA kernels of ``minidl/kernels``: their index arithmetic, and the real CUDA compiler.

1. Each kernel runs through ``minidl.kernels.cuda`` on CuPy (a GPU's, or the
   simulated CuPy, which compiles the same CUDA bodies for the host) and is
   compared with the NumPy kernels on awkward shapes: strides larger than the
   kernel, odd sizes, ties in max-pooling, LRN windows at the edges.
2. The CUDA module CuPy generates for each kernel (``ElementwiseKernel.
   cached_codes``: its template, CArray parameters and typedefs) is compiled by
   ``nvcc`` for sm_90 (H100/H200) with CuPy's own headers, as CuPy's NVRTC
   would, in float32 and float64. The headers come from the cupy-cuda12x wheel
   (downloaded once into ~/.cache/minidl, or from $MINIDL_CUPY_INCLUDE).
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minidl.kernels import cpu
from minidl.kernels.cuda_src import KERNELS

cupy = pytest.importorskip("cupy")
from minidl.kernels import cuda  # noqa: E402  (needs CuPy)

CUPY_WHEEL = "cupy-cuda12x==14.2.0"        # the CuPy whose headers the kernels are compiled against


# -- 1. index arithmetic, against NumPy ---------------------------------------------------

CONV_CASES = [  # (n, c, h, w, k, stride, pad)
    (2, 3, 9, 7, 3, 1, 1),
    (3, 2, 23, 27, 11, 4, 0),
    (2, 4, 8, 8, 5, 1, 2),
    (1, 2, 7, 9, 3, 2, 1),
    (2, 1, 6, 6, 2, 3, 0),      # stride larger than the kernel
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_and_col2im_kernels_equal_numpy(dtype, case):
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    np.testing.assert_array_equal(cuda.im2col(cupy.asarray(x), k, k, s, p).get(), cpu.im2col(x, k, k, s, p))
    oh, ow = cpu.conv_out_size(h, k, s, p), cpu.conv_out_size(w, k, s, p)
    dcol = rng.standard_normal((c * k * k, oh * ow * n)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cuda.col2im(cupy.asarray(dcol), x.shape, k, k, s, p).get(),
                               cpu.col2im(dcol, x.shape, k, k, s, p), rtol=tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("case", [(2, 3, 8, 7, 3, 2), (1, 2, 9, 9, 2, 2), (2, 2, 7, 8, 3, 3), (1, 1, 13, 13, 3, 2)])
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool_kernels_equal_numpy(case, ties):
    n, c, h, w, k, s = case
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, (n, c, h, w)).astype(np.float32) if ties else \
        rng.standard_normal((n, c, h, w)).astype(np.float32)
    y, sw = cuda.maxpool_forward(cupy.asarray(x), k, s)
    y_ref, sw_ref = cpu.maxpool_forward(x, k, s)
    np.testing.assert_array_equal(y.get(), y_ref)
    np.testing.assert_array_equal(sw.get(), sw_ref)     # same tie-breaking: first maximum in row-major order
    dy = rng.standard_normal(y_ref.shape).astype(np.float32)
    np.testing.assert_allclose(cuda.maxpool_backward(cupy.asarray(dy), sw, x.shape, k, s).get(),
                               cpu.maxpool_backward(dy, sw_ref, x.shape, k, s), rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("c,before,after", [(7, 2, 2), (3, 2, 2), (1, 2, 2), (6, 2, 1), (6, 1, 2)])
def test_channel_window_sum_kernel_equals_numpy(c, before, after):
    x = np.random.default_rng(2).standard_normal((2, c, 3, 4))
    np.testing.assert_allclose(cuda.channel_window_sum(cupy.asarray(x), before, after).get(),
                               cpu.channel_window_sum(x, before, after), rtol=1e-12, atol=1e-12)


# -- 2. nvcc, for sm_90, with CuPy's headers ---------------------------------------------

def generated_modules(dtype):
    """{kernel name: the CUDA module CuPy generates}, from one call of each cuda.py function."""
    rng = np.random.default_rng(3)
    x = cupy.asarray(rng.standard_normal((2, 3, 9, 9)).astype(dtype))
    cuda.col2im(cuda.im2col(x, 3, 3, 2, 1), x.shape, 3, 3, 2, 1)
    y, switches = cuda.maxpool_forward(x, 3, 2)
    cuda.maxpool_backward(y, switches, x.shape, 3, 2)
    cuda.channel_window_sum(x, 2, 2)
    kernels = {"im2col": cuda._IM2COL, "col2im": cuda._COL2IM, "maxpool_fwd": cuda._MAXPOOL_FWD,
               "maxpool_bwd": cuda._MAXPOOL_BWD, "channel_window_sum": cuda._CHANNEL_WINDOW_SUM}
    assert set(kernels) == set(KERNELS)
    # cached_code is the first module compiled (maybe for another dtype): take this dtype's from cached_codes
    modules = {}
    for name, kern in kernels.items():
        [modules[name]] = [code for types, code in kern.cached_codes.items() if np.dtype(dtype) in types]
    return modules


def cupy_include():
    """CuPy's include folder: $MINIDL_CUPY_INCLUDE, or extracted once from the wheel."""
    given = os.environ.get("MINIDL_CUPY_INCLUDE")
    if given:
        return Path(given)
    folder = Path.home() / ".cache" / "minidl" / CUPY_WHEEL.replace("==", "-") / "include"
    if (folder / "cupy" / "carray.cuh").is_file():
        return folder
    wheels = folder.parent / "wheel"
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--platform", "manylinux2014_x86_64", CUPY_WHEEL,
                        "-d", str(wheels)], capture_output=True, text=True, timeout=600)
    found = list(wheels.glob("cupy_cuda12x-*.whl"))
    if r.returncode or not found:
        pytest.skip(f"could not download {CUPY_WHEEL} for its CUDA headers: {r.stderr.strip()[-200:]}")
    tmp = folder.parent / f"include.tmp-{os.getpid()}"
    with zipfile.ZipFile(found[0]) as z:
        for member in z.namelist():
            if member.startswith("cupy/_core/include/"):
                z.extract(member, tmp)
    os.replace(tmp / "cupy" / "_core" / "include", folder)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(wheels, ignore_errors=True)
    return folder


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA compiler)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kernel_compiles_with_nvcc_for_sm90(dtype, tmp_path):
    inc = cupy_include()
    headers = "".join(f"#include <cupy/{h}>\n" for h in ("complex.cuh", "carray.cuh", "atomics.cuh",
                                                          "math_constants.h"))
    for name, module in generated_modules(dtype).items():
        assert f'extern "C" __global__ void {KERNELS[name][3]}(' in module
        assert ("typedef float T;" if dtype == np.float32 else "typedef double T;") in module
        src = tmp_path / f"{name}.cu"
        src.write_text(headers + module)
        cccl = [f"-I{inc / 'cupy' / '_cccl' / d}" for d in ("cub", "thrust", "libcudacxx")]
        r = subprocess.run(["nvcc", "-arch=sm_90", "--std=c++17", "-ftz=true", f"-I{inc}", *cccl,
                            "-c", str(src), "-o", str(tmp_path / f"{name}.o")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{name} ({np.dtype(dtype).name}):\n{r.stderr[-3000:]}"
