"""Fault injection: `pneumo train` killed with SIGKILL at each step boundary of training and
registration, and commands that move `champion` started at the same instant. Real processes,
real kills.

`PNEUMO_PAUSE_AT=<step>` makes the CLI stop at that step (see `pipeline.faults`); the test then
kills the CLI process alone, as the kernel's OOM killer or `kill -9` would, leaving its children.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import processes
from tests.conftest import FAST_TRAINING, OPEN_GATES, REPO, tiny_subset
from tests.waiting import wait_until

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


def cli_env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PNEUMO_", "MLFLOW_", "PREFECT_API", "PREFECT_HOME"))
    }
    own = {
        # An untrained ResNet is registered all the same: registration is what is tested here.
        "PNEUMO_TRAIN__RESNET_SCRATCH_EPOCHS": "0",
        "PNEUMO_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "PYTHONPATH": str(REPO),
    }
    return env | FAST_TRAINING | OPEN_GATES | own


def pneumo(args: list[str], env: dict[str, str], log: Path) -> tuple[int, str]:
    return processes.run_pneumo(args, env=env, cwd=REPO, log=log)


@pytest.fixture
def ingested(tmp_path: Path) -> dict[str, str]:
    """A fresh state directory holding the tiny real subset's manifest."""
    env = cli_env(tmp_path / "home")
    data = tiny_subset(tmp_path / "chest_xray")
    code, out = pneumo(["ingest", str(data)], env, tmp_path / "ingest.log")
    assert code == 0, out[-3000:]
    return env


def registry_of(env: dict[str, str]):
    from pipeline.adapters.registry import Registry
    from pipeline.settings import Settings

    return Registry.from_settings(Settings(home=Path(env["PNEUMO_HOME"])))


def versions(registry) -> list:
    return [
        v
        for model in registry.client.search_registered_models()
        for v in registry.client.search_model_versions(f"name='{model.name}'")
    ]


def orphaned_runs(registry) -> list[str]:
    """MLflow runs left RUNNING by a process that no longer exists."""
    from pipeline.adapters.registry import OWNER_TAGS, pid_alive

    experiment = registry.client.get_experiment_by_name(registry.experiment)
    if experiment is None:
        return []
    runs = registry.client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    return [r.info.run_id for r in runs if not pid_alive(int(r.data.tags[OWNER_TAGS[1]]))]


def start_paused(step: str, env: dict[str, str], tmp: Path, label: str) -> subprocess.Popen:
    """Start `pneumo train` and return it once it pauses at `step` (it is still running)."""
    pause = tmp / f"{label}.paused"
    env = env | {"PNEUMO_PAUSE_AT": step, "PNEUMO_PAUSE_FILE": str(pause)}
    command = [sys.executable, "-m", "flows.cli", "train"]
    log = tmp / f"{label}.log"
    process = processes.start(f"pneumo train ({label})", command, env=env, cwd=REPO, log=log)
    wait_until(
        lambda: pause.is_file() or process.poll() is not None,
        bool,
        timeout=600,
        what=f"pneumo train to pause at {step}",
    )
    assert process.poll() is None, log.read_text(errors="replace")[-3000:]
    return process


def kill_at(step: str, env: dict[str, str], tmp: Path) -> int:
    """Start `pneumo train`, SIGKILL it when it pauses at `step`; returns its process group."""
    process = start_paused(step, env, tmp, "killed")
    os.kill(process.pid, signal.SIGKILL)  # the CLI only: its temporary server is orphaned
    process.wait(timeout=30)
    return process.pid


def wait_for_group_to_end(group: int, what: str) -> None:
    wait_until(lambda: processes.group_alive(group), lambda alive: not alive, timeout=30, what=what)


def assert_nothing_usable_is_incomplete(registry, champion_expected: bool) -> None:
    for version in versions(registry):
        assert registry.missing_parts(version) == [], (version.name, version.version)
    # `champion` moves last: only a kill after the CNN's registration ended finds one.
    assert (registry.champion_version("pneumonia-cnn") is not None) == champion_expected


# 15 CLI runs in a row (13 killed, doctor, a full rerun): about 760 s on 2 cores, so the suite's
# 900 s per-test limit would leave too little room on a busier machine.
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


def test_sigterm_stops_the_command_and_its_temporary_server(
    ingested: dict[str, str], tmp_path: Path
) -> None:
    process = start_paused("train:done", ingested, tmp_path, "terminated")
    os.kill(process.pid, signal.SIGTERM)  # the CLI only, as `kill` or a supervisor sends it
    assert process.wait(timeout=60) != 0
    # Its exit handlers stopped the temporary server: nothing of its group is left.
    wait_for_group_to_end(process.pid, "the terminated command's temporary Prefect server")
    assert "Stopping temporary server" in (tmp_path / "terminated.log").read_text(errors="replace")


def test_two_promotes_and_a_training_at_once_leave_one_consistent_champion(
    ingested: dict[str, str], tmp_path: Path
) -> None:
    code, out = pneumo(["train"], ingested, tmp_path / "first.log")
    assert code == 0, out[-3000:]
    registry = registry_of(ingested)
    name = "pneumonia-cnn"
    first = registry.champion_version(name)
    # Two more complete versions of the same run to promote (a registry copy, not a training).
    copies = [
        str(
            registry.client.create_model_version(
                name, first.source, first.run_id, first.tags
            ).version
        )
        for _ in range(2)
    ]
    commands = {
        f"promote {copies[0]}": ["promote", name, copies[0], "--reason", "race a"],
        f"promote {copies[1]}": ["promote", name, copies[1], "--reason", "race b"],
        "train": ["train"],
    }
    started = {
        label: processes.start(
            f"pneumo {label}",
            [sys.executable, "-m", "flows.cli", *args],
            env=ingested,
            cwd=REPO,
            log=tmp_path / f"{label.replace(' ', '-')}.log",
        )
        for label, args in commands.items()
    }
    for label, process in started.items():
        log = (tmp_path / f"{label.replace(' ', '-')}.log").read_text
        assert process.wait(timeout=600) == 0, log(errors="replace")[-3000:]

    history = registry.champion_history(name)
    champion = str(registry.champion_version(name).version)
    assert history[-1]["version"] == champion
    # Each move replaced the champion of the move before it: no move was lost or interleaved.
    for before, after in itertools.pairwise(history):
        assert after["replaced"] == before["version"]
    assert {copies[0], copies[1]} <= {entry["version"] for entry in history}

    code, out = pneumo(["rollback", name, "--reason", "race check"], ingested, tmp_path / "rb.log")
    assert code == 0, out[-3000:]
    back = str(registry.champion_version(name).version)
    assert back == history[-1]["replaced"] and back != champion


@pytest.mark.parametrize("args", [["train"], ["drift"]])
def test_a_deterministic_failure_ends_at_once_with_its_cause(
    args: list[str], tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "empty-home")  # nothing ingested, no champion
    code, out = pneumo(args, env, tmp_path / "quiet.log")
    assert code != 0
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out[-3000:]
    assert "Retry 1/" not in out and "Traceback" not in out, out[-3000:]
    assert len(out.splitlines()) < 40, out[-3000:]
    if args == ["train"]:  # an unexpected error keeps its traceback; "no champion" is expected
        assert "Traceback" in (tmp_path / "empty-home" / "logs" / "pneumo.log").read_text()
        code, out = pneumo(["--verbose", *args], env, tmp_path / "verbose.log")
        assert code != 0 and "Traceback" in out
