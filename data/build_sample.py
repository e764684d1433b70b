"""Rebuild the bundled demo sample `data/sample/` from the 224 px copy of the official train split.

    python data/build_sample.py --source ../shared/data/chest_xray_train224 [--seed 7]

`train/` and `test/` are whole patients drawn at random (seeded) from the 224 px train copy,
files copied byte for byte; no patient is in both. `val/` (the 16 official val images, original
bytes) is kept as it is. Writes `MANIFEST.sha256`; `ATTRIBUTION.md` is maintained by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
from collections import defaultdict
from pathlib import Path

from pipeline.data.ingest import parse_patient_id

SAMPLE = Path(__file__).parent / "sample"
# Images per split and label: the class ratio of the official train split (about 1:2.9) eased
# to 1:1.5 in test, so the specificity the gates check rests on more than a handful of images.
COUNTS = {
    "train": {"NORMAL": 240, "PNEUMONIA": 420},
    "test": {"NORMAL": 60, "PNEUMONIA": 90},
}


def patients_of(folder: Path) -> dict[str, list[Path]]:
    by_patient: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*.jpeg")):
        by_patient[parse_patient_id(path.name)].append(path)
    return by_patient


def draw(by_patient: dict[str, list[Path]], count: int, rng: random.Random) -> list[Path]:
    """Whole patients, in random order, until `count` images (the last patient may be cut)."""
    chosen: list[Path] = []
    for patient in rng.sample(sorted(by_patient), len(by_patient)):
        chosen += by_patient.pop(patient)
        if len(chosen) >= count:
            return chosen[:count]
    raise SystemExit(f"not enough images: wanted {count}, found {len(chosen)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for label in ("NORMAL", "PNEUMONIA"):
        by_patient = patients_of(args.source / "train" / label)
        for split in ("test", "train"):  # test first: its patients leave the pool
            target = SAMPLE / split / label
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for path in draw(by_patient, COUNTS[split][label], rng):
                shutil.copyfile(path, target / path.name)
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(SAMPLE)}"
        for p in sorted(SAMPLE.glob("*/*/*"))
        if p.is_file()
    ]
    (SAMPLE / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} files in {SAMPLE}")


if __name__ == "__main__":
    main()
