"""Argument checks that name the function and the argument at fault.

A size must be a whole number (2.5 is not silently read as 2), a rate a
finite number (NaN passes every ``< 0`` test), and the error says where:

    whole(kernel_size, "Conv2D", "kernel_size", low=1)   -> int, or an error
    number(p, "Dropout", "p", low=0, high=1, high_open=True)

A value of the wrong type is a TypeError, one out of range a ValueError.
"""

from __future__ import annotations

import math
import numbers


def whole(value, who, name, low=None, high=None):
    """``value`` as an int: a whole number (not a bool, not a float) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {name} must be a whole number, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"in {low}..{high}" if low is not None and high is not None
                  else f">= {low}" if low is not None else f"<= {high}")
        raise ValueError(f"{who}: {name} must be {bounds}, got {value}")
    return value


def number(value, who, name, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a float: a finite real number in the range, ends open or closed as asked."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name} must be a number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    bad = bad or (low is not None and (value < low or (low_open and value == low)))
    bad = bad or (high is not None and (value > high or (high_open and value == high)))
    if bad:
        left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        where = (f"in {left}, {right}" if low is not None and high is not None
                 else f"{'>' if low_open else '>='} {low:g}" if low is not None
                 else f"{'<' if high_open else '<='} {high:g}" if high is not None else "finite")
        raise ValueError(f"{who}: {name} must be a finite number {where}, got {value!r}")
    return value
