"""Lines for the end of a test run: service start-up and whole-stack times, and processes that
had to be killed.

Kept by the process that ran the tests. Under pytest-xdist that is a worker, whose terminal
nobody sees: each worker hands its lines to the controller (`workeroutput`), which prints them
with its own (see `tests/conftest.py`).
"""

from __future__ import annotations

from tests import processes

TIMES: dict[str, dict[str, float]] = {}  # heading -> {what: seconds}


def record(heading: str, what: str, seconds: float) -> None:
    TIMES.setdefault(heading, {})[what] = round(seconds, 1)


def lines() -> list[str]:
    timed = [
        f"{heading}: " + ", ".join(f"{what} {seconds} s" for what, seconds in times.items())
        for heading, times in TIMES.items()
    ]
    return timed + [f"process teardown: {problem}" for problem in processes.PROBLEMS]
