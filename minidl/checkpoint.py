"""Checkpoints: nested training state in one ``.npz`` file, no pickle.

A checkpoint is a nested dict whose leaves are arrays (NumPy or CuPy) or
plain JSON values (numbers, strings, bools, None, lists of those). Arrays are
stored as ``.npz`` members named by their path (``model/conv1.tower0.weight``,
``optim/velocity/0.3``); everything else goes into one JSON document stored
as a string member. Loading uses ``allow_pickle=False``: a checkpoint is
data and can never run code.

Writes are atomic (``minidl.atomic``): the file is written under a temporary
name in the same folder, flushed to disk, and renamed over the target, so a
crash or a kill mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import errno
import json
import os
import zipfile

import numpy as np

from . import npz
from .atomic import atomic_write
from .backend import asnumpy, is_cupy_array

_META = "__meta__.json"
_SEP = "/"


def _is_array(v):
    return isinstance(v, np.ndarray) or is_cupy_array(v)


def _flatten(tree, prefix, arrays):
    """Split a nested dict into ``{path: array}`` and a JSON-able skeleton."""
    if not isinstance(tree, dict):
        raise TypeError(f"checkpoint: expected a dict at '{prefix or '/'}', got {type(tree).__name__}")
    skeleton = {}
    for key, value in tree.items():
        if not isinstance(key, str):
            raise TypeError(f"checkpoint: key {key!r} at '{prefix or '/'}' is a {type(key).__name__}; keys must be "
                            "strings (they come back as strings)")
        if _SEP in key:
            raise ValueError(f"checkpoint: key {key!r} may not contain '{_SEP}'")
        path = f"{prefix}{_SEP}{key}" if prefix else key
        if path == _META:
            raise ValueError(f"checkpoint: the key {_META!r} is reserved for the table of contents")
        if isinstance(value, dict):
            skeleton[key] = {"dict": _flatten(value, path, arrays)}
        elif _is_array(value):
            if value.dtype.kind not in "biufc":
                raise TypeError(f"checkpoint: '{path}' is an array of {value.dtype}, which cannot be stored "
                                "without pickle; use numeric arrays")
            arrays[path] = asnumpy(value)
            skeleton[key] = {"array": path}
        elif isinstance(value, np.generic):
            skeleton[key] = {"value": value.item()}
        else:
            try:
                json.dumps(value)
            except TypeError:
                if isinstance(value, (list, tuple)):     # lists are stored as JSON: plain values only
                    raise TypeError(f"checkpoint: '{path}' is a {type(value).__name__} holding something other "
                                    "than numbers, strings and lists of them; put arrays in a dict instead "
                                    "({'0': array, '1': array})") from None
                raise TypeError(f"checkpoint: '{path}' is a {type(value).__name__}, which cannot be stored "
                                "without pickle; use arrays, numbers, strings, or lists of numbers and "
                                "strings") from None
            skeleton[key] = {"value": value}
    return skeleton


def _unflatten(skeleton, arrays, where=""):
    """The nested dict back from its skeleton; a CheckpointError if the two do not match."""
    if not isinstance(skeleton, dict):
        raise CheckpointError(f"at '{where or '/'}': expected a table, got {type(skeleton).__name__}")
    out = {}
    for key, node in skeleton.items():
        here = f"{where}{_SEP}{key}" if where else key
        if not isinstance(node, dict) or len(node) != 1 or next(iter(node)) not in ("dict", "array", "value"):
            raise CheckpointError(f"at '{here}': malformed entry {str(node)[:80]!r}")
        kind, content = next(iter(node.items()))
        if kind == "dict":
            out[key] = _unflatten(content, arrays, here)
        elif kind == "array":
            if content not in arrays:
                raise CheckpointError(f"at '{here}': the array {content!r} is missing")
            out[key] = arrays[content]
        else:
            out[key] = content
    return out


def _write_npz(f, arrays):
    """What ``np.savez`` writes (an uncompressed zip of .npy members), with the zip file closed however the
    writing ends: some NumPy versions leave it to the garbage collector, which then fails noisily on the
    closed file after a full disk."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def save(path, state):
    """Write ``state`` (a nested dict) to ``path`` atomically. Returns the path."""
    path = os.fspath(path)
    arrays = {}
    skeleton = _flatten(state, "", arrays)
    try:
        with atomic_write(path, "wb") as f:
            _write_npz(f, {**arrays, _META: np.array(json.dumps(skeleton))})
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # atomic_write removed its temporary file: whatever path held before is still there
        kept = f"{path} still holds the previous checkpoint" if os.path.exists(path) else "no checkpoint was written"
        raise CheckpointError(f"cannot save checkpoint {path}: the disk is full ({exc.strerror}); {kept}; free "
                              "some space, then continue with --resume") from None
    return path


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or not one of ours."""


# The table of contents is a few KB; a bound keeps a forged one from being read whole.
MAX_META_BYTES = 64 << 20


def _array_paths(skeleton, out):
    """The array paths a skeleton refers to (unchecked: ``_unflatten`` reports a malformed one)."""
    if isinstance(skeleton, dict):
        for node in skeleton.values():
            if isinstance(node, dict) and len(node) == 1:
                kind, content = next(iter(node.items()))
                if kind == "dict":
                    _array_paths(content, out)
                elif kind == "array" and isinstance(content, str):
                    out.add(content)
    return out


def load(path, arrays=True, shapes=None):
    """Read a checkpoint written by ``save``: the nested dict, arrays as NumPy arrays.

    ``arrays=False`` reads only the table of contents: the same dict with every
    array left out (cheap, for a checkpoint's settings and counters); a string
    ``arrays='model'`` reads only the arrays under that key.

    Nothing is read before the zip's directory and every member's .npy header
    are checked (``minidl.npz``): each member must be an array the table of
    contents names and hold exactly what its header claims. ``shapes``
    (``{array path: shape}``, e.g. ``{'model/conv1.tower0.weight': (48, 3, 11,
    11)}``; None in a shape: any length on that axis): the arrays to be read
    must all be listed there, with that shape, so that a forged file cannot
    make this read more than the caller's model holds.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{path} is a single .npy array, not a minidl checkpoint")
    if not head.startswith(b"PK"):          # an .npz is a zip archive
        raise CheckpointError(f"checkpoint {path} is not an .npz file (it starts with {head!r}); it is damaged")
    try:
        members = npz.headers(path)
        if _META not in members:
            raise CheckpointError(f"{path} is an .npz file but not a minidl checkpoint (no {_META})")
        m = members[_META]
        if m.shape != () or m.dtype.kind != "U" or m.nbytes > MAX_META_BYTES:
            raise CheckpointError(f"checkpoint {path} is damaged: its table of contents {_META!r} claims "
                                  f"{m.describe()}, not a text of at most {MAX_META_BYTES:,} bytes")
        text = str(npz.read(path, members, [_META])[_META])
        try:
            skeleton = json.loads(text)
            named = _array_paths(skeleton, set())
        except RecursionError:
            raise _too_deep(path) from None
        unexpected = sorted(n for n in members if n != _META and n not in named)
        if unexpected:
            raise CheckpointError(f"checkpoint {path} is damaged: it holds the array {unexpected[0]!r} "
                                  f"({members[unexpected[0]].describe()}), which its table of contents does not "
                                  "name; nothing was read")
        wanted = [n for n in members if n != _META and (arrays is True or isinstance(arrays, str)
                                                      and n.startswith(arrays + _SEP))]
        for n in wanted:
            m = members[n]
            if m.dtype.kind not in "biufc":     # save() writes numbers only; a 'U1000' array would be 4000x larger
                raise CheckpointError(f"checkpoint {path} is damaged: its array {n!r} claims {m.describe()}, not "
                                      "numbers; nothing was read")
            if shapes is None:
                continue
            if n not in shapes:
                raise CheckpointError(f"checkpoint {path} does not fit this model: it holds the array {n!r} "
                                      f"({m.describe()}), which the model has no place for; nothing was read")
            if not npz.fits(m.shape, tuple(shapes[n])):
                raise CheckpointError(f"checkpoint {path}: {n} has shape {m.shape} but the model's is "
                                      f"{npz.shape_text(tuple(shapes[n]))} (it claims {m.nbytes:,} bytes; nothing "
                                      "was read); the checkpoint is damaged or of another preset or run")
        data = npz.read(path, members, wanted)
        stored = {n: data.get(n, _LEFT_OUT) for n in members if n != _META}
    except CheckpointError:
        raise
    except npz.NpzError as exc:
        raise CheckpointError(f"checkpoint {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({exc})") from None
    try:
        tree = _unflatten(skeleton, stored)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path} is damaged: {exc}") from None
    except RecursionError:
        raise _too_deep(path) from None
    return tree if arrays is True else _without_arrays(tree)


def _too_deep(path):
    return CheckpointError(f"checkpoint {path} is damaged: its {_META} nests lists or tables too deeply to be "
                           "minidl's table of contents")


_LEFT_OUT = object()       # an array not read (load(..., arrays=False))


def _without_arrays(tree):
    return {k: _without_arrays(v) if isinstance(v, dict) else v for k, v in tree.items() if v is not _LEFT_OUT}


def is_checkpoint(path):
    """True if ``path`` is a readable checkpoint written by ``save``."""
    try:
        load(path, arrays=False)
        return True
    except CheckpointError:
        return False
