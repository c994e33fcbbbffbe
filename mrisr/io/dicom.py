"""A DICOM series folder (one image per file) through pydicom.

Slices are ordered by their position projected on the slice normal (``row direction x column direction``), never by
file name or instance number. Spacing: ``PixelSpacing`` is ``[row spacing, column spacing]`` (mm between rows, mm
between columns); the slice spacing is the measured distance between consecutive slice positions, not the
``SliceThickness`` tag. ``RescaleSlope`` / ``RescaleIntercept`` are applied. Several images at one position (a cine
series) load as a time series, ordered by trigger time.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet

from mrisr.errors import InputError
from mrisr.volume import LPS_TO_RAS, Volume


def _series_label(uid: str, headers: list) -> str:
    h = headers[0]
    return (f"SeriesInstanceUID {uid} (number {getattr(h, 'SeriesNumber', '?')}, "
            f"'{getattr(h, 'SeriesDescription', '')}', {len(headers)} images)")


def _looks_like_dicom(path: Path) -> bool:
    """Whether ``path`` starts as a DICOM Part 10 file does (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return True  # cannot even be opened: count it as unreadable, not as some other file


def _is_image(ds) -> bool:
    """Whether the DICOM object is an image (its SOP class is an image storage class)."""
    uid = getattr(ds, "SOPClassUID", None) or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    return uid is not None and "Image Storage" in getattr(uid, "name", "")


def _unreadable(path: Path, problem: str, skip: bool) -> None:
    if not skip:
        raise InputError(path, f"{problem}; pass skip_unreadable=True (--skip-unreadable) to load the series without "
                               "it")
    warnings.warn(f"{path}: {' '.join(problem.split())}; skipped", RuntimeWarning, stacklevel=4)


def _candidates(path: Path, skip_unreadable: bool) -> tuple[Path, list[Path]]:
    """``(folder, files)``: the files a DICOMDIR (``path`` itself, or one at the top of the folder) references, or
    else every file under the folder. A file a DICOMDIR names but that is missing is an error naming it (a warning
    with ``skip_unreadable``)."""
    dicomdir = path if path.is_file() else path / "DICOMDIR"
    if not dicomdir.is_file():
        return path, sorted(p for p in path.rglob("*") if p.is_file())
    try:
        fileset = FileSet(pydicom.dcmread(dicomdir))
    except Exception as err:  # noqa: BLE001 (pydicom raises many types for a damaged DICOMDIR)
        raise InputError(dicomdir, f"DICOMDIR cannot be read ({type(err).__name__}: {err})") from None
    files = []
    for instance in fileset:
        file = Path(instance.path)
        if file.is_file():
            files.append(file)
        else:
            _unreadable(file, f"listed in {dicomdir} but missing", skip_unreadable)
    return dicomdir.parent, sorted(files)


def _scan(path: Path, skip_unreadable: bool = False) -> tuple[Path, dict[str, list]]:
    """``(folder, headers)``: the headers of every DICOM image under ``path`` (a folder, or a DICOMDIR) grouped by
    SeriesInstanceUID. No file is passed over in silence: a file that is not DICOM, or a DICOM file that cannot be
    read, is an error naming it, or with ``skip_unreadable`` a warning; DICOM objects that are not images
    (reports, presentation states) are named in one warning."""
    folder, files = _candidates(path, skip_unreadable)
    series: dict[str, list] = defaultdict(list)
    foreign, not_images = [], []
    for file in files:
        if file.name == "DICOMDIR":
            continue  # the index itself, read above
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError) as err:
            if isinstance(err, InvalidDicomError) and not _looks_like_dicom(file):
                foreign.append(file)
                continue
            _unreadable(file, f"DICOM file cannot be read ({type(err).__name__}: {err})", skip_unreadable)
            continue
        if "ImagePositionPatient" in ds and "Rows" in ds:
            ds.filename = str(file)
            series[str(getattr(ds, "SeriesInstanceUID", ""))].append(ds)
        elif not len(ds) or _is_image(ds):  # pydicom stops quietly where a truncated file ends
            _unreadable(file, "DICOM image whose header ends before its position and size (truncated?)",
                        skip_unreadable)
        else:
            not_images.append(f"{file.name} ({getattr(getattr(ds, 'SOPClassUID', None), 'name', 'no SOP class')})")
    if foreign and series:
        if not skip_unreadable:
            _unreadable(foreign[0], f"not a DICOM file (no 'DICM' marker), in a folder of DICOM images"
                                    f"{f' with {len(foreign) - 1} more such file(s)' if len(foreign) > 1 else ''}",
                        skip_unreadable)
        warnings.warn(f"{folder}: {len(foreign)} file(s) that are not DICOM skipped: "
                      f"{', '.join(str(f.relative_to(folder)) for f in foreign)}", RuntimeWarning, stacklevel=3)
    elif foreign:
        raise InputError(folder, f"no DICOM images found in this folder ({len(foreign)} other files, e.g. "
                                 f"{foreign[0].relative_to(folder)})")
    if not_images and series:
        warnings.warn(f"{folder}: {len(not_images)} DICOM object(s) that are not images left out: "
                      f"{', '.join(not_images)}", RuntimeWarning, stacklevel=3)
    return folder, series


def _choose(folder: Path, series: dict[str, list], choice) -> list:
    if not series:
        raise InputError(folder, "no DICOM images found in this folder")
    if choice is None:
        if len(series) == 1:
            return next(iter(series.values()))
        found = "; ".join(_series_label(uid, hs) for uid, hs in series.items())
        raise InputError(folder, f"holds {len(series)} series, choose one with series=<UID, number or "
                                 f"description> (mrisr info --series): {found}")
    choice = str(choice)
    for uid, headers in series.items():
        h = headers[0]
        if choice in (uid, str(getattr(h, "SeriesNumber", None)), str(getattr(h, "SeriesDescription", None))):
            return headers
    found = "; ".join(_series_label(uid, hs) for uid, hs in series.items())
    raise InputError(folder, f"no series matches {choice!r}; found: {found}")


