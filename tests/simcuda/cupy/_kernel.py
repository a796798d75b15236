"""ElementwiseKernel and RawKernel: the very CUDA source, compiled for the host.

A kernel's source is compiled with g++ into a shared object (cached on disk,
keyed by the sha256 of the generated source and the compiler command) and
called through ctypes. An ElementwiseKernel body runs once per thread index
``i``; a RawKernel runs once per (block, thread) of its launch grid, with
blockIdx/threadIdx set. Threads run one after another, but not in index
order: CUDA promises no order between threads, so blocks run in a scrambled
order and each block's threads last to first, and a result that depends on
the order (two threads writing one element) differs from a plain loop's.
Kernels that need threads to run together (__shared__, __syncthreads) are
refused.
"""

import ctypes
import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import warnings

import numpy as np

from . import _core, _machine
from ._core import check_same_device, ndarray, operand, typename
from .cuda.compiler import CompileException

# What a kernel body may use from CUDA, for the host.
_HEADER = r"""
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define CUDART_INF_F HUGE_VALF
#define CUDART_INF HUGE_VAL
#define CUDART_NAN_F NAN
#define CUDART_NAN ((double)NAN)
#define CUDART_PI_F 3.141592654f
#define CUDART_PI 3.1415926535897931e+0

#define SIMCUDA_VECTOR(T, N) \
  struct N##2 { T x, y; }; struct N##3 { T x, y, z; }; struct N##4 { T x, y, z, w; }; \
  inline N##2 make_##N##2(T x, T y) { return {x, y}; } \
  inline N##3 make_##N##3(T x, T y, T z) { return {x, y, z}; } \
  inline N##4 make_##N##4(T x, T y, T z, T w) { return {x, y, z, w}; }
SIMCUDA_VECTOR(float, float)
SIMCUDA_VECTOR(double, double)
SIMCUDA_VECTOR(int, int)
SIMCUDA_VECTOR(unsigned int, uint)
SIMCUDA_VECTOR(long long, longlong)
#undef SIMCUDA_VECTOR

struct dim3 { unsigned int x = 1, y = 1, z = 1; };
static thread_local uint3 threadIdx, blockIdx;
static thread_local dim3 blockDim, gridDim;
static const int warpSize = 32;

// CUDA overloads min/max for mixed argument types; on floating point they
// are fminf/fmaxf, which ignore a NaN.
template <class A, class B> inline auto min(A a, B b) {
  typedef decltype(a + b) R;
  if constexpr (std::is_floating_point<R>::value) return fmin(R(a), R(b));
  else return R(b) < R(a) ? R(b) : R(a);
}
template <class A, class B> inline auto max(A a, B b) {
  typedef decltype(a + b) R;
  if constexpr (std::is_floating_point<R>::value) return fmax(R(a), R(b));
  else return R(a) < R(b) ? R(b) : R(a);
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rsqrt(float x) { return rsqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }

// The threads of a launch run one after another: a plain read-modify-write is atomic.
template <class T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T> inline T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <class T> inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <class T> inline T atomicMax(T* p, T v) { T old = *p; if (old < v) *p = v; return old; }
template <class T> inline T atomicMin(T* p, T v) { T old = *p; if (v < old) *p = v; return old; }
template <class T> inline T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }

// cupy/carray.cuh's CArray for a raw parameter. The simulator passes a
// C-contiguous copy, so x[i] (a logical C-order index) is data_[i]. A const
// CArray (a raw input) is read-only, as in CuPy.
template <typename T, int ndim>
class CArray {
 public:
  CArray(T* data, const ptrdiff_t* dims) : data_(data), size_(1) {
    for (int k = 0; k < ndim; ++k) {
      shape_[k] = dims[k];
      strides_[k] = dims[ndim + k];
      size_ *= dims[k];
    }
  }
  ptrdiff_t size() const { return size_; }
  const ptrdiff_t* shape() const { return shape_; }
  const ptrdiff_t* strides() const { return strides_; }
  T& operator[](ptrdiff_t i) { return data_[i]; }
  const T& operator[](ptrdiff_t i) const { return data_[i]; }
  template <typename Int> T& operator[](const Int (&idx)[ndim]) { return *at(idx); }
  template <typename Int> const T& operator[](const Int (&idx)[ndim]) const { return *at(idx); }

 private:
  template <typename Int> T* at(const Int* idx) const {
    char* p = reinterpret_cast<char*>(data_);
    for (int k = 0; k < ndim; ++k) p += strides_[k] * idx[k];
    return reinterpret_cast<T*>(p);
  }
  T* data_;
  ptrdiff_t size_;
  ptrdiff_t shape_[ndim > 0 ? ndim : 1];
  ptrdiff_t strides_[ndim > 0 ? ndim : 1];
};
"""

