"""A PACS sync of real films on this machine: `pneumo pacs sync` against a local Orthanc.

    PNEUMO_HOME=<state with a ResNet champion> python -m benchmarks.pacs_sync \
        [--films 200] [--overlay]

Starts Debian's Orthanc with DICOMweb and authentication on loopback (as the tests do), uploads
`--films` of the official train films at 224 px as 12-bit DICOM (one study per film, a series
each), then runs the pacs-sync flow and prints its wall time and films/s. To show what bounds
it, the same films then go through each step alone: the query (QIDO-RS), retrieving them
(WADO-RS), scoring them (`predict_batch`, the model and the drift features), building the SRs
and storing them (STOW-RS, into a second, empty Orthanc). Run it with no other load.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import TRAIN224, machine
from benchmarks.dicom_films import dx_film
from benchmarks.servers import LocalServer, orthanc_spec
from pipeline.settings import PacsConfig

USER = "pneumo-bench"


def dicom_films(count: int) -> list[bytes]:
    """`count` train films (both classes), each a 12-bit DICOM film of a study of its own."""
    paths = sorted((TRAIN224 / "train").rglob("*.jpeg"))[::7][:count]
    films = []
    for index, path in enumerate(paths):
        gray = np.asarray(Image.open(path).convert("L"), dtype=np.uint16)
        # Studies dated inside the window the sync asks for (`since`, below).
        tags = {"BodyPartExamined": "CHEST", "PatientID": f"bench-{index}", "StudyDate": "20240102"}
        films.append(dx_film(gray * 16, bits_stored=12, tags=tags))
    return films


def timed(step, *args):
    """(what `step(*args)` returned, the seconds it took)."""
    started = time.perf_counter()
    result = step(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=200)
    parser.add_argument("--overlay", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(machine())
    films = dicom_films(args.films)
    print(f"{len(films)} films, {sum(map(len, films)) / len(films) / 1024:.0f} KiB each")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as servers:
        password = secrets.token_urlsafe(12)
        roots = []
        for name in ("pacs", "empty"):  # a second Orthanc failing to start still stops the first
            spec, root = orthanc_spec(Path(tmp) / name, USER, password)
            servers.callback(LocalServer(spec, Path(tmp) / name).start().stop)
            roots.append(root)
        measure(films, *roots, password, args.overlay)


def measure(films: list[bytes], url: str, empty_url: str, password: str, overlay: bool) -> None:
    from flows.pacs import pacs_sync
    from pipeline.adapters.dicom_results import FilmResult, build_report
    from pipeline.adapters.dicomweb import Pacs
    from pipeline.adapters.registry import Registry
    from pipeline.predict.champion import load_champion
    from pipeline.predict.scoring import predict_batch
    from pipeline.settings import Settings

    pacs = Pacs(PacsConfig(url=url, username=USER, password=password))
    _, seconds = timed(lambda: [pacs.store([film]) for film in films])
    print(f"upload (STOW-RS, one film a request): {seconds:.1f} s")
    os.environ |= {"PNEUMO_PACS__URL": url, "PNEUMO_PACS__USERNAME": USER,
                   "PNEUMO_PACS__PASSWORD": password}  # fmt: skip
    summary, wall = timed(lambda: pacs_sync(since="2024-01-01", overlay=overlay))
    captures = f" and {summary.overlays} Grad-CAM captures" if overlay else ""
    print(
        f"pacs sync: {summary.scored} scored, {summary.reports} SRs{captures} stored in "
        f"{wall:.1f} s ({summary.scored / wall:.1f} films/s, the flow's start included)"
    )
    for reason, count in summary.not_scored.items():
        print(f"  not scored ({count}): {reason}")
    # Each step alone, on the same films.
    found, seconds = timed(pacs.find, ("CR", "DX"), date(2024, 1, 1))
    print(f"  query (QIDO-RS): {seconds:.2f} s for {len(found)} instances")
    retrieved, seconds = timed(lambda: [pacs.retrieve(item) for item in found])
    print(f"  retrieve (WADO-RS): {seconds:.1f} s ({len(found) / seconds:.0f} films/s)")
    settings = Settings()
    champion = load_champion(Registry.from_settings(settings), settings.cache_dir / "bench")
    items = [(str(index), film) for index, film in enumerate(retrieved)]
    _, seconds = timed(predict_batch, champion, items, settings.ingest.max_pixels)
    print(f"  score (render, model, drift features): {seconds:.1f} s "
          f"({len(items) / seconds:.0f} films/s)")  # fmt: skip
    result = FilmResult(0.5, "NORMAL", 0.5, champion.name, champion.version, "bench", "bench")
    reports, seconds = timed(lambda: [build_report(film, result) for film in retrieved])
    print(f"  build SRs (highdicom): {seconds:.1f} s ({len(reports) / seconds:.0f} films/s)")
    target = Pacs(PacsConfig(url=empty_url, username=USER, password=password))
    pairs = list(zip(reports, found, strict=True))
    _, seconds = timed(lambda: [target.store([report], item.study_uid) for report, item in pairs])
    print(f"  store SRs (STOW-RS, one per request, into an empty Orthanc): {seconds:.1f} s "
          f"({len(reports) / seconds:.0f} films/s)")  # fmt: skip


if __name__ == "__main__":
    main()
