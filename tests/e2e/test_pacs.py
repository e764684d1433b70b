"""`pneumo pacs sync` against a real PACS: Debian's Orthanc with its DICOMweb plugin, on
loopback with authentication on. Chest films made from real X-rays (12-bit, MONOCHROME1,
JPEG-compressed, windowed 16-bit), a hand film and a lateral one are uploaded; the sync scores
each chest film once, stores an SR (and a Grad-CAM capture) into its study, and the SR's
probability is the one `pneumo predict` gives the same file."""

from __future__ import annotations

import io
import os
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.dicom import PHI, gray_film, make_dicom
from tests.e2e.cli import cli_env, pneumo, start_paused
from tests.e2e.conftest import Trained
from tests.integration.services import orthanc_server

pytestmark = pytest.mark.slow
USER = "pneumo-sync"
SINCE = ["--since", "2024-01-01"]  # the films' StudyDate is PHI["StudyDate"], 2024-01-02


@dataclass(frozen=True)
class Pacs:
    url: str
    password: str
    client: object  # dicomweb_client.DICOMwebClient, for the test's own uploads and reads

    def upload(self, films: list[bytes]) -> None:
        import pydicom

        self.client.store_instances([pydicom.dcmread(io.BytesIO(film)) for film in films])

    def instances(self, modality: str) -> list:
        """Every stored instance of `modality`, parsed."""
        found = self.client.search_for_instances(search_filters={"Modality": modality})
        uid = lambda item, tag: item[tag]["Value"][0]  # noqa: E731
        return [
            self.client.retrieve_instance(
                uid(item, "0020000D"), uid(item, "0020000E"), uid(item, "00080018")
            )
            for item in found
        ]


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Pacs]:
    from dicomweb_client import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    password = secrets.token_urlsafe(12)
    service, url = orthanc_server(tmp_path / "orthanc", USER, password)
    service.start()
    try:
        session = create_session_from_user_pass(USER, password)
        yield Pacs(url, password, DICOMwebClient(url, session=session))
    finally:
        service.stop()


def chest_films(trained: Trained, count: int, first: int = 0) -> list[bytes]:
    """`count` frontal chest films of real X-rays, in four encodings by turn; the first two
    share a study, as a PA and a repeat would."""
    from pydicom.uid import generate_uid

    sources = sorted((trained.data / "test").rglob("*.jpeg"))[first : first + count]
    study = generate_uid()
    films = []
    for index, source in enumerate(sources):
        film = gray_film(source, side=96)
        wide = film.astype(np.uint16)
        tags = {"BodyPartExamined": "CHEST", "ViewPosition": "PA", "PatientAge": "003Y"}
        if index < 2:
            tags["StudyInstanceUID"] = study
        if index == 3:
            del tags["BodyPartExamined"]  # not every modality fills it in
        encodings = [
            {"stored": wide * 16, "bits_stored": 12},
            {"stored": (255 - wide) * 16, "bits_stored": 12, "photometric": "MONOCHROME1"},
            {"stored": film, "bits_stored": 8, "jpeg_from": film},
            {"stored": wide * 257, "bits_stored": 16, "window": (32768, 65536)},
        ]
        encoding = encodings[index % len(encodings)]
        films.append(make_dicom(encoding.pop("stored"), **encoding, tags=tags))
    return films


def sync_env(trained: Trained, pacs: Pacs) -> dict[str, str]:
    return cli_env(trained.home) | {
        "PNEUMO_PACS__URL": pacs.url,
        "PNEUMO_PACS__USERNAME": USER,
        "PNEUMO_PACS__PASSWORD": pacs.password,
    }


def report_items(report) -> dict:
    return {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in report.ContentSequence}


def reported_probabilities(pacs: Pacs) -> dict[str, float]:
    """The probability each stored SR states, by the SOP Instance UID of the film it scored."""
    found = {}
    for report in pacs.instances("SR"):
        items = report_items(report)
        film = items["Source of Measurement"].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        assert film not in found, "two reports for one film"
        value = items["Probability of pneumonia"].MeasuredValueSequence[0].NumericValue
        found[film] = float(value)
    return found


