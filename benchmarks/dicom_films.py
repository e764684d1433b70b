"""DICOM films as modalities send them, made from real X-rays: stored values of a given bit
depth, a modality LUT (rescale), optionally a window or a VOI LUT table, MONOCHROME1 or 2, raw
or JPEG-compressed. The PACS benchmark uploads them; the tests make theirs with it too
(`tests/dicom.py`, which adds patient data in many tags).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def dx_film(
    stored: np.ndarray,
    *,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    voi_lut: np.ndarray | None = None,
    jpeg_from: np.ndarray | None = None,
    tags: dict[str, str] | None = None,
) -> bytes:
    """A DICOM Part 10 file (Digital X-Ray) holding `stored`, or a JPEG Baseline encoding of the
    8-bit `jpeg_from`; `tags` set (or replace) others, e.g. PatientID, Modality or
    ViewPosition."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        JPEGBaseline8Bit,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg_from is not None else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "DX"
    # A PACS files an instance by study and series: each film its own unless `tags` say.
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    for tag, value in (tags or {}).items():
        setattr(ds, tag, value)
    pixels = jpeg_from if jpeg_from is not None else stored
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, 16]
        item.LUTData = np.round(voi_lut).astype("<u2").tobytes()
        item["LUTData"].VR = "OW"
        ds.VOILUTSequence = [item]
    if jpeg_from is not None:
        buffer = io.BytesIO()
        Image.fromarray(jpeg_from, mode="L").save(buffer, "JPEG", quality=95)
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
        ds.PixelData = stored.astype("<u2").tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
