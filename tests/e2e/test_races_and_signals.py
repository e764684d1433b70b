"""Signals and races on `pneumo` processes: SIGTERM ends a command and its temporary server,
commands that move `champion` at the same instant leave one consistent history, and a
deterministic failure ends at once with its cause. Real processes."""

from __future__ import annotations

import itertools
import os
import signal
import sys
from pathlib import Path

import pytest

from tests import processes
from tests.conftest import REPO
from tests.e2e.cli import cli_env, pneumo, registry_of, start_paused, wait_for_group_to_end

pytestmark = pytest.mark.slow


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