def sop_uid(film: bytes) -> str:
    import pydicom

    return str(pydicom.dcmread(io.BytesIO(film), stop_before_pixels=True).SOPInstanceUID)


def test_sync_scores_each_chest_film_once_stores_its_results_and_keeps_phi_in_the_pacs(
    trained: Trained, pacs: Pacs, tmp_path: Path
) -> None:
    import pydicom

    chest = chest_films(trained, 4)
    hand = make_dicom(gray_film(sorted(trained.data.rglob("*.jpeg"))[0]), bits_stored=8,
                      tags={"BodyPartExamined": "HAND"})  # fmt: skip
    lateral = make_dicom(gray_film(sorted(trained.data.rglob("*.jpeg"))[1]), bits_stored=8,
                         tags={"BodyPartExamined": "CHEST", "ViewPosition": "LL"})  # fmt: skip
    pacs.upload([*chest, hand, lateral])
    env = sync_env(trained, pacs)
    before = snapshot(trained.home)

    code, out = pneumo(["pacs", "sync", *SINCE, "--overlay"], env, tmp_path / "sync.log")
    assert code == 0, out[-3000:]
    assert "6 chest radiograph instances found, 0 handled by an earlier sync" in out, out
    assert "scored 4; stored 4 reports (SR) and 4 Grad-CAM captures" in out, out
    assert "not scored (1): not selected: BodyPartExamined HAND" in out, out
    assert "not scored (1): outside intended use: ViewPosition LL" in out, out

    # One SR per chest film, in the film's study, with its patient; the probability is the one
    # `pneumo predict` gives the same file.
    reported = reported_probabilities(pacs)
    assert set(reported) == {sop_uid(film) for film in chest}
    folder = tmp_path / "films"
    folder.mkdir()
    for index, film in enumerate(chest):
        (folder / f"film{index}.dcm").write_bytes(film)
    code, out = pneumo(["predict", str(folder), "--out", str(tmp_path / "p.csv")], env,
                       tmp_path / "predict.log")  # fmt: skip
    assert code == 0, out[-3000:]
    import pandas as pd

    predicted = pd.read_csv(tmp_path / "p.csv").set_index("image")["probability"]
    for index, film in enumerate(chest):
        assert abs(reported[sop_uid(film)] - predicted[f"film{index}.dcm"]) < 1e-4
    originals = {sop_uid(film): pydicom.dcmread(io.BytesIO(film)) for film in chest}
    for report in pacs.instances("SR"):
        items = report_items(report)
        film = originals[items["Source of Measurement"].ReferencedSOPSequence[0]
                         .ReferencedSOPInstanceUID]  # fmt: skip
        assert report.StudyInstanceUID == film.StudyInstanceUID
        assert report.SeriesInstanceUID != film.SeriesInstanceUID
        assert (
            report.PatientID == PHI["PatientID"]
            and report.AccessionNumber == PHI["AccessionNumber"]
        )
        assert items["Algorithm Name"].TextValue == "pneumonia-resnet"
        assert "not for diagnosis" in report.SeriesDescription
    captures = pacs.instances("OT")
    assert len(captures) == 4
    assert all(list(c.ImageType)[:2] == ["DERIVED", "SECONDARY"] for c in captures)
    assert {c.StudyInstanceUID for c in captures} == {
        f.StudyInstanceUID for f in originals.values()
    }

    # A second sync stores nothing new.
    code, out = pneumo(["pacs", "sync", *SINCE, "--overlay"], env, tmp_path / "again.log")
    assert code == 0, out[-3000:]
    assert "6 chest radiograph instances found, 6 handled by an earlier sync" in out, out
    assert "scored 0; stored 0 reports (SR)" in out, out
    assert len(pacs.instances("SR")) == 4 and len(pacs.instances("OT")) == 4

    # Nothing identifying left the PACS: no patient value and no film UID in what the syncs
    # wrote to the state directory (store, logs, MLflow, Prefect's database) or printed.
    identifying = [*PHI.values(), *originals]
    written = [
        path
        for path, stamp in snapshot(trained.home).items()
        # The champion's cached artifacts are copies of what training registered (long lists
        # of floats, where an 8-digit date turns up by chance).
        if before.get(path) != stamp and "cache/champions" not in path.as_posix()
    ]
    assert any("pacs/done" in str(path) for path in written)
    texts = [(path, path.read_bytes().decode("latin-1")) for path in written]
    texts += [
        (tmp_path / name, (tmp_path / name).read_text()) for name in ("sync.log", "again.log")
    ]
    assert len(texts) > 10
    assert [(value, str(where)) for value in identifying for where, text in texts
            if value in text] == []  # fmt: skip


