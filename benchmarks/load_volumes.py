"""Load time and peak memory of `mrisr.load_volume` for the real DESS series and a synthetic ISMRMRD raw file.

Each load runs in a fresh process; peak memory is that process's peak resident set size (VmHWM) minus its peak
after importing mrisr. The synthetic file is a knee phantom of 64 x 320 x 320 (z, y, x) voxels, 8
coils, 2x readout oversampling, written with the ismrmrd package (about 840 MB).

    .venv/bin/python benchmarks/load_volumes.py [--sample-data ../shared/data] [--workdir /tmp/mrisr-bench]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

# Peak memory from VmHWM (the address space's high-water mark, fresh after exec). Not ru_maxrss: on Linux that
# survives exec, so a child would report its parent's peak.
CHILD = r"""
import json, sys, time
def hwm_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
import mrisr
base = hwm_kib()
start = time.perf_counter()
volume = mrisr.load_volume(sys.argv[1], **json.loads(sys.argv[2]))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_kib": hwm_kib(), "import_peak_kib": base,
                  "shape": list(volume.data.shape)}))
"""


def measure(path, repeats: int = 3, **options) -> dict:
    runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(options)],
                                      check=True, capture_output=True, text=True).stdout) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "median_seconds": sorted(r["seconds"] for r in runs)[len(runs) // 2]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    from mrisr.data.phantom import knee_phantom
    from mrisr.testing import write_ismrmrd

    rows = []
    dess = measure(Path(args.sample_data) / "knee_dess_sample")
    rows.append(("DESS DICOM series (80 files)", dess, 80 * 512 * 512 * 4))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        shape, coils = (64, 320, 320), 8
        image = knee_phantom(shape=shape, spacing=(0.6, 0.5, 0.5), seed=0).data
        raw = write_ismrmrd(Path(tmp) / "synthetic.h5", image, spacing=(0.6, 0.5, 0.5), n_coils=coils)
        del image
        size_mb = raw.stat().st_size / 2**20
        result = measure(raw)
        kspace_bytes = coils * shape[0] * shape[1] * shape[2] * 8
        rows.append((f"ISMRMRD 64x320x320, 8 coils, 2x readout oversampling ({size_mb:.0f} MiB file)", result,
                     kspace_bytes))
    print(f"mrisr load_volume on {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| input | shape | load time (median of 3) | peak memory above import | reference size |")
    print("|---|---|---|---|---|")
    for name, r, ref in rows:
        peak_mib = (r["peak_kib"] - r["import_peak_kib"]) / 1024
        print(f"| {name} | {tuple(r['shape'])} | {r['median_seconds']:.2f} s | {peak_mib:.0f} MiB | "
              f"{ref / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()
