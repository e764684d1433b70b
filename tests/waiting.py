"""Waits with a reason: poll for the state a test needs, and say what was last seen on timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    describe: Callable[[T], str] = repr,
) -> T:
    """Call `probe` until `done(result)`; return that result, or fail naming `what` was awaited.

    The failure shows the last result (through `describe`), so a timeout says where things stood.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}; last seen: {describe(result)}"
            )
        time.sleep(interval)
