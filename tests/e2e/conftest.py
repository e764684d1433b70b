"""One Prefect test server and one trained state directory, shared by every end-to-end test.

`trained` runs the training flow once on a tiny real subset (both models, the ResNet from the
shared ImageNet weights, open gates): version 1 of each model, champion. Tests that change the
registry assert relative to what they find, so they pass in any order. `ingested`: a state
directory of a test's own, the subset ingested, for `pneumo` processes (tests/e2e/cli.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import FAST_TRAINING, OPEN_GATES, SHARED_WEIGHTS, tiny_subset
from tests.e2e.cli import cli_env, pneumo

if TYPE_CHECKING:
    from pipeline.train.candidate import TrainingSummary

# The ResNet as users get it: ImageNet weights (the shared file), exact head, then conv5 fine-tuned.
PRETRAINED = {
    "PNEUMO_TRAIN__RESNET_WEIGHTS": str(SHARED_WEIGHTS),
    "PNEUMO_TRAIN__RESNET_FINETUNE_EPOCHS": "1",
    "PNEUMO_TRAIN__RESNET_UNFREEZE_BLOCKS": "3",
}


@dataclass(frozen=True)
class Trained:
    home: Path
    data: Path
    env: dict[str, str]
    summary: TrainingSummary


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def trained(tmp_path_factory, prefect_harness) -> Trained:
    from flows.training import training_pipeline

    tmp = tmp_path_factory.mktemp("trained")
    data = tiny_subset(tmp / "chest_xray")
    env = {**FAST_TRAINING, **PRETRAINED, **OPEN_GATES, "PNEUMO_HOME": str(tmp / "home")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        summary = training_pipeline(data_path=str(data))
    return Trained(tmp / "home", data, env, summary)


@pytest.fixture
def trained_env(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Trained:
    """The shared state directory, selected by this test's environment."""
    for key, value in trained.env.items():
        monkeypatch.setenv(key, value)
    return trained


@pytest.fixture(scope="module")
def registry(trained: Trained):
    from pipeline.adapters.registry import Registry
    from pipeline.settings import Settings

    return Registry.from_settings(Settings(home=trained.home))


def champion_of(registry, name: str) -> str:
    return str(registry.champion_version(name).version)


def latest_version(registry, name: str) -> int:
    return max(int(v.version) for v in registry.client.search_model_versions(f"name='{name}'"))


@pytest.fixture
def ingested(tmp_path: Path) -> dict[str, str]:
    """A fresh state directory holding the tiny real subset's manifest."""
    env = cli_env(tmp_path / "home")
    data = tiny_subset(tmp_path / "chest_xray")
    code, out = pneumo(["ingest", str(data)], env, tmp_path / "ingest.log")
    assert code == 0, out[-3000:]
    return env
