"""Errors that name the file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class HandvoxError(Exception):
    """Base class for handvox's own errors (shown to CLI users without a traceback)."""


class DataError(HandvoxError, ValueError):
    """A file is missing, unreadable, truncated, of the wrong shape, or holds invalid values."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class SizeMismatch(DataError):
    """An image whose size is not its camera's (its intrinsics would not apply): in a folder of
    mixed sizes, a per-file result rather than the end of the run."""
