"""Resumable HTTP downloads, and the mridata.org knee catalogue (download, reconstruct, cache as NIfTI).

The knees: the 20 cases of mridata.org's "Stanford Fullysampled 3D FSE Knees" (GE 3 T, 8 coils, 3D Cartesian FSE,
320 x 320 x 256, about 1.7 GB each as ISMRMRD raw k-space; CC BY-NC 4.0; cite Epperson et al., SMRT 2013). Each is
downloaded to ``DEST/raw/<uuid>.h5`` and reconstructed once to ``DEST/knee_NN.nii.gz`` (int16 with scale), which is
all the notebooks ever read.
"""

from __future__ import annotations

import csv
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mrisr.errors import InputError
from mrisr.io import load_volume, save_volume
from mrisr.io.ismrmrd_raw import is_ismrmrd, read_header

DEFAULT_KNEE_URL = os.environ.get("MRISR_MRIDATA_URL", "http://mridata.org/download/{uuid}")
"""URL template with ``{uuid}``. The files are also reported at
``https://mridata-org-assets.s3.amazonaws.com/media/{uuid}.h5``; set ``MRISR_MRIDATA_URL`` or ``--url`` to use it."""


class DownloadError(RuntimeError):
    """A download that did not complete; the message says whether running again resumes it."""


@dataclass(frozen=True)
class KneeCase:
    case: int
    uuid: str


def knee_cases() -> list[KneeCase]:
    """The 20 mridata.org knees in the catalogue's order (case 1 to 20)."""
    text = resources.files("mrisr.catalogue").joinpath("mridata_knees.csv").read_text()
    return [KneeCase(int(row["case"]), row["uuid"].strip()) for row in csv.DictReader(text.splitlines())]


def parse_cases(spec: str) -> list[int]:
    """``"1-20"``, ``"3"``, ``"1,4,7-9"`` -> sorted case numbers; each must be in the catalogue."""
    valid = {c.case for c in knee_cases()}
    cases: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            numbers = range(int(lo), int(hi or lo) + 1)
        except ValueError:
            raise ValueError(f"cases {spec!r}: write numbers and ranges like 1-20 or 1,4,7-9") from None
        cases.update(numbers)
    missing = sorted(cases - valid)
    if missing or not cases:
        raise ValueError(f"cases {spec!r}: {missing or 'none'} not in the catalogue (cases {min(valid)}-{max(valid)})")
    return sorted(cases)


