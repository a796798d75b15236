"""Grade an exercise of the track.

In a notebook (started in this folder):   from grade import grade;  grade("05")
From the top of the repository:           python -m notebooks.exercises.grade 05
                                          python -m notebooks.exercises.grade          (every exercise, in order)

It grades the mydl package in this folder (or the one given by --mydl or $MYDL), imported afresh from
its source each time, so save your file and grade again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from graders import EXERCISES, ExerciseFailed, mydl_folder  # noqa: E402 (needs this folder on sys.path)


def _number(text):
    number = str(text).strip().zfill(2)
    if number not in EXERCISES:
        raise ExerciseFailed(f"there is no exercise {text!r}: the exercises are {', '.join(EXERCISES)}")
    return number


def grade(number, mydl=None):
    """Grade exercise ``number`` ("05" or 5) on the mydl package at ``mydl`` (default: this folder's).
    Prints a line starting with PASSED, or raises ExerciseFailed saying what is wrong."""
    exercise = EXERCISES[_number(number)]
    exercise.grade(mydl)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m notebooks.exercises.grade", description=__doc__.split("\n")[1])
    parser.add_argument("numbers", nargs="*", help="exercises to grade (default: all, in order, up to the first failure)")
    parser.add_argument("--mydl", help="the mydl package folder to grade (default: $MYDL or notebooks/exercises/mydl)")
    parser.add_argument("--list", action="store_true", help="list the exercises and what each asks for")
    args = parser.parse_args(argv)
    if args.list:
        for number, exercise in EXERCISES.items():
            print(f"{number}  {exercise.TITLE} (about {exercise.MINUTES} min): {exercise.WRITES}")
        return 0
    try:
        numbers = [_number(n) for n in args.numbers] or list(EXERCISES)
        mydl_folder(args.mydl)
    except ExerciseFailed as exc:
        print(f"grade: {exc}", file=sys.stderr)
        return 2
    for number in numbers:
        try:
            grade(number, args.mydl)
        except ExerciseFailed as exc:
            print(f"FAILED exercise {number}: {exc}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
