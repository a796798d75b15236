"""The training and test-time transforms: the functions of ``transforms.py``, chained.

``TrainTransform`` (resize, random crop, flip, PCA colour noise, mean, std)
and ``EvalTransform`` (resize, centre crop or ten crops, mean, std) take
uint8 batches (B, C, h, w) on NumPy or CuPy and return float batches.
"""

from __future__ import annotations

import numpy as np

from minidl.backend import get_array_module, get_device

from .transforms import (
    _check_batch, _mean_term, _pca_basis, _size2, center_crop, pca_lighting, random_crop, random_flip, resize,
    subtract_mean, ten_crop, to_float,
)

__all__ = ["TrainTransform", "EvalTransform"]


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