class _Progress:
    """One status line on a terminal; a line every 10 % otherwise (logs, CI)."""

    def __init__(self, label: str, total: int | None, stream=sys.stderr):
        self.label, self.total, self.stream = label, total, stream
        self.tty, self.last_step, self.start = stream.isatty(), -1, time.monotonic()

    def update(self, done: int):
        mb = done / 2**20
        rate = mb / max(time.monotonic() - self.start, 1e-6)
        if self.total:
            step = int(10 * done / self.total)
            text = f"{self.label}: {mb:,.1f} / {self.total / 2**20:,.1f} MiB ({100 * done / self.total:.0f} %, " \
                   f"{rate:.1f} MiB/s)"
        else:
            step, text = int(mb // 100), f"{self.label}: {mb:,.1f} MiB ({rate:.1f} MiB/s)"
        if self.tty:
            print("\r" + text, end="", file=self.stream, flush=True)
        elif step != self.last_step:
            print(text, file=self.stream, flush=True)
        self.last_step = step

    def close(self):
        if self.tty:
            print(file=self.stream)


def download_file(url: str, dest: str | Path, *, expected_size: int | None = None, retries: int = 3,
                  validate: Callable[[Path], None] | None = None, chunk_bytes: int = 1 << 20,
                  timeout_s: float = 60, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest``, resuming a broken transfer with an HTTP ``Range`` request.

    Bytes go to ``dest + ".part"``; a later call (or one of ``retries`` automatic retries) continues from its
    length. Only a whole file (size equal to the server's total and ``expected_size`` where given, and passing
    ``validate``) is renamed to ``dest``. A whole file that fails ``validate`` is deleted (it is our own partial
    download, never user data) so the next run starts clean. An existing ``dest`` is returned as is.

    Raises:
        DownloadError: the transfer failed after the retries, or the file is corrupt.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, chunk_bytes, timeout_s, quiet)
            break
        except (OSError, _Incomplete) as err:  # URLError and HTTPError are OSErrors
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                kept = f"{have:,} bytes kept in {part}, run again to resume" if have else "nothing kept, run again"
                raise DownloadError(f"{url}: transfer failed ({err}); {kept}") from None
            time.sleep(min(2.0**attempt, 10.0) * 0.1)
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise DownloadError(f"{url}: got {size:,} bytes, expected {expected_size:,}; deleted, run again")
    if validate is not None:
        try:
            validate(part)
        except Exception as err:
            part.unlink()
            raise DownloadError(f"{url}: downloaded file is corrupt ({err}); deleted, run again") from None
    os.replace(part, dest)
    return dest


class _Incomplete(Exception):
    pass


def _transfer(url: str, part: Path, chunk_bytes: int, timeout_s: float, quiet: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # our .part is already as long as (or longer than) the file: start over
            part.unlink()
            raise _Incomplete("server refused the resume range; restarting") from None
        raise
    with response:
        if have and response.status == 206:
            content_range = response.headers.get("Content-Range", "")  # bytes START-END/TOTAL
            start = int(content_range.split()[1].split("-")[0]) if content_range.startswith("bytes ") else -1
            if start != have:
                raise _Incomplete(f"server resumed at byte {start}, not {have}")
            total = int(content_range.rsplit("/", 1)[1]) if not content_range.endswith("/*") else None
            mode = "ab"
        else:
            have, mode = 0, "wb"  # server ignored the range: whole file from the start
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
        progress = None if quiet else _Progress(part.name.removesuffix(".part"), total)
        with open(part, mode) as out:
            while chunk := response.read(chunk_bytes):
                out.write(chunk)
                have += len(chunk)
                if progress:
                    progress.update(have)
        if progress:
            progress.close()
    if total is not None and have != total:
        raise _Incomplete(f"connection closed at byte {have:,} of {total:,}")


def _check_ismrmrd(path: Path) -> None:
    import h5py

    with h5py.File(path, "r") as f:
        if not is_ismrmrd(f):
            raise InputError(path, "not ISMRMRD raw data")
        read_header(path, f)


def convert_knee(raw: str | Path, nifti: str | Path, **meta) -> Path:
    """Reconstruct one downloaded mridata knee (ISMRMRD raw k-space: inverse FFT, root-sum-of-squares over the coils,
    readout oversampling removed; `mrisr.io.ismrmrd`) and write it as int16 NIfTI (atomically), ``meta`` added to its
    header's record. What `download_knees` does to each file; ``benchmarks/full_size_conversion.py`` times it."""
    volume = load_volume(raw, phase_encoding_axes=(0, 1))  # 3D FSE: partitions stored as slices
    volume.meta.update(meta)
    return save_volume(volume, nifti, dtype="int16")


def download_knees(cases: list[int] | None = None, dest: str | Path = "data/knees", url: str = DEFAULT_KNEE_URL,
                   keep_raw: bool = True, quiet: bool = False) -> list[Path]:
    """Download and reconstruct the chosen knee cases (default all 20); return the cached NIfTI paths.

    ``url``: template with ``{uuid}``. Already cached cases are skipped; an interrupted run resumes.
    ``keep_raw=False`` deletes each raw file (our own download) once its NIfTI is written.
    """
    if "{uuid}" not in url:
        raise ValueError(f"url {url!r} has no {{uuid}} for the case's mridata UUID: every case would download the same "
                         "file")
    dest = Path(dest)
    by_case = {c.case: c for c in knee_cases()}
    out = []
    for number in cases or sorted(by_case):
        case = by_case[number]
        nifti = dest / f"knee_{case.case:02d}.nii.gz"
        if not nifti.exists():
            raw = download_file(url.format(uuid=case.uuid), dest / "raw" / f"{case.uuid}.h5",
                                validate=_check_ismrmrd, quiet=quiet)
            convert_knee(raw, nifti, case=case.case, uuid=case.uuid)
            if not keep_raw:
                raw.unlink()
                if not any(raw.parent.iterdir()):
                    raw.parent.rmdir()
        if not quiet:
            print(f"knee case {case.case:2d} ({case.uuid}): {nifti}", file=sys.stderr)
        out.append(nifti)
    return out
