"""`pneumo` as its own process on a tiny state directory of its own: what the fault and race
tests share. Each run is a real CLI process with a temporary Prefect server of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import processes
from tests.conftest import FAST_TRAINING, OPEN_GATES, REPO
from tests.waiting import wait_until


def cli_env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PNEUMO_", "MLFLOW_", "PREFECT_API", "PREFECT_HOME"))
    }
    own = {
        # An untrained ResNet is registered all the same, and no failure-mode table is
        # measured: registration is what is tested here.
        "PNEUMO_TRAIN__RESNET_SCRATCH_EPOCHS": "0",
        "PNEUMO_SHIFT_CHECK_IMAGES": "0",
        "PNEUMO_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "PYTHONPATH": str(REPO),
    }
    return env | FAST_TRAINING | OPEN_GATES | own


def pneumo(args: list[str], env: dict[str, str], log: Path) -> tuple[int, str]:
    return processes.run_pneumo(args, env=env, cwd=REPO, log=log)


def registry_of(env: dict[str, str]):
    from pipeline.adapters.registry import Registry
    from pipeline.settings import Settings

    return Registry.from_settings(Settings(home=Path(env["PNEUMO_HOME"])))


def start_paused(
    step: str, env: dict[str, str], tmp: Path, label: str, args: tuple[str, ...] = ("train",)
) -> subprocess.Popen:
    """Start `pneumo ARGS` (default `train`) and return it once it pauses at `step` (it is
    still running)."""
    pause = tmp / f"{label}.paused"
    env = env | {"PNEUMO_PAUSE_AT": step, "PNEUMO_PAUSE_FILE": str(pause)}
    command = [sys.executable, "-m", "flows.cli", *args]
    log = tmp / f"{label}.log"
    name = f"pneumo {' '.join(args)} ({label})"
    process = processes.start(name, command, env=env, cwd=REPO, log=log)
    wait_until(
        lambda: pause.is_file() or process.poll() is not None,
        bool,
        timeout=600,
        what=f"pneumo {args[0]} to pause at {step}",
    )
    assert process.poll() is None, log.read_text(errors="replace")[-3000:]
    return process


def wait_for_group_to_end(group: int, what: str) -> None:
    wait_until(lambda: processes.group_alive(group), lambda alive: not alive, timeout=30, what=what)
