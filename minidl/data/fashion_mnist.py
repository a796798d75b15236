"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 28x28 grey clothes, 10 classes.

The four idx files (``train-images-idx3-ubyte.gz`` ...) are read from the
``data_dir`` argument (``--data-dir``) when it is given, and only from there.
Otherwise they are looked for, in order, in:

1. ``$MINIDL_DATA`` and ``$MINIDL_DATA/fashion-mnist``,
2. ``~/.cache/minidl/fashion-mnist`` (where downloads go),
3. ``/usr/share/datasets/fashion-mnist`` (Debian: ``apt-get install dataset-fashion-mnist``).

Each file may be gzipped (``NAME.gz``) or not (``NAME``). If no place has
them and ``download=True``, they are fetched from the official mirror into the
cache directory and checked against the published MD5 sums. A file that is
there but corrupt or truncated raises DatasetError.

Checksums: ``GZ_MD5`` are the official sums of the ``.gz`` files; ``RAW_MD5``
those of their decompressed contents. Debian re-gzips the files (same data,
different ``.gz`` bytes), so a download passes if either sum matches.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import threading
import zlib
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen  # module attribute: tests replace it

import numpy as np

from .loader import ArrayDataset

__all__ = ["FashionMNIST", "DatasetNotFoundError", "read_idx", "find_fashion_mnist",
           "download_fashion_mnist", "CLASSES"]

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
TIMEOUT_S = 30.0

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SIZES = {"train": 60000, "test": 10000}

# Official sums of the .gz files (zalandoresearch/fashion-mnist README).
GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Sums of the decompressed files (checked against the Debian package's data).
RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

# Tests point these elsewhere to hide the system copy.
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are nowhere to be found (and could not be fetched)."""


class DatasetError(ValueError):
    """A dataset's files are there but unusable: corrupt, truncated or inconsistent.

    The message names the file and says what to do; the command lines print it as one line.
    """


class _ChecksumError(Exception):
    pass


# idx type byte -> big-endian NumPy dtype (LeCun's format description).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    """Decode idx bytes: magic ``00 00 TT NN``, NN big-endian uint32 dims, data."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(
            f"{name}: not an idx file (bad magic number {data[:4].hex() or 'empty'}; "
            "expected 0000 then a type byte 08/09/0b/0c/0d/0e). The file is corrupt: "
            "delete it and download it again."
        )
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{name}: truncated idx header ({len(data)} bytes); the file is corrupt")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    expected = header + math.prod(dims) * dtype.itemsize        # Python ints: 2**32-1 dims cannot overflow
    if len(data) != expected:
        raise DatasetError(
            f"{name}: idx header says shape {dims} ({expected} bytes) but the file has "
            f"{len(data)} bytes: it is truncated or corrupt; delete it and fetch it again"
        )
    arr = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


_cache: dict = {}
_cache_lock = threading.Lock()


# deflate encodes at most 258 bytes in 2 bits: no gzip file inflates more than ~1032 times its size
_DEFLATE_MAX_RATIO = 1032


def _gunzip_idx(raw: bytes, path) -> bytes:
    """Inflate a gzipped idx file, never past the size its header announces (a gzip bomb stops there)."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)           # the gzip container
    try:
        out = d.decompress(raw, 4)
        if len(out) < 4 or out[:2] != b"\0\0" or out[2] not in _IDX_DTYPES:
            return out                      # not idx: _parse_idx says so
        out += d.decompress(d.unconsumed_tail, 4 * out[3])
        if len(out) < 4 + 4 * out[3]:
            return out                      # a truncated header: _parse_idx says so
        dims = tuple(int(x) for x in np.frombuffer(out, ">u4", offset=4))
        expected = len(out) + math.prod(dims) * np.dtype(_IDX_DTYPES[out[2]]).itemsize
        if expected > _DEFLATE_MAX_RATIO * len(raw) + len(out):
            raise DatasetError(f"{path}: its idx header announces shape {dims} ({expected:,} bytes), more than a "
                               f"gzip file of {len(raw):,} bytes can hold: the file is corrupt; delete it and "
                               "fetch it again")
        out += d.decompress(d.unconsumed_tail, expected - len(out) + 1)
        if len(out) <= expected:
            out += d.decompress(d.unconsumed_tail, 1)     # reads the gzip trailer: checks the CRC
            if not d.eof and len(out) <= expected:
                raise zlib.error("the compressed stream is cut short")
    except zlib.error as exc:
        raise DatasetError(f"{path}: not a valid gzip file ({exc}); it is truncated or "
                           "corrupt: delete it and fetch it again") from None
    if len(out) > expected:
        raise DatasetError(f"{path}: inflates past the {expected:,} bytes its idx header announces; the file is "
                           "corrupt: delete it and fetch it again")
    return out


def read_idx(path) -> np.ndarray:
    """Read an idx file (gzipped if its name ends in ``.gz``) into an array.

    Raises DatasetError naming the file if it is not idx, or is truncated.
    Results are cached in memory per (path, size, mtime) and returned
    read-only, so a second load of the 60k training set costs nothing.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = _gunzip_idx(raw, path)
    arr = _parse_idx(raw, str(path))
    arr.setflags(write=False)  # shared by every caller through the cache
    with _cache_lock:
        _cache[key] = arr
    return arr


