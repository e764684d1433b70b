"""The service's inference-log writer against a real S3 server that is killed and restarted:
60 rows written around the outage, none lost (before the spool, 20 of 60 were)."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from pipeline.adapters.s3 import S3Store
from pipeline.predict.inference_log import LOG_PREFIX, read_inference_log
from pipeline.serve.background import InferenceLogWriter, LogSpool
from tests.integration.services import seaweed
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def rows(start: int, n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {"image": [f"{i}.jpeg" for i in range(start, start + n)], "timestamp": pd.Timestamp.now()}
    )


def test_rows_logged_while_s3_is_down_reach_it_once_it_is_back(tmp_path: Path) -> None:
    server, creds = seaweed(tmp_path / "seaweed")
    server.start()
    try:
        store = S3Store(
            creds.endpoint, creds.access_key, creds.secret_key, {"default": "inference"},
            attempts=1, timeout_seconds=2,
        )  # fmt: skip
        store.ensure_buckets()
        writer = InferenceLogWriter(store, LogSpool(tmp_path / "spool", 1000))
        stop = threading.Event()
        thread = threading.Thread(target=writer.run, args=(stop, 0.1))
        thread.start()
        try:
            writer.submit(rows(0))
            wait_until(lambda: writer.written[LOG_PREFIX], lambda n: n == 20, timeout=30,
                       what="the first 20 rows in S3")  # fmt: skip
            server.stop()  # the store goes down, as when S3 is killed
            writer.submit(rows(20))
            down = wait_until(writer.status, lambda s: s["spooled_rows"] == 20, timeout=60,
                              what="20 rows in the spool")  # fmt: skip
            assert down["status"] == "failing" and "127.0.0.1" in down["last_error"]
            server.start()  # same ports, same data directory
            writer.next_flush = 0.0  # flush at once, not after the back-off
            wait_until(writer.status, lambda s: s["spooled_rows"] == 0, timeout=60,
                       what="the spool flushed to S3")  # fmt: skip
            writer.submit(rows(40))
            wait_until(lambda: writer.written[LOG_PREFIX], lambda n: n == 60, timeout=30,
                       what="the last rows in S3")  # fmt: skip
        finally:
            stop.set()
            thread.join(timeout=30)
        logged = read_inference_log(store)
        assert sorted(logged["image"]) == sorted(f"{i}.jpeg" for i in range(60))
        assert writer.status() | {"last_error": None} == {
            "status": "ok", "written_rows": {LOG_PREFIX: 60}, "spooled_rows": 0,
            "lost_rows": 0, "last_error": None,
        }  # fmt: skip
    finally:
        server.stop()
