"""Image files to arrays: any Pillow image decoded to RGB, and the paper's resize and centre crop."""

from __future__ import annotations

import os
import re
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
# bomb: ImageDecodeError here, max_pixels()). Below that a big photograph is read like any
# other; the warning would only break a command's one-line output.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "lanczos": Image.Resampling.LANCZOS}
DEFAULT_RESAMPLE = "bicubic"
# Longest side over shortest that resize_center_crop accepts: bounds the resized copy to
# MAX_ASPECT * size * size pixels (48 MiB at 256); panoramas are ~4:1.
MAX_ASPECT = 256


class ImageDecodeError(DatasetError):
    """A file is not a usable image (corrupt, truncated, not an image, or of absurd proportions)."""


def _grey_range(im: Image.Image):
    """How ``_scale_to_uint8`` maps a high-bit-depth grey image: None (16-bit) or (lo, hi).

    Decided on the whole image (Pillow's extrema, no copy), so that the strips
    ``_to_rgb`` converts one at a time are all scaled alike.
    I;16*: 16-bit. 'I' (32-bit) is read as 16-bit when it lies in [0, 65535]
    (how Pillow opens many 16-bit files), 'F' as [0, 1] when it lies there;
    anything else is stretched from its min..max.
    """
    lo, hi = im.getextrema()
    if im.mode.startswith("I;16") or (im.mode == "I" and 0 <= lo and hi <= 65535):
        return None
    if im.mode == "F" and 0 <= lo and hi <= 1:
        return 0.0, 1.0
    return float(lo), float(hi)


def _scale_to_uint8(a: np.ndarray, grey_range) -> np.ndarray:
    """High-bit-depth grey (H, W) -> uint8, by scaling the range (``_grey_range``), never clipping.

    16-bit: v8 = round(v16 * 255 / 65535); else (lo, hi) -> (0, 255).
    """
    if grey_range is None:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    lo, hi = grey_range
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a.astype(np.float64) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _strip_to_rgb(im: Image.Image, grey_range) -> np.ndarray:
    """A loaded PIL image (or a strip of one) -> uint8 (H, W, 3).

    Transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is
    composited over white: the colour under alpha = 0 is arbitrary (often
    black), and white is the background photographs of objects are shot on.
    CMYK, YCbCr, P and 1-bit go through Pillow's conversion to RGB.
    """
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return np.asarray(im)
    if mode in ("I", "F") or mode.startswith("I;16"):
        grey = _scale_to_uint8(np.asarray(im), grey_range)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if "A" in mode or "a" in mode or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        alpha = rgba[:, :, 3:]
        # out = (rgb * a + 255 * (255 - a)) / 255, rounded
        out = (rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return out.astype(np.uint8)
    return np.asarray(im.convert("RGB"))


# The conversion to RGB goes strip by strip of about this many pixels: its uint32 and
# float64 temporaries stay a few tens of MB whatever the image's size.
STRIP_PIXELS = 1 << 21


def _to_rgb(im: Image.Image, factor: int = 1) -> np.ndarray:
    """A loaded PIL image -> uint8 (H, W, 3) (``_strip_to_rgb``), reduced ``factor`` times (box filter).

    Converted in strips of whole blocks of ``factor`` rows, each reduced as soon as
    it is converted, so the full-resolution RGB copy never exists.
    """
    grey_range = _grey_range(im) if im.mode in ("I", "F") or im.mode.startswith("I;16") else None
    w, h = im.size
    rows = max(factor, STRIP_PIXELS // max(w, 1) // factor * factor)
    if rows >= h and factor == 1:
        return _strip_to_rgb(im, grey_range)
    strips = []
    for top in range(0, h, rows):
        rgb = _strip_to_rgb(im.crop((0, top, w, min(h, top + rows))), grey_range)
        strips.append(np.asarray(Image.fromarray(rgb).reduce(factor)) if factor > 1 else rgb)
    return np.concatenate(strips)


def max_pixels() -> int:
    """The most pixels an image may have: Pillow's decompression-bomb limit, 2 x Image.MAX_IMAGE_PIXELS
    (179 million by default; it follows a program that changes Image.MAX_IMAGE_PIXELS)."""
    return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None


def load_image(path, size=None) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB (first frame if animated).

    Every Pillow mode is converted (see ``_strip_to_rgb``: alpha over white,
    16-bit scaled to 8-bit). EXIF orientation is not applied (as in the
    reference ImageNet pipelines). Raises ImageDecodeError (a ValueError)
    naming the file if it is not an image, is truncated, or is corrupt, or
    if it has more pixels than ``max_pixels()``.

    ``size``: the shorter side ``resize_center_crop`` will bring the image to.
    A large image is then reduced while it is decoded, as Pillow's thumbnail
    does: a JPEG is decoded at 1/2, 1/4 or 1/8 scale (``Image.draft``) and the
    result averaged over blocks of whole pixels (``Image.reduce``), keeping the
    shorter side at least 2 x ``size``, so memory follows the reduced image
    rather than the file's full resolution. Images whose shorter side is under
    4 x ``size`` are returned exactly as without ``size``.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ImageDecodeError(f"{path} is a link to {os.readlink(path)}, which does not exist")
    if size is not None:
        size = whole(size, "load_image", "size", low=1)
    try:
        with Image.open(path) as im:
            w, h = im.size
            factor = 1
            if size is not None:
                if max(w, h) > MAX_ASPECT * min(w, h):
                    raise ImageDecodeError(f"{path}: {_bad_aspect(w, h)}")   # refused before decoding
                im.draft(None, (2 * size, 2 * size))   # JPEG only: a DCT-scaled decode, shorter side >= 2 size
                factor = max(1, min(im.size) // (2 * size))
            im.load()  # decode now: truncation and corruption surface here
            arr = _to_rgb(im, factor)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:   # Image.open checks the header's size; its words give no way out
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(pixels.group(1)):,}" if pixels else "too many"
        raise ImageDecodeError(
            f"{path}: the image has {pixels} pixels, more than the "
            f"{max_pixels():,} an image may have (Pillow's decompression-bomb limit, which keeps a small file from "
            "taking gigabytes to decode); scale it down first, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust "
            "the file") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ImageDecodeError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageDecodeError(f"{path}: decoded to an unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _bad_aspect(w, h):
    # resizing the shorter side first would make the longer one huge (1 x 8000 -> 256 x 2,048,000)
    return ImageDecodeError(f"{w}x{h} pixels: an aspect ratio beyond {MAX_ASPECT}:1 is not a photograph "
                            "this pipeline can use; crop it first")


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
        raise _bad_aspect(w, h)
    if h <= w:
        nh, nw = size, max(size, int(w * size / h + 0.5))
    else:
        nh, nw = max(size, int(h * size / w + 0.5)), size
    pil = Image.fromarray(image)
    if (nh, nw) != (h, w):
        pil = pil.resize((nw, nh), _RESAMPLE[resample])
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.asarray(pil)[top:top + size, left:left + size]
