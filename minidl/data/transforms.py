"""Batch augmentation and normalisation, vectorised, on NumPy or CuPy.

Every function takes a whole batch (B, C, H, W) and works on the batch's own
array module (``xp = get_array_module(batch)``): there is no Python loop over
images. Randomness comes from a ``numpy.random.Generator`` the caller passes
in; only the small per-image draws (offsets, flip flags, colour alphas) are
made on the host and moved to the batch's device, so a run is reproducible
from its seed on either backend. No function modifies its input.

Pixel scale: images stay on the 0..255 scale (raw RGB, as in the paper) until
the mean is subtracted; ``pca_lighting`` takes eigenvalues on the [0, 1]
scale and multiplies by ``scale`` (255) to match.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from minidl.backend import get_array_module, get_device
from minidl.checks import number

__all__ = ["random_crop", "random_flip", "center_crop", "ten_crop", "resize",
           "pca_lighting", "to_float", "subtract_mean", "normalize",
           "TrainTransform", "EvalTransform", "IMAGENET_EIGVAL", "IMAGENET_EIGVEC"]

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


class _Pipeline:
    """What TrainTransform and EvalTransform share: float, resize, mean, std."""

    def __init__(self, size, mean, std, resize_to, dtype, padding=0):
        self.size = int(size)
        self.padding = int(padding)
        self.resize_to = None if resize_to is None else _size2(resize_to, type(self).__name__)
        self.dtype = np.dtype(dtype)
        if not np.issubdtype(self.dtype, np.floating):
            raise ValueError(f"{type(self).__name__}: dtype must be floating, got {self.dtype}")
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        if self.mean is not None and self.mean.ndim not in (0, 1, 3):
            raise ValueError(f"{type(self).__name__}: mean must be a scalar, (C,) or a mean image "
                             f"(C, H, W), got shape {self.mean.shape}")
        self.std = None if std is None else np.asarray(std, np.float64).reshape(-1)
        if self.std is not None and not np.all((self.std > 0) & np.isfinite(self.std)):
            raise ValueError(f"{type(self).__name__}: std must be finite and > 0, got {std}")

    def _prepare(self, batch):
        """uint8 (B, C, h, w) -> float (B, C, H, W) resized; mean subtracted if it
        is an image matching the source or resized size (then returns True)."""
        _check_batch(batch, type(self).__name__)
        x = to_float(batch, self.dtype)
        mean_done = False
        img_mean = self.mean is not None and self.mean.ndim == 3

        def matches(a):
            return img_mean and tuple(self.mean.shape) == tuple(a.shape[1:])

        target = self.resize_to
        h, w = x.shape[2:]
        if target is None and min(h, w) + 2 * self.padding < self.size:
            target = (self.size, self.size)  # e.g. Fashion-MNIST 28x28 into a 227 net
        if target is not None and tuple(target) != (h, w):
            if matches(x):  # resizing is linear: resize(x - m) = resize(x) - resize(m)
                x, mean_done = subtract_mean(x, self.mean), True
            x = resize(x, target)
        if not mean_done and matches(x):
            x, mean_done = subtract_mean(x, self.mean), True
        return x, mean_done

    def _finish(self, x, mean_done):
        # x is always a fresh array here (crops copy), so work in place: at
        # ten-crop sizes every extra temporary is hundreds of MB.
        if self.mean is not None and not mean_done:
            x -= _mean_term(x, self.mean, type(self).__name__)
        if self.std is not None:
            xp = get_array_module(x)
            s = xp.asarray(self.std, dtype=x.dtype)
            if s.shape[0] not in (1, x.shape[1]):
                raise ValueError(f"{type(self).__name__}: std has {s.shape[0]} values, "
                                 f"batch has {x.shape[1]} channels")
            x /= s[:, None, None]
        return x


class TrainTransform(_Pipeline):
    """The training augmentation: uint8 (B, C, h, w) -> float (B, C, size, size).

    Steps: to_float (0..255) -> resize to ``resize_to`` (or to ``size`` when
    the images are smaller than the crop) -> random crop ``size`` (after
    zero ``padding``) -> random flip (``flip``) -> PCA lighting (``pca`` =
    (eigval, eigvec), [0, 1] scale, alpha std ``pca_std``) -> mean subtraction
    -> division by ``std`` per channel (if given).

    mean: None, scalar, per channel (C,) or a mean image (C, H, W). A mean
    image the size of the source (or of the resized) images is subtracted
    before cropping, which equals subtracting the mean cropped at each
    image's own offset (cuda-convnet's order); otherwise it is subtracted at
    the end (centre-cropped if larger). Per-channel means commute with every
    step. ``__call__(batch, rng)`` draws crop, flip and colour from ``rng``;
    ``__call__(batch, rng, rows=(start, total))`` augments rows start.. of a
    global batch of ``total`` images exactly as the whole batch would be.
    """

    def __init__(self, size, mean=None, std=None, padding=0, flip=True, pca=None,
                 resize_to=None, dtype="float32", pca_std=0.1):
        super().__init__(size, mean, std, resize_to, dtype, padding)
        self.flip = bool(flip)
        if pca is not None:
            eigval, eigvec = pca
            pca = _pca_basis(eigval, eigvec, "TrainTransform pca")
        self.pca = pca
        self.pca_std = float(pca_std)

    def __call__(self, batch, rng, rows=None):
        with get_device(batch):            # computed where the batch is, whichever device is current
            x, mean_done = self._prepare(batch)
            x = random_crop(x, self.size, rng, padding=self.padding, rows=rows)
            if self.flip:
                x = random_flip(x, rng, rows=rows)
            if self.pca is not None:
                x = pca_lighting(x, self.pca[0], self.pca[1], rng, std=self.pca_std, scale=255.0, rows=rows)
            return self._finish(x, mean_done)


class EvalTransform(_Pipeline):
    """The test-time transform: uint8 (B, C, h, w) -> float (B, C, size, size),
    or (10, B, C, size, size) with ``ten_crop`` (order: see ``ten_crop``).

    to_float -> resize (as TrainTransform) -> mean image subtraction if it
    matches -> centre crop or ten crops -> remaining mean subtraction -> /std.
    Ten crops of B images are 10x the float batch (128 x 3 x 227 x 227 ->
    790 MB in float32): evaluate ten-crop in smaller batches.
    """

    def __init__(self, size, mean=None, std=None, resize_to=None, ten_crop=False, dtype="float32"):
        super().__init__(size, mean, std, resize_to, dtype)
        self.ten_crop = bool(ten_crop)

    def __call__(self, batch):
        with get_device(batch):            # computed where the batch is, whichever device is current
            x, mean_done = self._prepare(batch)
            if not self.ten_crop:
                return self._finish(center_crop(x, self.size), mean_done)
            crops = ten_crop(x, self.size)                    # (10, B, C, s, s)
            flat = crops.reshape((-1,) + crops.shape[2:])
            return self._finish(flat, mean_done).reshape(crops.shape)
