"""Atomic file writes: a reader sees the old file or the whole new one, never a part of it.

    with atomic_write("run/config.json", "w") as f:
        json.dump(config, f)

The data goes to a temporary file in the target's folder, named
``.tmp-<pid>-<name>``, is flushed to disk, and is renamed over the target
when the block ends. If the block raises, the temporary file is removed
and the target is left as it was. A process killed while writing leaves
only its temporary file behind; ``remove_stale(folder)`` deletes those
whose process is gone, which is what a command does when it starts again
in the same folder.
"""

from __future__ import annotations

import errno
import os
import re
from contextlib import contextmanager

__all__ = ["atomic_write", "temporary_name", "remove_stale"]

_TMP = re.compile(r"^\.tmp-(\d+)-")


def temporary_name(path) -> str:
    """Where ``atomic_write(path)`` writes before the rename: ``<folder>/.tmp-<pid>-<name>``."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    return os.path.join(folder, f".tmp-{os.getpid()}-{name}")


@contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """Open a temporary file for writing; on success, flush it to disk and rename it to ``path``."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder, is in the way", folder)
    os.makedirs(folder, exist_ok=True)
    tmp = temporary_name(path)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    try:
        f = open(tmp, mode, encoding=encoding)
    except OSError as exc:            # name the file asked for, not the temporary one
        raise type(exc)(exc.errno, exc.strerror, path) from None
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename in (tmp, None) and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, path) from None    # the user's file, not ours
        raise


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # someone else's process
        return True
    return True


def remove_stale(folder) -> list:
    """Delete the temporary files in ``folder`` left by writers that no longer run; return their names."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        m = _TMP.match(name)
        if m and not _running(int(m.group(1))):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return sorted(removed)
