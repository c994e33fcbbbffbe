"""Errors that name the file and the problem in one line."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path


class InputError(ValueError):
    """Bad input: a file or folder that cannot be used, with the reason.

    ``str(err)`` is one line, ``"<path>: <problem>"``, ready to print to a user.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.problem if path is None else f"{path}: {self.problem}")


class UsageError(InputError):
    """A command asked to do something it must refuse, e.g. to write over one of its own inputs (exit code 2)."""


def check_number(name: str, value, what: str, *, minimum: float | None = None, above: float | None = None,
                 below: float | None = None, integer: bool = False) -> None:
    """`ValueError` ``"<name> must be <what>, got <value>"`` unless ``value`` is a finite number (an integer where
    ``integer``; never a bool) that is ``>= minimum``, ``> above`` and ``< below`` where those are given."""
    ok = isinstance(value, Integral if integer else Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (above is None or value > above) and (
        below is None or value < below)
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")


def refuse_overwriting_inputs(outputs, inputs) -> None:
    """`UsageError` if any path of ``outputs`` is (or, for a folder, holds) one of ``inputs``: no command writes over
    what it reads. ``None`` entries are ignored."""
    sources = [Path(p).resolve() for p in inputs if p is not None]
    for output in (Path(p).resolve() for p in outputs if p is not None):
        for source in sources:
            if output == source or source.is_relative_to(output) and output.is_dir():
                raise UsageError(output, f"is also an input ({source}); choose another output, inputs are never "
                                         "overwritten")


def check_writable(path) -> Path:
    """``path`` as a `Path`, after checking that its folder exists or can be made and is writable (before any long
    work starts); `InputError` naming it otherwise."""
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(path, f"cannot be written: {folder} is not a writable folder")
    if path.is_dir():
        raise InputError(path, "is a folder; give a file name")
    return path


def check_outputs(outputs, inputs) -> None:
    """What every command that writes checks before its work starts: no path of ``outputs`` is one of ``inputs``
    (`refuse_overwriting_inputs`) and each can be written (`check_writable`). ``None`` entries are ignored."""
    refuse_overwriting_inputs(outputs, inputs)
    for output in outputs:
        if output is not None:
            check_writable(output)
