"""Inference-log rows lost while S3 is down: `python -m benchmarks.log_outage`.

PNEUMO_HOME must hold a pneumonia-resnet champion (e.g. after `make demo`). Starts a real S3
server (SeaweedFS) and `pneumo serve` on it, sends 60 one-image predictions, with S3 killed for
the middle 20 (spread over `--down-seconds`, 30) and restarted after them, waits for the
service's log to settle, then counts the rows that reached S3. Run it with another checkout
first on PYTHONPATH to measure that version.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from pathlib import Path

import httpx

from benchmarks.serve import SAMPLE, serving, wait_ready
from benchmarks.servers import LocalServer, seaweed_spec
from pipeline.adapters.s3 import S3Store
from pipeline.predict.inference_log import read_inference_log


def settled(client: httpx.Client, timeout: float) -> dict:
    """/health once the log has nothing spooled (or `timeout` passed: the old service has no
    spool to report, and writes what it can at once)."""
    deadline = time.time() + timeout
    health = client.get("/health").json()
    while time.time() < deadline and health.get("inference_log", {}).get("spooled_rows", 0):
        time.sleep(0.5)
        health = client.get("/health").json()
    return health


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path(".bench/log_outage"))
    parser.add_argument("--per-phase", type=int, default=20)
    parser.add_argument(
        "--down-seconds", type=float, default=30.0, help="how long S3 stays down (requests spread)"
    )
    args = parser.parse_args()
    workdir = args.work.resolve() / f"s3-{secrets.token_hex(3)}"
    spec, creds = seaweed_spec(workdir)
    server = LocalServer(spec, workdir).start()
    buckets = {"raw": "outage-raw", "default": "outage-data"}
    store = S3Store(creds.endpoint, creds.access_key, creds.secret_key, buckets)
    store.ensure_buckets()
    os.environ |= {
        "PNEUMO_STORAGE": "s3",
        "PNEUMO_S3_ENDPOINT": creds.endpoint,
        "PNEUMO_S3_ACCESS_KEY": creds.access_key,
        "PNEUMO_S3_SECRET_KEY": creds.secret_key,
        "PNEUMO_S3_BUCKET_RAW": buckets["raw"],
        "PNEUMO_S3_BUCKET_DATA": buckets["default"],
    }
    image = next((SAMPLE / "test" / "NORMAL").iterdir()).read_bytes()
    statuses: list[int] = []
    try:
        with serving() as (url, _), httpx.Client(base_url=url, timeout=120) as client:
            wait_ready(client)
            for phase in ("up", "down", "back"):
                if phase == "down":
                    server.stop()
                if phase == "back":
                    server.start()
                started = time.monotonic()
                for index in range(args.per_phase):
                    if phase == "down":  # an outage lasts, whatever the request rate
                        pause = started + index * args.down_seconds / args.per_phase
                        time.sleep(max(0.0, pause - time.monotonic()))
                    reply = client.post("/predict", files={"file": ("x.jpeg", image)})
                    statuses.append(reply.status_code)
                print(f"S3 {phase}: {args.per_phase} predictions sent")
            health = settled(client, timeout=90)
        sent = 3 * args.per_phase
        logged = len(read_inference_log(store))
        print(f"answers: {sorted(set(statuses))}; log: {health.get('inference_log')}")
        print(f"rows in S3: {logged} of {sent} predictions; lost: {sent - logged}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