def _float_list(ds, tag: str, path) -> np.ndarray:
    if tag not in ds:
        raise InputError(path, f"DICOM image lacks {tag}, needed to place it in space")
    return np.array([float(v) for v in ds[tag].value], dtype=np.float64)


def read_dicom_series(folder: Path, series=None, skip_unreadable: bool = False) -> Volume:
    """Load one series from ``folder`` (a folder of DICOM files, or a DICOMDIR and the files it lists); ``series``
    picks one by UID, SeriesNumber or SeriesDescription where there are several (the error lists them).
    ``skip_unreadable``: leave out files that are not DICOM or cannot be read or decoded, with a warning naming
    them (default: an error naming the first). Compressed transfer syntaxes (JPEG Lossless, JPEG, JPEG-LS,
    JPEG 2000, RLE) are decoded by pydicom through pylibjpeg."""
    folder, found = _scan(folder, skip_unreadable)
    headers = _choose(folder, found, series)
    pixels = {}
    for h in headers:  # decoded before the geometry, so that a file left out is left out of the grid too
        try:
            ds = pydicom.dcmread(h.filename)
            pixels[h.filename] = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1) + \
                float(getattr(ds, "RescaleIntercept", 0) or 0)
        except Exception as err:  # noqa: BLE001 (pydicom and its decoders raise many types)
            _unreadable(Path(h.filename), f"pixel data cannot be decoded ({type(err).__name__}: {err})",
                        skip_unreadable)
    headers = [h for h in headers if h.filename in pixels]
    if not headers:
        raise InputError(folder, "no DICOM image in the series could be decoded")
    first = headers[0]
    orientation = _float_list(first, "ImageOrientationPatient", first.filename)
    row_dir, col_dir = orientation[:3], orientation[3:]  # along a row (column index grows), along a column
    normal = np.cross(row_dir, col_dir)
    for h in headers:
        if not np.allclose(_float_list(h, "ImageOrientationPatient", h.filename), orientation, atol=1e-4):
            raise InputError(h.filename, "slice orientation differs from the rest of the series")
        if (h.Rows, h.Columns) != (first.Rows, first.Columns):
            raise InputError(h.filename, f"image size {h.Rows}x{h.Columns} differs from the series' "
                                         f"{first.Rows}x{first.Columns}")

    by_position: dict[float, list] = defaultdict(list)
    for h in headers:
        by_position[round(float(_float_list(h, "ImagePositionPatient", h.filename) @ normal), 3)].append(h)
    positions = sorted(by_position)
    n_frames = {len(v) for v in by_position.values()}
    if len(n_frames) != 1:
        raise InputError(folder, f"slice positions hold different numbers of images {sorted(n_frames)}: "
                                 "missing files, or several series mixed under one UID")
    n_frames = n_frames.pop()
    stacks = [sorted(by_position[p], key=lambda h: (float(getattr(h, "TriggerTime", 0) or 0),
                                                    int(getattr(h, "InstanceNumber", 0) or 0)))
              for p in positions]

    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    origins = np.array([_float_list(s[0], "ImagePositionPatient", s[0].filename) for s in stacks])
    if len(positions) > 1:
        gaps = np.diff(positions)
        if gaps.max() - gaps.min() > 0.01 * gaps.mean() + 1e-3:
            widest = int(np.argmax(gaps))
            raise InputError(folder, f"slice spacing varies from {gaps.min():.4g} to {gaps.max():.4g} mm: a gap of "
                                     f"{gaps[widest]:.4g} mm between slices {widest + 1} and {widest + 2} (of "
                                     f"{len(positions)}, at {positions[widest]:.4g} and {positions[widest + 1]:.4g} mm "
                                     f"along the normal), missing slices?")
        slice_step = (origins[-1] - origins[0]) / (len(positions) - 1)
    else:
        thickness = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 0) or 1)
        slice_step = normal * thickness
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = slice_step
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = row_dir * col_spacing
    affine_lps[:3, 3] = origins[0]

    data = np.empty((n_frames, len(stacks), int(first.Rows), int(first.Columns)), dtype=np.float32)
    for s, stack in enumerate(stacks):
        for t, h in enumerate(stack):
            data[t, s] = pixels[h.filename]

    phase_axes = {"ROW": (2,), "COL": (1,)}.get(str(getattr(first, "InPlanePhaseEncodingDirection", "")), ())
    if str(getattr(first, "MRAcquisitionType", "")) == "3D" and phase_axes:
        phase_axes = (0, *phase_axes)
    meta = {
        "source_format": "dicom",
        "series_description": str(getattr(first, "SeriesDescription", "")) or None,
        "series_uid": str(getattr(first, "SeriesInstanceUID", "")) or None,
        "field_strength_t": float(first.MagneticFieldStrength) if "MagneticFieldStrength" in first else None,
        "phase_encoding_axes": phase_axes or None,
        "slice_thickness_mm": float(first.SliceThickness) if getattr(first, "SliceThickness", None) else None,
        "manufacturer": str(getattr(first, "Manufacturer", "")) or None,
    }
    if n_frames > 1:
        times = [float(getattr(h, "TriggerTime", 0) or 0) for h in stacks[0]]
        if len(times) > 1 and times[-1] > times[0]:
            meta["frame_time_ms"] = (times[-1] - times[0]) / (len(times) - 1)
    return Volume(data[0] if n_frames == 1 else data, LPS_TO_RAS @ affine_lps,
                  {k: v for k, v in meta.items() if v is not None})
