"""The graders of the exercise track, one module per exercise (``exNN_name.py``).

Each module defines NUMBER ("01"), TITLE, WRITES (what the learner writes, and where), NOTEBOOK (the
numbered notebook and section that teach it), MINUTES (about how long it takes) and
``grade(mydl_path=None)``, which prints one line starting with "PASSED" or raises ExerciseFailed.
"""

import importlib
import pkgutil

from .common import Blocked, ExerciseFailed, blank_source, load_mydl, minidl_blocked, mydl_folder

EXERCISES = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name.startswith("ex"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        EXERCISES[_module.NUMBER] = _module

__all__ = ["EXERCISES", "Blocked", "ExerciseFailed", "blank_source", "load_mydl", "minidl_blocked", "mydl_folder"]