# Runs KERNEL (a RawKernel's __global__ function) over a launch grid, and
# tells Python its parameters' sizes and which are pointers.
_LAUNCHER = r"""
template <class... A> struct simcuda_signature {
  static constexpr size_t sizes[sizeof...(A) + 1] = {sizeof(A)..., 0};
  static constexpr bool pointers[sizeof...(A) + 1] = {std::is_pointer<A>::value..., false};
  template <size_t... I>
  static void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<A*>(args[I])...);
  }
  static void call(void (*f)(A...), void** args) { call(f, args, std::index_sequence_for<A...>{}); }
};
template <class... A> simcuda_signature<A...> simcuda_signature_of(void (*)(A...));
typedef decltype(simcuda_signature_of(&KERNEL)) simcuda_S;

extern "C" int simcuda_nparams() { return sizeof(simcuda_S::sizes) / sizeof(size_t) - 1; }
extern "C" size_t simcuda_param_size(int k) { return simcuda_S::sizes[k]; }
extern "C" int simcuda_param_is_pointer(int k) { return simcuda_S::pointers[k]; }
// d: the grid, the block, and the stride of the blocks' order (see _scrambled)
extern "C" void simcuda_launch(void** args, const unsigned long long* d) {
  gridDim = dim3{unsigned(d[0]), unsigned(d[1]), unsigned(d[2])};
  blockDim = dim3{unsigned(d[3]), unsigned(d[4]), unsigned(d[5])};
  const unsigned long long nblocks = d[0] * d[1] * d[2], nthreads = d[3] * d[4] * d[5];
  unsigned long long k = 0;
  for (unsigned long long n = 0; n < nblocks; ++n, k = (k + d[6]) % nblocks) {
    const unsigned long long b = nblocks - 1 - k;
    blockIdx = uint3{unsigned(b % d[0]), unsigned(b / d[0] % d[1]), unsigned(b / d[0] / d[1])};
    for (unsigned long long t = nthreads; t-- > 0;) {
      threadIdx = uint3{unsigned(t % d[3]), unsigned(t / d[3] % d[4]), unsigned(t / d[3] / d[4])};
      simcuda_S::call(&KERNEL, args);
    }
  }
}
"""

# _scalar.pyx:14 C type names
_CTYPES = {"float64": "double", "float32": "float", "int64": "long long", "int32": "int",
           "int16": "short", "int8": "signed char", "uint64": "unsigned long long",
           "uint32": "unsigned int", "uint16": "unsigned short", "uint8": "unsigned char",
           "bool": "bool"}
_CXX = ("g++", "-O2", "-shared", "-fPIC", "-std=c++17")
_libs = {}
_lock = threading.Lock()


def _ctype(dtype):
    try:
        return _CTYPES[np.dtype(dtype).name]
    except KeyError:
        raise NotImplementedError(f"simcuda kernels do not support {np.dtype(dtype)} "
                                  "(float16 and complex types are not simulated)") from None


def cache_dir():
    return os.environ.get("SIMCUDA_CACHE") or os.path.join(
        tempfile.gettempdir(), f"simcuda-cache-{os.getuid()}")


def _compile(source, name):
    """The loaded shared object built from ``source`` (compiled once per machine)."""
    if re.search(r"\b(__shared__|__syncthreads)\b", source):
        raise NotImplementedError(
            f"kernel {name!r} uses __shared__ or __syncthreads: the simulator runs the "
            "threads of a launch one after another and cannot run it")
    key = hashlib.sha256((" ".join(_CXX) + "\n" + source).encode()).hexdigest()
    with _lock:
        if key not in _libs:
            _libs[key] = ctypes.CDLL(_build(source, key, name))
        return _libs[key]


