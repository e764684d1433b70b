"""`pneumo ui`: the MLflow UI and the Prefect UI over the embedded state, for as long as it runs.

Both are the libraries' own servers, started as child processes on loopback at free ports and
stopped together: Ctrl-C, SIGTERM, or one of them dying ends both.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
STARTUP_SECONDS = 120.0


@dataclass(frozen=True)
class UiServer:
    name: str
    command: list[str]
    url: str  # what the user opens
    health: str  # answers 200 once the server is up
    env: dict[str, str]


def server_in_use(tracking_uri: str) -> str | None:
    """Why `pneumo ui` should not start (None: it may): it serves the embedded state, and a
    configured server has its own UI."""
    servers = {"PREFECT_API_URL": os.environ.get("PREFECT_API_URL", ""),
               "the MLflow tracking URI": tracking_uri}  # fmt: skip
    for what, url in servers.items():
        if url.startswith("http"):
            return (
                f"{what} is a server ({url}): open its own UI; `pneumo ui` serves the "
                "embedded state"
            )
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ui_servers(tracking_uri: str, prefect_home: str) -> list[UiServer]:
    """The MLflow UI on the tracking store and the Prefect UI on PREFECT_HOME's database."""
    bin_dir = Path(sys.executable).parent  # the environment's own entry points
    mlflow_port, prefect_port = free_port(), free_port()
    mlflow_url, prefect_url = f"http://{HOST}:{mlflow_port}", f"http://{HOST}:{prefect_port}"
    prefect_env = {
        "PREFECT_HOME": prefect_home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"{prefect_url}/api",
    }
    return [
        UiServer(
            "MLflow UI",
            [
                *(str(bin_dir / "mlflow"), "ui", "--backend-store-uri", tracking_uri),
                *("--host", HOST, "--port", str(mlflow_port)),
            ],
            mlflow_url,
            f"{mlflow_url}/health",
            {},
        ),
        UiServer(
            "Prefect UI",
            [
                *(str(bin_dir / "prefect"), "server", "start"),
                *("--host", HOST, "--port", str(prefect_port)),
            ],
            prefect_url,
            f"{prefect_url}/api/health",
            prefect_env,
        ),
    ]


def is_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running_servers(servers: list[UiServer], log_dir: Path) -> Iterator[list[subprocess.Popen]]:
    """Start every server (output to `log_dir/<name>.log`), wait until all answer, stop all."""
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    try:
        for server in servers:
            log_path = log_dir / f"{server.name.split()[0].lower()}-ui.log"
            with log_path.open("ab") as log:  # the child keeps its own copy of the handle
                processes.append(
                    subprocess.Popen(
                        server.command,
                        env=os.environ | server.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,  # its workers are stopped with it, as one group
                    )
                )
        wait_until_up(servers, processes, log_dir)
        yield processes
    finally:
        stop_all(processes)


def wait_until_up(servers: list[UiServer], processes: list[subprocess.Popen], log_dir: Path):
    deadline = time.monotonic() + STARTUP_SECONDS
    waiting = list(zip(servers, processes, strict=True))
    while waiting:
        for server, process in waiting:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with code {process.returncode} while starting; "
                    f"see {log_dir}"
                )
        waiting = [(s, p) for s, p in waiting if not is_up(s.health)]
        if waiting and time.monotonic() > deadline:
            names = ", ".join(s.name for s, _ in waiting)
            raise RuntimeError(
                f"{names} did not answer within {STARTUP_SECONDS:.0f} s; see {log_dir}"
            )
        time.sleep(0.5)


def stop_all(processes: list[subprocess.Popen], grace: float = 15.0) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_exit(processes: list[subprocess.Popen]) -> subprocess.Popen:
    """Block until one server exits (Ctrl-C or SIGTERM raise here first); returns it."""
    while True:
        for process in processes:
            if process.poll() is not None:
                return process
        time.sleep(1.0)
