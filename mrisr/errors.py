"""Errors that name the file and the problem in one line."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input: a file or folder that cannot be used, with the reason.

    ``str(err)`` is one line, ``"<path>: <problem>"``, ready to print to a user.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.problem if path is None else f"{path}: {self.problem}")
