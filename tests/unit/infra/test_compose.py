"""docker-compose.yml checked by parsing (no Docker engine on the development machines), and
its shell helpers run for real."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.serve.auth import hash_key, read_key_hashes
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
ONE_SHOT = {name for name, s in SERVICES.items() if s.get("restart") == "no"}
LONG_RUNNING = sorted(set(SERVICES) - ONE_SHOT)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER|TOKEN|AUTH_STRING", re.IGNORECASE)
OWN_IMAGE = "pneumo-ops:0.1.0"  # built from infra/Dockerfile, whose USER is not root
# Root by design, each for one reason: postgres's entrypoint hands its data directory to the
# `postgres` user and drops to it; volume-owner exists to chown the volumes for the others.
ROOT_ALLOWED = {"postgres", "volume-owner"}


def secrets_of(name: str) -> dict[str, str]:
    """target (the file name under /run/secrets) -> source secret, for one service."""
    found = {}
    for entry in SERVICES[name].get("secrets") or []:
        source, target = (
            (entry, entry)
            if isinstance(entry, str)
            else (entry["source"], entry.get("target", entry["source"]))
        )
        found[target] = source
    return found


def test_expected_services_exist() -> None:
    assert {
        "minio", "minio-init", "postgres", "mlflow", "mlflow-users", "prefect-server", "worker",
        "api", "volume-owner", "prometheus", "grafana", "orthanc",
    } == set(SERVICES)  # fmt: skip
    # Only the PACS to try the sync on is optional.
    assert {name for name, s in SERVICES.items() if s.get("profiles")} == {"orthanc"}
    assert {"minio-init", "mlflow-users", "volume-owner"} == ONE_SHOT


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_is_bounded_and_restarted(name: str) -> None:
    service = SERVICES[name]
    assert service.get("healthcheck", {}).get("test"), name
    assert service.get("restart") == "unless-stopped", name
    assert re.fullmatch(r"\d+[mg]", str(service.get("mem_limit", ""))), name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_service_gains_privileges_or_runs_as_root_without_a_reason(name: str) -> None:
    service = SERVICES[name]
    assert "no-new-privileges:true" in (service.get("security_opt") or []), name
    if name in ROOT_ALLOWED:
        return
    user = str(service.get("user", ""))
    assert (user and not user.startswith(("0", "root"))) or (
        service.get("image") == OWN_IMAGE and "user" not in service
    ), f"{name} runs as root"
    assert re.search(r"^USER (?!root)\w+", (REPO / "infra" / "Dockerfile").read_text(), re.M)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dependencies_wait_for_health_or_completion(name: str) -> None:
    for dependency, rule in (SERVICES[name].get("depends_on") or {}).items():
        wanted = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
        assert rule == {"condition": wanted}, (name, dependency)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_secrets_are_neither_in_the_environment_nor_on_a_command_line(name: str) -> None:
    service = SERVICES[name]
    for key in service.get("environment") or {}:
        assert not SECRET_NAME.search(key) or key.endswith("_FILE"), f"{name}.{key}"
    command = " ".join(
        str(part) for field in ("command", "entrypoint") for part in (service.get(field) or [])
    )
    assert "PASSWORD" not in command and "${" not in command, name
    assert not re.search(r"://[^/\s:]+:[^@\s]+@", command), name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_secrets_reaching_the_environment_are_variable_names(name: str) -> None:
    """with-secrets.sh exports upper-case targets only: a lower-case one is a file read by path."""
    for target in secrets_of(name):
        if target.isupper():
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", target), (name, target)
        else:
            path = f"/run/secrets/{target}"
            mounted = "".join(
                (REPO / volume.split(":")[0]).read_text()
                for volume in SERVICES[name].get("volumes") or []
                if volume.startswith("./")
            )
            assert (
                path in map(str, (SERVICES[name].get("environment") or {}).values())
                or path in mounted  # a mounted config file names it (prometheus.yml)
                or name == "postgres"  # read by its init script
            ), (name, target)


def test_each_service_gets_only_the_secrets_it_needs() -> None:
    api = set(secrets_of("api").values())
    assert api == {"api_s3_access_key", "api_s3_secret_key", "mlflow_api_password", "api_keys"}
    assert "mlflow_admin_password" not in api and "pipeline_s3_secret_key" not in api
    assert set(secrets_of("minio").values()) == {"minio_root_user", "minio_root_password"}
    assert set(secrets_of("prometheus").values()) == {"metrics_api_key"}
    assert set(secrets_of("grafana").values()) == {"grafana_admin_password"}
    assert set(secrets_of("orthanc").values()) == {"orthanc_pneumo_password"}
    for name in ("mlflow", "prefect-server", "worker", "api"):
        assert "postgres_password" not in secrets_of(name).values(), name
        assert not {"minio_root_user", "minio_root_password"} & set(secrets_of(name).values())


def test_every_secret_is_a_file_that_make_secrets_writes() -> None:
    script = (REPO / "infra" / "make_secrets.sh").read_text()
    used = {source for name in SERVICES for source in secrets_of(name).values()}
    assert used == set(COMPOSE["secrets"])
    for name, secret in COMPOSE["secrets"].items():
        assert secret == {"file": f"./secrets/{name}"}
        assert re.search(rf"\b{name}\b", script), f"make_secrets.sh does not write {name}"
    assert re.search(r"^/secrets/$", (REPO / ".gitignore").read_text(), re.M)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_are_published_on_loopback_only(name: str) -> None:
    for port in SERVICES[name].get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), (name, port)


PINNED = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_pulled_images_are_pinned_by_tag_and_digest(name: str) -> None:
    image = SERVICES[name].get("image")
    assert image, name
    if image != OWN_IMAGE and "build" not in SERVICES[name]:
        assert PINNED.match(image), f"{name}: image {image!r} has no tag@sha256:digest"
    # Images built here start from pinned bases (the Orthanc one from the project's own).
    for dockerfile in (REPO / "infra" / "Dockerfile", REPO / "infra" / "orthanc" / "Dockerfile"):
        base = re.search(r"^FROM (\S+)", dockerfile.read_text(), re.M)[1]
        assert PINNED.match(base), base


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^(\w+)=", (REPO / ".env.example").read_text(), re.MULTILINE))
    used = set(re.findall(r"\$\{(\w+)", (REPO / "docker-compose.yml").read_text()))
    assert used - documented == set()
    assert not any(SECRET_NAME.search(name) for name in documented), "secrets go in ./secrets/"


def test_named_volumes_and_mounted_scripts_exist() -> None:
    assert set(COMPOSE["volumes"]) == {
        "minio-data", "postgres-data", "pneumo-state", "prometheus-data", "grafana-data",
        "orthanc-data",
    }  # fmt: skip
    for service in SERVICES.values():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), source
    assert Path(REPO / "infra" / "Dockerfile").is_file()


def test_make_secrets_writes_random_values_once_and_only_the_api_key_hash(
    tmp_path: Path,
) -> None:
    script = REPO / "infra" / "make_secrets.sh"
    first = subprocess.run(["sh", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    key = re.search(r"\(shown only now\): (\S+)", first.stdout)[1]
    written = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    assert set(written) == set(COMPOSE["secrets"])
    # The user's key, and Prometheus's own (kept in plain text for it to present).
    scraper = written["metrics_api_key"]
    assert read_key_hashes(tmp_path / "secrets" / "api_keys") == {hash_key(key), hash_key(scraper)}
    assert len({v for k, v in written.items() if k.endswith("password")}) == 8  # all different
    assert oct((tmp_path / "secrets").stat().st_mode)[-3:] == "700"
    again = subprocess.run(["sh", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert "shown only now" not in again.stdout
    assert {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()} == written


def test_with_secrets_exports_variable_named_secrets_only(tmp_path: Path) -> None:
    (tmp_path / "MLFLOW_TRACKING_PASSWORD").write_text("pw-1234")
    (tmp_path / "api_keys").write_text("sha256:...")
    result = subprocess.run(
        ["sh", str(REPO / "infra" / "with-secrets.sh"), "env"],
        env={**os.environ, "SECRETS_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "MLFLOW_TRACKING_PASSWORD=pw-1234" in result.stdout.splitlines()
    assert "api_keys=" not in result.stdout
