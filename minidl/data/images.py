"""Image files to arrays: any Pillow image decoded to RGB, and the paper's resize and centre crop."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from ..checks import whole
from .fashion_mnist import DatasetError

__all__ = ["load_image", "resize_center_crop", "ImageDecodeError"]

# A truncated JPEG must fail, not come back silently padded with grey: Pillow
# only raises on truncation while this (process-wide) switch is off, its default.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow warns about images over 89M pixels and refuses those over 179M (a decompression
# bomb: ImageDecodeError here). Below that a big photograph is read like any other; the
# warning would only break a command's one-line output.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "lanczos": Image.Resampling.LANCZOS}
DEFAULT_RESAMPLE = "bicubic"
# Longest side over shortest that resize_center_crop accepts: bounds the resized copy to
# MAX_ASPECT * size * size pixels (48 MiB at 256); panoramas are ~4:1.
MAX_ASPECT = 256


class ImageDecodeError(DatasetError):
    """A file is not a usable image (corrupt, truncated, not an image, or of absurd proportions)."""


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """High-bit-depth grey (H, W) -> uint8, by scaling the range, never clipping.

    I;16*: v8 = round(v16 * 255 / 65535). 'I' (32-bit) is read as 16-bit when
    it lies in [0, 65535] (how Pillow opens many 16-bit files), 'F' as [0, 1]
    when it lies there; anything else is stretched from its min..max.
    """
    if mode.startswith("I;16") or (mode == "I" and a.size and 0 <= a.min() and a.max() <= 65535):
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    a = a.astype(np.float64)
    lo, hi = (0.0, 1.0) if (mode == "F" and a.size and 0 <= a.min() and a.max() <= 1) \
        else (float(a.min()), float(a.max()))
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _to_rgb(im: Image.Image) -> np.ndarray:
    """A loaded PIL image -> uint8 (H, W, 3).

    Transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is
    composited over white: the colour under alpha = 0 is arbitrary (often
    black), and white is the background photographs of objects are shot on.
    CMYK, YCbCr, P and 1-bit go through Pillow's conversion to RGB.
    """
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return np.asarray(im)
    if mode in ("I", "F") or mode.startswith("I;16"):
        grey = _scale_to_uint8(np.asarray(im), mode)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if "A" in mode or "a" in mode or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        alpha = rgba[:, :, 3:]
        # out = (rgb * a + 255 * (255 - a)) / 255, rounded
        out = (rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return out.astype(np.uint8)
    return np.asarray(im.convert("RGB"))


def load_image(path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB (first frame if animated).

    Every Pillow mode is converted (see ``_to_rgb``: alpha over white, 16-bit
    scaled to 8-bit). EXIF orientation is not applied (as in the reference
    ImageNet pipelines). Raises ImageDecodeError (a ValueError) naming the
    file if it is not an image, is truncated, or is corrupt.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ImageDecodeError(f"{path} is a link to {os.readlink(path)}, which does not exist")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncation and corruption surface here
            arr = _to_rgb(im)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ImageDecodeError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageDecodeError(f"{path}: decoded to an unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def resize_center_crop(image: np.ndarray, size: int = 256, resample: str = DEFAULT_RESAMPLE):
    """The paper's preprocessing: shorter side to ``size``, then the central crop.

    image: uint8 (H, W, 3). The shorter side becomes exactly ``size``, the
    longer ``floor(long * size / short + 0.5)``; the crop starts at
    ``((H' - size) // 2, (W' - size) // 2)``. Pillow's antialiased filter
    (``resample``: 'bicubic' default, 'bilinear', 'lanczos').
    Returns uint8 (size, size, 3). An image longer than MAX_ASPECT times its
    width (or the reverse) raises ImageDecodeError: its resized copy would
    take up to MAX_ASPECT times more memory than a square one.
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"resize_center_crop: expected a uint8 (H, W, 3) image, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    size = whole(size, "resize_center_crop", "size", low=1)
    if resample not in _RESAMPLE:
        raise ValueError(f"resize_center_crop: resample must be one of {', '.join(sorted(_RESAMPLE))}, "
                         f"got {resample!r}")
    h, w = image.shape[:2]
    if max(h, w) > MAX_ASPECT * min(h, w):
        # resizing the shorter side first would make the longer one huge (1 x 8000 -> 256 x 2,048,000)
        raise ImageDecodeError(f"{w}x{h} pixels: an aspect ratio beyond {MAX_ASPECT}:1 is not a photograph "
                               "this pipeline can use; crop it first")
    if h <= w:
        nh, nw = size, max(size, int(w * size / h + 0.5))
    else:
        nh, nw = max(size, int(h * size / w + 0.5)), size
    pil = Image.fromarray(image)
    if (nh, nw) != (h, w):
        pil = pil.resize((nw, nh), _RESAMPLE[resample])
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.asarray(pil)[top:top + size, left:left + size]
