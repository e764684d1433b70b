"""Shared fixtures: tiny synthetic images and datasets made in tmp_path, and the settings."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.adapters.storage import LocalStore
from pipeline.settings import Settings
from tests import processes, summary

# Before any test imports Prefect, Keras or MLflow: keep their state out of the user's home.
_STATE = Path(tempfile.mkdtemp(prefix="pneumo-tests-"))
for _key, _value in {
    "PREFECT_HOME": str(_STATE / "prefect"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "KERAS_HOME": str(_STATE / "keras"),
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_key, _value)


REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED_DATA = Path(os.environ.get("PNEUMO_SHARED_DATA", REPO.parent / "shared" / "data"))
# The ImageNet ResNet50 weights Keras would download, as a file (no download here).
SHARED_WEIGHTS = (
    SHARED_DATA.parent / "weights" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
)


# A flow run in seconds: the `tiny` profile (32 px, one epoch, random ResNet weights), and data
# settings that suit the tiny subset.
FAST_TRAINING = {
    "PNEUMO_PROFILE": "tiny",
    "PNEUMO_VALIDATION__MIN_ROWS": "10",
    "PNEUMO_SPLIT__VAL_FRACTION": "0.2",
}


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """Fail the run if any process the suite started outlives it (then end those processes)."""
    yield
    alive = processes.leftovers()
    processes.kill_leftovers()
    problems = processes.PROBLEMS + [f"still running at the end: {name}" for name in alive]
    if alive:
        pytest.fail("processes started by the tests were left behind: " + "; ".join(problems))


@pytest.fixture(autouse=True)
def unbound_concurrency_service():
    """Prefect's slot-acquisition service is a per-process singleton whose client is bound to
    the API URL of its first use. Tests switch Prefect servers within one process (the e2e
    harness, the integration server), so after each test its instances are stopped; the next
    acquisition starts one on the server then in effect."""
    yield
    services = sys.modules.get("prefect.concurrency.services")
    if services is not None:
        services.ConcurrencySlotAcquisitionWithLeaseService.drain_all(timeout=10, at_exit=False)


WORKER_LINES: list[str] = []  # the summary lines of pytest-xdist workers, on the controller


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker: its controller prints these
        output["summary_lines"] = summary.lines()


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown when the plugin is absent
def pytest_testnodedown(node, error) -> None:
    WORKER_LINES.extend(getattr(node, "workeroutput", {}).get("summary_lines", []))


def pytest_terminal_summary(terminalreporter) -> None:
    """Start-up times, and processes that had to be killed even when no test failed because of
    it, from every process that ran tests."""
    for line in [*WORKER_LINES, *summary.lines()]:
        terminalreporter.write_line(line)


# Gates that any model passes: for tests about what happens after a pass.
OPEN_GATES = {
    "PNEUMO_GATES__MIN_AUC": "0",
    "PNEUMO_GATES__MIN_SENSITIVITY": "0",
    "PNEUMO_GATES__MIN_SPECIFICITY": "0",
    "PNEUMO_GATES__MAX_AUC_DROP": "1",
    "PNEUMO_GATES__MIN_SCORE_RANGE": "0",
}


def tiny_subset(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """A Kaggle-layout copy of a few real images per class and split from the bundled sample."""
    for split, count in (per_class or {"train": 10, "val": 4, "test": 5}).items():
        for label in ("NORMAL", "PNEUMONIA"):
            target = root / split / label
            target.mkdir(parents=True)
            for source in sorted((SAMPLE / split / label).iterdir())[:count]:
                shutil.copy2(source, target / source.name)
    return root


def image_bytes(
    size: tuple[int, int] = (96, 80), mode: str = "L", fmt: str = "JPEG", seed: int = 0
) -> bytes:
    """A small random image; different seeds give different bytes."""
    rng = np.random.default_rng(seed)
    width, height = size
    if mode == "I;16":
        array = rng.integers(0, 65535, (height, width), dtype=np.uint16)
        image = Image.fromarray(array)
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        array = rng.integers(0, 255, (height, width, bands), dtype=np.uint8)
        image = Image.fromarray(array.squeeze(-1) if bands == 1 else array, mode=None).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def bad_crc_png(seed: int = 0) -> bytes:
    """A PNG whose image-data checksum is wrong: PIL reads it, TensorFlow's decoder refuses it."""
    data = bytearray(image_bytes((96, 80), fmt="PNG", seed=seed))
    start = data.index(b"IDAT")
    data[start + 4 + int.from_bytes(data[start - 4 : start], "big")] ^= 0xFF  # first CRC byte
    return bytes(data)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_dataset(root: Path, patients: dict[str, dict[str, int]], seed: int = 0) -> Path:
    """Kaggle layout under `root`: {split: {file-name-prefix: n images}}; label from the prefix."""
    counter = seed
    for split, per_patient in patients.items():
        for patient, count in per_patient.items():
            label = "PNEUMONIA" if patient.startswith("person") else "NORMAL"
            for index in range(count):
                counter += 1
                name = (
                    f"{patient}_bacteria_{index}.jpeg"
                    if label == "PNEUMONIA"
                    else f"{patient}-{index + 1:04d}.jpeg"
                )
                write(root / split / label / name, image_bytes(seed=counter))
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", validation={"min_rows": 5})


@pytest.fixture
def store(settings: Settings) -> LocalStore:
    return LocalStore(settings.store_dir)


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """12 NORMAL and 12 PNEUMONIA patients in train (2 images each), 3+3 in test, 1+1 in val."""
    train = {f"IM-{i:04d}": 2 for i in range(12)} | {f"person{i}": 2 for i in range(12)}
    test = {f"IM-{i:04d}": 1 for i in range(100, 103)} | {f"person{i}": 1 for i in range(100, 103)}
    val = {"NORMAL2-IM-0001": 1, "person900": 1}
    return make_dataset(tmp_path / "chest_xray", {"train": train, "test": test, "val": val})


@pytest.fixture
def manifest(small_dataset: Path, store: LocalStore, settings: Settings):
    """The small dataset ingested and split by patient: a clean manifest."""
    from pipeline.data.ingest import ingest_folder
    from pipeline.data.split import assign_splits
    from pipeline.settings import SplitConfig

    return assign_splits(
        ingest_folder(small_dataset, store, settings.ingest).manifest, SplitConfig()
    )


@pytest.fixture
def data_docs(manifest, tmp_path: Path) -> Path:
    """Data Docs of a clean manifest, as the validate step writes them; returns their folder."""
    from pipeline.data.validation import validate_manifest
    from pipeline.settings import ValidationConfig

    validate_manifest(manifest, ValidationConfig(min_rows=5), tmp_path / "docs")
    return tmp_path / "docs"
