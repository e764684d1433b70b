"""The service's background work: swapping in a new champion, writing the inference logs.

Both run in threads beside the request handlers, so neither a registry look-up nor a store write
is ever on a request's path.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from pipeline.adapters.storage import ObjectStore
from pipeline.monitor.champion import Champion
from pipeline.monitor.inference_log import LOG_PREFIX, append_inference_log


@dataclass
class ChampionHolder:
    """The serving champion; `refresh` swaps in a new version in one assignment.

    A request reads `current` once and uses that object throughout, so it is served wholly by
    one version even if a swap happens meanwhile.
    """

    load: Callable[[], Champion]
    resolve_version: Callable[[], str | None]
    current: Champion | None = None
    last_error: str | None = None

    def refresh(self) -> bool:
        """Load the champion if the alias points elsewhere; True when a new version came in."""
        try:
            version = self.resolve_version()
            if version is None or (self.current is not None and self.current.version == version):
                return False
            self.current = self.load()
            self.last_error = None
            return True
        except Exception as exc:  # keep serving the old version; report on /health
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False

    def poll(self, interval_seconds: float, stop: threading.Event) -> None:
        while not stop.wait(interval_seconds):
            self.refresh()


@dataclass
class InferenceLogWriter:
    """Appends predictions (and refused uploads) to their logs from a background thread, off the
    request path."""

    store: ObjectStore
    pending: queue.Queue = field(default_factory=queue.Queue)
    written: Counter[str] = field(default_factory=Counter)  # rows per log prefix
    errors: list[str] = field(default_factory=list)

    def submit(self, rows: pd.DataFrame, prefix: str = LOG_PREFIX) -> None:
        if not rows.empty:
            self.pending.put((prefix, rows))

    def run(self, stop: threading.Event, max_wait_seconds: float = 1.0) -> None:
        """Write everything queued, batching what arrived together, until stopped and drained."""
        while not (stop.is_set() and self.pending.empty()):
            try:
                batch = [self.pending.get(timeout=max_wait_seconds)]
            except queue.Empty:
                continue
            while not self.pending.empty():
                batch.append(self.pending.get_nowait())
            for prefix in dict.fromkeys(prefix for prefix, _ in batch):
                frames = [rows for p, rows in batch if p == prefix]
                self.write(prefix, frames)

    def write(self, prefix: str, frames: list[pd.DataFrame]) -> None:
        try:
            append_inference_log(self.store, pd.concat(frames, ignore_index=True), prefix=prefix)
            self.written[prefix] += sum(len(rows) for rows in frames)
        except Exception as exc:  # a failed write must not kill the writer
            self.errors.append(f"{type(exc).__name__}: {exc}")
