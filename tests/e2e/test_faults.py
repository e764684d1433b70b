"""Fault injection: `pneumo train` killed with SIGKILL at each step boundary of training and
registration, each next run cleaning up after the one before. Real processes, real kills
(signals and races: test_races_and_signals.py).

`PNEUMO_PAUSE_AT=<step>` makes the CLI stop at that step (see `pipeline.faults`); the test then
kills the CLI process alone, as the kernel's OOM killer or `kill -9` would, leaving its children.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.cli import pneumo, registry_of, start_paused, wait_for_group_to_end

pytestmark = pytest.mark.slow
# Every step boundary of `pneumo train`, in the order one run passes them. A checkpoint pauses
# at its first occurrence: the CNN's, except `reference-profile`, which only the ResNet has.
TRAINING_STEPS = (
    "recover:done",
    "validate:done",
    "prepare-data:done",
    "train:done",
    "evaluate:done",
    "rescore-champion:done",
    "gate:done",
)
REGISTRATION_STEPS = (
    "register:run-created",
    "register:run-logged",
    "register:version-created",
    "register:before-champion",
)
AFTER_CHAMPION_STEPS = ("register:done", "reference-profile:done")
RUN_LEFT_AT = ("register:run-created", "register:run-logged")  # a killed run stays RUNNING
MODELS = ("pneumonia-cnn", "pneumonia-resnet")


def versions(registry) -> list:
    return [
        v
        for model in registry.client.search_registered_models()
        for v in registry.client.search_model_versions(f"name='{model.name}'")
    ]


def orphaned_runs(registry) -> list[str]:
    """MLflow runs left RUNNING by a process that no longer exists."""
    from pipeline.processes import OWNER_PID, pid_alive

    experiment = registry.client.get_experiment_by_name(registry.experiment)
    if experiment is None:
        return []
    runs = registry.client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    return [r.info.run_id for r in runs if not pid_alive(int(r.data.tags[OWNER_PID]))]


def assert_nothing_usable_is_incomplete(registry, champion_expected: bool) -> None:
    for version in versions(registry):
        assert registry.missing_parts(version) == [], (version.name, version.version)
    # `champion` moves last: only a kill after the CNN's registration ended finds one.
    assert (registry.champion_version("pneumonia-cnn") is not None) == champion_expected


# 15 CLI runs in a row (13 killed, doctor, a full rerun): 460 s on 2 cores beside the suite's
# other worker, so the suite's 900 s per-test limit would leave too little room on a busier
# machine.
@pytest.mark.timeout(1800)
def test_kills_at_each_step_boundary_leave_nothing_usable_incomplete_and_a_rerun_succeeds(
    ingested: dict[str, str], tmp_path: Path
) -> None:
    """Each run is killed at the next boundary; each run is also the next start of the one
    before it, so it must first end what that one left (server, flow run, MLflow run)."""
    registry = registry_of(ingested)
    steps = TRAINING_STEPS + REGISTRATION_STEPS + AFTER_CHAMPION_STEPS
    killed = None
    for step in steps:
        label = step.replace(":", "-")
        process = start_paused(step, ingested, tmp_path, label)
        if killed is not None:
            out = (tmp_path / f"{label}.log").read_text(errors="replace")
            assert "stopped the temporary Prefect server (pid" in out, (step, out[-3000:])
            assert "marked 1 flow runs of killed pneumo processes as crashed" in out, out[-3000:]
            assert orphaned_runs(registry) == [], f"left by the run killed at {killed[0]}"
            wait_for_group_to_end(killed[1], f"the server of the run killed at {killed[0]}")
        os.kill(process.pid, signal.SIGKILL)  # the CLI only: its temporary server is orphaned
        process.wait(timeout=30)
        assert_nothing_usable_is_incomplete(registry, step in AFTER_CHAMPION_STEPS)
        assert len(orphaned_runs(registry)) == int(step in RUN_LEFT_AT), step
        killed = (step, process.pid)

    code, out = pneumo(["doctor"], ingested, tmp_path / "doctor.log")
    assert code == 0, out[-3000:]
    assert "stopped the temporary Prefect server" in out, out[-3000:]
    assert (
        "0 incomplete versions marked; 0 MLflow runs and 1 flow runs of killed processes "
        "marked failed/crashed"
    ) in out, out[-3000:]
    wait_for_group_to_end(killed[1], "the server of the last killed command")

    code, out = pneumo(["train"], ingested, tmp_path / "rerun.log")
    assert code == 0, out[-3000:]
    assert orphaned_runs(registry) == []
    for name in MODELS:
        champion = registry.champion_version(name)
        assert champion is not None and registry.missing_parts(champion) == []
    assert_nothing_usable_is_incomplete(registry, champion_expected=True)
