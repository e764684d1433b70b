"""Make shifted copies of real X-rays, so users can watch the drift loop react."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.shifts import DriftKind, shift_image
from pipeline.files import write_atomic


def simulate_batch(source: Path, out: Path, kind: DriftKind, limit: int | None = None) -> int:
    """Write a shifted copy of every image under `source` (the first `limit`, in name order)
    into `out` (flat); returns the count."""
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    files = files[:limit]
    if not files:
        raise FileNotFoundError(f"no JPEG or PNG images under {source}")
    out.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files):
        target = out / f"{path.stem}-{kind}.jpeg"
        if target.exists():
            raise FileExistsError(f"{target} exists; choose an empty --out folder")
        write_atomic(target, shift_image(path.read_bytes(), kind, seed=index))
    return len(files)
