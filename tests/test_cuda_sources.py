"""The CUDA kernels' index arithmetic, checked without a GPU.

Each kernel body in ``minidl/kernels/cuda_src.py`` is compiled on the host
with a C++ compiler inside a plain loop over the output index ``i`` (what
CuPy's ElementwiseKernel does with one thread per ``i``), called through
ctypes with arrays laid out exactly as ``cuda.py`` lays them out, and
compared with the NumPy kernels. The GPU tests run the real thing; these
catch a wrong stride or an off-by-one window wherever there is a compiler.
"""

import ctypes
import re
import shutil
import subprocess

import numpy as np
import pytest

from minidl.kernels import cpu
from minidl.kernels.cuda_src import KERNELS

CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="needs a C++ compiler")

_CTYPES = {"int32": ("int", ctypes.c_int), "int8": ("signed char", None), "T": ("T", None)}


def _params(spec):
    out = []
    for part in spec.split(","):
        words = part.split()
        raw = words[0] == "raw"
        typ, name = words[-2], words[-1]
        out.append((raw, typ, name))
    return out


def _ctype(typ):
    return {"T": "T", "int32": "int", "int8": "signed char"}[typ]


_BUILT = {}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """``build(name, dtype)``: KERNELS[name] compiled for ``dtype`` (once per module)."""
    folder = tmp_path_factory.mktemp("kernels")

    def get(name, dtype):
        if (name, dtype) not in _BUILT:
            _BUILT[name, dtype] = _compile(name, dtype, folder)
        return _BUILT[name, dtype]

    return get


def _compile(name, dtype, tmp_path):
    """Compile KERNELS[name] for element type ``dtype``; return a Python callable."""
    in_spec, out_spec, body, _ = KERNELS[name]
    ins, outs = _params(in_spec), _params(out_spec)
    args, binds = ["long n_out"], []
    for raw, typ, pname in ins:
        if raw:
            args.append(f"const {_ctype(typ)}* {pname}")
        else:
            args.append(f"{_ctype(typ)} {pname}")
    for raw, typ, pname in outs:
        args.append(f"{_ctype(typ)}* {pname}_out")
        binds.append(f"{_ctype(typ)}& {pname} = {pname}_out[i];")
    ctype = {np.float32: "float", np.float64: "double"}[dtype]
    source = f"""
#include <algorithm>
using std::max; using std::min;
typedef {ctype} T;
extern "C" void run({", ".join(args)}) {{
    for (long i = 0; i < n_out; ++i) {{
        {" ".join(binds)}
        {body}
    }}
}}
"""
    src = tmp_path / f"{name}_{ctype}.cpp"
    lib = tmp_path / f"{name}_{ctype}.so"
    src.write_text(source)
    subprocess.run([CXX, "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                   capture_output=True)
    fn = ctypes.CDLL(str(lib)).run
    fn.restype = None

    def call(n_out, *values):
        cargs = [ctypes.c_long(n_out)]
        for v in values:
            if isinstance(v, np.ndarray):
                assert v.flags["C_CONTIGUOUS"]
                cargs.append(v.ctypes.data_as(ctypes.c_void_p))
            else:
                cargs.append(ctypes.c_int(int(v)))
        fn(*cargs)

    return call


CONV_CASES = [  # (n, c, h, w, k, stride, pad)
    (2, 3, 9, 7, 3, 1, 1),
    (3, 2, 23, 27, 11, 4, 0),
    (2, 4, 8, 8, 5, 1, 2),
    (1, 2, 7, 9, 3, 2, 1),
    (2, 1, 6, 6, 2, 3, 0),      # stride larger than the kernel
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_and_col2im_bodies_equal_numpy(build, dtype, case):
    n, c, h, w, k, s, p = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    oh, ow = cpu.conv_out_size(h, k, s, p), cpu.conv_out_size(w, k, s, p)

    im2col = build("im2col", dtype)
    xt = np.ascontiguousarray(x.transpose(1, 2, 3, 0))          # what cuda.im2col passes
    col = np.empty((c, k, k, oh, ow, n), dtype=dtype)
    im2col(col.size, xt, n, c, h, w, oh, ow, k, k, s, s, p, p, col)
    np.testing.assert_array_equal(col.reshape(c * k * k, -1), cpu.im2col(x, k, k, s, p))

    col2im = build("col2im", dtype)
    dcol = rng.standard_normal((c * k * k, oh * ow * n)).astype(dtype)
    img = np.empty((c, h, w, n), dtype=dtype)
    col2im(img.size, np.ascontiguousarray(dcol), n, c, h, w, oh, ow, k, k, s, s, p, p, img)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(img.transpose(3, 0, 1, 2), cpu.col2im(dcol, x.shape, k, k, s, p), rtol=tol, atol=tol)


@pytest.mark.parametrize("case", [(2, 3, 8, 7, 3, 2), (1, 2, 9, 9, 2, 2), (2, 2, 7, 8, 3, 3), (1, 1, 13, 13, 3, 2)])
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool_bodies_equal_numpy(build, case, ties):
    n, c, h, w, k, s = case
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, (n, c, h, w)).astype(np.float32) if ties else \
        rng.standard_normal((n, c, h, w)).astype(np.float32)
    oh, ow = cpu.conv_out_size(h, k, s, 0), cpu.conv_out_size(w, k, s, 0)
    fwd = build("maxpool_fwd", np.float32)
    y = np.empty((n, c, oh, ow), np.float32)
    sw = np.empty((n, c, oh, ow), np.int8)
    fwd(y.size, np.ascontiguousarray(x), h, w, oh, ow, k, s, y, sw)
    y_ref, sw_ref = cpu.maxpool_forward(x, k, s)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)     # same tie-breaking: first maximum in row-major order

    bwd = build("maxpool_bwd", np.float32)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = np.empty(x.shape, np.float32)
    bwd(dx.size, dy, sw, h, w, oh, ow, k, s, dx)
    np.testing.assert_allclose(dx, cpu.maxpool_backward(dy, sw_ref, x.shape, k, s), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("c,before,after", [(7, 2, 2), (3, 2, 2), (1, 2, 2), (6, 2, 1), (6, 1, 2)])
def test_channel_window_sum_body_equals_numpy(build, c, before, after):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, c, 3, 4))
    fn = build("channel_window_sum", np.float64)
    out = np.empty_like(x)
    fn(out.size, np.ascontiguousarray(x), c, 12, before, after, out)
    np.testing.assert_allclose(out, cpu.channel_window_sum(x, before, after), rtol=1e-12, atol=1e-12)


def test_every_kernel_is_covered():
    assert set(KERNELS) == {"im2col", "col2im", "maxpool_fwd", "maxpool_bwd", "channel_window_sum"}
    for in_spec, out_spec, body, name in KERNELS.values():
        assert re.fullmatch(r"[a-z0-9_]+", name)
        assert body.strip()
