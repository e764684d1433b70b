"""Local files a reader may open while they are written: write aside, then rename.

A process killed mid-write leaves a `.tmp-*` file next to the target, never a cut-off target, so
caches and reports are either whole or absent.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


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
