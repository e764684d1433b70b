"""The service's background work: swapping in a new champion, writing the inference logs.

Both run in threads beside the request handlers, so neither a registry look-up nor a store write
is ever on a request's path.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.adapters.storage import ObjectStore
from pipeline.predict.champion import Champion
from pipeline.predict.inference_log import LOG_PREFIX, log_object
from pipeline.redact import redact

logger = logging.getLogger(__name__)


@dataclass
class ChampionHolder:
    """The serving champion; `refresh` swaps in a new version in one assignment.

    A request reads `current` once and uses that object throughout, so it is served wholly by
    one version even if a swap happens meanwhile.
    """

    load: Callable[[], Champion]
    # What is in force now (`revision_of`): a new version, or a new site threshold on the same
    # one (`pneumo site accept`), loads again.
    resolve_revision: Callable[[], str | None]
    current: Champion | None = None
    last_error: str | None = None
    # Set once the first look-up has ended, loaded or not: start-up waits for it only so long.
    first_attempt: threading.Event = field(default_factory=threading.Event)
    # An alias that disappears: the champion keeps serving (a service must not go dark), a
    # challenger that is gone is no longer shadowed.
    keep_when_gone: bool = True

    def refresh(self) -> bool:
        """Load the champion if the alias points elsewhere or its threshold changed; True when
        a new one came in."""
        try:
            revision = self.resolve_revision()
            if revision is None and not self.keep_when_gone:
                self.current = None
            if revision is None or (self.current is not None and self.current.revision == revision):
                return False
            self.current = self.load()
            self.last_error = None
            return True
        except Exception as exc:  # keep serving the old version; report on /health
            self.last_error = redact(f"{type(exc).__name__}: {exc}")
            logger.warning("champion look-up failed: %s", self.last_error)
            return False
        finally:
            self.first_attempt.set()

    def watch(
        self, interval_seconds: float, stop: threading.Event, retry_seconds: float = 2.0
    ) -> None:
        """Load now, then follow the alias every `interval_seconds`.

        While nothing is loaded (registry unreachable, no champion yet) it retries sooner,
        from `retry_seconds` doubling up to the interval, so a service started before MLflow
        serves as soon as MLflow answers.
        """
        retry = retry_seconds
        while True:
            self.refresh()
            wait = interval_seconds if self.current is not None else min(retry, interval_seconds)
            retry = retry_seconds if self.current is not None else retry * 2
            if stop.wait(wait):
                return


@dataclass
class LogSpool:
    """Log objects the store refused, kept on local disk under their own keys until it answers.

    Written back under the same content-named key, so a flush repeated after a crash stores
    nothing twice. Survives a restart: the files are counted again at start.
    """

    root: Path
    max_rows: int
    rows: int = 0
    # The writer thread flushes while a request thread may add (when the queue is full).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        import pyarrow.parquet as pq

        self.rows = sum(pq.read_metadata(path).num_rows for path in self.files())

    def files(self) -> list[Path]:
        return sorted(self.root.rglob("*.parquet")) if self.root.is_dir() else []

    def add(self, key: str, data: bytes, rows: int) -> bool:
        """Keep one object; False (nothing kept) when it would pass `max_rows`, or when the
        spool itself cannot be written (disk full, folder not writable: logged)."""
        with self.lock:
            if self.rows + rows > self.max_rows:
                return False
            target = self.root / key
            partial = target.with_suffix(".partial")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial.write_bytes(data)
                partial.replace(target)  # a crash mid-write leaves no half object to flush
            except OSError as exc:
                logger.error("inference log: cannot write the spool at %s: %s", target, exc)
                return False
            self.rows += rows
            return True

    def flush(self, store: ObjectStore, flushed: Counter[str]) -> None:
        """Write kept objects to `store`, oldest first, until one fails; rows written are
        counted in `flushed` by log prefix."""
        import pyarrow.parquet as pq

        for path in self.files():
            rows = pq.read_metadata(path).num_rows
            key = path.relative_to(self.root).as_posix()
            store.put(key, path.read_bytes())
            flushed[key.split("/", 1)[0]] += rows  # counted written before it leaves the spool
            with self.lock:
                path.unlink()
                self.rows -= rows


@dataclass
class InferenceLogWriter:
    """Appends predictions (and refused uploads) to their logs from a background thread, off the
    request path.

    A write the store refuses (after the store's own retries) is kept in the local spool and
    written back once the store answers again; rows are lost only when the spool is full, and
    then with an error in the log and a count on /health and /metrics.
    """

    store: ObjectStore
    spool: LogSpool
    max_pending: int = 1000  # batches waiting in memory; more go straight to the spool
    max_flush_interval: float = 30.0
    pending: queue.Queue = field(init=False)
    written: Counter[str] = field(default_factory=Counter)  # rows per log prefix
    lost_rows: int = 0
    failing: bool = False
    last_error: str | None = None
    next_flush: float = 0.0
    flush_interval: float = 1.0

    def __post_init__(self) -> None:
        self.pending = queue.Queue(self.max_pending)

    def submit(self, rows: pd.DataFrame, prefix: str = LOG_PREFIX) -> None:
        if rows.empty:
            return
        try:
            self.pending.put_nowait((prefix, rows))
        except queue.Full:  # the store is slower than the requests: keep them locally
            self.keep(*log_object(rows, prefix=prefix), len(rows))

    def run(self, stop: threading.Event, max_wait_seconds: float = 1.0) -> None:
        """Write everything queued, batching what arrived together, until stopped and drained;
        flush the spool whenever the store may be back."""
        while not (stop.is_set() and self.pending.empty()):
            batch = []
            with contextlib.suppress(queue.Empty):  # nothing new: still flush the spool below
                batch.append(self.pending.get(timeout=max_wait_seconds))
            while not self.pending.empty():
                batch.append(self.pending.get_nowait())
            for prefix in dict.fromkeys(prefix for prefix, _ in batch):
                frames = [rows for p, rows in batch if p == prefix]
                try:
                    self.write(prefix, frames)
                except Exception:  # the writer must outlive any one bad batch
                    self.lost_rows += sum(len(rows) for rows in frames)
                    logger.exception("inference log: a %s batch could not be written", prefix)
            if self.spool.rows and time.monotonic() >= self.next_flush:
                self.flush()

    def write(self, prefix: str, frames: list[pd.DataFrame]) -> None:
        """One object for the batch; a write the store refuses (after its own retries: S3's
        back off over several attempts) goes to the spool."""
        rows = pd.concat(frames, ignore_index=True)
        key, data = log_object(rows, prefix=prefix)
        try:
            self.store.put(key, data)
        except Exception as exc:  # a failed write must not kill the writer
            self.report_failure(exc)
            self.keep(key, data, len(rows))
            return
        self.written[prefix] += len(rows)
        self.failing = False

    def keep(self, key: str, data: bytes, rows: int) -> None:
        """Spool one object; when the spool is full (or unwritable) the rows are lost, loudly."""
        if self.spool.add(key, data, rows):
            logger.warning("inference log: %d rows spooled locally (%s)", rows, self.last_error)
            return
        self.lost_rows += rows
        logger.error(
            "inference log: %d rows LOST: the store refuses writes (%s) and the local spool "
            "is full (limit %d rows) or cannot be written",
            rows,
            self.last_error,
            self.spool.max_rows,
        )

    def flush(self) -> None:
        before = self.written.total()
        try:
            self.spool.flush(self.store, self.written)
        except Exception as exc:
            self.report_failure(exc)
            self.flush_interval = min(self.flush_interval * 2, self.max_flush_interval)
            self.next_flush = time.monotonic() + self.flush_interval
            return
        self.failing, self.flush_interval = False, 1.0
        flushed = self.written.total() - before
        logger.info("inference log: %d spooled rows written to the store", flushed)

    def report_failure(self, exc: Exception) -> None:
        self.failing = True
        self.last_error = redact(f"{type(exc).__name__}: {exc}")

    def status(self) -> dict:
        """What /health and /metrics report about the log."""
        return {
            "status": "failing" if self.failing else "ok",
            "written_rows": dict(self.written),
            "spooled_rows": self.spool.rows,
            "lost_rows": self.lost_rows,
            "last_error": self.last_error,
        }
