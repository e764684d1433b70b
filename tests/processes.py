"""Processes the tests start: each in its own process group, always ended, checked at the end.

`start` records every process and tags its environment; `stop` ends its whole group with
SIGTERM, then SIGKILL after a grace period, and never raises (a teardown problem is recorded, not
allowed to hide the test's own assertion). A descendant that started a session of its own (a
Prefect worker's flow-run process) leaves the group but inherits the tag, so it is found and
ended too. `leftovers` lists recorded processes still alive: the session-end check fails the
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
TAG = "PNEUMO_TEST_PROCESS"
# `prefect worker start` (Prefect 3.9) was still running 30 s after SIGTERM or SIGINT, idle or
# not (measured): waiting longer only delays the SIGKILL that ends it anyway.
PREFECT_WORKER_GRACE = 3.0


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
            env={**env, TAG: _tag(len(STARTED))},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
        )
    STARTED.append((name, process))
    return process


def _tag(index: int) -> str:
    return f"{os.getpid()}-{index}"


def tagged_processes() -> dict[str, list[int]]:
    """Live processes carrying a tag, by tag: one pass over /proc."""
    prefix = f"{TAG}=".encode()
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(prefix):
                found.setdefault(variable[len(prefix) :].decode(), []).append(int(entry.name))
    return found


def tagged(index: int) -> list[int]:
    """Live processes whose environment carries the tag of the `index`-th started process."""
    return tagged_processes().get(_tag(index), [])


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


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
    # Children that outlived their leader, in its group or in a session of their own (a
    # worker's flow-run subprocess), are ended too.
    _signal_group(process.pid, signal.SIGKILL)
    _kill(tagged(_index(process)))


def _index(process: subprocess.Popen) -> int:
    return next(i for i, (_, started) in enumerate(STARTED) if started is process)


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
    """Recorded processes whose group or tagged descendants are still alive, as `name (pid N)`."""
    for _, process in STARTED:
        process.poll()  # reap a finished leader, so only live members keep its group alive
    alive = tagged_processes()
    return [
        f"{name} (pid {p.pid})"
        for index, (name, p) in enumerate(STARTED)
        if group_alive(p.pid) or _tag(index) in alive
    ]


def kill_leftovers() -> None:
    alive = tagged_processes()
    for index, (_, process) in enumerate(STARTED):
        _signal_group(process.pid, signal.SIGKILL)
        _kill(alive.get(_tag(index), []))
