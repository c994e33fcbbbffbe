"""One mridata knee at the real size, converted as `mrisr download knees` converts it: time and peak memory.

    .venv/bin/python -m benchmarks.full_size_conversion [--folder runs/full_size] [--shape 256 320 320]
                                                         [--markdown docs/benchmarks.md]

A mirror file (`mrisr.testing.mridata_mirror`: the DESS knee in the Stanford knees' raw ISMRMRD format, 8 coils,
readout twice oversampled, 256 x 320 x 320 voxels by default: the real knees' size) is written once into
``--folder`` (kept for reruns), then converted in a child process by `mrisr.io.download.convert_knee` (reconstruction
and int16 NIfTI). The child's wall time and its peak resident memory (``getrusage``'s ``ru_maxrss``, the process's
largest RSS) are the figures: what a 24 GB machine must hold per knee.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import publish


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default="runs/full_size")
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 320, 320], metavar=("Z", "Y", "X"))
    parser.add_argument("--markdown", help="append the table to this Markdown file (e.g. docs/benchmarks.md)")
    args = parser.parse_args(argv)
    from mrisr.testing import mridata_mirror

    folder = Path(args.folder)
    start = time.perf_counter()
    raw = sorted((folder / "mirror").glob("*.h5"))
    if not raw:
        begin = time.perf_counter()
        raw = mridata_mirror(folder / "mirror", cases=1, shape=tuple(args.shape))
        print(f"wrote {raw[0]} ({raw[0].stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - begin:.0f} s",
              flush=True)
    nifti = folder / "knee_01.nii.gz"
    nifti.unlink(missing_ok=True)
    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from mrisr.io.download import convert_knee; "
                    "convert_knee(sys.argv[1], sys.argv[2], case=1)", str(raw[0]), str(nifti)], check=True)
    seconds = time.perf_counter() - begin
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9  # Linux: kilobytes
    from mrisr.io import load_volume

    volume = load_volume(nifti)
    table = ("| raw file | size (GB) | output | conversion (s) | peak memory (GB) |\n|---|---|---|---|---|\n"
             f"| {' x '.join(map(str, args.shape))} x 8 coils, readout x2 | {raw[0].stat().st_size / 1e9:.2f} | "
             f"{' x '.join(map(str, volume.shape))} int16 NIfTI, {nifti.stat().st_size / 1e6:.0f} MB | {seconds:.0f} | "
             f"{peak_gb:.1f} |\n")
    publish("Converting one mridata knee at full size", "cpu", time.perf_counter() - start,
            "python -m benchmarks.full_size_conversion", argv,
            "A mirror file (mrisr.testing.mridata_mirror) converted by mrisr.io.download.convert_knee in a child "
            "process; peak memory is the child's largest resident set (getrusage).", table, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
