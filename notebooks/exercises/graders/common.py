"""What every grader shares: loading your mydl fresh, running it with minidl blocked, and failures
that name the property that is wrong without giving away the answer.

A grader computes what it compares against (with minidl, or by formulas of its own) before it calls
your code. While your code runs, the computing parts of minidl (its layers, both kernel sets, the
optimisers, the initialisers and its gradient checker) are blocked: every function and method in
them raises ``Blocked``, even one you imported by name before grading started. The data loaders and
the array-module shim stay usable.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pkgutil
import re
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np

EXERCISES = Path(__file__).resolve().parent.parent
DEFAULT_MYDL = EXERCISES / "mydl"
SOLUTIONS_MYDL = EXERCISES / "solutions" / "mydl"

# the parts of minidl a learner's code must not call while it is graded
BLOCKED_PACKAGES = ("minidl.layers", "minidl.kernels")
BLOCKED_MODULES = ("minidl.optim", "minidl.gradcheck", "minidl.init")
_REGISTRY = "_exercise_grader_blocking"


class ExerciseFailed(AssertionError):
    """A grader's verdict: one sentence, shown in Jupyter without a traceback."""

    def _render_traceback_(self):       # IPython shows this instead of the traceback
        return [f"FAILED: {self}"]


class Blocked(RuntimeError):
    """Raised by a minidl function that is called while the learner's code is graded."""


# -- loading mydl: always from source, never from a stale cache ---------------

class _FreshLoader(importlib.machinery.SourceFileLoader):
    """Compiles from the .py file every time: an edit saved a moment ago is what gets graded."""

    def get_code(self, fullname):
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)


class _MydlFinder(importlib.abc.MetaPathFinder):
    """Finds ``mydl`` and ``mydl.*`` in the folder being graded."""

    def __init__(self):
        self.root = DEFAULT_MYDL

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "mydl" and not fullname.startswith("mydl."):
            return None
        parts = fullname.split(".")[1:]
        where = self.root.joinpath(*parts)
        if where.is_dir():
            init = where / "__init__.py"
            return importlib.util.spec_from_file_location(
                fullname, init, loader=_FreshLoader(fullname, str(init)), submodule_search_locations=[str(where)])
        source = where.with_suffix(".py")
        if source.is_file():
            return importlib.util.spec_from_file_location(fullname, source, loader=_FreshLoader(fullname, str(source)))
        return None


_FINDER = _MydlFinder()


def mydl_folder(path=None):
    """The mydl package to grade: ``path``, else $MYDL, else notebooks/exercises/mydl."""
    folder = Path(path or os.environ.get("MYDL") or DEFAULT_MYDL).expanduser().resolve()
    if not (folder / "__init__.py").is_file():
        raise ExerciseFailed(f"no mydl package at {folder} (it needs an __init__.py): give the folder of your "
                             "mydl, or leave it out to grade notebooks/exercises/mydl")
    return folder


def load_mydl(path=None):
    """Import mydl afresh from ``path`` (see mydl_folder); later ``import mydl`` gets this copy."""
    _FINDER.root = mydl_folder(path)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    for name in [n for n in sys.modules if n == "mydl" or n.startswith("mydl.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return importlib.import_module("mydl")


# -- blocking minidl ------------------------------------------------------------

def _blocker_code(n_free):
    """A code object that raises Blocked, with ``n_free`` free variables (a function's code can
    only be swapped for one with as many)."""
    names = [f"_free{i}" for i in range(n_free)]
    lines = ["def _outer():"] + [f"    {n} = None" for n in names] + [
        "    def _blocked(*args, **kwargs):",
        *(f"        {n}" for n in names),
        "        import sys",
        f"        raise sys.modules[{_REGISTRY!r}].blocked(sys._getframe().f_code)",
        "    return _blocked",
    ]
    scope = {}
    exec("\n".join(lines), scope)
    return scope["_outer"]().__code__


def _blocked_modules():
    import minidl
    names = list(BLOCKED_MODULES)
    for package in BLOCKED_PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__)]
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception:  # noqa: BLE001 (a module that cannot load here, e.g. the CUDA kernels: nothing to call)
            continue
    del minidl
    return modules


