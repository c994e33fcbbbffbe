"""`run_demo`: the whole knee experiment in a few minutes, on the built-in phantom or on the user's own volumes.

Subjects are split by subject (train / validation / test); with one volume of your own, a slab at its end is the
test subject and never enters training or model selection (`mrisr.data.cases.split_slabs`). Every volume is degraded
with ``knee_fast_acquisition`` (seed 000: central half of k-space along both phase-encoding axes, zero-filled), a small
EDSR3D is trained with `mrisr.training.train.sr_learner`, the test subjects are super-resolved with
`mrisr.inference.tiled.predict_volume` and scored against the interpolation baselines
(`mrisr.evaluation.tables.compare`), and an animation of the first test subject is written
(`mrisr.evaluation.render.animate`). The same calls as the notebooks.
"""

from __future__ import annotations

import time
from pathlib import Path

from mrisr.data.cases import case_name, split_cases
from mrisr.data.phantom import knee_phantom
from mrisr.evaluation.render import animate
from mrisr.evaluation.tables import HR_LABEL, LR_LABEL, compare, save_tables, summarize, verdict_lines
from mrisr.io import load_volume, save_volume
from mrisr.physics.degrade import preset
from mrisr.training.device import default_device
from mrisr.training.recipes import recipe
from mrisr.training.train import fit, sr_learner

DEGRADATION = "knee_fast_acquisition"
PHANTOM_SNR = 30.0  # the thermal noise of the phantom "scans" (the DESS sample's measured SNR is about 30)

# Per size of ``RECIPES["demo"]``: phantom subjects (count, shape in voxels). "cpu" fits in 5 minutes on 2 cores.
PHANTOMS = {"fast": (3, (48, 64, 64)), "cpu": (7, (48, 128, 128)), "cuda": (10, (64, 192, 192))}


def phantom_cases(folder: Path, n: int, shape) -> list[Path]:
    """Write phantom subjects ``0 .. n-1``, with thermal noise at `PHANTOM_SNR`, as NIfTI in ``folder`` (once;
    later runs reuse them)."""
    paths = []
    for seed in range(n):
        path = Path(folder) / f"phantom_{'x'.join(map(str, shape))}_snr{PHANTOM_SNR:g}_{seed:02d}.nii.gz"
        if not path.exists():
            save_volume(knee_phantom(shape=shape, seed=seed, snr=PHANTOM_SNR), path)
        paths.append(path)
    return paths


def run_demo(data: list[str | Path] | None = None, run_dir: str | Path = "runs/demo",
             gif: str | Path = "volume_animations/demo.gif", size: str | None = None, device: str | None = None,
             phantom_dir: str | Path = "data/phantoms", seed: int = 0, log=print) -> dict:
    """Train, predict and evaluate on phantoms (``data=None``) or the volumes in ``data``; ``size`` is a size of
    ``RECIPES["demo"]`` (`mrisr.training.recipes`; default ``"cuda"`` on a GPU, else ``"cpu"``). Returns the table,
    summary, verdict and paths."""
    start = time.perf_counter()
    device = default_device(device)
    size = size or ("cuda" if device.type == "cuda" else "cpu")
    if size not in PHANTOMS:
        raise ValueError(f"size must be one of {list(PHANTOMS)}, got {size!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    n_subjects, shape = PHANTOMS[size]
    if data:
        paths = [Path(p) for p in data]
        source = f"{len(paths)} volume(s) of yours"
    else:
        paths = phantom_cases(Path(phantom_dir), n_subjects, shape)
        source = f"{n_subjects} phantom subjects of {shape[0]}x{shape[1]}x{shape[2]} voxels"
    split = split_cases(paths, run_dir, preset(DEGRADATION))
    _, valid, test = split.names
    config = recipe("demo", size, name="demo", **split.config_fields(), degradation=DEGRADATION, seed=seed,
                    run_dir=str(run_dir))
    log(f"mrisr demo ({size} size on {device}): {source}; train on {len(split.train)}, "
        f"validate on {valid or 'a hold-out slab'}, test on {test}")
    learn = sr_learner(config, device=device)
    fit(learn, config)
    trained = time.perf_counter() - start

    test_volumes = {case_name(p): load_volume(p) for p in split.test}
    degradation = config.get_degradation()
    table, volumes = compare({"EDSR3D": learn.model}, test_volumes, degradation, seed=seed, keep=test[:1],
                             device=device)
    summary = summarize(table)
    paths_out = save_tables(table, summary, run_dir / "table")
    first = volumes[test[0]]
    gif = animate({LR_LABEL: first[LR_LABEL], "EDSR3D": first["EDSR3D"], HR_LABEL: first[HR_LABEL]}, gif,
                  errors=True, crop="foreground", detail="auto")  # scrolls the thinnest axis in mm
    lines = verdict_lines(summary)
    seconds = time.perf_counter() - start
    log(f"\n{degradation.name} degradation, scores on the test subjects' foreground (mean over subjects):")
    log(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    log("\n" + "\n".join(lines))
    log(f"\nwrote {', '.join(map(str, paths_out))}, {gif}; trained in {trained:.0f} s, total {seconds:.0f} s")
    return {"table": table, "summary": summary, "verdict": lines, "tables": paths_out, "gif": gif,
            "checkpoint": run_dir / "best.pth", "seconds": seconds}
