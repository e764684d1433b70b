"""The challenger in shadow: every accepted request scored again by `challenger`, off the
response path.

A request hands its checked images to `ShadowScorer.submit` after its own answer is ready; one
background thread scores them with the challenger and logs the rows beside the champion's
(alias `challenger`). The caller never waits and never sees a shadow failure. The champion has
priority: shadow work starts only while no champion request is in flight (`Traffic`), so on a
busy service the bounded queue fills and further shadow work is dropped and counted, instead of
slowing the answers users wait for.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from pipeline.predict.scoring import predict_batch
from pipeline.redact import redact
from pipeline.serve.background import ChampionHolder, InferenceLogWriter

logger = logging.getLogger(__name__)

# Why a request got no challenger row (counted on /health and /metrics).
QUEUE_FULL = "queue full"
NO_CHALLENGER = "no challenger loaded"
SAME_VERSION = "challenger is the champion"
FAILED = "scoring failed"


@dataclass
class Traffic:
    """Champion requests in flight; the shadow waits for none before each model call."""

    in_flight: int = 0
    condition: threading.Condition = field(default_factory=threading.Condition)

    def __enter__(self) -> Traffic:
        with self.condition:
            self.in_flight += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        with self.condition:
            self.in_flight -= 1
            self.condition.notify_all()

    def wait_idle(self, stop: threading.Event, poll_seconds: float = 0.5) -> bool:
        """Block until no champion request is in flight (True) or `stop` is set (False)."""
        with self.condition:
            while self.in_flight and not stop.is_set():
                self.condition.wait(poll_seconds)
            return not stop.is_set()


@dataclass
class ShadowScorer:
    """Scores accepted requests with the challenger in one background thread.

    `submit` never blocks and never raises: a request that cannot be shadowed (queue full, no
    challenger, the challenger is the champion) is counted under its reason in `dropped`.
    """

    challenger: ChampionHolder
    log: InferenceLogWriter
    traffic: Traffic
    max_pending: int = 64
    max_pixels: int = 50_000_000
    model_lock: AbstractContextManager = field(default_factory=threading.Lock)
    pending: queue.Queue = field(init=False)
    scored: int = 0  # requests (not images) scored by the challenger
    dropped: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None

    def __post_init__(self) -> None:
        self.pending = queue.Queue(self.max_pending)

    def submit(self, items: list[tuple[str, bytes]], champion_version: str) -> None:
        challenger = self.challenger.current
        if challenger is None:
            self.dropped[NO_CHALLENGER] += 1
        elif challenger.version == champion_version:
            self.dropped[SAME_VERSION] += 1
        else:
            try:
                self.pending.put_nowait(items)
            except queue.Full:
                self.dropped[QUEUE_FULL] += 1

    def run(self, stop: threading.Event, max_wait_seconds: float = 1.0) -> None:
        """Score queued requests, each when the champion is idle, until `stop` is set."""
        while not stop.is_set():
            try:
                items = self.pending.get(timeout=max_wait_seconds)
            except queue.Empty:
                continue
            if not self.traffic.wait_idle(stop):
                return
            self.score(items)

    def score(self, items: list[tuple[str, bytes]]) -> None:
        """One request's images by the challenger loaded now, logged as its rows."""
        challenger = self.challenger.current
        if challenger is None:  # unloaded since it was queued
            self.dropped[NO_CHALLENGER] += 1
            return
        try:
            rows, _ = predict_batch(challenger, items, self.max_pixels, model_lock=self.model_lock)
        except Exception as exc:  # the shadow must outlive any one bad batch
            self.dropped[FAILED] += 1
            self.last_error = redact(f"{type(exc).__name__}: {exc}")
            logger.exception("shadow: the challenger could not score a request")
            return
        self.log.submit(rows)
        self.scored += 1

    def status(self) -> dict:
        """What /health and /metrics report about the shadow."""
        challenger = self.challenger.current
        return {
            "challenger_version": challenger.version if challenger is not None else None,
            "scored_requests": self.scored,
            "dropped_requests": dict(self.dropped),
            "queued_requests": self.pending.qsize(),
            "last_error": self.last_error,
        }
