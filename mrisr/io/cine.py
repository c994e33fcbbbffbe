"""Find the cine scans of a cardiac dataset: the ACDC layout, or any folder of cine NIfTI files or DICOM series.

ACDC (Bernard et al., IEEE TMI 2018) ships one folder per subject, ``patientNNN/``, holding the whole cine as
``patientNNN_4d.nii.gz`` (x, y, slice, time) and ``Info.cfg`` (``ED``, ``ES``, ``Group``, ``Height``, ``NbFrame``,
``Weight``, one ``key: value`` per line). `mrisr.io.load_volume` reads the 4D file as a time series
``(time, slice, row, column)``.
"""

from __future__ import annotations

from pathlib import Path

from mrisr.errors import InputError


def find_cine_cases(folder: str | Path) -> dict[str, Path]:
    """Subject name -> cine scan, sorted by name.

    ACDC: every ``*/patientNNN_4d.nii.gz`` below ``folder`` (the ``training`` and ``testing`` parts alike), named
    ``patientNNN``. Otherwise the ``.nii``/``.nii.gz`` files and DICOM series folders directly in ``folder``, named
    by file or folder name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder of cine scans")
    acdc = sorted(folder.rglob("*_4d.nii.gz"))
    if acdc:
        return {p.name[: -len("_4d.nii.gz")]: p for p in acdc}
    cases = {}
    for path in sorted(folder.iterdir()):
        if path.name.endswith((".nii", ".nii.gz")):
            cases[path.name.split(".")[0]] = path
        elif path.is_dir() and any(f.suffix.lower() == ".dcm" or f.suffix == "" for f in path.iterdir()
                                   if f.is_file()):
            cases[path.name] = path
    if not cases:
        raise InputError(folder, "holds no ACDC patient folders (patientNNN/patientNNN_4d.nii.gz), NIfTI files or "
                                 "DICOM series folders")
    return cases
