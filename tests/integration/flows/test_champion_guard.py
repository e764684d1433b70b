"""The champion guard across machines: with a shared Prefect server, a mover of `champion` in
another state directory (another host's PNEUMO_HOME, so another lock file) waits for the
server's `pneumo-champion` concurrency limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.settings import Settings
from tests import processes
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_a_promote_elsewhere_waits_for_the_shared_champion_limit(
    prefect_api: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.guard import CHAMPION_LIMIT, champion_guard

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PNEUMO_", "MLFLOW_", "PREFECT_"))
    }
    env |= {
        "PNEUMO_HOME": str(tmp_path / "other-host"),
        "PNEUMO_LOCK_TIMEOUT_S": "3",
        "PREFECT_API_URL": prefect_api,
        "PYTHONPATH": str(REPO),
    }
    promote = ["promote", "pneumonia-cnn", "1", "--reason", "guard test"]

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        with champion_guard(Settings(home=tmp_path / "this-host"), "hold it in the test"):
            with get_client(sync_client=True) as client:
                limit = client.read_global_concurrency_limit_by_name(CHAMPION_LIMIT)
            assert (limit.limit, limit.active_slots) == (1, 1)
            code, out = processes.run_pneumo(promote, env=env, cwd=REPO, log=tmp_path / "a.log")
            assert code != 0
            assert f"the concurrency limit '{CHAMPION_LIMIT}' on {prefect_api}" in out, out
            assert "waited 3 s to promote" in out, out
            assert "failed to process item" not in out, out  # one clear line, no service noise
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(CHAMPION_LIMIT).active_slots == 0

    # Released: the same command gets past the guard, to the registry's own answer.
    code, out = processes.run_pneumo(promote, env=env, cwd=REPO, log=tmp_path / "b.log")
    assert code != 0 and "concurrency limit" not in out, out
    assert "error: no registered model 'pneumonia-cnn'" in out, out
