"""Safe file writing: outputs appear whole or not at all, and are never silently replaced."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edge_fer.errors import OutputError, OutputExistsError

__all__ = ["check_writable", "atomic_output"]


def check_writable(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse to replace an existing file unless ``force``; create the parent folder."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise OutputExistsError(f"{path} is a directory; expected a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: its folder cannot be created ({exc.strerror or exc})") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"cannot write {path}: no permission to write in {path.parent}")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The rename is atomic on POSIX file systems, so a reader (or a crash) sees either the
    old file or the complete new one. On error the temporary file is removed.
    """
    path = check_writable(path, force=force)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:  # the data reach the disk before the name does
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by writers that were killed (their PID is gone), so
    a device that loses power mid-write does not slowly fill its disk."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = stale.name[len(path.name) + 2 :].split(".")
        if not parts or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:  # alive, someone else's
            pass