def _file_in(directory: Path, name: str):
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "minidl" / "fashion-mnist"


def search_dirs(data_dir=None) -> list:
    """The directories searched, in order (see the module docstring); only ``data_dir`` when given."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs = []
    env = os.environ.get("MINIDL_DATA")
    if env:
        dirs += [Path(env).expanduser(), Path(env).expanduser() / "fashion-mnist"]
    dirs.append(_cache_dir())
    dirs += [Path(d) for d in SYSTEM_DIRS]
    return dirs


def find_fashion_mnist(split="train", data_dir=None):
    """(images_path, labels_path) of the first searched directory holding both, or None."""
    names = FILES[_check_split(split)]
    for d in search_dirs(data_dir):
        paths = [_file_in(d, n) for n in names]
        if all(paths):
            return tuple(paths)
    return None


def _check_split(split):
    if split not in FILES:
        raise ValueError(f"FashionMNIST: split must be 'train' or 'test', got {split!r}")
    return split


def _not_found(split, data_dir, why=""):
    places = "\n".join(f"  - {d}" for d in search_dirs(data_dir))
    names = ", ".join(f"{n}.gz" for n in FILES[split])
    return DatasetNotFoundError(
        f"Fashion-MNIST ({split}) not found: looked for {names} in\n{places}\n"
        + (f"{why}\n" if why else "")
        + "Fix: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download "
        f"the files from {URL} and pass their folder with --data-dir "
        "(or set $MINIDL_DATA)."
    )


def _fetch(name: str, target_dir: Path) -> Path:
    """Download ``name.gz`` into ``target_dir``, verify its MD5, move it in atomically."""
    url = URL + name + ".gz"
    final = target_dir / f"{name}.gz"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target_dir)
    try:
        md5 = hashlib.md5()
        with os.fdopen(fd, "wb") as f, urlopen(url, timeout=TIMEOUT_S) as resp:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                md5.update(chunk)
                f.write(chunk)
        got = md5.hexdigest()
        if got != GZ_MD5[name]:
            # A mirror may re-gzip the same data: accept a matching content sum.
            try:
                with gzip.open(tmp, "rb") as g:
                    content = hashlib.md5(g.read()).hexdigest()
            except (OSError, EOFError, zlib.error):
                content = None
            if content != RAW_MD5[name]:
                raise _ChecksumError(
                    f"{url}: MD5 mismatch (got {got}, expected {GZ_MD5[name]}); the download "
                    "is corrupt or incomplete and was discarded. Try again, or install "
                    "`dataset-fashion-mnist` / pass --data-dir."
                )
        os.replace(tmp, final)
        return final
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _download(split, target: Path):
    """Fetch the split's files; returns the paths, or a one-line reason it failed."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        return tuple(_fetch(n, target) for n in FILES[split]), None
    except _ChecksumError as exc:
        return None, f"Download failed: {exc}"
    except (URLError, OSError, TimeoutError) as exc:
        return None, f"Download from {URL} failed ({getattr(exc, 'reason', exc)})."


def download_fashion_mnist(split="train", target_dir=None, data_dir=None):
    """Fetch the split's two files into ``target_dir`` (default the cache dir).

    Returns (images_path, labels_path). Raises DatasetNotFoundError, listing
    every searched place, if the network fails or a checksum does not match.
    """
    split = _check_split(split)
    target = Path(target_dir) if target_dir is not None else _cache_dir()
    paths, why = _download(split, target)
    if paths is None:
        raise _not_found(split, data_dir, why)
    return paths


class FashionMNIST(ArrayDataset):
    """Fashion-MNIST as arrays.

    images: uint8 (N, 1, 28, 28), NCHW, 0 = background (read-only, shared
    with a per-process cache); labels: int64 (N,); classes: the 10 names.
    N = 60000 (train) or 10000 (test). ``root`` is the folder the files came from.
    """

    def __init__(self, split="train", data_dir=None, download=True):
        split = _check_split(split)
        paths = find_fashion_mnist(split, data_dir)
        if paths is None and data_dir is not None:
            # a folder named by the user: never use (or fetch) another copy behind their back
            raise _not_found(split, data_dir, f"{data_dir} was given as the data folder, so no other place "
                                              "was searched and nothing was downloaded.")
        if paths is None:
            if not download:
                raise _not_found(split, data_dir, "(download=False, so nothing was fetched.)")
            paths = download_fashion_mnist(split, data_dir=data_dir)
        images = read_idx(paths[0])
        labels = read_idx(paths[1])
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DatasetError(f"{paths[0]}: expected uint8 images of shape (N, 28, 28), "
                             f"got {images.dtype} {images.shape}")
        if labels.shape != (len(images),):
            raise DatasetError(f"{paths[1]}: expected {len(images)} labels to match "
                             f"{paths[0]}, got shape {labels.shape}")
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(CLASSES):
            raise DatasetError(f"{paths[1]}: labels outside 0..{len(CLASSES) - 1}; the file is corrupt: delete it "
                               "and fetch it again")
        super().__init__(images.reshape(-1, 1, 28, 28), labels.astype(np.int64), CLASSES)
        self.labels.setflags(write=False)
        self.split = split
        self.root = paths[0].parent
        self.files = paths

    def __repr__(self):
        return f"FashionMNIST(split={self.split!r}, N={len(self)}, root='{self.root}')"
