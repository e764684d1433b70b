"""A load test of the prediction service: concurrent clients, good and bad uploads mixed.

    python -m benchmarks.serve_load [--clients 16] [--seconds 60] [--bad-share 0.2]
        [--pause-ms 0] [--shadow]

PNEUMO_HOME (or MLFLOW_TRACKING_URI) must hold a pneumonia-resnet champion. Starts `pneumo
serve` on a free loopback port; each client thread sends one-image `/predict` requests over
real HTTP for the given time (back to back, or `--pause-ms` apart), a share of them bad (text,
truncated JPEG, 16-bit PNG). Prints requests/s, latency percentiles per kind, status counts,
5xx (the target is none), and the server's peak resident memory (VmHWM). `--shadow`: the
service also scores each accepted request with `challenger` (which must be another version
than the champion), and the shadow's scored and dropped requests are printed.
"""

from __future__ import annotations

import argparse
import io
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.serve import SAMPLE, serving, wait_ready


def bad_uploads(good: bytes) -> list[bytes]:
    sixteen = io.BytesIO()
    Image.fromarray(np.full((50, 60), 40000, dtype=np.uint16)).save(sixteen, "PNG")
    return [b"not an x-ray", good[: len(good) // 3], sixteen.getvalue()]


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident memory, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hammer(base_url: str, images: list[bytes], bad: list[bytes], args, seed: int, out: list):
    """One client: requests until the deadline; appends (kind, status, ms) to `out`."""
    rng = random.Random(seed)
    deadline = time.monotonic() + args.seconds
    with httpx.Client(base_url=base_url, timeout=120) as client:
        while time.monotonic() < deadline:
            kind = "bad" if rng.random() < args.bad_share else "good"
            data = rng.choice(bad if kind == "bad" else images)
            start = time.perf_counter()
            try:
                status = client.post("/predict", files={"file": ("x.jpeg", data)}).status_code
            except httpx.TransportError:
                status = 0  # no answer at all
            out.append((kind, status, 1000 * (time.perf_counter() - start)))
            time.sleep(args.pause_ms / 1000)  # a client's think time between requests


def report(results: list[tuple[str, int, float]], seconds: float, server_pid: int) -> None:
    print(f"{len(results)} requests in {seconds:.0f} s: {len(results) / seconds:.1f} requests/s")
    for kind in ("good", "bad"):
        latencies = [ms for k, _, ms in results if k == kind]
        if latencies:
            p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
            print(f"  {kind}: {len(latencies)}, p50 {p50:.0f} ms, p95 {p95:.0f}, p99 {p99:.0f}")
    statuses = Counter(status for _, status, _ in results)
    print(f"  statuses {dict(sorted(statuses.items()))}")
    server_errors = sum(n for status, n in statuses.items() if status >= 500 or status == 0)
    print(f"  5xx or no answer: {server_errors}; server peak RSS {peak_rss_mb(server_pid):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--bad-share", type=float, default=0.2)
    parser.add_argument("--pause-ms", type=float, default=0.0)
    parser.add_argument("--shadow", action="store_true")
    args = parser.parse_args()
    images = [p.read_bytes() for p in sorted(SAMPLE.glob("test/*/*.jpeg"))]
    with serving(["--shadow"] if args.shadow else []) as (base_url, server):
        with httpx.Client(base_url=base_url, timeout=120) as client:
            ready = wait_ready(client)
            if args.shadow:
                ready["shadow"] = wait_for_challenger(client)
            client.post("/predict", files={"file": ("warm.jpeg", images[0])})  # tracing
        shadow = f", challenger v{ready['shadow']} in shadow" if args.shadow else ""
        print(f"serving {ready['model']} v{ready['version']}{shadow}; {args.clients} clients")
        results: list[tuple[str, int, float]] = []
        bad = bad_uploads(images[0])
        threads = [
            threading.Thread(target=hammer, args=(base_url, images, bad, args, i, results))
            for i in range(args.clients)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report(results, time.perf_counter() - start, server.pid)
        if args.shadow:
            with httpx.Client(base_url=base_url, timeout=120) as client:
                print(f"  shadow {shadow_after_drain(client)}")


def wait_for_challenger(client: httpx.Client, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = client.get("/health").json()["shadow"]["challenger_version"]
        if version is not None:
            return version
        time.sleep(1)
    raise SystemExit("no challenger loaded: set the alias on a version other than the champion")


def shadow_after_drain(client: httpx.Client, timeout: float = 300) -> dict:
    """The shadow's counts once its queue is empty (it scores the rest when the load stops)."""
    deadline = time.monotonic() + timeout
    shadow = client.get("/health").json()["shadow"]
    while shadow["queued_requests"] and time.monotonic() < deadline:
        time.sleep(1)  # a benchmark waiting for the server to finish, not a test
        shadow = client.get("/health").json()["shadow"]
    return shadow


if __name__ == "__main__":
    main()
