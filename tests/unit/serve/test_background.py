"""The service's background work: the inference-log writer's retries and spool, and the
champion holder's retries while the registry does not answer."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pandas as pd
import pytest

from pipeline.adapters.storage import LocalStore, StorageUnavailableError
from pipeline.predict.inference_log import LOG_PREFIX, read_inference_log
from pipeline.serve.background import ChampionHolder, InferenceLogWriter, LogSpool
from tests.waiting import wait_until


class Outage(LocalStore):
    """A local store that refuses writes while `down`, as an unreachable S3 endpoint does."""

    down = False

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        if self.down:
            raise StorageUnavailableError(f"put {key}: connection refused (simulated outage)")
        return super().put(key, data, overwrite=overwrite)


def rows(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"image": [f"{i}.jpeg" for i in range(start, start + n)], "timestamp": pd.Timestamp.now()}
    )


def writer_on(tmp_path: Path, max_rows: int = 1000) -> tuple[Outage, InferenceLogWriter]:
    store = Outage(tmp_path / "store")
    spool = LogSpool(tmp_path / "spool", max_rows)
    return store, InferenceLogWriter(store, spool)


def test_rows_written_while_the_store_is_down_are_spooled_then_flushed(tmp_path: Path) -> None:
    store, writer = writer_on(tmp_path)
    writer.write(LOG_PREFIX, [rows(20)])
    store.down = True
    writer.write(LOG_PREFIX, [rows(20, 20)])
    assert writer.status()["status"] == "failing"
    assert writer.status()["spooled_rows"] == 20 and "simulated outage" in writer.last_error
    writer.flush()  # still down: nothing moves, nothing lost
    assert writer.spool.rows == 20 and writer.lost_rows == 0
    assert LogSpool(tmp_path / "spool", 1000).rows == 20  # a restarted service finds them
    store.down = False
    writer.write(LOG_PREFIX, [rows(20, 40)])
    writer.flush()
    assert writer.status()["status"] == "ok" and writer.spool.rows == 0
    assert len(read_inference_log(store)) == 60
    assert not list((tmp_path / "spool").rglob("*.parquet"))


def test_past_the_spool_limit_rows_are_lost_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, writer = writer_on(tmp_path, max_rows=25)
    store.down = True
    with caplog.at_level(logging.ERROR):
        writer.write(LOG_PREFIX, [rows(20)])
        writer.write(LOG_PREFIX, [rows(10, 20)])
    assert writer.spool.rows == 20 and writer.status()["lost_rows"] == 10
    assert "10 rows LOST" in caplog.text


def test_the_run_loop_drains_and_flushes_before_it_stops(tmp_path: Path) -> None:
    store, writer = writer_on(tmp_path)
    store.down = True
    writer.submit(rows(5))
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop, 0.05))
    thread.start()
    try:
        wait_until(lambda: writer.spool.rows, lambda n: n == 5, timeout=10, what="the spool")
        store.down = False
        writer.next_flush = 0.0
        wait_until(lambda: writer.spool.rows, lambda n: n == 0, timeout=10, what="the flush")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert writer.written[LOG_PREFIX] == 5 and len(read_inference_log(store)) == 5


def test_a_full_queue_spools_instead_of_blocking_the_request(tmp_path: Path) -> None:
    store = Outage(tmp_path / "store")
    writer = InferenceLogWriter(store, LogSpool(tmp_path / "spool", 100), max_pending=1)
    writer.submit(rows(1))
    writer.submit(rows(2, 1))  # no writer thread runs: the queue is full
    assert writer.pending.qsize() == 1 and writer.spool.rows == 2


def test_the_holder_retries_until_the_registry_answers() -> None:
    answers = iter([ConnectionError("http://u:pw-1234@mlflow refused"), "3"])

    def resolve() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    loaded = type("Loaded", (), {"revision": "3"})()
    holder = ChampionHolder(load=lambda: loaded, resolve_revision=resolve)
    stop = threading.Event()
    thread = threading.Thread(target=holder.watch, args=(60.0, stop, 0.05))
    thread.start()
    try:
        assert holder.first_attempt.wait(10)
        wait_until(lambda: holder.current, lambda c: c is loaded, timeout=10, what="a retry")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert holder.last_error is None


def test_the_holder_error_is_redacted() -> None:
    def refuse() -> str:
        raise ConnectionError("cannot reach http://admin:pw-1234@mlflow:5000")

    holder = ChampionHolder(load=lambda: None, resolve_revision=refuse)
    holder.refresh()
    assert holder.last_error == "ConnectionError: cannot reach http://admin:***@mlflow:5000"


def test_an_unwritable_spool_loses_rows_loudly_and_the_writer_lives_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Outage(tmp_path / "store")
    (tmp_path / "blocked").write_text("a file where the spool folder should be")
    writer = InferenceLogWriter(store, LogSpool(tmp_path / "blocked" / "spool", 1000))
    store.down = True
    writer.submit(rows(3))
    writer.submit(pd.DataFrame({"image": [object()]}), "rejected-log")  # Parquet refuses it
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop, 0.05))
    with caplog.at_level(logging.ERROR):
        thread.start()
        try:
            wait_until(writer.status, lambda s: s["lost_rows"] == 4, timeout=10, what="4 lost")
            store.down = False
            writer.submit(rows(2, 3))
            wait_until(lambda: writer.written[LOG_PREFIX], lambda n: n == 2, timeout=10,
                       what="the writer still writing")  # fmt: skip
        finally:
            stop.set()
            thread.join(timeout=10)
    assert "cannot write the spool" in caplog.text and "3 rows LOST" in caplog.text
    assert "a rejected-log batch could not be written" in caplog.text
