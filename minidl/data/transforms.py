"""Batch augmentation and normalisation, vectorised, on NumPy or CuPy.

Every function takes a whole batch (B, C, H, W) and works on the batch's own
array module (``xp = get_array_module(batch)``): there is no Python loop over
images. Randomness comes from a ``numpy.random.Generator`` the caller passes
in; only the small per-image draws (offsets, flip flags, colour alphas) are
made on the host and moved to the batch's device, so a run is reproducible
from its seed on either backend. No function modifies its input.

Pixel scale: images stay on the 0..255 scale (raw RGB, as in the paper) until
the mean is subtracted; ``pca_lighting`` takes eigenvalues on the [0, 1]
scale and multiplies by ``scale`` (255) to match. ``pipeline.py`` chains
these into the training and test-time transforms.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from minidl.backend import get_array_module
from minidl.checks import number

__all__ = ["random_crop", "random_flip", "center_crop", "ten_crop", "resize",
           "pca_lighting", "to_float", "subtract_mean", "normalize", "IMAGENET_EIGVAL", "IMAGENET_EIGVEC"]

# The ImageNet RGB covariance on the [0, 1] scale (fb.resnet.torch and most
# ports): eigenvalues in descending order, and a matrix whose COLUMN i is the
# eigenvector of eigenvalue i (column 0, ~ -(1, 1, 1)/sqrt(3), is brightness).
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float32)
IMAGENET_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]], dtype=np.float32)


def _check_batch(batch, who):
    if getattr(batch, "ndim", None) != 4:
        raise ValueError(f"{who}: expected a batch of shape (B, C, H, W), got "
                         f"{getattr(batch, 'shape', type(batch).__name__)}")


def _check_float(batch, who):
    if not np.issubdtype(batch.dtype, np.floating):
        raise TypeError(f"{who}: expected a floating-point batch, got {batch.dtype}; "
                        "convert it with to_float(batch) first")


def _draw(draw, n, rows):
    """``draw(n)``, or with ``rows`` = (start, total): rows start..start+n of ``draw(total)``.

    A process that holds rows [start, start + n) of a global batch of
    ``total`` images draws the random numbers of the whole batch and keeps
    its own, so K processes augment each image as one process would.
    """
    if rows is None:
        return draw(n)
    start, total = int(rows[0]), int(rows[1])
    if not (0 <= start and start + n <= total):
        raise ValueError(f"rows {start}..{start + n} of a batch of {total} do not fit in it")
    return draw(total)[start:start + n]


def _generator(rng, who):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{who}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def _pca_basis(eigval, eigvec, who):
    """eigval (3,) >= 0 and eigvec (3, 3), as float64 arrays, or a ValueError naming ``who``."""
    eigval, eigvec = np.asarray(eigval, np.float64), np.asarray(eigvec, np.float64)
    if eigval.shape != (3,) or eigvec.shape != (3, 3):
        raise ValueError(f"{who}: eigval must be the 3 eigenvalues and eigvec the 3x3 eigenvectors of the RGB "
                         f"covariance, got shapes {eigval.shape} and {eigvec.shape}")
    if not (np.isfinite(eigval).all() and np.isfinite(eigvec).all() and (eigval >= 0).all()):
        raise ValueError(f"{who}: eigval must be finite and >= 0, eigvec finite")
    return eigval, eigvec


def _size2(size, who):
    h, w = (size, size) if np.isscalar(size) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"{who}: size must be positive, got {size}")
    return int(h), int(w)


def _crop_at(batch, top, left, size):
    """out[b] = batch[b, :, top[b]:top[b]+size, left[b]:left[b]+size], all b at once.

    A strided view lists every size x size window, (B, C, H-size+1, W-size+1,
    size, size); fancy indexing with the per-image offsets then copies just
    the B chosen windows (no index array the size of the output).
    """
    xp = get_array_module(batch)
    B, C, H, W = batch.shape
    sB, sC, sH, sW = batch.strides
    windows = xp.lib.stride_tricks.as_strided(
        batch, shape=(B, C, H - size + 1, W - size + 1, size, size),
        strides=(sB, sC, sH, sW, sH, sW))
    b = xp.arange(B)
    # Advanced indices on axes 0, 2, 3 (split by the channel slice): the
    # result's axes are (B, C, size, size).
    return windows[b, :, xp.asarray(top), xp.asarray(left)]


def random_crop(batch, size, rng, padding=0, rows=None):
    """Independent random ``size x size`` crop of each image.

    batch: (B, C, H, W), any dtype. With ``padding`` p the batch is first
    zero-padded to (H + 2p, W + 2p) (CIFAR-style). Offsets are uniform:
    top[b] ~ U{0..H+2p-size}, left[b] ~ U{0..W+2p-size}, drawn from ``rng``
    (top for all images, then left). Returns (B, C, size, size), same dtype.
    ``rows`` = (start, total): the batch is rows start.. of a batch of
    ``total`` images, and gets those rows' offsets.
    """
    _check_batch(batch, "random_crop")
    xp = get_array_module(batch)
    size, padding = int(size), int(padding)
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got {padding}")
    if padding:
        batch = xp.pad(batch, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    B, C, H, W = batch.shape
    if not 1 <= size <= min(H, W):
        raise ValueError(f"random_crop: crop size {size} does not fit in {H}x{W} images "
                         f"(after padding {padding}); resize first or lower the crop size")
    rng = _generator(rng, "random_crop")
    top = _draw(lambda n: rng.integers(0, H - size + 1, size=n), B, rows)
    left = _draw(lambda n: rng.integers(0, W - size + 1, size=n), B, rows)
    return _crop_at(batch, top, left, size)


def random_flip(batch, rng, p=0.5, rows=None):
    """Mirror each image left-right with probability ``p``.

    batch: (B, C, H, W). out[b] = batch[b, :, :, ::-1] where u[b] < p,
    u ~ U[0, 1) from ``rng`` (B draws); else batch[b]. Returns a new array.
    ``rows``: as in random_crop.
    """
    _check_batch(batch, "random_flip")
    p = number(p, "random_flip", "p", low=0, high=1)
    xp = get_array_module(batch)
    rng = _generator(rng, "random_flip")
    flip = np.flatnonzero(_draw(rng.random, batch.shape[0], rows) < p)
    out = batch.copy()
    if flip.size:
        f = xp.asarray(flip)
        out[f] = batch[f, :, :, ::-1]
    return out


def _fitting_crop(size, H, W, who):
    size = int(size)
    if not 1 <= size <= min(H, W):
        raise ValueError(f"{who}: crop size {size} does not fit in {H}x{W} images")
    return size


def center_crop(batch, size):
    """The central ``size x size`` crop: rows from (H - size) // 2, columns from
    (W - size) // 2. (B, C, H, W) -> (B, C, size, size), contiguous copy."""
    _check_batch(batch, "center_crop")
    xp = get_array_module(batch)
    H, W = batch.shape[2:]
    size = _fitting_crop(size, H, W, "center_crop")
    top, left = (H - size) // 2, (W - size) // 2
    return xp.ascontiguousarray(batch[:, :, top:top + size, left:left + size])


