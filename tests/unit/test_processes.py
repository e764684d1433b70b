"""The suite's process bookkeeping ends what a started process left behind in a session of
its own, as a Prefect process worker does with each flow run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests import processes
from tests.waiting import wait_until

# Starts a grandchild in a new session (so outside the started process's group), then waits.
SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         start_new_session=True)
print(child.pid, flush=True)
time.sleep(300)
"""


def test_stop_ends_a_descendant_that_left_the_process_group(tmp_path: Path) -> None:
    log = tmp_path / "spawner.log"
    command = [sys.executable, "-c", SPAWNER]
    process = processes.start("spawner", command, env=dict(os.environ), cwd=tmp_path, log=log)
    text = wait_until(
        lambda: log.read_text().strip(), bool, timeout=30, interval=0.1, what="the grandchild"
    )
    grandchild = int(text)
    assert os.getpgid(grandchild) != process.pid  # out of reach of the group signal
    processes.stop("spawner", process, grace=5)
    index = next(i for i, (_, p) in enumerate(processes.STARTED) if p is process)
    wait_until(
        lambda: processes.tagged(index),
        lambda alive: not alive,
        timeout=10,
        interval=0.1,
        what="the grandchild to be ended",
    )
    assert f"spawner (pid {process.pid})" not in processes.leftovers()
