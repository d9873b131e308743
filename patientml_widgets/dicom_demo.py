"""Synthetic DICOM studies for the notebooks and tests: written offline, no patient data.

:func:`write_dicom_sample` writes, for a few made-up patients, a CT series of axial slices
of a phantom (air, soft tissue, bone ring, a round lesion; stored as uint16 with intercept
-1024, so the values import in Hounsfield units) under shuffled file names (the order must
come from the headers), and one CR chest-like radiograph (MONOCHROME1, two header windows).
The phantom's lesion mask comes with it, for checking a model or a round trip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["phantom_slice", "write_dicom", "write_dicom_sample", "write_series"]

_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, for example UIDs


def phantom_slice(patient: int, z: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Slice ``z`` of patient ``patient``'s phantom: ``(Hounsfield units as int16, lesion mask)``."""
    rng = np.random.default_rng([patient, z])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    body = (xx / 0.42) ** 2 + (yy / 0.34) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0)
    ring = body & ((xx / 0.36) ** 2 + (yy / 0.28) ** 2 > 1)
    hu[ring] = 700.0
    lungs = ((np.abs(xx) - 0.17) / 0.12) ** 2 + (yy / 0.2) ** 2 < 1
    hu[lungs & body & ~ring] = -850.0
    cz = 3 + patient % 3
    r = 0.09 - 0.02 * abs(z - cz)
    centre = (0.1 * ((patient % 2) * 2 - 1), 0.05)
    lesion = (r > 0) & ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < max(r, 0) ** 2)
    hu[lesion] = 90.0
    hu += rng.normal(0, 12, hu.shape)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), lesion.astype(np.uint8)


def write_dicom(path: str | os.PathLike, pixels: np.ndarray, **header: Any) -> Path:
    """Write one uncompressed DICOM image. ``header``: DICOM keywords (e.g. ``Modality="CT"``)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    path = Path(path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = header.get("SOPClassUID") or SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = header.get("SOPInstanceUID") or generate_uid(_UID_ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(_UID_ROOT)
    ds.SeriesInstanceUID = generate_uid(_UID_ROOT)
    pixels = np.ascontiguousarray(pixels)
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 1 if pixels.ndim == 2 else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if pixels.ndim == 2 else "RGB"
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom_sample(
    folder: str | os.PathLike, *, patients: int = 2, slices: int = 8, size: int = 64
) -> dict[str, np.ndarray]:
    """Write the sample studies under ``folder``; return the lesion mask of every CT slice by file name."""
    from pydicom.uid import generate_uid

    folder = Path(folder)
    masks: dict[str, np.ndarray] = {}
    for p in range(patients):
        patient_id = f"PHANTOM-{p + 1:03d}"
        study, series = generate_uid(_UID_ROOT), generate_uid(_UID_ROOT)
        order = np.random.default_rng(p).permutation(slices)  # file names say nothing about position
        for z in range(slices):
            hu, lesion = phantom_slice(p, z, size)
            name = f"{patient_id}/CT/IM{int(order[z]):04d}.dcm"
            write_dicom(
                folder / name,
                (hu.astype(np.int32) + 1024).astype(np.uint16),
                Modality="CT",
                PatientID=patient_id,
                PatientName=f"Phantom^Number{p + 1}",
                StudyInstanceUID=study,
                SeriesInstanceUID=series,
                SeriesDescription="Phantom chest",
                InstanceNumber=int(order[z]) + 1,  # deliberately not the slice order either
                ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                ImagePositionPatient=[-160.0, -160.0, -50.0 + 5.0 * z],
                PixelSpacing=[5.0, 5.0],
                SliceThickness=5.0,
                RescaleSlope=1,
                RescaleIntercept=-1024,
                RescaleType="HU",
                WindowCenter=40,
                WindowWidth=400,
            )
            masks[name] = lesion
        yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
        attenuation = 3000 - 1800 * np.exp(-((xx / 0.35) ** 2 + (yy / 0.45) ** 2)) + 300 * (np.abs(xx) > 0.4)
        write_dicom(
            folder / f"{patient_id}/CR/chest.dcm",
            np.clip(attenuation, 0, 4095).astype(np.uint16),
            Modality="CR",
            PatientID=patient_id,
            PatientName=f"Phantom^Number{p + 1}",
            StudyInstanceUID=generate_uid(_UID_ROOT),
            PhotometricInterpretation="MONOCHROME1",
            BitsStored=12,
            HighBit=11,
            WindowCenter=[2048, 1800],
            WindowWidth=[4096, 1200],
            WindowCenterWidthExplanation=["NORMAL", "HARDER"],
        )
    return masks


def write_series(
    folder: str | os.PathLike,
    volume: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8),
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    origin: tuple[float, float, float] = (-100.0, -100.0, -50.0),
    patient_id: str = "PHANTOM-001",
    modality: str = "CT",
    **header: Any,
) -> np.ndarray:
    """Write a CT (or MR) series of ``volume`` ((Z, Y, X) values, e.g. Hounsfield units) under ``folder``.

    Slice ``k`` lies at ``origin + k * spacing[0] * normal`` in patient coordinates (LPS, mm), with
    rows along ``orientation[:3]`` and columns along ``orientation[3:]`` (the DICOM
    ImageOrientationPatient); a negative ``spacing[0]`` writes the slices against the normal.
    Values are stored as int16 with the rescale a scanner writes (slope 1, intercept -1024 on
    uint16 when the values allow). File names are shuffled: the order must come from the headers.
    Returns the 4 x 4 affine from (column, row, slice) indices to LPS millimetres.
    """
    from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid

    folder = Path(folder)
    volume = np.asarray(volume)
    row, col = np.array(orientation[:3], float), np.array(orientation[3:6], float)
    normal = np.cross(row, col)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1] = row * spacing[2], col * spacing[1]
    affine[:3, 2], affine[:3, 3] = normal * spacing[0], origin
    study, series, frame = (generate_uid(_UID_ROOT) for _ in range(3))
    order = np.random.default_rng(len(volume)).permutation(len(volume))
    shifted = volume.min() >= -1024 and volume.max() <= 64511
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    for k, plane in enumerate(volume):
        pixels = (plane.astype(np.int32) + 1024).astype(np.uint16) if shifted else plane.astype(np.int16)
        common: dict[str, Any] = {
            "Modality": modality,
            "PatientID": patient_id,
            "PatientName": f"Phantom^{patient_id}",
            "StudyInstanceUID": study,
            "SeriesInstanceUID": series,
            "FrameOfReferenceUID": frame,
            "SeriesDescription": "Synthetic series",
            "SeriesNumber": 1,
            "InstanceNumber": k + 1,
            "ImageOrientationPatient": [float(v) for v in orientation],
            "ImagePositionPatient": [float(v) for v in affine[:3, :3] @ [0, 0, k] + affine[:3, 3]],
            "PixelSpacing": [float(spacing[1]), float(spacing[2])],
            "SliceThickness": abs(float(spacing[0])),
            "RescaleSlope": 1,
            "RescaleIntercept": -1024 if shifted else 0,
            "WindowCenter": 40,
            "WindowWidth": 400,
        }
        if modality == "CT":
            common["RescaleType"] = "HU"
        common["SOPClassUID"] = sop_class
        write_dicom(folder / f"IM{int(order[k]):05d}.dcm", pixels, **{**common, **header})
    return affine