def snapshot(home: Path) -> dict[Path, tuple[int, int]]:
    """(modification time, size) of every file under `home`: what a command wrote is what
    changed. Files written before (a trained model's numbers) could match a date by chance."""
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in home.rglob("*") if p.is_file()}


def test_a_sync_killed_between_scoring_and_storing_stores_the_rest_next_time_nothing_twice(
    trained: Trained, pacs: Pacs, tmp_path: Path
) -> None:
    from pipeline.adapters.storage import LocalStore
    from pipeline.predict.inference_log import read_inference_log

    chest = chest_films(trained, 3, first=4)
    pacs.upload(chest)
    env = sync_env(trained, pacs)
    before = len(read_inference_log(LocalStore(trained.home / "store")))
    process = start_paused("pacs:scored", env, tmp_path, "killed", ("pacs", "sync", *SINCE))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert pacs.instances("SR") == []

    code, out = pneumo(["pacs", "sync", *SINCE], env, tmp_path / "resume.log")
    assert code == 0, out[-3000:]
    assert "scored 0; stored 3 reports (SR)" in out, out
    assert set(reported_probabilities(pacs)) == {sop_uid(film) for film in chest}
    # Each film was scored once: the killed sync's scores are the ones stored.
    assert len(read_inference_log(LocalStore(trained.home / "store"))) == before + 3
    code, out = pneumo(["pacs", "sync", *SINCE], env, tmp_path / "again.log")
    assert code == 0 and "scored 0; stored 0 reports (SR)" in out, out
    assert len(pacs.instances("SR")) == 3


def test_a_pacs_that_is_down_or_refuses_the_credentials_is_a_clear_error(
    trained: Trained, pacs: Pacs, tmp_path: Path
) -> None:
    from pipeline.adapters.storage import LocalStore
    from pipeline.predict.pacs import WATERMARK_KEY
    from tests.integration.services import free_port

    store = LocalStore(trained.home / "store")
    watermark = store.get(WATERMARK_KEY) if store.exists(WATERMARK_KEY) else None
    env = sync_env(trained, pacs)
    wrong = env | {"PNEUMO_PACS__PASSWORD": "not-" + pacs.password}
    code, out = pneumo(["pacs", "sync"], wrong, tmp_path / "wrong.log")
    assert code == 1, out[-3000:]
    assert f"error: the PACS at {pacs.url} refused to find instances (QIDO-RS) (HTTP 401)" in out
    assert wrong["PNEUMO_PACS__PASSWORD"] not in out
    down = env | {"PNEUMO_PACS__URL": f"http://127.0.0.1:{free_port()}/dicom-web"}
    code, out = pneumo(["pacs", "sync"], down, tmp_path / "down.log")
    assert code == 1, out[-3000:]
    assert "could not find instances (QIDO-RS): ConnectionError" in out, out[-3000:]
    # Neither moved the watermark.
    assert (store.get(WATERMARK_KEY) if store.exists(WATERMARK_KEY) else None) == watermark