def _functions(module):
    """Every function defined in ``module``, and every method of its classes, with a dotted name."""
    seen = set()
    for attr, value in vars(module).items():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if isinstance(value, type):
            for mname, member in vars(value).items():
                for fn in _unwrap(member):
                    if id(fn) not in seen:
                        seen.add(id(fn))
                        yield f"{module.__name__}.{attr}.{mname}", fn
        elif hasattr(value, "__code__"):
            if id(value) not in seen:
                seen.add(id(value))
                yield f"{module.__name__}.{attr}", value


def _unwrap(member):
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if isinstance(member, property):
        return [f for f in (member.fget, member.fset, member.fdel) if f is not None and hasattr(f, "__code__")]
    return [member] if hasattr(member, "__code__") else []


_BLOCKERS = []


def _blockers():
    """(name, function, its code, the code that replaces it) for every blocked function: found once."""
    if not _BLOCKERS:
        templates = {}
        for module in _blocked_modules():
            for name, fn in _functions(module):
                code = fn.__code__
                n_free = len(code.co_freevars)
                if n_free not in templates:
                    templates[n_free] = _blocker_code(n_free)
                _BLOCKERS.append((name, fn, code, templates[n_free].replace(
                    co_name=code.co_name, co_filename=code.co_filename, co_firstlineno=code.co_firstlineno)))
    return _BLOCKERS


class _Block:
    """Swaps the code of every blocked minidl function for one that raises, and back."""

    def __init__(self, exercise):
        self.exercise = exercise
        self.hits = []
        self.names = {}
        self.saved = []

    def blocked(self, code):
        name = self.names.get(code, "a minidl function")
        self.hits.append(name)
        return Blocked(f"the grader blocked {name}: while exercise {self.exercise} is graded, minidl's layers, "
                       "kernels, optimisers and gradient checker cannot be called; write it with NumPy in mydl")

    def __enter__(self):
        sys.modules[_REGISTRY] = self
        for name, fn, code, blocker in _blockers():
            self.names[blocker] = name
            self.saved.append((fn, code))
            fn.__code__ = blocker
        return self

    def __exit__(self, *exc):
        for fn, code in reversed(self.saved):
            fn.__code__ = code
        self.saved.clear()
        sys.modules.pop(_REGISTRY, None)
        return False


@contextmanager
def minidl_blocked(exercise):
    """Within this block, calling minidl's computing code raises Blocked (and is recorded)."""
    block = _Block(exercise)
    with block:
        yield block


# -- running the learner's code -------------------------------------------------

_STUB = re.compile(r"exercise (\d\d)")


def _where_in_mydl(exc):
    """'mydl/linear.py line 31: y = x @ w' for the deepest frame of the learner's code, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "mydl" in Path(f.filename).parts]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {Path(f.filename).parent.name}/{Path(f.filename).name} line {f.lineno}: {(f.line or '').strip()})"


def run(exercise, what, fn, *args, **kwargs):
    """Call the learner's ``fn`` with minidl blocked; any error becomes a one-line ExerciseFailed.

    ``what`` names the call in messages ("Linear.forward", ...).
    """
    with minidl_blocked(exercise) as block:
        try:
            result = fn(*args, **kwargs)
        except Blocked as exc:
            raise ExerciseFailed(f"{what}: {exc}") from None
        except NotImplementedError as exc:
            found = _STUB.search(str(exc))
            if found and found.group(1) != exercise:
                raise ExerciseFailed(f"{what} needs exercise {found.group(1)}, which is not written yet "
                                     f"({exc}): do exercise {found.group(1)} first") from None
            raise ExerciseFailed(f"{what} is not written yet: it still raises NotImplementedError ({exc}); "
                                 "write it in mydl, save the file and grade again") from None
        except ExerciseFailed:
            raise
        except Exception as exc:  # noqa: BLE001 (the learner's error, reported in one line with its place)
            raise ExerciseFailed(f"{what} raised {type(exc).__name__}: {exc}{_where_in_mydl(exc)}") from exc
    if block.hits:
        raise ExerciseFailed(f"{what} called {block.hits[0]}, which the grader blocks while exercise {exercise} "
                             "is graded (the error was caught inside your code): write it with NumPy in mydl")
    return result


def forward_first(exercise, layer, name, x, dy):
    """The learner's forward, which a backward exercise runs first. When that forward is an earlier
    exercise not written yet, say first whether this exercise's own backward is written: a blank mydl then
    fails on this exercise's stub, not only on the one before it."""
    try:
        return run(exercise, f"{name}.forward", layer.forward, x)
    except ExerciseFailed as needs:
        if "needs exercise" not in str(needs):
            raise
        try:
            run(exercise, f"{name}.backward", layer.backward, dy)
        except ExerciseFailed as stub:
            if "not written yet" in str(stub):
                raise stub from None
        raise needs from None


