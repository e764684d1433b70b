"""A test-only hook for fault injection: pause at a named step boundary so a test can kill there.

With PNEUMO_PAUSE_AT=<step> in the environment, `checkpoint(step)` writes `<step>` to the file
PNEUMO_PAUSE_FILE names and then blocks until the process is killed. Unset (always, outside the
fault tests), it does nothing.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

PAUSE_AT = "PNEUMO_PAUSE_AT"
PAUSE_FILE = "PNEUMO_PAUSE_FILE"


def checkpoint(step: str) -> None:
    if os.environ.get(PAUSE_AT) != step:
        return
    Path(os.environ[PAUSE_FILE]).write_text(step)
    while True:  # until the test's SIGKILL; signal.pause sleeps without polling
        signal.pause()
