"""Human approval against a real Prefect server: the flow pauses with a form, and a decision
sent through the API (as the UI's form does) or from the shell moves, or keeps, the champion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipeline.adapters.registry import Registry
from pipeline.settings import Settings
from tests import processes
from tests.conftest import FAST_TRAINING, OPEN_GATES, tiny_subset
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CNN, RESNET = "pneumonia-cnn", "pneumonia-resnet"
FLOWS = {
    # Training one model: approval works the same for both, and the CNN trains fast.
    "train-cnn": "from flows.training import training_pipeline; "
    "training_pipeline(data_path=sys.argv[1], models=('cnn',))",
    "train-resnet": "from flows.training import training_pipeline; "
    "training_pipeline(data_path=sys.argv[1], models=('resnet',))",
    # Retraining fine-tunes the ResNet champion, as a drift event or the schedule starts it.
    "retrain": "from flows.monitoring import retrain_champion; retrain_champion(reason='test')",
}


@dataclass(frozen=True)
class World:
    root: Path
    data: Path
    env: dict[str, str]
    api: str

    @property
    def registry(self) -> Registry:
        return Registry.from_settings(Settings(home=self.root / "home"))


@pytest.fixture(scope="module")
def world(prefect_api: str, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("approval")
    env = {
        **os.environ, **FAST_TRAINING, **OPEN_GATES,
        "PNEUMO_HOME": str(root / "home"),
        "PREFECT_API_URL": prefect_api,
        "PNEUMO_APPROVAL": "required",
        "PNEUMO_SHIFT_CHECK_IMAGES": "4",
        # An untrained ResNet head is enough to have a champion to retrain.
        "PNEUMO_TRAIN__RESNET_SCRATCH_EPOCHS": "0",
    }  # fmt: skip
    world = World(root, tiny_subset(root / "chest_xray"), env, prefect_api)
    # The ResNet champion that retraining starts from (no approval asked for it).
    with flow_process(world, "first-resnet", "train-resnet", PNEUMO_APPROVAL="auto") as first:
        finish(first, world, "first-resnet")
    return world


def flow_process(
    world: World, name: str, flow: str, **extra: str
) -> AbstractContextManager[subprocess.Popen]:
    """One of `FLOWS` in its own process, always ended with the block."""
    log = world.root / f"{name}.log"
    command = [sys.executable, "-c", f"import sys; {FLOWS[flow]}", str(world.data)]
    return processes.running(name, command, env={**world.env, **extra}, cwd=world.root, log=log)


def paused_run(world: World, process: subprocess.Popen, name: str) -> dict:
    """The flow run this process paused for approval, once its form is saved (fails fast if the
    process ends first)."""

    def probe() -> dict | None:
        runs = httpx.post(
            f"{world.api}/flow_runs/filter",
            json={"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}},
        ).json()
        if not runs:
            return None
        # The state turns PAUSED first; the form's description is saved right after.
        keyset = runs[0]["state"]["state_details"]["run_input_keyset"]
        saved = httpx.get(f"{world.api}/flow_runs/{runs[0]['id']}/input/{keyset['description']}")
        return {**runs[0], "description": saved.json()} if saved.status_code == 200 else None

    wait_until(
        lambda: (probe(), process.poll()),
        lambda seen: seen[0] is not None or seen[1] is not None,
        timeout=600,
        what=f"{name} to pause for approval",
        interval=1,
        describe=lambda seen: (world.root / f"{name}.log").read_text()[-2000:],
    )
    run = probe()
    assert run is not None, (world.root / f"{name}.log").read_text()[-3000:]
    return run


def version_of(world: World, model: str, flow_run_id: str) -> str:
    versions = world.registry.client.search_model_versions(f"name='{model}'")
    return next(
        str(v.version) for v in versions if v.tags.get("prefect_flow_run_id") == flow_run_id
    )


def champion(world: World, model: str) -> str | None:
    found = world.registry.champion_version(model)
    return str(found.version) if found is not None else None


def finish(process: subprocess.Popen, world: World, name: str) -> None:
    code = process.wait(timeout=300)
    assert code == 0, (world.root / f"{name}.log").read_text()[-3000:]


def test_a_retraining_run_waits_and_approving_through_the_api_moves_the_champion(
    world: World,
) -> None:
    before = champion(world, RESNET)
    with flow_process(world, "approve", "retrain") as process:
        run = paused_run(world, process, "approve")
        version = version_of(world, RESNET, run["id"])
        assert champion(world, RESNET) == before  # waiting: not champion yet
        assert world.registry.version(RESNET, version).aliases == ["challenger"]
        # The form the UI shows: its description has the card link and the comparison.
        description = run["description"]
        assert f"pneumo card {RESNET} {version}" in description
        assert f"challenger v{version}" in description and f"champion v{before}" in description
        assert "model_card.html" in description
        answer = {"decision": "approve", "reviewer": "Dr. Ana Lima", "reason": "card reviewed"}
        url = f"{world.api}/flow_runs/{run['id']}/resume"
        response = httpx.post(url, json={"run_input": answer})
        assert response.status_code == 201 and response.json()["status"] == "ACCEPT", response.text
        finish(process, world, "approve")

    assert champion(world, RESNET) == version
    tags = world.registry.version(RESNET, version).tags
    assert tags["approval_status"] == "approved" and tags["approval_by"] == "Dr. Ana Lima"
    assert tags["approval_reason"] == "card reviewed" and tags["approval_at"]
    assert tags["retrain_reason"] == "test"
    history = world.registry.champion_history(RESNET)[-1]
    assert "approved by Dr. Ana Lima" in history["champion_reason"]
    run_id = world.registry.version(RESNET, version).run_id
    card = json.loads(world.registry.read_run_file(run_id, "model_card/model_card.json"))
    assert card["approval"]["status"] == "approved" and card["approval"]["by"] == "Dr. Ana Lima"
    page = world.registry.read_run_file(run_id, "model_card/model_card.html").decode()
    assert "approved</b> by Dr. Ana Lima" in page


def test_rejecting_from_the_shell_keeps_the_champion(world: World) -> None:
    before = champion(world, CNN)
    with flow_process(world, "reject", "train-cnn") as process:
        run = paused_run(world, process, "reject")
        version = version_of(world, CNN, run["id"])
        args = ["reject", CNN, version, "--reason", "worse on viral cases", "--by", "bo"]
        log = world.root / "cli.log"
        code, out = processes.run_pneumo(args, env=world.env, cwd=world.root, log=log)
        assert code == 0, out
        finish(process, world, "reject")
    assert champion(world, CNN) == before
    tags = world.registry.version(CNN, version).tags
    assert (tags["approval_status"], tags["approval_by"]) == ("rejected", "bo")
    assert tags["approval_reason"] == "worse on viral cases"
    # A decided version takes no second decision.
    code, out = processes.run_pneumo(
        ["approve", CNN, version, "--reason", "changed my mind"],
        env=world.env, cwd=world.root, log=world.root / "cli.log",
    )  # fmt: skip
    assert code != 0 and "already decided: rejected" in out


def test_nobody_deciding_in_time_rejects(world: World) -> None:
    before = champion(world, CNN)
    with flow_process(world, "timeout", "train-cnn", PNEUMO_APPROVAL_TIMEOUT_SECONDS="3") as run:
        finish(run, world, "timeout")
    assert champion(world, CNN) == before
    versions = world.registry.client.search_model_versions(f"name='{CNN}'")
    last = max(versions, key=lambda v: int(v.version))
    assert last.tags["approval_status"] == "timed out" and last.tags["approval_by"] == "nobody"
