"""Ingest throughput and peak memory on a folder: `python benchmarks/ingest.py PATH [--workers N]`.

Runs a fresh ingest into a temporary state directory, then a second (idempotent) one, and prints
images/s for both and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from pipeline.dataset import ingest_dataset
from pipeline.settings import IngestConfig, Settings
from pipeline.storage import LocalStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), ingest=IngestConfig(workers=args.workers))
        store = LocalStore(settings.store_dir)
        for run in ("first", "repeat"):
            start = time.perf_counter()
            summary = ingest_dataset(args.path, store, settings)
            seconds = time.perf_counter() - start
            files = summary.stored + summary.already_stored
            print(
                f"{run}: {files} files in {seconds:.2f} s = {files / seconds:.0f} img/s "
                f"(stored {summary.stored} new, {summary.already_stored} already present)"
            )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
