"""Command-line plumbing shared by the commands: one-line user errors and argument types."""

from __future__ import annotations

import argparse
import errno
import os
import sys

import numpy as np

from minidl import checkpoint, kernels
from minidl.backend import DeviceUnavailableError
from minidl.data import DatasetError, DatasetNotFoundError

from .configs import PRESETS


class UserError(Exception):
    """A mistake in how a command was called: reported as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (and exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def user_error_message(exc):
    """The one-line message for an error that is the user's to fix, or None for any other (a bug).

    User errors: UserError, and the errors the library raises about files and
    devices (missing or damaged datasets and checkpoints, unusable GPUs) and
    about its settings (an unknown ``MINIDL_KERNELS``). A file that cannot be
    read or written, and running out of memory, are reported the same way, as
    what to do about them.
    """
    if isinstance(exc, (UserError, DatasetNotFoundError, DatasetError, DeviceUnavailableError,
                        checkpoint.CheckpointError, kernels.KernelSetError)):
        msg = str(exc)
    elif isinstance(exc, MemoryError):
        msg = "out of memory; use a smaller --batch-size (or fewer images at once)"
    elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        msg = f"the disk is full{where} ({exc.strerror}); free some space or write to another disk"
    elif isinstance(exc, OSError) and exc.filename is not None:
        msg = f"cannot use {exc.filename}: {exc.strerror or exc}"
    else:
        return None
    return " ".join(display_text(msg).split())


def run_cli(prog, fn, argv, on_error=None):
    """Call ``fn(argv)``; turn user errors into one line on stderr and exit code 2.

    ``kernels.active()`` (the ``MINIDL_KERNELS`` setting) is checked first.
    ``on_error()``, if given, runs after the line is printed (a process of a
    data-parallel job stops the others there).
    """
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):     # an ASCII-only terminal shows a class name as \xe9, not a crash
            stream.reconfigure(errors="backslashreplace")
    try:
        kernels.active()
        return fn(argv)
    except BrokenPipeError:
        # the reader went away (``| head``): stop quietly, as cat does, and keep Python's exit
        # from failing again on flushing stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        msg = user_error_message(exc)
        if msg is None:
            raise
        print(f"{prog}: error: {msg}", file=sys.stderr, flush=True)
        if on_error is not None:
            on_error()
        return 2


def display_text(text):
    """``text`` printable anywhere: file names that are not UTF-8 (surrogates in Python) shown as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def display_name(name):
    """A name (a class, a file) on one line: display_text, with newlines, tabs and other control
    characters shown escaped (``\\n``), so a name cannot break a table or a line of output."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in display_text(str(name)))


def user_path(text):
    """An argparse type for a file or folder: ``~`` expanded (a quoted '~/runs' must not make a folder named
    '~'), and an empty value (an unset shell variable) refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?)")
    return os.path.expanduser(text)


def bounded_int(low, high=None):
    """An argparse type: a whole number >= ``low`` (and <= ``high``)."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {v}" if high is not None
                                             else f"must be >= {low}, got {v}")
        return v
    return parse


positive_int = bounded_int(1)
nonneg_int = bounded_int(0)


def _finite_float(text, allow_zero):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else 'a positive number'}, got {text}")
    return v


def positive_float(text):
    return _finite_float(text, allow_zero=False)


def momentum_float(text):
    """A momentum: a number in [0, 1)."""
    v = _finite_float(text, allow_zero=True)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


def nonneg_float(text):
    return _finite_float(text, allow_zero=True)


def preset_names():
    return sorted(PRESETS)


def agree_on_setup(prog, group, failure):
    """Every process of a data-parallel job says whether its setup failed; None if none did, else the exit code.

    ``failure``: this process's user error or argparse SystemExit, or None.

    An exchange rather than a barrier: a process whose setup failed must not
    leave the others waiting. Process 0 reports for all: once if every process
    failed the same way (the usual case: the same command line on each), else
    each failure with its process number.
    """
    if isinstance(failure, SystemExit):     # argparse: process 0 has printed the usage error (or --help)
        said = ("exit", failure.code if isinstance(failure.code, int) else 2)
    elif failure is not None:
        said = ("error", user_error_message(failure))
    else:
        said = None
    everyone = group.gather_all(said)
    failed = [(rank, s) for rank, s in enumerate(everyone) if s is not None]
    if not failed:
        return None
    if group.is_root:
        errors = [(rank, s[1]) for rank, s in failed if s[0] == "error"]
        if len(errors) == group.size and len({m for _, m in errors}) == 1:
            print(f"{prog}: error: {errors[0][1]}", file=sys.stderr, flush=True)
        else:
            for rank, message in errors:
                print(f"{prog}: error: process {rank} of {group.size}: {message}", file=sys.stderr, flush=True)
    exits = {s[1] for _, s in failed if s[0] == "exit"}
    return exits.pop() if len(exits) == 1 and len(failed) == group.size else 2
