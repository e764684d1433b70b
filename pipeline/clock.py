"""The one timestamp format of records people read (cards, approvals, site acceptance)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """Now in UTC to the second, with a Z: sortable, and the same on every machine."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
