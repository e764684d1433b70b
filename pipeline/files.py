"""Local files: written aside then renamed, and read only when they are what they seem.

A process killed mid-write leaves a `.tmp-*` file next to the target, never a cut-off target, so
caches and reports are either whole or absent. Input folders are read without following links:
a `x.jpeg -> /etc/shadow` placed in a dataset must not end up in the store.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import PneumoError


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` to write to; renamed onto `target` if the block succeeds.

    For writers that want a path (pandas, matplotlib); the suffix is kept so they pick the format.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        Path(tmp).replace(target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(target: Path, data: bytes | str) -> Path:
    """Write all of `data` to `target` or leave `target` as it was."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_file(target: Path, sha256: str | None, fetch: Callable[[], bytes]) -> Path:
    """`target` if it holds the expected bytes, else fetched again and written atomically.

    Without a known `sha256` an existing file is trusted: it can only exist whole.
    """
    if target.is_file() and (sha256 is None or file_sha256(target) == sha256):
        return target
    data = fetch()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{target.name}: fetched bytes do not match sha256 {sha256[:12]}…")
    return write_atomic(target, data)


class NotRegularFileError(PneumoError, OSError):
    """A path that is a link, a folder or a special file: never read as data."""


def read_regular(path: Path) -> bytes:
    """The bytes of `path` if it is a regular file; links are not followed.

    Opened with O_NOFOLLOW and checked on the open descriptor, so a file swapped for a link
    after it was listed is refused too; O_NONBLOCK keeps a FIFO from blocking the open. The
    kind of a refused entry is looked up only when it is refused, never for regular files.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        mode = os.lstat(path).st_mode  # a link (ELOOP), a socket (ENXIO), or a plain failure
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(not_regular(mode)) from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(not_regular(mode))
        return handle.read()


def not_regular(mode: int) -> str:
    """Why an entry of this mode is never read as data."""
    if stat.S_ISLNK(mode):
        return "symbolic link, not followed"
    kinds = {
        stat.S_ISDIR: "folder", stat.S_ISFIFO: "named pipe", stat.S_ISSOCK: "socket",
        stat.S_ISCHR: "character device", stat.S_ISBLK: "block device",
    }  # fmt: skip
    kind = next((name for test, name in kinds.items() if test(mode)), "special file")
    return f"not a regular file ({kind})"


def listed_entries(folder: Path) -> Iterator[Path]:
    """Every non-hidden entry under `folder` to try with `read_listed`, in a stable order.

    Links to folders are listed, not walked into; `read_listed` says why they are not read.
    """
    for current, folders, names in os.walk(folder, followlinks=False):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        base = Path(current)
        linked = [f for f in folders if (base / f).is_symlink()]
        for name in sorted([*linked, *(n for n in names if not n.startswith("."))]):
            yield base / name


def read_listed(path: Path) -> tuple[bytes | None, str | None]:
    """(bytes, None) for an entry of `listed_entries` that can be read, else (None, why not):
    a link, a special file, or gone or unreadable since it was listed."""
    try:
        return read_regular(path), None
    except NotRegularFileError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
