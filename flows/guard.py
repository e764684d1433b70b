"""The guard every mover of `champion` holds: training, retraining, promote, rollback, doctor.

On one machine, the `flock` of `pipeline.locks` is enough: every CLI command and flow run of a
PNEUMO_HOME sees the same file. Flow runs on workers elsewhere (another container, a Kubernetes
pod) do not, so where a Prefect server is configured (PREFECT_API_URL) the guard also holds the
global concurrency limit `pneumo-champion` (one slot) on that server. Its slot is leased: a
holder killed with SIGKILL frees it when the lease runs out instead of blocking for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from pipeline.locks import LockTimeoutError, champion_lock
from pipeline.settings import Settings

CHAMPION_LIMIT = "pneumo-champion"
LEASE_SECONDS = 300  # renewed while held; how long a killed holder blocks the others


class _AcquisitionTimeoutNoise(logging.Filter):
    """Prefect's slot service logs a timed-out acquisition as an error of its own, on another
    thread; the guard reports the same timeout as one clear `LockTimeoutError`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to process item" not in record.getMessage()


def _drop_acquisition_noise() -> None:
    logger = logging.getLogger("prefect._internal.concurrency")
    if not any(isinstance(f, _AcquisitionTimeoutNoise) for f in logger.filters):
        logger.addFilter(_AcquisitionTimeoutNoise())


def shared_prefect_api() -> str | None:
    """The configured Prefect API URL; None for the temporary server of the embedded default."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def ensure_champion_limit() -> None:
    """Create the one-slot limit if the server lacks it (two creators at once: one wins)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(CHAMPION_LIMIT)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=CHAMPION_LIMIT, limit=1)
                )


@contextmanager
def champion_guard(settings: Settings, purpose: str) -> Iterator[None]:
    """Hold this host's champion lock and, with a shared Prefect server, its champion limit.

    Always the lock first, then the limit: two holders can never wait on each other crosswise.
    """
    with ExitStack() as held:
        held.enter_context(champion_lock(settings, purpose))
        api = shared_prefect_api()
        if api is not None:
            from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError
            from prefect.concurrency.sync import concurrency

            ensure_champion_limit()
            _drop_acquisition_noise()
            slot = concurrency(
                CHAMPION_LIMIT,
                occupy=1,
                timeout_seconds=settings.lock_timeout_s,
                lease_duration=LEASE_SECONDS,
                strict=True,
            )
            try:
                held.enter_context(slot)
            except AcquireConcurrencySlotTimeoutError:
                raise LockTimeoutError(
                    f"the concurrency limit {CHAMPION_LIMIT!r} on {api} is held by another "
                    f"run; waited {settings.lock_timeout_s:.0f} s to {purpose}"
                ) from None
        yield
