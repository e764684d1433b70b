"""Fault injection: `pneumo train` killed with SIGKILL at each step boundary of registration,
and commands that move `champion` started at the same instant. Real processes, real kills.

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
STEPS = (
    "register:run-created",
    "register:run-logged",
    "register:version-created",
    "register:before-champion",
)
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
    """Run the CLI to its end in its own process; (exit code, output)."""
    command = [sys.executable, "-m", "flows.cli", *args]
    with processes.running("pneumo " + args[0], command, env=env, cwd=REPO, log=log) as process:
        code = process.wait(timeout=600)
    return code, log.read_text(errors="replace")


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


def running_runs(registry) -> list[str]:
    experiment = registry.client.get_experiment_by_name(registry.experiment)
    if experiment is None:
        return []
    runs = registry.client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    return [run.info.run_id for run in runs]


def start_paused(step: str, env: dict[str, str], tmp: Path, label: str) -> subprocess.Popen:
    """Start `pneumo train` and return it once it pauses at `step` (it is still running)."""
    pause = tmp / "paused"
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


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_each_step_leaves_no_usable_incomplete_version(
    step: str, ingested: dict[str, str], tmp_path: Path
) -> None:
    registry = registry_of(ingested)
    group = kill_at(step, ingested, tmp_path)

    # Whatever was registered is complete; no alias points at an incomplete version.
    for version in versions(registry):
        assert registry.missing_parts(version) == [], (version.name, version.version)
    run_left = step in ("register:run-created", "register:run-logged")
    assert len(running_runs(registry)) == int(run_left)
    assert registry.champion_version("pneumonia-cnn") is None  # `champion` moves last

    # The next start ends what the killed command left.
    code, out = pneumo(["doctor"], ingested, tmp_path / "doctor.log")
    assert code == 0, out[-3000:]
    assert "stopped the temporary Prefect server" in out, out[-3000:]
    assert (
        f"0 incomplete versions marked; {int(run_left)} MLflow runs and 1 flow runs of killed "
        "processes marked failed/crashed"
    ) in out, out[-3000:]
    wait_until(
        lambda: processes.group_alive(group),
        lambda alive: not alive,
        timeout=30,
        what="the killed command's temporary Prefect server to stop",
    )
    assert running_runs(registry) == []


def test_sigterm_stops_the_command_and_its_temporary_server(
    ingested: dict[str, str], tmp_path: Path
) -> None:
    process = start_paused("train:done", ingested, tmp_path, "terminated")
    os.kill(process.pid, signal.SIGTERM)  # the CLI only, as `kill` or a supervisor sends it
    assert process.wait(timeout=60) != 0
    # Its exit handlers stopped the temporary server: nothing of its group is left.
    wait_until(
        lambda: processes.group_alive(process.pid),
        lambda alive: not alive,
        timeout=30,
        what="the terminated command's temporary Prefect server to stop",
    )
    assert "Stopping temporary server" in (tmp_path / "terminated.log").read_text(errors="replace")


def test_training_after_a_kill_succeeds(ingested: dict[str, str], tmp_path: Path) -> None:
    registry = registry_of(ingested)
    kill_at("register:version-created", ingested, tmp_path)
    code, out = pneumo(["train"], ingested, tmp_path / "rerun.log")
    assert code == 0, out[-3000:]
    assert "stopped the temporary Prefect server" in out
    assert "marked 1 flow runs of killed pneumo processes as crashed" in out
    assert running_runs(registry) == []
    for name in MODELS:
        champion = registry.champion_version(name)
        assert champion is not None and registry.missing_parts(champion) == []
    # The killed run's version is complete and stays registered; the rerun's became champion.
    assert registry.missing_parts(registry.client.get_model_version("pneumonia-cnn", "1")) == []
    assert str(registry.champion_version("pneumonia-cnn").version) == "2"


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
