"""Writing files so that a reader never sees half of one, and so that a failed or killed writer
leaves nothing behind: write a hidden temporary beside the target, then rename it over the target
(atomic on POSIX within one folder). The rename protects against the process being killed, not
against power loss (nothing is fsynced).

A temporary's name holds its writer's host and process id, so the next run of a job can tell the
leftovers of a killed writer (:func:`remove_stale_temps`) from a live writer's files; a job that
must be the only writer of a folder holds :func:`writer_lock` while it runs.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from handvox.errors import HandvoxError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second writer is not detected there
    fcntl = None

# This host, short: temporaries of another machine writing to a shared folder are never swept.
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_TEMP = re.compile(r"^\..*\.(\d+)(?:@([0-9a-f]{8}))?-[0-9a-f]{8}\.tmp")


def temp_path(path: str | Path) -> Path:
    """A fresh hidden name beside ``path``: ``.{stem}.{pid}@{host}-{random}.tmp{suffix}``. Same
    folder, so the rename is atomic; same suffix, so writers that go by it (``np.savez``,
    ``savefig``, Pillow) still do; unique, so concurrent writers never share one."""
    path = Path(path)
    name = f".{path.stem}.{os.getpid()}@{_HOST}-{os.urandom(4).hex()}.tmp{path.suffix}"
    return path.with_name(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or a pid we cannot ask about): keep its files
    return True


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temporaries (files or folders, see :func:`temp_path`) that writers on this host
    left in ``folder`` when they were killed; returns how many. Live writers' are kept."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.glob(".*.tmp*"):
        m = _TEMP.match(p.name)
        if m is None or (m[2] is not None and m[2] != _HOST) or _alive(int(m[1])):
            continue
        _remove(p)
        n += 1
    return n


def naming(e: OSError, path: str | Path, tmp: str | Path) -> OSError:
    """``e`` naming ``path`` (what the user asked for) instead of nothing or the temporary
    ``tmp`` (or a file in it) it was written as."""
    if e.filename is not None and not str(e.filename).startswith(str(tmp)):
        return e
    text = e.strerror or (os.strerror(e.errno) if e.errno else str(e))
    return type(e)(e.errno, text, str(path))


@contextmanager
def atomic_path(path: str | Path, mkdir: bool = True) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write ``tmp`` (a file or a folder); on leaving the block
    it replaces ``p``; on an error it is deleted and ``p`` is left as it was.

    ``mkdir``: create ``p``'s parent folders first.

    Raises:
        OSError: from the block or the rename (a full disk, a read-only folder), naming ``p``.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        if mkdir:
            path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise naming(e, path, tmp) from e
    except Exception as e:
        # Writers in Rust (safetensors) report an OS error as their own exception, "(os error
        # 28)": the same OSError as any other writer's, so that the CLI says what to do.
        m = _RUST_OS_ERROR.search(str(e))
        if m is None:
            raise
        raise naming(OSError(int(m[1]), os.strerror(int(m[1]))), path, tmp) from e
    finally:
        _remove(tmp)


def _remove(tmp: Path) -> None:
    """Delete a temporary file or folder if it is there (its folder may not even be)."""
    try:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    return Path(path)


@contextmanager
def writer_lock(folder: str | Path, name: str, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` for the job ``name`` while the block runs.

    The lock is an advisory ``flock`` on ``folder/.{name}.lock`` (the file stays; it holds the
    last holder's pid): the kernel releases it when the process ends, killed or not, so there is
    never a stale lock to delete. ``what`` names the job in the error.

    Raises:
        HandvoxError: another live process holds it.
    """
    folder = Path(folder)
    path = folder / f".{name}.lock"
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise HandvoxError(
                f"{folder}: another process (pid {holder}) is writing {what} there; "
                "wait for it to end or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
