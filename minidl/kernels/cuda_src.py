"""CUDA sources of the GPU kernels, as plain strings (importable without CuPy).

Each entry is (input parameters, output parameters, body, name) in the form
``cupy.ElementwiseKernel`` takes: the body runs once per output element,
with ``i`` its flat index, ``raw`` parameters indexed by hand and the
others bound to element ``i``. ``cuda.py`` compiles them with CuPy; the
tests also compile the same bodies on the host with a C++ compiler (a plain
loop over ``i``) and compare them with the NumPy kernels, so the index
arithmetic is checked even on machines without a GPU.
"""

KERNELS = {}

KERNELS["im2col"] = (
    "raw T img, int32 n, int32 c, int32 h, int32 w, int32 out_h, int32 out_w, int32 kh, int32 kw, int32 sy, int32 sx, int32 ph, int32 pw",
    "T col",
    """
    // col is (C, kh, kw, out_h, out_w, N) in C order; img is (C, h, w, N)
    int b = i % n;
    int out_x = i / n % out_w;
    int out_y = i / (n * out_w) % out_h;
    int kx = i / (n * out_w * out_h) % kw;
    int ky = i / (n * out_w * out_h * kw) % kh;
    int ch = i / (n * out_w * out_h * kw * kh);
    int in_y = ky + out_y * sy - ph;
    int in_x = kx + out_x * sx - pw;
    if (in_y >= 0 && in_y < h && in_x >= 0 && in_x < w) {
        col = img[((ch * h + in_y) * w + in_x) * n + b];
    } else {
        col = 0;
    }
    """,
    "minidl_im2col",
)

KERNELS["col2im"] = (
    "raw T col, int32 n, int32 c, int32 h, int32 w, int32 out_h, int32 out_w, int32 kh, int32 kw, int32 sy, int32 sx, int32 ph, int32 pw",
    "T img",
    """
    // gather: pixel (ch, y, x, b) of img (C, h, w, N) sums every entry
    // of col (C, kh, kw, out_h, out_w, N) that was copied from it
    int b = i % n;
    int x = i / n % w + pw;
    int y = i / (n * w) % h + ph;
    int ch = i / (n * w * h);
    int oy0 = max(0, (y - kh + sy) / sy);
    int oy1 = min(out_h, (y + sy) / sy);
    int ox0 = max(0, (x - kw + sx) / sx);
    int ox1 = min(out_w, (x + sx) / sx);
    T val = 0;
    for (int out_y = oy0; out_y < oy1; ++out_y) {
        int ky = y - out_y * sy;
        for (int out_x = ox0; out_x < ox1; ++out_x) {
            int kx = x - out_x * sx;
            val += col[((((ch * kh + ky) * kw + kx) * out_h + out_y) * out_w + out_x) * n + b];
        }
    }
    img = val;
    """,
    "minidl_col2im",
)

KERNELS["maxpool_fwd"] = (
    "raw T x, int32 h, int32 w, int32 out_h, int32 out_w, int32 k, int32 s",
    "T y, int8 switches",
    """
    int c0 = i / (out_h * out_w);
    int y0 = (i / out_w % out_h) * s;
    int x0 = (i % out_w) * s;
    const int base = c0 * h * w;
    T m = x[base + y0 * w + x0];
    int arg = 0;
    for (int ky = 0; ky < k; ++ky) {
        for (int kx = 0; kx < k; ++kx) {
            T v = x[base + (y0 + ky) * w + x0 + kx];
            if (v > m) { m = v; arg = ky * k + kx; }   // strict: first max wins ties
        }
    }
    y = m;
    switches = arg;
    """,
    "minidl_maxpool_fwd",
)

KERNELS["maxpool_bwd"] = (
    "raw T dy, raw int8 switches, int32 h, int32 w, int32 out_h, int32 out_w, int32 k, int32 s",
    "T dx",
    """
    // gather: input pixel (y, x) sums dy of every window whose switch points at it
    int c0 = i / (h * w);
    int y = i / w % h;
    int x = i % w;
    int oy0 = max(0, (y - k + s) / s);
    int oy1 = min(out_h, y / s + 1);
    int ox0 = max(0, (x - k + s) / s);
    int ox1 = min(out_w, x / s + 1);
    T val = 0;
    for (int oy = oy0; oy < oy1; ++oy) {
        for (int ox = ox0; ox < ox1; ++ox) {
            int o = (c0 * out_h + oy) * out_w + ox;
            if (switches[o] == (y - oy * s) * k + (x - ox * s)) val += dy[o];
        }
    }
    dx = val;
    """,
    "minidl_maxpool_bwd",
)

KERNELS["channel_window_sum"] = (
    "raw T x, int32 c, int32 hw, int32 before, int32 after",
    "T out",
    """
    int n = i / (c * hw);
    int ch = i / hw % c;
    int p = i % hw;
    int lo = max(0, ch - before);
    int hi = min(c - 1, ch + after);
    T acc = 0;
    for (int j = lo; j <= hi; ++j) acc += x[(n * c + j) * hw + p];
    out = acc;
    """,
    "minidl_channel_window_sum",
)