def ten_crop(batch, size):
    """The paper's test-time crops: (B, C, H, W) -> (10, B, C, size, size).

    Order: 0 centre, 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right,
    then 5..9 the same five crops mirrored left-right (crop k+5 is crop k
    flipped). The centre crop is ``center_crop``'s.
    """
    _check_batch(batch, "ten_crop")
    xp = get_array_module(batch)
    H, W = batch.shape[2:]
    s = _fitting_crop(size, H, W, "ten_crop")
    corners = [((H - s) // 2, (W - s) // 2), (0, 0), (0, W - s), (H - s, 0), (H - s, W - s)]
    crops = [batch[:, :, y:y + s, x:x + s] for y, x in corners]
    return xp.stack(crops + [c[:, :, :, ::-1] for c in crops])


@lru_cache(maxsize=64)
def _bilinear_matrix(n_in, n_out):
    """R (n_out, n_in) with out = R @ in: Pillow's bilinear resampling weights.

    Half-pixel centres (align_corners=False): output pixel i samples at
    c = (i + 0.5) * n_in / n_out; input pixel j has weight tri((j + 0.5 - c) / f)
    with tri(t) = max(0, 1 - |t|) and f = max(1, n_in / n_out), restricted to
    the image and normalised to sum 1. Upsampling (f = 1) is plain bilinear
    with edge clamping; downsampling widens the triangle (antialiasing), as
    Pillow and torchvision's ``antialias=True`` do.
    """
    scale = n_in / n_out
    f = max(scale, 1.0)
    R = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):  # a small host-side table, built once per shape
        c = (i + 0.5) * scale
        lo = max(int(c - f + 0.5), 0)
        hi = min(int(c + f + 0.5), n_in)
        j = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((j + 0.5 - c) / f))
        if w.sum() > 0:
            R[i, lo:hi] = w / w.sum()
    R.setflags(write=False)
    return R


