"""Argument checks shared by the search modules: one wording for every bad value.

Each check returns the value converted to a plain Python type, or raises
`ValueError` naming the argument, what it must be and what was given.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

__all__ = ["is_int", "check_positive", "check_probability", "check_seed", "check_optional_seconds",
           "check_child_settings"]


def is_int(value) -> bool:
    """True for Python and numpy integers, False for bools and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    return (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def check_positive(name: str, value, kind=int, allow_zero: bool = False):
    """``value`` as ``kind`` (``int`` or ``float``) if it is > 0 (>= 0 with ``allow_zero``).

    Raises:
        ValueError: not an int (``kind=int``) / not a finite number
            (``kind=float``), or out of range.
    """
    ok = is_int(value) if kind is int else _is_finite_number(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        what = "an int" if kind is int else "a finite number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {what} {bound}; got {value!r}.")
    return kind(value)


def check_probability(name: str, value, allow_zero: bool = False, allow_one: bool = True) -> float:
    """``value`` as a float in (0, 1] by default; ``allow_zero`` / ``allow_one`` close or open the ends."""
    low, high = ("[" if allow_zero else "("), ("]" if allow_one else ")")
    if not _is_finite_number(value) or value < 0 or value > 1 or (value == 0 and not allow_zero) \
            or (value == 1 and not allow_one):
        raise ValueError(f"{name} must be in {low}0, 1{high}; got {value!r}.")
    return float(value)


def check_seed(name: str, value) -> Optional[int]:
    """``value`` as an int, or ``None``."""
    if value is not None and not is_int(value):
        raise ValueError(f"{name} must be an int or None; got {value!r}.")
    return None if value is None else int(value)


def check_optional_seconds(name: str, value, none_means: str) -> Optional[float]:
    """A positive number of seconds, or ``None`` (whose meaning ``none_means`` the message gives)."""
    if value is not None and (not _is_finite_number(value) or value <= 0):
        raise ValueError(f"{name} must be a positive number of seconds, or None to {none_means}; got {value!r}.")
    return None if value is None else float(value)


def check_child_settings(*, epochs, num_cells, filters, learning_rate, momentum, weight_decay,
                         drop_path_keep_prob, max_model_size=None, **positive_ints) -> None:
    """Checks the child-training settings of a search (`CellSearchTuner`'s arguments of the same names).

    ``positive_ints``: further ``name=value`` pairs that must be ints > 0.

    Raises:
        ValueError: the first bad value, named.
    """
    for name, value in dict(epochs=epochs, num_cells=num_cells, filters=filters, **positive_ints).items():
        check_positive(name, value)
    if max_model_size is not None:
        check_positive("max_model_size", max_model_size)
    check_positive("learning_rate", learning_rate, float)
    check_positive("weight_decay", weight_decay, float, allow_zero=True)
    check_probability("momentum", momentum, allow_zero=True, allow_one=False)
    check_probability("drop_path_keep_prob", drop_path_keep_prob)
