"""DICOM end to end: films with patient data in many tags are ingested, trained on, predicted in
batch and by the service; no identifying value reaches any output, and the originals are kept
byte for byte."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data.ingest import parse_patient_id
from tests.conftest import FAST_TRAINING, OPEN_GATES, tiny_subset
from tests.dicom import PHI, gray_film, make_dicom

pytestmark = pytest.mark.slow


def as_dicom(source: Path, index: int) -> bytes:
    """One of five encodings a hospital may send, in turn; the patient from the file name."""
    film = gray_film(source, side=64)
    wide = film.astype(np.uint16)
    patient = f"{PHI['PatientID']}-{parse_patient_id(source.name)}"
    variants = [
        lambda: make_dicom(wide * 16, bits_stored=12, intercept=-1024, patient_id=patient),
        lambda: make_dicom(
            (255 - wide) * 16, bits_stored=12, photometric="MONOCHROME1", patient_id=patient
        ),
        lambda: make_dicom(wide * 257, bits_stored=16, window=(32768, 65536), patient_id=patient),
        lambda: make_dicom(
            wide * 16, bits_stored=12, voi_lut=np.arange(4096) * 16.0, patient_id=patient
        ),
        lambda: make_dicom(film, bits_stored=8, jpeg_from=film, patient_id=patient),
    ]
    return variants[index % len(variants)]()


@dataclass(frozen=True)
class DicomRun:
    home: Path
    originals: dict[str, bytes]  # relative path -> the file as sent
    outputs: list[str]  # what the commands printed and answered


@pytest.fixture(scope="module")
def dicom_run(tmp_path_factory, prefect_harness) -> Iterator[DicomRun]:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.service import create_app
    from flows.training import training_pipeline
    from pipeline.settings import Settings

    tmp = tmp_path_factory.mktemp("dicom")
    jpegs = tiny_subset(tmp / "jpeg")
    root = tmp / "chest_xray"
    originals = {}
    for index, source in enumerate(sorted(jpegs.rglob("*.jpeg"))):
        relative = source.relative_to(jpegs).with_suffix(".dcm")
        originals[relative.as_posix()] = as_dicom(source, index)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(originals[relative.as_posix()])
    env = {
        **FAST_TRAINING, **OPEN_GATES,
        "PNEUMO_HOME": str(tmp / "home"),
        # The ResNet is registered untrained: what is tested is the data path, not training.
        "PNEUMO_TRAIN__RESNET_SCRATCH_EPOCHS": "0",
    }  # fmt: skip
    outputs = []
    # Every log record of the run, at every level, as a deployed process would write them.
    (tmp / "home" / "logs").mkdir(parents=True)
    to_file = logging.FileHandler(tmp / "home" / "logs" / "run.log")
    root_logger, level = logging.getLogger(), logging.getLogger().level
    root_logger.addHandler(to_file)
    root_logger.setLevel(logging.DEBUG)
    with ExitStack() as cleanup, pytest.MonkeyPatch.context() as patch:
        cleanup.callback(to_file.close)  # callbacks run last-in first-out
        cleanup.callback(root_logger.setLevel, level)
        cleanup.callback(root_logger.removeHandler, to_file)
        for key, value in env.items():
            patch.setenv(key, value)
        summary = training_pipeline(data_path=str(root))
        outputs.append(str(summary))
        films = sorted((root / "test").rglob("*.dcm"))
        predicted = CliRunner().invoke(app, ["predict", str(root / "test")])
        assert predicted.exit_code == 0, predicted.output
        outputs.append(predicted.output)
        with TestClient(create_app(Settings())) as client:
            for path in films[:3]:
                answer = client.post("/predict", files={"file": (path.name, path.read_bytes())})
                assert answer.status_code == 200, answer.text
                outputs.append(answer.text)
            # A lateral film: its own tags put it outside the intended use; still answered.
            film = gray_film(sorted(jpegs.rglob("*.jpeg"))[0], side=64)
            lateral = make_dicom(film, bits_stored=8, tags={"ViewPosition": "LL"})
            answer = client.post("/predict", files={"file": ("lateral.dcm", lateral)})
            outputs.append(answer.text)
            body = answer.json()["predictions"][0]
            assert body["in_scope"] is False
            assert "outside intended use: ViewPosition LL" in body["scope_reasons"][0]
            explained = client.post(
                "/explain", files={"file": (films[0].name, films[0].read_bytes())}
            )
            assert explained.status_code == 200, explained.text
    yield DicomRun(tmp / "home", originals, outputs)


def test_dicom_films_train_and_predict_with_patients_keyed(dicom_run: DicomRun) -> None:
    from pipeline.adapters.storage import LocalStore
    from pipeline.data.manifest import load_manifest
    from pipeline.predict.inference_log import read_inference_log

    store = LocalStore(dicom_run.home / "store")
    _, manifest = load_manifest(store)
    assert len(manifest) == len(dicom_run.originals) and not manifest["quarantined"].any()
    # The original file, byte for byte, for every film.
    for row in manifest.itertuples():
        assert store.get(row.original_key) == dicom_run.originals[row.path]
    assert manifest["patient_id"].str.startswith("dcm-").all()
    assert set(manifest["mode"]) == {"DICOM MONOCHROME1", "DICOM MONOCHROME2"}
    assert set(manifest["bit_depth"]) == {8, 12, 16}
    # Films of one patient share a key: no patient is in two carved splits.
    carved = manifest[manifest["source_split"] == "train"]
    assert (carved.groupby("patient_id")["split"].nunique() == 1).all()
    # Batch inference and the service (three films and a lateral) logged their predictions:
    # rendered films, scored.
    log = read_inference_log(store)
    tested = sum(1 for path in dicom_run.originals if path.startswith("test/"))
    assert len(log) == tested + 4 and log["probability"].between(0, 1).all()


def searchable_texts(home: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for every file under `home` but the originals, and every parquet cell."""
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        relative = path.relative_to(home).as_posix()
        if relative.startswith("store/raw/"):
            continue  # the originals, kept byte for byte on purpose
        yield relative, path.read_bytes().decode("latin-1")
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            yield f"{relative} (cells)", frame.astype(str).to_csv()


def test_no_patient_data_reaches_any_output(dicom_run: DicomRun) -> None:
    from prefect.settings import get_current_settings

    texts = list(searchable_texts(dicom_run.home))
    url = get_current_settings().server.database.connection_url
    database = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
    with sqlite3.connect(database.split("///", 1)[1]) as db:
        for (table,) in db.execute("select name from sqlite_master where type='table'"):
            rows = db.execute(f"select * from '{table}'").fetchall()
            texts.append((f"prefect:{table}", repr(rows)))
    texts += [(f"output {i}", text) for i, text in enumerate(dicom_run.outputs)]
    assert len(texts) > 50
    searched = {where for where, _ in texts}
    assert "mlflow.db" in searched and (dicom_run.home / "logs" / "run.log").stat().st_size > 0
    # The search finds what is there: every value is in the originals (kept out of the search).
    original = next(iter(dicom_run.originals.values())).decode("latin-1")
    assert all(value in original for value in PHI.values())
    found = [(tag, where) for tag, value in PHI.items() for where, text in texts if value in text]
    assert found == []
