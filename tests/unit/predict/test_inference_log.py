"""The append-only inference log and its windows."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from pipeline.adapters.storage import LocalStore
from pipeline.monitor.steps import refused_in_window
from pipeline.predict.inference_log import (
    REJECTED_PREFIX,
    append_inference_log,
    read_inference_log,
)


def test_inference_log_is_append_only_and_windowed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    for day, version in ((0, "1"), (5, "1"), (6, "2")):
        when = now + timedelta(days=day)
        batch = pd.DataFrame(
            {
                "image": [f"a{day}", f"b{day}"],
                "model_version": version,
                "timestamp": pd.Timestamp(when),
            }
        )
        append_inference_log(store, batch, when)
    later = now + timedelta(days=6)
    assert len(store.list("inference-log/")) == 3
    assert len(read_inference_log(store, now=later)) == 6
    assert list(read_inference_log(store, model_version="1", now=later)["image"]) == [
        "a0",
        "b0",
        "a5",
        "b5",
    ]
    assert list(read_inference_log(store, days=2, now=later)["image"]) == ["a5", "b5", "a6", "b6"]
    assert list(read_inference_log(store, last_n=1, now=later)["image"]) == ["b6"]


def test_refusals_have_their_own_log_and_are_counted_over_the_checked_period(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)

    def rows(names: list[str], when: datetime) -> pd.DataFrame:
        return pd.DataFrame({"image": names, "model_version": "1", "timestamp": pd.Timestamp(when)})

    append_inference_log(store, rows(["old.png"], start), start, prefix=REJECTED_PREFIX)
    later = start + timedelta(hours=2)
    append_inference_log(store, rows(["scored.jpeg"], later), later)
    append_inference_log(store, rows(["new.png"], later), later, prefix=REJECTED_PREFIX)
    scored = read_inference_log(store, now=later)
    assert list(scored["image"]) == ["scored.jpeg"]  # refusals never mix into the predictions
    window = refused_in_window(store, "1", scored, None, later)
    assert list(window["image"]) == ["new.png"]  # refused before the oldest checked row: out
    # Nothing scored (every film refused): every refusal counts.
    assert len(refused_in_window(store, "1", scored.iloc[:0], None, later)) == 2
