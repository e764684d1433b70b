"""The PACS over DICOMweb, through dicomweb-client: the one module that speaks QIDO-RS (find),
WADO-RS (retrieve) and STOW-RS (store).

Films travel as DICOM Part 10 bytes in and out of this module, so the rest of the project
reads them through `pipeline.data.dicom` as it reads files. A query answer carries patient
data (names, IDs, dates); only the UIDs, modality and body part leave `find`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pydicom
import requests
from dicomweb_client import DICOMwebClient

from pipeline.errors import PneumoError
from pipeline.settings import PacsConfig

# QIDO-RS attribute tags (JSON model keys).
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
MODALITY, BODY_PART = "00080060", "00180015"
# Ask for the stored transfer syntax: a transcoded film would decode to other pixels than the
# same file given to `pneumo predict`.
AS_STORED = (("application/dicom", "*"),)


class PacsError(PneumoError, RuntimeError):
    """The PACS could not be reached or refused a request; the message names it and the cause."""


@dataclass(frozen=True)
class PacsInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    body_part: str  # "" where the PACS has none


def _value(found: dict, tag: str) -> str:
    values = found.get(tag, {}).get("Value") or [""]
    return str(values[0])


class Pacs:
    """One PACS's DICOMweb service (`PacsConfig`: URL, basic auth or a bearer token)."""

    def __init__(self, cfg: PacsConfig) -> None:
        if not cfg.url:
            raise PacsError("no PACS configured: set PNEUMO_PACS__URL to its DICOMweb root")
        self.url = cfg.url.rstrip("/")
        session = requests.Session()
        if cfg.token.get_secret_value():
            session.headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
        elif cfg.username:
            session.auth = (cfg.username, cfg.password.get_secret_value())
        self.client = DICOMwebClient(self.url, session=session, timeout=cfg.timeout_seconds)
        # One attempt per request: its own retries (five, backing off up to 16 s) would keep a
        # sync against a PACS that is down waiting half a minute per call; the flow's tasks
        # retry transient failures instead.
        self.client.set_http_retry_params(retry=False)

    def find(self, modalities: Sequence[str], since: date) -> list[PacsInstance]:
        """Instances of `modalities` in studies dated `since` or later, every page."""
        found = []
        for modality in modalities:
            filters = {"Modality": modality, "StudyDate": f"{since:%Y%m%d}-"}
            answer = self._call(
                "find instances (QIDO-RS)",
                self.client.search_for_instances,
                search_filters=filters,
                fields=["BodyPartExamined"],
                get_remaining=True,
            )
            found += [
                PacsInstance(
                    _value(item, STUDY_UID),
                    _value(item, SERIES_UID),
                    _value(item, SOP_UID),
                    _value(item, MODALITY) or modality,
                    _value(item, BODY_PART).upper(),
                )
                for item in answer
            ]
        return list({item.sop_uid: item for item in found}.values())

    def retrieve(self, instance: PacsInstance) -> bytes:
        """The instance as stored, as a Part 10 file."""
        dataset = self._call(
            "retrieve an instance (WADO-RS)",
            self.client.retrieve_instance,
            instance.study_uid,
            instance.series_uid,
            instance.sop_uid,
            media_types=AS_STORED,
        )
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    def store(self, parts: Sequence[bytes], study_uid: str | None = None) -> None:
        """Store Part 10 files (into the study `study_uid`, when given: STOW-RS); an instance
        the PACS refused fails it.

        Storing an instance the PACS already holds (the same SOP Instance UID) stores nothing
        new, so a repeated store after a crash does not duplicate a result.
        """
        datasets = [pydicom.dcmread(io.BytesIO(part)) for part in parts]
        answer = self._call(
            "store results (STOW-RS)", self.client.store_instances, datasets, study_uid
        )
        failed = answer.get("FailedSOPSequence") or []
        if failed:
            reasons = ", ".join(str(item.get("FailureReason", "?")) for item in failed)
            raise PacsError(f"the PACS at {self.url} refused {len(failed)} result(s): {reasons}")

    def _call(self, what: str, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            hint = ""
            if status in (401, 403):
                hint = ": check PNEUMO_PACS__USERNAME/PASSWORD or PNEUMO_PACS__TOKEN"
            raise PacsError(
                f"the PACS at {self.url} refused to {what} (HTTP {status}){hint}"
            ) from exc
        except requests.RequestException as exc:
            cause = type(exc).__name__
            raise PacsError(f"the PACS at {self.url} could not {what}: {cause}") from exc