def resize(batch, size, dtype=None):
    """Bilinear resize of every image: (B, C, h, w) -> (B, C, H, W).

    size: int (square) or (H, W). Separable: out = Ry @ x @ Rx^T with the
    interpolation matrices of ``_bilinear_matrix`` (Pillow's BILINEAR; for
    upsampling the same as torch's ``interpolate(mode='bilinear',
    align_corners=False)``). dtype: output dtype; default the input's if it is
    floating, else float32.
    """
    _check_batch(batch, "resize")
    xp = get_array_module(batch)
    oh, ow = _size2(size, "resize")
    if dtype is None:
        dtype = batch.dtype if np.issubdtype(batch.dtype, np.floating) else np.float32
    x = batch.astype(dtype, copy=False)
    h, w = x.shape[2:]
    if (h, w) == (oh, ow):
        return x.copy() if x is batch else x
    Ry = xp.asarray(_bilinear_matrix(h, oh), dtype=dtype)
    Rx = xp.asarray(_bilinear_matrix(w, ow), dtype=dtype)
    return xp.matmul(Ry, xp.matmul(x, Rx.T))


def pca_lighting(batch, eigval, eigvec, rng, std=0.1, scale=255.0, rows=None):
    """The paper's PCA colour augmentation (Section 4.1).

    batch: float (B, 3, H, W). eigval (3,), eigvec (3, 3) with column i the
    eigenvector p_i of eigval[i] (lambda_i), both of the RGB covariance on the
    [0, 1] scale. For each image b, alpha_b ~ N(0, std^2) (3 draws from
    ``rng``, (B, 3) in all) and every pixel gets

        out[b, :, y, x] = batch[b, :, y, x] + scale * [p1 p2 p3] (alpha_b * lambda)

    ``scale`` converts the [0, 1]-scale shift to the batch's pixel scale.
    Same dtype out. ``rows``: as in random_crop.
    """
    _check_batch(batch, "pca_lighting")
    _check_float(batch, "pca_lighting")
    xp = get_array_module(batch)
    if batch.shape[1] != 3:
        raise ValueError(f"pca_lighting: needs RGB images (3 channels), got {batch.shape[1]}")
    eigval, eigvec = _pca_basis(eigval, eigvec, "pca_lighting")
    rng, std = _generator(rng, "pca_lighting"), number(std, "pca_lighting", "std", low=0)
    alpha = _draw(lambda n: rng.normal(0.0, std, size=(n, 3)), batch.shape[0], rows)
    shift = scale * (alpha * eigval) @ eigvec.T          # row b = eigvec @ (alpha_b * eigval)
    return batch + xp.asarray(shift, dtype=batch.dtype)[:, :, None, None]


def to_float(batch, dtype=np.float32):
    """uint8 (B, C, H, W) -> ``dtype`` on the same 0..255 scale (new array)."""
    _check_batch(batch, "to_float")
    return batch.astype(np.dtype(dtype), copy=True)


def _mean_term(batch, mean, who="subtract_mean"):
    """The mean as an array that broadcasts against ``batch`` (see subtract_mean)."""
    xp = get_array_module(batch)
    m = xp.asarray(mean, dtype=batch.dtype)
    C, H, W = batch.shape[1:]
    if m.ndim == 0:
        return m
    if m.ndim == 1:
        if m.shape[0] != C:
            raise ValueError(f"{who}: per-channel mean has {m.shape[0]} values, batch has {C} channels")
        return m[:, None, None]
    if m.ndim == 3:
        if m.shape[0] != C or m.shape[1] < H or m.shape[2] < W:
            raise ValueError(f"{who}: mean image {tuple(m.shape)} does not cover images "
                             f"({C}, {H}, {W}); it must have {C} channels and be at least {H}x{W}")
        top, left = (m.shape[1] - H) // 2, (m.shape[2] - W) // 2
        return m[:, top:top + H, left:left + W]
    raise ValueError(f"{who}: mean must be a scalar, (C,) or (C, H, W), got shape {tuple(m.shape)}")


def subtract_mean(batch, mean):
    """batch - mean, with the mean a scalar, per channel (C,) or an image (C, H', W').

    A mean image larger than the batch's images is centre-cropped to them
    (``center_crop``'s offsets): right for centre crops; for random crops
    subtract the full mean before cropping (``TrainTransform`` does).
    Returns a new array of the batch's dtype.
    """
    _check_batch(batch, "subtract_mean")
    _check_float(batch, "subtract_mean")
    return batch - _mean_term(batch, mean)


def normalize(batch, mean, std):
    """(batch - mean[c]) / std[c] per channel c; mean, std scalars or (C,)."""
    _check_batch(batch, "normalize")
    _check_float(batch, "normalize")
    xp = get_array_module(batch)
    C = batch.shape[1]
    m = xp.asarray(mean, dtype=batch.dtype).reshape(-1)
    s = xp.asarray(std, dtype=batch.dtype).reshape(-1)
    for name, v in (("mean", m), ("std", s)):
        if v.shape[0] not in (1, C):
            raise ValueError(f"normalize: {name} has {v.shape[0]} values, batch has {C} channels")
    if not bool(((s > 0) & xp.isfinite(s)).all()):       # NaN fails every comparison
        raise ValueError(f"normalize: std must be finite and > 0, got {std}")
    return (batch - m[:, None, None]) / s[:, None, None]