def load(exercise, path=None):
    """Load the learner's mydl for ``exercise`` with minidl blocked (its import runs learner code too)."""
    return run(exercise, "importing mydl", load_mydl, path)


# -- checks whose messages name the property, never the answer -----------------

def fail(message):
    raise ExerciseFailed(message)


def array(what, value, shape, dtype=None, shape_text=None):
    """``value`` must be a NumPy array of ``shape`` (and ``dtype``) with finite entries."""
    if value is None:
        fail(f"{what} returned None: return the result")
    if not isinstance(value, np.ndarray):
        fail(f"{what} returned a {type(value).__name__}, not a NumPy array")
    if value.shape != tuple(shape):
        fail(f"{what} has shape {value.shape}; it should be {shape_text + ' = ' if shape_text else ''}{tuple(shape)}")
    if dtype is not None and value.dtype != np.dtype(dtype):
        fail(f"{what} has dtype {value.dtype}; it should keep the input's dtype {np.dtype(dtype)}")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
        fail(f"{what} has a non-finite value (NaN or inf) at position {bad}")
    return value


def worst(got, want):
    """The position and size of the largest difference between two arrays of one shape."""
    diff = np.abs(np.asarray(got, dtype=np.float64) - np.asarray(want, dtype=np.float64))
    index = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return tuple(int(i) for i in index), float(diff.max()) if diff.size else 0.0


def close(what, got, want, rtol=1e-5, atol=1e-7, mistakes=(), case=""):
    """``got`` must equal ``want`` within ``atol + rtol * |want|`` everywhere.

    ``mistakes``: (description, the array that mistake would give) pairs; when ``got`` is one of
    them, the message names the mistake. The message gives where and by how much, not the answer.
    """
    got = np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        fail(f"{what} has shape {got.shape}; it should be {want.shape}{case}")
    if np.all(np.abs(got.astype(np.float64) - want) <= atol + rtol * np.abs(want)):
        return
    position, size = worst(got, want)
    message = f"{what} differs from the correct value at position {position} by {size:.3g}{case}"
    for description, wrong in mistakes:
        wrong = np.asarray(wrong)
        if wrong.shape == got.shape and np.all(np.abs(got.astype(np.float64) - wrong) <= atol + rtol * np.abs(wrong)):
            message += f": this is what {description} gives"
            break
    fail(message)


def is_mistake(got, wrong, rtol=1e-5, atol=1e-7):
    got, wrong = np.asarray(got, dtype=np.float64), np.asarray(wrong, dtype=np.float64)
    return got.shape == wrong.shape and bool(np.all(np.abs(got - wrong) <= atol + rtol * np.abs(wrong)))


def passed(exercise, text):
    print(f"PASSED exercise {exercise}: {text}")
    return True


# -- the blank package is the solution with each exercise's body cut out ---------

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# >>> exercise (?P<n>\d\d): (?P<task>.+)$")
_END = re.compile(r"^[ \t]*# <<< exercise (?P<n>\d\d)$")


def blank_source(text):
    """The learner's starting file: each '# >>> exercise NN: task' ... '# <<< exercise NN' block of the
    solution becomes one line raising NotImplementedError("exercise NN: task")."""
    out, inside = [], None
    for line in text.splitlines(keepends=True):
        if inside is None:
            begin = _BEGIN.match(line.rstrip("\n"))
            if begin:
                inside = begin.group("n")
                indent = begin.group("indent")
                out.append(f"{indent}# exercise {inside}: {begin.group('task')}\n")
                out.append(f'{indent}raise NotImplementedError("exercise {inside}: {begin.group("task")}")\n')
            else:
                out.append(line)
        else:
            end = _END.match(line.rstrip("\n"))
            if end:
                if end.group("n") != inside:
                    raise ValueError(f"exercise {inside}'s block ends with the marker of exercise {end.group('n')}")
                inside = None
    if inside is not None:
        raise ValueError(f"exercise {inside}'s block has no end marker")
    return "".join(out)
