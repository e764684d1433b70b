"""The challenger in shadow: queued off the response path, scored only while the champion is
idle, every request either scored (a `challenger` row beside the champion's) or counted as
dropped with its reason."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.adapters.storage import LocalStore
from pipeline.predict.champion import Champion
from pipeline.predict.drift_features import fit_projection
from pipeline.predict.inference_log import read_inference_log
from pipeline.serve.background import ChampionHolder, InferenceLogWriter, LogSpool
from pipeline.serve.shadow import NO_CHALLENGER, QUEUE_FULL, SAME_VERSION, ShadowScorer, Traffic
from pipeline.settings import TrainConfig
from pipeline.train.models import build_cnn
from tests.conftest import image_bytes
from tests.waiting import wait_until


def model_champion(version: str, prior: float, alias: str) -> Champion:
    model = build_cnn(TrainConfig(image_size=32), prior=prior)
    width = model.get_layer("pool").output.shape[-1]
    projection = fit_projection(np.random.default_rng(0).normal(size=(10, width)))
    return Champion(
        "pneumonia-resnet", version, "run", 0.5, model, projection, pd.DataFrame(), alias=alias
    )


@pytest.fixture(scope="module")
def challenger() -> Champion:
    return model_champion("4", prior=0.3, alias="challenger")


def holding(champion: Champion | None) -> ChampionHolder:
    return ChampionHolder(load=lambda: champion, resolve_revision=lambda: None, current=champion)


def scorer_on(tmp_path: Path, challenger: Champion | None, max_pending: int = 8):
    store = LocalStore(tmp_path / "store")
    writer = InferenceLogWriter(store, LogSpool(tmp_path / "spool", 1000))
    shadow = ShadowScorer(holding(challenger), writer, Traffic(), max_pending=max_pending)
    return store, writer, shadow


def test_a_request_is_scored_by_the_challenger_and_logged_under_its_alias(
    tmp_path: Path, challenger: Champion
) -> None:
    store, writer, shadow = scorer_on(tmp_path, challenger)
    shadow.submit([("a.jpeg", image_bytes((64, 48), seed=1))], champion_version="3")
    shadow.score(shadow.pending.get_nowait())
    writer.write("inference-log", [writer.pending.get_nowait()[1]])
    logged = read_inference_log(store)
    assert list(logged["alias"]) == ["challenger"] and list(logged["model_version"]) == ["4"]
    assert logged["probability"].iloc[0] == pytest.approx(0.3, abs=1e-4)
    assert shadow.status()["scored_requests"] == 1 and shadow.status()["dropped_requests"] == {}


def test_requests_that_cannot_be_shadowed_are_counted_by_reason(
    tmp_path: Path, challenger: Champion
) -> None:
    item = [("a.jpeg", image_bytes((64, 48)))]
    _, _, none_loaded = scorer_on(tmp_path / "none", None)
    none_loaded.submit(item, "3")
    _, _, same = scorer_on(tmp_path / "same", challenger)
    same.submit(item, champion_version="4")  # the challenger is the champion: nothing to compare
    _, _, full = scorer_on(tmp_path / "full", challenger, max_pending=2)
    for _ in range(5):
        full.submit(item, "3")  # never blocks the request, whatever the queue holds
    assert none_loaded.dropped == {NO_CHALLENGER: 1}
    assert same.dropped == {SAME_VERSION: 1}
    assert full.dropped == {QUEUE_FULL: 3} and full.pending.qsize() == 2


def test_the_shadow_waits_while_a_champion_request_is_in_flight(
    tmp_path: Path, challenger: Champion
) -> None:
    _, writer, shadow = scorer_on(tmp_path, challenger)
    item = [("a.jpeg", image_bytes((64, 48)))]
    stop = threading.Event()
    worker = threading.Thread(target=shadow.run, args=(stop, 0.05))
    with shadow.traffic:  # a champion request is being answered
        worker.start()
        shadow.submit(item, "3")
        wait_until(shadow.pending.qsize, lambda n: n == 0, timeout=10, what="the shadow to take it")
        stop.set()  # the service stops while the champion is still busy
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert shadow.scored == 0 and writer.pending.empty()  # it waited, and never scored

    stop = threading.Event()
    worker = threading.Thread(target=shadow.run, args=(stop, 0.05))
    worker.start()
    shadow.submit(item, "3")  # nothing in flight now: scored at once
    try:
        wait_until(lambda: shadow.scored, lambda n: n == 1, timeout=30, what="the shadow")
    finally:
        stop.set()
        worker.join(timeout=10)
    assert writer.pending.qsize() == 1
