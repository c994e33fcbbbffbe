"""ECLARE, the SMORE authors' own self-supervised SR package, run as a peer in an environment of its own.

ECLARE (Remedios et al., "Self-supervised super-resolution for anisotropic MR images with and without slice gap",
2024; ``pip install eclare``, 1.0.1: a 16 x 256 WDSR, ESPRESO's slice-profile estimate, 10^6 patches by default on a
GPU) is never a dependency of mrisr. `ensure_environment` makes a virtual environment for it (``--no-deps``: its own
pins, scipy 1.11.4, predate numpy 2; it runs on this project's torch, numpy and scipy through a ``.pth`` path to our
environment's site-packages). `run_eclare` writes the thick scan as NIfTI, runs ECLARE's command line on it with a
stated slice profile (or ESPRESO's estimate) and patch count, and reads its output back onto the reference grid
through the affines (`mrisr.evaluation.baselines.resample`). `patches_for` turns a time budget into a patch count from
two timed calibration runs.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

from mrisr.evaluation.baselines import resample
from mrisr.io import load_volume, save_volume
from mrisr.volume import Volume

PACKAGES = ["eclare==1.0.1", "radifox-utils==1.0.3", "transforms3d==0.4.2", "sigpy-lite"]


def ensure_environment(folder: str | Path) -> Path:
    """The ECLARE environment in ``folder`` (made on first use; needs the package index): its python."""
    folder = Path(folder)
    python = folder / "bin" / "python"
    if not (folder / ".installed").exists():
        venv.create(folder, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", *PACKAGES], check=True)
        ours = site.getsitepackages()[0]
        theirs = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                                capture_output=True, text=True).stdout.strip()
        (Path(theirs) / "zz_mrisr_site.pth").write_text(ours + "\n")  # after its own packages
        subprocess.run([python, "-c", "import eclare.main"], check=True)
        (folder / ".installed").write_text(" ".join(PACKAGES) + "\n")
    return python


def run_eclare(python: Path, thick: Volume, reference: Volume, n_patches: int, thickness_ratio: float | None,
               profile: str = "rect", log=print) -> tuple[Volume, float]:
    """``(estimate on the reference's grid, seconds)``: ECLARE on ``thick`` (CPU) with ``n_patches``;
    ``thickness_ratio``: the slice thickness over the slice spacing (ECLARE's relative thickness; ``None``: ESPRESO
    estimates the profile), ``profile`` ``"rect"`` or ``"gaussian"``."""
    with tempfile.TemporaryDirectory(prefix="mrisr-eclare-") as scratch:
        scan = save_volume(thick, Path(scratch) / "thick.nii.gz")
        entry = "import sys; from eclare.main import main; main(sys.argv[1:])"  # its `run-eclare` console script
        command = [str(python), "-c", entry, "--in-fpath", str(scan), "--out-dir", scratch,
                   "--n-patches", str(n_patches), "--gpu-id", "-1"]
        if thickness_ratio is not None:
            command += ["--relative-slice-thickness", f"{thickness_ratio:g}", "--relative-slice-profile-type",
                        profile]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        seconds = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"ECLARE failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        written = sorted(Path(scratch).glob("*_eclare.nii*"))
        if not written:
            output = (done.stdout + done.stderr).strip()[-600:]
            raise RuntimeError(f"ECLARE wrote no *_eclare.nii* in {scratch}: {output}")
        estimate = load_volume(written[0])
    log(f"ECLARE: {n_patches} patches in {seconds:.0f} s")
    return resample(estimate, reference, order=1), seconds


def patches_for(python: Path, thick: Volume, reference: Volume, seconds: float, thickness_ratio, profile="rect",
                calibration: int = 256, log=print) -> int:
    """The patch count that makes ECLARE take about ``seconds`` on this machine, from two timed runs of
    ``calibration`` and ``2 * calibration`` patches: their difference is the cost of ``calibration`` patches, and
    what is left of the first run is the fixed cost."""
    _, small = run_eclare(python, thick, reference, calibration, thickness_ratio, profile, log)
    _, large = run_eclare(python, thick, reference, 2 * calibration, thickness_ratio, profile, log)
    per_patch = max((large - small) / calibration, 1e-6)
    fixed = max(small - per_patch * calibration, 0.0)
    return max(calibration, int((seconds - fixed) / per_patch))


if __name__ == "__main__":  # make the environment: python -m experiments.eclare_peer FOLDER
    print(ensure_environment(sys.argv[1] if len(sys.argv) > 1 else "runs/eclare-env"))
