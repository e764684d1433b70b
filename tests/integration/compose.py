"""docker-compose.yml's services as local processes, configured from the file itself.

Each service's environment, secrets, command and mounted scripts are read from
docker-compose.yml, so the file and what the stack test runs cannot drift apart. Only the
network differs: compose's service addresses (`minio:9000`, `postgres`, `0.0.0.0`, fixed ports)
become loopback and free ports, through one `Network` map.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import REPO

INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
# Programs of the project image, found in this environment instead.
PROGRAMS = {
    "python": sys.executable,
    "pneumo": str(Path(sys.executable).parent / "pneumo"),
    "prefect": str(Path(sys.executable).parent / "prefect"),
}


def load_compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def interpolate(value: str, host_env: Mapping[str, str]) -> str:
    """Compose's `${NAME}` and `${NAME:-default}`, from `host_env` (the `.env` side)."""
    return INTERPOLATION.sub(lambda m: host_env.get(m[1]) or (m[2] or ""), value)


@dataclass(frozen=True)
class Network:
    """Where compose's addresses are, here: whole values (`postgres`, `5432`, `0.0.0.0`) and
    `host:port` parts of longer values (`http://minio:9000`)."""

    values: Mapping[str, str]
    addresses: Mapping[str, str]

    def localize(self, value: str) -> str:
        if value in self.values:
            return self.values[value]
        for compose_address, local in self.addresses.items():
            value = value.replace(compose_address, local)
        return value


@dataclass(frozen=True)
class ComposeService:
    name: str
    spec: dict

    def mounts(self) -> dict[str, Path]:
        """Container path -> repository file, for the bind-mounted files (`./infra/...`)."""
        found = {}
        for volume in self.spec.get("volumes") or []:
            source, target, *_ = volume.split(":")
            if source.startswith("./"):
                found[target] = REPO / source
        return found

    def secrets_dir(self, secrets: Path, into: Path) -> Path:
        """This service's secrets as compose mounts them: only its own, under their targets."""
        into.mkdir(parents=True, exist_ok=True)
        for entry in self.spec.get("secrets") or []:
            source = entry if isinstance(entry, str) else entry["source"]
            target = entry if isinstance(entry, str) else entry.get("target", source)
            shutil.copyfile(secrets / source, into / target)
        return into

    def environment(
        self, network: Network, secrets_dir: Path, host_env: Mapping[str, str]
    ) -> dict[str, str]:
        """Its `environment:`, interpolated, localized, and with /run/secrets/ pointing at its
        secrets; SECRETS_DIR tells infra/with-secrets.sh where they are."""
        env = {}
        for key, raw in (self.spec.get("environment") or {}).items():
            value = network.localize(interpolate(str(raw), host_env))
            env[key] = value.replace("/run/secrets", str(secrets_dir))
        return {**env, "SECRETS_DIR": str(secrets_dir)}

    def command(self, network: Network, arguments: list[str] | None = None) -> list[str]:
        """Entrypoint and command (or `arguments`, as `docker compose run SERVICE ...` gives
        them), with mounted scripts, programs and addresses made local."""
        entrypoint = self.spec.get("entrypoint") or []
        arguments = [*entrypoint, *(arguments or self.spec.get("command") or [])]
        mounts = self.mounts()
        local = []
        for argument in arguments:
            if argument in mounts:
                local.append(str(mounts[argument]))
            else:
                local.append(PROGRAMS.get(argument) or network.localize(argument))
        return local


def image_environment() -> dict[str, str]:
    """The `ENV` of infra/Dockerfile: what every process of the project image starts with."""
    text = (REPO / "infra" / "Dockerfile").read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found |= dict(pair.split("=", 1) for pair in line.split()[1:])
    return found


def services() -> dict[str, ComposeService]:
    return {name: ComposeService(name, spec) for name, spec in load_compose()["services"].items()}
