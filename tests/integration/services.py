"""Real local servers for integration tests: SeaweedFS (S3), MLflow, Prefect, PostgreSQL,
Orthanc. SeaweedFS and Orthanc run as the benchmarks run them (`benchmarks/servers.py`).

Each starts on loopback and free ports, is polled until healthy, records how long that took, and
is stopped by process group (SIGTERM, then SIGKILL). Credentials are generated per run: none is
written in the code.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.servers import (
    S3Credentials,
    free_port,
    healthy,
    orthanc_spec,
    seaweed_spec,
)
from tests import processes
from tests.waiting import wait_until

BIN = Path(sys.executable).parent


@dataclass
class Service:
    name: str
    command: list[str]
    health_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    # How readiness is told; by default, `health_url` answering below 500.
    ready: Callable[[], bool] | None = None
    scratch: Path | None = None  # a directory of its own outside `workdir`, removed at stop
    inherit_env: bool = True  # False: `env` is its whole environment
    process: subprocess.Popen | None = None
    startup_seconds: float = 0.0
    grace: float = 20.0  # seconds between SIGTERM and SIGKILL at stop

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 120.0) -> Service:
        started = time.perf_counter()
        self.process = processes.start(
            self.name,
            self.command,
            env={**os.environ, **self.env} if self.inherit_env else self.env,
            cwd=self.workdir,
            log=self.log,
            user=self.user,
        )
        try:
            wait_until(
                lambda: None if self.process.poll() is None else self.process.returncode,
                lambda code: code is not None or (self.ready or self._answers)(),
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

    def _answers(self) -> bool:
        return healthy(self.health_url)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.name, self.process, self.grace)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def seaweed(
    workdir: Path, more_users: tuple[dict, ...] = (), port: int | None = None
) -> tuple[Service, S3Credentials]:
    """SeaweedFS as `benchmarks.servers.seaweed_spec` runs it, as a test process."""
    spec, creds = seaweed_spec(workdir, more_users, port)
    return Service(spec.name, spec.command, spec.health_url, workdir), creds


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


def postgres_server(workdir: Path, superuser: str, password: str, port: int) -> Service:
    """PostgreSQL (see `postgres_bin`) on loopback TCP `port` with password
    (SCRAM) authentication, as the official image runs it.

    PostgreSQL refuses to run as root: as root, it runs as a system user of its own, with its
    data in a directory of that user's (pytest's temporary directories are private to root).
    """
    bin_dir = postgres_bin()
    workdir.mkdir(parents=True, exist_ok=True)
    user = _postgres_user()
    data = Path(tempfile.mkdtemp(prefix="pneumo-pg-"))
    (data / "password").write_text(password)
    if user is not None:
        for path in (data, data / "password"):
            shutil.chown(path, user)
    command = [
        str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", superuser, "-E", "UTF8",
        "--auth=scram-sha-256", f"--pwfile={data / 'password'}",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, user=user, timeout=120)
    (data / "password").unlink()
    command = [
        str(bin_dir / "postgres"), "-D", str(data / "db"), "-h", "127.0.0.1", "-p", str(port),
        "-k", str(data),
    ]  # fmt: skip
    probe = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"]

    def ready() -> bool:
        return subprocess.run(probe, check=False, timeout=10).returncode == 0

    url = f"postgresql://127.0.0.1:{port}"
    return Service("postgres", command, url, workdir, user=user, ready=ready, scratch=data)


def _postgres_user() -> str | None:
    """None when not root; else a system user for PostgreSQL, created on first need."""
    if os.geteuid() != 0:
        return None
    name = "pneumo-pg"
    if subprocess.run(["id", "-u", name], capture_output=True, check=False).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    return name


def postgres_bin() -> Path:
    """Debian's PostgreSQL binaries (`apt-get install postgresql`; .ci/run installs them).

    Not the `pgserver` wheel's: it lacks the contrib extensions, and Prefect's migrations
    create `pg_trgm`.
    """
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL is missing: apt-get install postgresql")
    return found[-1].parent


def orthanc_server(workdir: Path, username: str, password: str) -> tuple[Service, str]:
    """Orthanc as `benchmarks.servers.orthanc_spec` runs it, as a test process; returns the
    service and its DICOMweb root."""
    spec, root = orthanc_spec(workdir, username, password)
    return Service(spec.name, spec.command, spec.health_url, workdir), root
