"""Argument checks shared across the library: each error names the argument and repeats the value.

A leaf module (no kerasrecipes imports), so any module can check its arguments before it touches
data or builds anything.
"""

import difflib
import functools
import math
import numbers
import re
import warnings


def close_matches(value, choices):
    """`" Did you mean 'x'?"` for a string close to one of the strings `choices`, else `""`."""
    if not isinstance(value, str):
        return ""
    names = [c for c in choices if isinstance(c, str)]
    matches = difflib.get_close_matches(value.lower(), names, n=3, cutoff=0.6)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


def check_choice(name, value, choices):
    """Raises `ValueError` unless `value` is one of the strings `choices`, naming the closest.

    Example:
    >>> check_choice("optimizer", "adamw", ("sgd", "adam", "adamw"))
    >>> check_choice("optimizer", "adamww", ("sgd", "adam", "adamw"))  # ValueError: … 'adamw'?
    """
    if isinstance(value, str) and value in choices:
        return
    hint = close_matches(value, choices)
    raise ValueError(f"{name} must be one of {tuple(choices)}. Received: {name}={value!r}"
                     + (f".{hint}" if hint else ""))


def is_number(value):
    """True for a real, finite number that is not a bool (numpy scalars included)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def is_int(value):
    """True for an integer that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive(name, value, integer=False):
    """Raises unless `value` is a finite number > 0 (a whole number if `integer`)."""
    ok = is_number(value) and value > 0
    if integer:
        ok = ok and float(value) == int(value)
    if not ok:
        kind = "a positive int" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}. Received: {name}={value!r}")


def check_int(name, value, low=None, allow_none=False):
    """Raises unless `value` is an int >= `low` (or `None` when `allow_none`)."""
    if value is None and allow_none:
        return
    if not is_int(value) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an int{bound}{none}. Received: {name}={value!r}")


def check_number(name, value, low=None, high=None, low_open=False, high_open=False,
                 allow_none=False):
    """Raises unless `value` is a finite number in the interval (or `None` when `allow_none`).

    Example:
    >>> check_number("label_smoothing", 0.1, 0, 1, high_open=True)  # [0, 1)
    """
    if value is None and allow_none:
        return
    ok = is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            what = (f"in {'(' if low_open else '['}{low:g}, {high:g}"
                    f"{')' if high_open else ']'}")
        elif low is not None:
            what = f"a number {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            what = f"a number {'<' if high_open else '<='} {high:g}"
        else:
            what = "a finite number"
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be {what}{none}. Received: {name}={value!r}")


def renamed_arguments(**renames):
    """Decorator: old keyword names keep working, with a `DeprecationWarning` naming the new one.

    Args:
        **renames: old name → new name.

    Example:
    >>> @renamed_arguments(max_lr="lr")
    ... def fit_one_cycle(model, train, lr=None): ...
    >>> fit_one_cycle(model, train, max_lr=1e-3)  # DeprecationWarning: use lr=…
    """

    def decorate(fn):
        name = fn.__qualname__.removesuffix(".__init__")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            used = {}
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{name}() got both {old}= (deprecated) and {new}=: "
                                        f"pass only {new}=.")
                    warnings.warn(f"{name}({old}=...) is deprecated: use {new}=... instead.",
                                  DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
                    used[new] = old
            try:
                return fn(*args, **kwargs)
            except ValueError as error:
                # A bad value given under the old name: say so, the message names the new one.
                named = [new for new in used if re.search(rf"\b{new}=", str(error))]
                if type(error) is not ValueError or not named:
                    raise
                raise ValueError(f"{error} (given as {used[named[0]]}=, the deprecated name of "
                                 f"{named[0]}=)") from None

        wrapper.renamed_arguments = dict(renames)
        return wrapper

    return decorate
