"""Processes the tests start: each in its own process group, always ended, checked at the end.

`start` records every process; `stop` ends its whole group with SIGTERM, then SIGKILL after a
grace period, and never raises (a teardown problem is recorded, not allowed to hide the test's
own assertion). `leftovers` lists recorded groups still alive: the session-end check fails the
run on any.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

STARTED: list[tuple[str, subprocess.Popen]] = []
PROBLEMS: list[str] = []


def start(
    name: str,
    command: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    user: str | None = None,
) -> subprocess.Popen:
    """Start `command` in a new process group, output to `log`, and record it. `user`: run as
    that system user (PostgreSQL refuses to run as root)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
        )
    STARTED.append((name, process))
    return process


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop(name: str, process: subprocess.Popen, grace: float = 20.0) -> None:
    """End the process and every process of its group; SIGKILL what outlives the grace period."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        PROBLEMS.append(f"{name} (pid {process.pid}) ignored SIGTERM for {grace:.0f} s: killed")
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    # Children that outlived their leader (a worker's flow-run subprocess) are ended too.
    _signal_group(process.pid, signal.SIGKILL)


@contextmanager
def running(
    name: str, command: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path, grace=20.0
) -> Iterator[subprocess.Popen]:
    """A started process for the block's duration, always stopped when it ends."""
    process = start(name, command, env=env, cwd=cwd, log=log)
    try:
        yield process
    finally:
        stop(name, process, grace)


def run_pneumo(args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> tuple[int, str]:
    """Run the `pneumo` CLI to its end in its own process; (exit code, output)."""
    command = [sys.executable, "-m", "flows.cli", *args]
    with running("pneumo " + args[0], command, env=env, cwd=cwd, log=log) as process:
        code = process.wait(timeout=600)
    return code, log.read_text(errors="replace")


def leftovers() -> list[str]:
    """Recorded process groups that are still alive, as `name (pid N)`."""
    for _, process in STARTED:
        process.poll()  # reap a finished leader, so only live members keep its group alive
    return [f"{name} (pid {p.pid})" for name, p in STARTED if group_alive(p.pid)]


def kill_leftovers() -> None:
    for _, process in STARTED:
        _signal_group(process.pid, signal.SIGKILL)