def _build(source, key, name):
    folder = cache_dir()
    path = os.path.join(folder, key + ".so")
    if os.path.exists(path):
        return path
    if shutil.which(_CXX[0]) is None:
        raise RuntimeError("the CuPy simulator needs g++ to run CUDA kernels on the host")
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src, so = os.path.join(tmp, "kernel.cpp"), os.path.join(tmp, "kernel.so")
        with open(src, "w") as f:
            f.write(source)
        proc = subprocess.run([*_CXX, "-o", so, src], capture_output=True, text=True)
        if proc.returncode:
            raise CompileException(f"kernel {name!r} does not compile:\n{proc.stderr}", source, name)
        os.replace(so, path)    # atomic: other processes see the whole file or none
    return path


def _scrambled(nblocks):
    """The stride of the order blocks run in: block ``nblocks - 1 - (k * stride) % nblocks``
    runs k-th. Coprime with ``nblocks`` (each block runs once) and near ``nblocks / phi``,
    so consecutive blocks run far apart."""
    stride = max(1, round(nblocks * 0.618))
    while math.gcd(stride, nblocks) != 1:
        stride += 1
    return stride


def _pointers(addresses):
    return (ctypes.c_void_p * len(addresses))(*addresses)


class _Param:
    """One "[raw] [_non_const] TYPE NAME" (_kernel.pyx:464 ParameterInfo)."""

    def __init__(self, text, is_const):
        words = text.split()
        if len(words) < 2:
            raise Exception("Syntax error: %s" % text)
        t, self.name = words[-2:]
        self.raw, self.is_const = False, is_const
        for w in words[:-2]:
            if w == "raw":
                self.raw = True
            elif w == "_non_const":
                self.is_const = False
            else:
                raise Exception('Unknown keyword "%s"' % w)
        if len(t) == 1:
            self.dtype, self.ctype = None, t        # a type placeholder such as T
        else:
            self.dtype = _core.get_dtype(t)
            self.ctype = _ctype(self.dtype)


def _params(text, is_const):
    return tuple(_Param(p, is_const) for p in text.strip().split(",")) if text else ()


def _broadcast_shape(arrays):
    try:
        return np.broadcast_shapes(*[a.shape for a in arrays])
    except ValueError:
        raise ValueError("operands could not be broadcast together with shapes {}".format(
            " ".join(str(a.shape) for a in arrays))) from None


