"""Refresh `pipeline/data/datadocs_assets/` from the npm registry.

    python infra/vendor_datadocs_assets.py

Fetches every package named in `pipeline.data.datadocs.ASSETS` with `npm pack` (pinned
versions, checked against the registry's integrity hash by npm) and copies the listed files and
each package's licence. Run it after a GX upgrade changes the Data Docs templates' URLs.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from pipeline.data.datadocs import ASSETS, ASSETS_DIR

LICENCE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md")


def fetch_package(spec: str, into: Path) -> Path:
    """`npm pack` one package@version and unpack it; returns the package root."""
    name = subprocess.run(
        ["npm", "pack", "--silent", spec], cwd=into, check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    target = into / name.removesuffix(".tgz")
    with tarfile.open(into / name) as archive:
        archive.extractall(target, filter="data")
    return target / "package"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fetched: dict[str, Path] = {}
        for asset in ASSETS:
            spec = f"{asset.package}@{asset.version}"
            if spec not in fetched:
                fetched[spec] = fetch_package(spec, Path(tmp))
            target = ASSETS_DIR / asset.local
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fetched[spec] / asset.path, target)
            root = ASSETS_DIR / asset.local.parts[0]
            for licence in LICENCE_NAMES:
                if (fetched[spec] / licence).exists():
                    shutil.copyfile(fetched[spec] / licence, root / licence)
            print(f"{spec}: {asset.path}")


if __name__ == "__main__":
    main()
