"""The champion lock across real processes, and files that are whole or absent."""

from __future__ import annotations

import hashlib
import signal
import sys
from pathlib import Path

import pytest

from pipeline.files import atomic_path, cached_file, read_listed, write_atomic
from pipeline.locks import LockTimeoutError, exclusive_lock, lock_path
from tests import processes
from tests.conftest import REPO
from tests.waiting import wait_until

HOLD = """
import sys, time
from pathlib import Path
from pipeline.locks import exclusive_lock
with exclusive_lock(Path(sys.argv[1]), 5, "hold for the test"):
    Path(sys.argv[2]).write_text("held")
    time.sleep(600)
"""


def test_a_held_lock_names_its_holder_and_is_freed_when_the_holder_is_killed(
    tmp_path: Path,
) -> None:
    lock = lock_path(tmp_path)
    held = tmp_path / "held"
    command = [sys.executable, "-c", HOLD, str(lock), str(held)]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    log = tmp_path / "log"
    with processes.running("lock holder", command, env=env, cwd=tmp_path, log=log) as holder:
        wait_until(held.is_file, bool, timeout=60, what="the holder to take the lock")
        refused = pytest.raises(LockTimeoutError, match=rf'"pid": {holder.pid}.*hold for the test')
        with refused, exclusive_lock(lock, 0.3, "promote"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with exclusive_lock(lock, 5, "promote"):  # the kernel released the dead holder's lock
            assert '"purpose": "promote"' in lock.read_text()


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_a_cut_off_cached_file_is_fetched_again(tmp_path: Path) -> None:
    data = b"whole image bytes"
    digest = hashlib.sha256(data).hexdigest()
    target = tmp_path / "raw" / "ab" / "image.jpeg"
    target.parent.mkdir(parents=True)
    target.write_bytes(data[:5])  # what a killed copy leaves
    assert cached_file(target, digest, lambda: data).read_bytes() == data
    with pytest.raises(ValueError, match="do not match sha256"):
        cached_file(tmp_path / "other.jpeg", digest, lambda: b"corrupt")


def test_an_entry_gone_since_listing_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    gone = tmp_path / "gone.jpeg"
    assert read_listed(gone) == (None, "unreadable: No such file or directory")
