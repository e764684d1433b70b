"""docker-compose.yml checked by parsing (no Docker engine on the development machines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
ONE_SHOT = {name for name, s in SERVICES.items() if s.get("restart") == "no"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER|TOKEN", re.IGNORECASE)
REQUIRED_VAR = re.compile(r"^\$\{(\w+):\?[^}]+\}$")
VAR = re.compile(r"\$\{(\w+)")


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def test_expected_services_exist() -> None:
    assert {"minio", "minio-init", "postgres", "mlflow", "prefect-server", "worker", "api"} <= set(
        SERVICES
    )
    assert {"minio-init"} == ONE_SHOT


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    assert SERVICES[name].get("healthcheck", {}).get("test"), name


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dependencies_wait_for_health_or_completion(name: str) -> None:
    for dependency, rule in (SERVICES[name].get("depends_on") or {}).items():
        wanted = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
        assert rule == {"condition": wanted}, (name, dependency)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_literal_secrets(name: str) -> None:
    for key, value in environment(SERVICES[name]).items():
        if SECRET_NAME.search(key):
            assert REQUIRED_VAR.match(value), (
                f"{name}.{key} must be ${{VAR:?message}}, not a literal"
            )
    command = str(SERVICES[name].get("command", ""))
    assert not re.search(r"://\w+:(?!\$)[^@\s]+@", command), (
        f"{name} has a literal password in its command"
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_are_published_on_loopback_only(name: str) -> None:
    for port in SERVICES[name].get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), (name, port)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES[name].get("image")
    assert image or SERVICES[name].get("build"), name
    if image:
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^(\w+)=", (REPO / ".env.example").read_text(), re.MULTILINE))
    used = set(VAR.findall((REPO / "docker-compose.yml").read_text()))
    assert used - documented == set()
    assert all(
        not v
        for k, v in re.findall(r"^(\w+)=(.*)$", (REPO / ".env.example").read_text(), re.MULTILINE)
        if SECRET_NAME.search(k)
    ), "no working default secrets"


def test_named_volumes_and_init_scripts_exist() -> None:
    assert set(COMPOSE["volumes"]) == {"minio-data", "postgres-data", "pneumo-state"}
    for service in SERVICES.values():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), source
    assert Path(REPO / "infra" / "Dockerfile").is_file()