class ElementwiseKernel:
    """cupy/_core/_kernel.pyx:743. Non-raw array arguments (inputs and given
    outputs) are broadcast together and bound to element ``i``; raw ones are
    indexed by hand with a logical C-order index; dtypes come from the arrays
    only (no casting); scalars are cast to their parameter's type; outputs
    not given are allocated on the current device."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, **kwargs):
        if not re.match(r"^[a-zA-Z_][a-zA-Z_0-9]*$", name):
            raise ValueError('Invalid kernel name: "%s"' % name)
        unknown = set(kwargs) - {"options", "loop_prep", "after_loop"}
        if unknown:
            raise TypeError("Wrong arguments %s" % {k: kwargs[k] for k in unknown})
        self.in_params = _params(in_params, True)
        self.out_params = _params(out_params, False)
        self.params = self.in_params + self.out_params
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        if "i" in [p.name for p in self.params]:
            raise ValueError("Can not use 'i' as a parameter name")
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self._loop_prep = kwargs.get("loop_prep", "")
        self._after_loop = kwargs.get("after_loop", "")
        self._functions = {}
        self._cached_codes = {}

    @property
    def cached_codes(self):
        """The CUDA modules CuPy generated, by the dtypes of the array arguments (inputs,
        then outputs): the first module compiled for those dtypes, never replaced
        (_kernel.pyx ElementwiseKernel._get_elementwise_kernel and cached_codes).

        CuPy compiles each with NVRTC after prepending its headers (cupy/complex.cuh,
        carray.cuh, atomics.cuh, math_constants.h); the simulator runs the same body
        through its host harness instead, but a test can compile these with nvcc.
        """
        if not self._cached_codes:
            warnings.warn("No codes are cached because compilation is deferred until the first "
                          "function call.", stacklevel=2)
        return dict(self._cached_codes)

    @property
    def cached_code(self):
        """The first module in ``cached_codes`` (_kernel.pyx cached_code): StopIteration if none."""
        if len(self._cached_codes) > 1:
            warnings.warn("The input types of the kernel could not be inferred. Please use "
                          "`.cached_codes` instead.", stacklevel=2)
        return next(iter(self._cached_codes.values()))

    def __call__(self, *args, **kwargs):
        size = kwargs.pop("size", -1)
        kwargs.pop("stream", None)
        block_size = kwargs.pop("block_size", 128)
        if kwargs:
            raise TypeError("Wrong arguments %s" % kwargs)
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        what = f"ElementwiseKernel {self.name!r}"
        for a in args:
            operand(a, what)    # _preprocess_args: device check, no NumPy arrays
        in_args, out_args = list(args[:self.nin]), list(args[self.nin:])
        if not all(isinstance(a, ndarray) for a in out_args):
            raise TypeError("Output arguments type must be cupy.ndarray")

        nonraw = [a for p, a in zip(self.params, args) if not p.raw and isinstance(a, ndarray)]
        if size != -1:
            if nonraw:
                raise ValueError("Specified 'size' can be used only if all of the ndarray are 'raw'.")
            shape = (size,)
        elif not nonraw:
            raise ValueError("Loop size is undecided.")
        else:
            shape = _broadcast_shape(nonraw)

        in_types, out_types, placeholders = self._decide_types(in_args, out_args)
        if out_args:
            for p, a in zip(self.out_params, out_args):
                if not p.raw and a.shape != shape:
                    raise ValueError("Out shape is mismatched")
        else:
            if size == -1 and any(p.raw for p in self.out_params):
                raise ValueError("Output array size is Undecided")
            out_args = [_core.empty(shape, t) for t in out_types]

        if math.prod(shape):        # an empty launch compiles nothing (_contains_zero)
            args, types = in_args + out_args, in_types + out_types
            key = tuple(a.dtype for a in args if isinstance(a, ndarray))
            if key not in self._cached_codes:
                self._cached_codes[key] = self._cuda_source(args, types, placeholders, shape)
            for a in out_args:
                _machine.access(a, what, write=True)
            self._launch(args, types, placeholders, shape, block_size)
        if self.no_return:
            return None
        return out_args[0] if self.nout == 1 and not self.return_tuple else tuple(out_args)

    def _decide_types(self, in_args, out_args):
        """_decide_params_type_core (_kernel.pyx:557): from the arrays only."""
        bound = {}

        def bind(p, dtype):
            if p.dtype is not None:
                if dtype != p.dtype:
                    raise TypeError("Type is mismatched. %s %s %s" % (p.name, dtype, p.dtype))
            elif p.ctype in bound:
                if bound[p.ctype] != dtype:
                    raise TypeError("Type is mismatched. %s %s %s %s" % (
                        p.name, dtype, bound[p.ctype], p.ctype))
            else:
                bound[p.ctype] = dtype

        for p, a in zip(self.out_params, out_args):
            bind(p, a.dtype)
        for p, a in zip(self.in_params, in_args):
            if isinstance(a, ndarray):
                bind(p, a.dtype)
        # a placeholder bound by scalars only is a KeyError, as in CuPy
        in_types = [bound[p.ctype] if p.dtype is None else p.dtype for p in self.in_params]
        out_types = [bound[p.ctype] if p.dtype is None else p.dtype for p in self.out_params]
        return in_types, out_types, bound

    @_core.silent       # scalars cast to their parameter's type (CScalar.apply_dtype)
    def _launch(self, args, types, placeholders, shape, block_size):
        buffers, dims, write_back, signature = [], [], [], []
        for k, (p, a, t) in enumerate(zip(self.params, args, types)):
            if not isinstance(a, ndarray):
                buf = np.array(a, dtype=t)      # CScalar.apply_dtype
                signature.append(("scalar", t.name))
            else:
                buf = a._a if p.raw else np.broadcast_to(a._a, shape)
                if not buf.flags.c_contiguous:
                    buf = buf.copy(order="C")
                    if k >= self.nin:
                        write_back.append((a._a, buf))
                if p.raw:
                    dims += buf.shape + buf.strides
                signature.append(("raw" if p.raw else "array", t.name, buf.ndim))
            buffers.append(buf)
        signature = tuple(signature)
        if signature not in self._functions:
            fn = _compile(self._source(signature, placeholders), self.name).simcuda_kernel
            fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_ssize_t,
                           ctypes.c_ssize_t)
            fn.restype = None
            self._functions[signature] = fn
        dims = np.array(dims, dtype=np.intp)
        n = math.prod(shape)
        self._functions[signature](_pointers([b.ctypes.data for b in buffers]), dims.ctypes.data, n,
                                   block_size, _scrambled(-(-n // block_size)))
        for dst, buf in write_back:
            np.copyto(dst, buf)

    def _cuda_source(self, args, types, placeholders, shape):
        """_get_elementwise_kernel_code (_kernel.pyx:710) and its template (:78): non-raw arrays
        reduced to one dimension when all are C-contiguous (_reduce_dims), as CArray<T, ndim,
        c_contiguous, use_32bit_indexing> parameters named _raw_<name>; raw arrays as their own
        CArray; scalars by value; then the CIndexer."""
        nonraw = [a for p, a in zip(self.params, args) if not p.raw and isinstance(a, ndarray)]
        flat = all(a.flags.c_contiguous for a in nonraw)
        loop_ndim = 1 if flat else len(shape)
        idx32 = int(all(a.nbytes < 2 ** 31 for a in args if isinstance(a, ndarray)))
        params, refs = [], []
        for p, a, t in zip(self.params, args, types):
            const = "const " if p.is_const else ""
            c = _ctype(t)
            if not isinstance(a, ndarray):
                params.append(f"{const}{c} {p.name}")
            elif p.raw:
                params.append(f"{const}CArray<{c}, {a.ndim}, {int(a.flags.c_contiguous)}, {idx32}> {p.name}")
            else:
                contiguous = int(flat or a.flags.c_contiguous)
                params.append(f"{const}CArray<{c}, {loop_ndim}, {contiguous}, {idx32}> _raw_{p.name}")
                refs.append(f"{const}{p.ctype} &{p.name} = _raw_{p.name}[_ind.get()];")
        params.append(f"CIndexer<{loop_ndim}, {idx32}> _ind")
        typedefs = "".join(f"typedef {_ctype(t)} {name};\n" for name, t in sorted(placeholders.items()))
        operation = "\n".join(refs + [self.operation])
        return f"""
    {typedefs}
    {self.preamble}
    extern "C" __global__ void {self.name}({", ".join(params)}) {{
      {self._loop_prep};
      #pragma unroll 1
      CUPY_FOR(i, _ind.size()) {{
        _ind.set(i);
        {operation};
      }}
      {self._after_loop};
    }}
    """

    def _source(self, signature, placeholders):
        """What _get_elementwise_kernel_code (_kernel.pyx:710) generates, with
        a host loop for CUPY_FOR and contiguous buffers for the arrays."""
        decls, refs, dim = [], [], 0
        for k, (p, (kind, dtype, *ndim)) in enumerate(zip(self.params, signature)):
            const = "const " if p.is_const else ""
            c = _ctype(dtype)
            if kind == "scalar":
                decls.append(f"{const}{c} {p.name} = *static_cast<const {c}*>(_args[{k}]);")
            elif kind == "raw":
                decls.append(f"{const}CArray<{c}, {ndim[0]}> {p.name}("
                             f"static_cast<{c}*>(_args[{k}]), _dims + {dim});")
                dim += 2 * ndim[0]
            else:
                decls.append(f"{c}* const _raw_{p.name} = static_cast<{c}*>(_args[{k}]);")
                refs.append(f"{const}{p.ctype} &{p.name} = _raw_{p.name}[i];")
        typedefs = "".join(f"typedef {_ctype(t)} {name};\n" for name, t in sorted(placeholders.items()))
        decls, refs = "\n  ".join(decls), "\n    ".join(refs)
        return f"""{_HEADER}
{typedefs}{self.preamble}
extern "C" void simcuda_kernel(void* const* _args, const ptrdiff_t* _dims, ptrdiff_t _n,
                               ptrdiff_t _block, ptrdiff_t _stride) {{
  {decls}
  struct {{ ptrdiff_t n; ptrdiff_t size() const {{ return n; }} }} _ind{{_n}};
  {self._loop_prep};
  const ptrdiff_t _nblocks = (_n + _block - 1) / _block;
  for (ptrdiff_t _k = 0, _b = 0; _k < _nblocks; ++_k, _b = (_b + _stride) % _nblocks) {{
    const ptrdiff_t _first = (_nblocks - 1 - _b) * _block;
    for (ptrdiff_t i = (_first + _block < _n ? _first + _block : _n) - 1; i >= _first; --i) {{
      {refs}
{self.operation};
    }}
  }}
  {self._after_loop};
}}
"""


class RawKernel:
    """cupy/_core/raw.pyx RawKernel, launched as ``kern(grid, block, args)``.
    Arrays are passed as their data pointers (views ignored, as in CuPy);
    Python int is int64 and float is float64 (function.pyx _pointer)."""

    def __init__(self, code, name, options=(), backend="nvrtc", *, translate_cucomplex=False,
                 enable_cooperative_groups=False, jitify=False):
        self.code, self.name, self.options, self.backend = code, name, options, backend
        self._lib = None

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        for what, v in (("grid", grid), ("block", block)):
            if not isinstance(v, tuple):
                raise TypeError(f"Argument '{what}' has incorrect type (expected tuple, got {typename(v)})")
        dims = [max(1, int(v)) for v in (grid + (1, 1, 1))[:3]] + \
               [max(1, int(v)) for v in (block + (1, 1, 1))[:3]]
        dims.append(_scrambled(math.prod(dims[:3])))
        lib = self._load()
        n = lib.simcuda_nparams()
        if len(args) != n:
            raise TypeError(f"RawKernel {self.name!r} takes {n} arguments, {len(args)} given "
                            "(on a GPU the kernel would read garbage)")
        storage = [self._argument(k, a, lib) for k, a in enumerate(args)]
        addresses = [ctypes.addressof(s) if isinstance(s, ctypes.c_void_p) else s.ctypes.data
                     for s in storage]
        lib.simcuda_launch(_pointers(addresses), np.array(dims, dtype=np.uint64).ctypes.data)

    def _load(self):
        if self._lib is None:
            lib = _compile(_HEADER + self.code + _LAUNCHER.replace("KERNEL", self.name), self.name)
            lib.simcuda_param_size.argtypes = lib.simcuda_param_is_pointer.argtypes = (ctypes.c_int,)
            lib.simcuda_param_size.restype = ctypes.c_size_t
            lib.simcuda_launch.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
            lib.simcuda_launch.restype = None
            self._lib = lib
        return self._lib

    def _argument(self, k, a, lib):
        """The bytes the kernel receives for argument ``k``, checked against its
        C parameter (a GPU would silently misread a mismatch)."""
        pointer = bool(lib.simcuda_param_is_pointer(k))
        if isinstance(a, ndarray) or a is None:
            if not pointer:
                raise TypeError(f"RawKernel {self.name!r}: argument {k} is a value parameter, "
                                f"given {typename(a)}")
            if a is None:
                return ctypes.c_void_p(None)
            check_same_device(a, f"RawKernel {self.name!r}", write=True)     # it may write any argument
            return ctypes.c_void_p(a.data.ptr)
        if isinstance(a, np.ndarray):
            if a.size != 1:
                raise TypeError(
                    f"You are trying to pass a numpy.ndarray of shape {a.shape} as a kernel "
                    "parameter. Only numpy.ndarrays of size one can be passed by value. If you "
                    "meant to pass a pointer to __global__ memory, you need to pass a "
                    "cupy.ndarray instead.")
            value = a.reshape(())
        elif type(a) is bool:
            value = np.array(a, np.bool_)
        elif type(a) is int:
            value = np.array(a, np.uint64 if a >= 2**63 else np.int64)
        elif type(a) in (float, complex) or isinstance(a, np.generic):
            value = np.array(a)
        else:
            raise TypeError(f"Unsupported type {type(a)}")
        if pointer:
            raise TypeError(f"RawKernel {self.name!r}: argument {k} is a pointer parameter, "
                            f"given {typename(a)} (pass a cupy.ndarray)")
        size = lib.simcuda_param_size(k)
        if value.itemsize != size:
            raise TypeError(
                f"RawKernel {self.name!r}: argument {k} is a {size}-byte parameter, given a "
                f"{value.dtype} value (Python int is passed as int64 and float as float64: "
                "use numpy.int32(n) / numpy.float32(x) for int / float)")
        return value
