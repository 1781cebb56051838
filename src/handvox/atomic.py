"""Writing files so that a reader never sees half of one: write a hidden temporary beside the
target, then rename it over the target (atomic on POSIX within one folder). The rename protects
against the process being killed, not against power loss (nothing is fsynced)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path(path: str | Path) -> Path:
    """A fresh hidden name beside ``path``: ``.{stem}.{pid}-{random}.tmp{suffix}``. Same folder,
    so the rename is atomic; same suffix, so writers that go by it (``np.savez``, ``savefig``,
    Pillow) still do; unique, so concurrent writers never share one."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}-{os.urandom(4).hex()}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | Path, mkdir: bool = True) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write ``tmp`` (a file or a folder); on leaving the block
    it replaces ``p``; on an error it is deleted and ``p`` is left as it was.

    ``mkdir``: create ``p``'s parent folders first.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    return Path(path)
