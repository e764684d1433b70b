"""`pneumo serve --shadow` as its own process under concurrent load: each accepted request
answered by the champion alone, and scored again by the challenger off the response path (a
`challenger` row in the inference log) or counted as dropped."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from flows.ui import free_port, is_up
from tests import processes
from tests.conftest import REPO, SAMPLE
from tests.e2e.conftest import Trained
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
NAME = "pneumonia-resnet"
IMAGES = (
    sorted((SAMPLE / "test" / "PNEUMONIA").iterdir())[:3]
    + sorted((SAMPLE / "test" / "NORMAL").iterdir())[:3]
)


def cli_env(trained: Trained) -> dict[str, str]:
    """This process's environment without its Pneumo, MLflow and Prefect server settings, then
    the trained state's."""
    prefixes = ("PNEUMO_", "MLFLOW_", "PREFECT_API")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    return env | trained.env | {"PYTHONPATH": str(REPO)}


@pytest.fixture
def challenger(trained: Trained, registry) -> Iterator[str]:
    """A second version (a registry copy of the champion's run) as `challenger`; afterwards
    the alias is put back and the copy removed, for the tests after this one."""
    champion = registry.champion_version(NAME)
    before = registry.alias_version(NAME, "challenger")
    copy = registry.client.create_model_version(
        NAME, champion.source, champion.run_id, champion.tags
    )
    registry.client.set_registered_model_alias(NAME, "challenger", copy.version)
    try:
        yield str(copy.version)
    finally:
        if before is not None:
            registry.client.set_registered_model_alias(NAME, "challenger", before.version)
        registry.client.delete_model_version(NAME, copy.version)


@pytest.fixture
def shadow_url(trained: Trained, challenger: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = cli_env(trained)
    command = [sys.executable, "-m", "flows.cli", "serve", "--shadow", "--port", str(port)]
    log = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with processes.running("pneumo serve --shadow", command, env=env, cwd=REPO, log=log) as proc:

        def challenger_loaded() -> bool:
            if proc.poll() is not None or not is_up(f"{url}/health"):
                return proc.poll() is not None
            return httpx.get(f"{url}/health").json()["shadow"]["challenger_version"] == challenger

        wait_until(challenger_loaded, bool, timeout=180, what="champion and challenger to load")
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        yield url


def post(url: str, path: Path) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes(), "image/jpeg")}
    return httpx.post(f"{url}/predict", files=files, timeout=120)


def test_every_accepted_request_gets_a_challenger_row_or_a_counted_drop(
    trained: Trained, registry, challenger: str, shadow_url: str, tmp_path: Path
) -> None:
    from pipeline.adapters.backends import open_store
    from pipeline.predict.inference_log import read_inference_log
    from pipeline.settings import Settings

    started = pd.Timestamp(datetime.now(UTC))
    champion = str(registry.champion_version(NAME).version)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda p: post(shadow_url, p), IMAGES * 4))
    assert [r.status_code for r in replies] == [200] * len(replies)
    bodies = [r.json()["predictions"][0] for r in replies]
    # The caller sees the champion only.
    assert {(b["version"], b["alias"]) for b in bodies} == {(champion, "champion")}

    def accounted() -> dict:
        shadow = httpx.get(f"{shadow_url}/health").json()["shadow"]
        return shadow | {
            "total": shadow["scored_requests"] + sum(shadow["dropped_requests"].values())
        }

    shadow = wait_until(
        accounted, lambda s: s["total"] == len(replies), timeout=120, what="the shadow's work"
    )
    store = open_store(Settings(**{"home": trained.home}))

    def logged() -> pd.DataFrame:
        rows = read_inference_log(store)
        return rows[rows["timestamp"] >= started] if not rows.empty else rows

    # The queue (64) holds every request of this load: none may be dropped.
    assert shadow["scored_requests"] == len(replies) and shadow["dropped_requests"] == {}
    rows = wait_until(
        logged, lambda r: len(r) == 2 * len(replies), timeout=60, what="the logged rows"
    )
    # One row per request and alias, one version per alias: never mixed within a row.
    assert rows.groupby("alias").size().to_dict() == {
        "champion": len(replies),
        "challenger": len(replies),
    }
    assert rows.groupby("alias")["model_version"].agg(set).to_dict() == {
        "champion": {champion},
        "challenger": {challenger},
    }
    # The copy has the champion's weights: each film scores the same under both.
    scores = rows.groupby(["sha256", "alias"])["probability"].mean().unstack()
    assert len(scores) == len(IMAGES)
    assert (scores["champion"] - scores["challenger"]).abs().max() < 1e-4
    metrics = httpx.get(f"{shadow_url}/metrics").text
    assert "pneumo_shadow_enabled 1.0" in metrics
    assert f"pneumo_shadow_challenger_version {float(challenger)}" in metrics
    assert f"pneumo_shadow_scored_requests_total {float(len(replies))}" in metrics

    # `pneumo compare` on that traffic: the copy agrees everywhere; without labels it cannot
    # recommend, so a promotion that requires shadow evidence is refused.
    env = cli_env(trained)
    code, out = processes.run_pneumo(["compare"], env=env, cwd=REPO, log=tmp_path / "cmp.log")
    assert code == 0, out[-3000:]
    assert f"challenger v{challenger} against champion v{champion}: {len(IMAGES)} films" in out
    assert "agreement 1.000 (0 films labelled differently)" in out
    assert "recommendation: not enough evidence" in out
    strict = env | {"PNEUMO_PROMOTION__REQUIRE_SHADOW_EVIDENCE": "true"}
    code, out = processes.run_pneumo(
        ["promote", NAME, challenger, "--reason", "shadow test"],
        env=strict,
        cwd=REPO,
        log=tmp_path / "promote.log",
    )
    assert code == 1 and "says not enough evidence" in out, out[-3000:]
    assert str(registry.champion_version(NAME).version) == champion
