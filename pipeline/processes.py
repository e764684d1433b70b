"""Which process owns a run, so a later command can tell that its owner died.

One scheme for both places runs live: MLflow runs carry it as tags (`pneumo_host`,
`pneumo_pid`); Prefect flow runs, whose tags are plain strings, as `pneumo_host:<host>` and
`pneumo_pid:<pid>`. A run is orphaned when its owner ran on this host and is gone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping

OWNER_HOST, OWNER_PID = "pneumo_host", "pneumo_pid"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists here; an unknown pid (0, negative) counts as alive."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def owner() -> dict[str, str]:
    """This process as owner tags."""
    return {OWNER_HOST: socket.gethostname(), OWNER_PID: str(os.getpid())}


def as_labels(tags: Mapping[str, str]) -> list[str]:
    """Owner tags as `key:value` strings, for systems whose tags are strings (Prefect)."""
    return [f"{key}:{value}" for key, value in tags.items()]


def from_labels(labels: Iterable[str]) -> dict[str, str]:
    """The owner tags among `key:value` strings; other labels are ignored."""
    pairs = (label.split(":", 1) for label in labels if ":" in label)
    return {key: value for key, value in pairs if key in (OWNER_HOST, OWNER_PID)}


def is_orphaned(tags: Mapping[str, str]) -> bool:
    """Whether the owner the tags name ran on this host and is gone (no owner: not orphaned)."""
    pid = tags.get(OWNER_PID, "")
    return (
        tags.get(OWNER_HOST) == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))
    )
