"""Applying a reviewer's decision to a real (local) registry: tags, card, champion move."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.adapters.registry import Registry
from pipeline.settings import Settings, TrainConfig
from pipeline.train.approval import APPROVED, ApprovalDecision, apply_decision, waiting_flow_run
from pipeline.train.candidate import Registration
from pipeline.train.card import write_card
from pipeline.train.models import build_cnn
from tests.unit.adapters.test_registry import candidate
from tests.unit.train.test_card import card

pytestmark = pytest.mark.slow  # saves Keras models: a few seconds
MODEL = "pneumonia-cnn"


@pytest.fixture
def registry_with_versions(tmp_path: Path) -> tuple[Registry, list[Registration]]:
    """Three versions with model cards; version 1 is champion."""
    registry = Registry.from_settings(Settings(home=tmp_path / "home"))
    model = build_cnn(TrainConfig(image_size=32))
    registrations = []
    for index in range(3):
        run_id, version = registry.log_candidate(candidate(tmp_path / f"eval{index}"), model)
        folder = tmp_path / f"card{index}"
        for path in write_card(card(model=MODEL, version=version), {}, folder):
            registry.log_run_artifact(run_id, path, "model_card")
        registrations.append(Registration(MODEL, version, run_id, False, pending_approval=True))
    registry.move_champion(MODEL, "1", "first")
    return registry, registrations


def decided(registry: Registry, registered: Registration) -> dict:
    return json.loads(registry.read_run_file(registered.run_id, "model_card/model_card.json"))


def test_an_approval_moves_the_champion_and_is_recorded(registry_with_versions) -> None:
    registry, (_, second, _) = registry_with_versions
    answer = ApprovalDecision(APPROVED, "Dr. Ana", "reviewed the card")
    outcome = apply_decision(registry, second, answer, champion_at_gate="1")
    assert outcome.champion and outcome.approval == "approved by Dr. Ana"
    assert str(registry.champion_version(MODEL).version) == "2"
    tags = registry.version(MODEL, "2").tags
    assert tags["approval_status"] == "approved" and tags["approval_at"]
    assert decided(registry, second)["approval"]["by"] == "Dr. Ana"
    # A retried call (the task's retry) finds the move done and changes nothing.
    assert apply_decision(registry, second, answer, champion_at_gate="1").champion


def test_an_approval_after_the_champion_moved_is_not_applied(registry_with_versions) -> None:
    registry, (_, second, third) = registry_with_versions
    registry.move_champion(MODEL, third.version, "moved while the reviewer read")
    outcome = apply_decision(registry, second, ApprovalDecision(APPROVED, "bo", "ok"), "1")
    assert not outcome.champion and str(registry.champion_version(MODEL).version) == "3"
    tags = registry.version(MODEL, "2").tags
    assert tags["approval_status"] == "rejected"
    assert "champion moved from v1 to v3" in tags["approval_reason"]


def test_an_approval_without_required_shadow_evidence_leaves_the_champion(
    registry_with_versions,
) -> None:
    registry, (_, second, _) = registry_with_versions
    answer = ApprovalDecision(APPROVED, "Dr. Ana", "card is fine")
    missing = "no shadow comparison has run: serve with --shadow, then `pneumo compare`"
    outcome = apply_decision(registry, second, answer, "1", missing_evidence=missing)
    assert not outcome.champion and str(registry.champion_version(MODEL).version) == "1"
    assert outcome.approval == f"approved by Dr. Ana; champion not moved: {missing}"
    tags = registry.version(MODEL, "2").tags
    assert tags["approval_status"] == "approved"
    assert tags["approval_reason"] == f"card is fine (champion not moved: {missing})"


def test_a_decision_goes_only_to_a_version_still_waiting_for_one() -> None:
    assert waiting_flow_run("m", "3", {"prefect_flow_run_id": "run-1"}) == "run-1"
    with pytest.raises(ValueError, match="m v3 was already decided: rejected"):
        waiting_flow_run("m", "3", {"prefect_flow_run_id": "run-1", "approval_status": "rejected"})
    with pytest.raises(ValueError, match="m v3 records no flow run"):
        waiting_flow_run("m", "3", {})
