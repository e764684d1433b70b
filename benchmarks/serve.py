"""Prediction-service latency and throughput: `python benchmarks/serve.py`.

PNEUMO_HOME (or MLFLOW_TRACKING_URI) must hold a pneumonia-resnet champion.
Starts `pneumo serve` on a free loopback port, then over real HTTP: 50 sequential one-image
`/predict` calls (p50/p95 latency), and batches of 8 and 32 images (images/s).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(client: httpx.Client, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            response = client.get("/health")
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the service did not become ready (is there a champion in PNEUMO_HOME?)")


@contextmanager
def serving(options: Sequence[str] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """`pneumo serve [OPTIONS]` on a free loopback port: (base URL, process), stopped when the
    block ends."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "pneumo"), "serve", "--port", str(port), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    images = [p.read_bytes() for p in sorted(SAMPLE.glob("test/*/*.jpeg"))]
    with serving() as (base_url, _), httpx.Client(base_url=base_url, timeout=120) as client:
        ready = wait_ready(client)
        print(f"serving {ready['model']} v{ready['version']}")
        client.post("/predict", files={"file": ("warm.jpeg", images[0])})  # tracing
        latencies = []
        for index in range(50):
            start = time.perf_counter()
            client.post("/predict", files={"file": ("x.jpeg", images[index % len(images)])})
            latencies.append(1000 * (time.perf_counter() - start))
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"one image: p50 {p50:.0f} ms, p95 {p95:.0f} ms over 50 sequential requests")
        for size in (8, 32):
            batch = [("files", (f"{i}.jpeg", images[i % len(images)])) for i in range(size)]
            client.post("/predict", files=batch)
            start = time.perf_counter()
            for _ in range(3):
                client.post("/predict", files=batch)
            rate = 3 * size / (time.perf_counter() - start)
            print(f"batches of {size}: {rate:.1f} images/s")


if __name__ == "__main__":
    main()
