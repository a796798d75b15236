"""``.npz`` files a user gives, read without trusting them: every member's header is checked first.

``np.load`` reads a member whole before anyone can look at its shape, and a
few MB of zip can inflate to gigabytes. ``headers`` reads only the zip's
directory and each member's .npy header, and checks that the member holds
exactly what its header claims (so reading it can never take more than
that); the caller compares the claims with what it needs, and only then
``read`` the members it wants.
"""

from __future__ import annotations

import math
import zipfile

import numpy as np

__all__ = ["NpzError", "Member", "headers", "check_shapes", "fits", "read", "shape_text"]

_fmt = np.lib.format


class NpzError(ValueError):
    """An .npz that is not a zip of plain .npy arrays, or whose arrays are not what was expected."""


class Member:
    """One array of an .npz as its header describes it: ``shape``, ``dtype``, ``nbytes``."""

    def __init__(self, info, shape, dtype):
        self.info, self.shape, self.dtype = info, tuple(shape), dtype
        self.nbytes = math.prod(self.shape) * dtype.itemsize

    def describe(self):
        return f"{self.dtype} {self.shape} ({self.nbytes:,} bytes)"


def headers(path) -> dict:
    """``{name: Member}`` of an .npz (names without '.npy'), from the zip directory and the .npy headers only.

    Raises NpzError for a member that is not a .npy array, holds Python
    objects, or whose zip entry is not exactly its header plus the data the
    header claims; zipfile.BadZipFile / OSError for a file that is no zip.
    """
    out = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            if name is None:
                raise NpzError(f"{path}: member {info.filename!r} is not an .npy array")
            with archive.open(info) as f:
                try:
                    version = _fmt.read_magic(f)
                    if version not in ((1, 0), (2, 0)):
                        raise ValueError(f"format version {version} is not supported (1.0 or 2.0)")
                    read_header = _fmt.read_array_header_1_0 if version == (1, 0) else _fmt.read_array_header_2_0
                    shape, _, dtype = read_header(f)
                except (ValueError, EOFError) as exc:
                    raise NpzError(f"{path}: member {name!r} has no readable .npy header ({exc})") from None
                start = f.tell()
            if dtype.hasobject:
                raise NpzError(f"{path}: member {name!r} holds Python objects ({dtype}), which are never read "
                               "(loading them could run code)")
            member = Member(info, shape, dtype)
            if info.file_size != start + member.nbytes:
                # the zip entry, not the header, says how much inflating the member can give: they must agree
                raise NpzError(f"{path}: member {name!r} claims {member.describe()} but its zip entry inflates to "
                               f"{info.file_size - start:,} bytes of data; the file is damaged")
            out[name] = member
    return out


def fits(shape, want):
    """Whether ``shape`` is ``want``, where None in ``want`` is an axis of any length."""
    return len(shape) == len(want) and all(w is None or w == s for s, w in zip(shape, want))


def shape_text(want):
    """``want`` as a message shows it: ``(any, 3)``."""
    return "(" + ", ".join("any" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"


def check_shapes(path, members, expected, what):
    """Refuse, before anything is read, an unexpected or missing member, or one of another shape or dtype.

    ``expected``: ``{name: (shape, kinds)}``; a shape may hold None for an
    axis of any length; ``kinds``: the dtype kinds allowed ('f' floats,
    'iu' integers, 'U' text). ``what``: the file's kind, for the message.
    """
    unexpected = [n for n in members if n not in expected]
    if unexpected:
        n = unexpected[0]
        raise NpzError(f"{path}: unexpected member {n!r} ({members[n].describe()}) in {what}; expected only "
                       f"{', '.join(repr(k) for k in expected)}")
    missing = [n for n in expected if n not in members]
    if missing:
        raise NpzError(f"{path}: {what} lacks the member{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(repr(n) for n in missing)}")
    for name, (shape, kinds) in expected.items():
        m = members[name]
        if not fits(m.shape, shape) or m.dtype.kind not in kinds:
            want = shape_text(shape)
            kind = {"f": "floats", "iu": "integers", "U": "text", "biufc": "numbers"}.get(kinds, f"dtype kind {kinds}")
            raise NpzError(f"{path}: member {name!r} has shape {m.shape} ({m.dtype}, {m.nbytes:,} bytes; nothing was "
                           f"read); {what} has {kind} of shape {want}")


def read(path, members, names=None) -> dict:
    """``{name: array}`` of the members ``names`` (default: all), as checked by ``headers``."""
    out = {}
    with zipfile.ZipFile(path) as archive:
        for name in (members if names is None else names):
            with archive.open(members[name].info) as f:
                out[name] = _fmt.read_array(f, allow_pickle=False)
    return out
