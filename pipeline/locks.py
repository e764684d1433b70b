"""Mutual exclusion for everything that moves `champion`: training, retraining, promote, rollback.

An exclusive `flock` on a file under PNEUMO_HOME: it holds across processes (CLI commands, flow
runs, a worker) on one machine, and the kernel releases it when its holder dies, so a killed
command never leaves the registry locked. The file names the holder for the error message.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import PneumoError
from pipeline.settings import Settings

POLL_SECONDS = 0.2


class LockTimeoutError(PneumoError):
    """Another process held the lock for longer than the caller would wait."""


def lock_path(home: Path, name: str = "champion") -> Path:
    return home / "locks" / f"{name}.lock"


@contextmanager
def exclusive_lock(path: Path, timeout: float, purpose: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block, waiting at most `timeout` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    raise LockTimeoutError(
                        f"{path} is held by {handle.read().strip() or 'another process'}; "
                        f"waited {timeout:.0f} s to {purpose}"
                    ) from None
                time.sleep(POLL_SECONDS)
        holder = {
            "pid": os.getpid(),
            "purpose": purpose,
            "command": " ".join(sys.argv)[:200],
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def champion_lock(settings: Settings, purpose: str) -> AbstractContextManager[None]:
    """The lock every mover of `champion` holds, under the settings' state directory."""
    return exclusive_lock(lock_path(settings.home), settings.lock_timeout_s, purpose)
