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


from mrisr.data.cases import case_name, patches_per_subject, split_cases
from mrisr.data.phantom import knee_phantom
from mrisr.evaluation.render import animate
from mrisr.evaluation.tables import HR_LABEL, LR_LABEL, compare, save_tables, summarize, verdict_lines
from mrisr.io import load_volume, save_volume
from mrisr.physics.degrade import preset
from mrisr.training.config import ExperimentConfig
from mrisr.training.device import default_device
from mrisr.training.train import fit, sr_learner

DEGRADATION = "knee_fast_acquisition"
PHANTOM_SNR = 30.0  # the thermal noise of the phantom "scans" (the DESS sample's measured SNR is about 30)

# Per mode: phantom subjects (count, shape), network, training patches per epoch (shared among the training
# subjects), schedule. "cpu" fits in 5 minutes on 2 cores.
SETTINGS = {
    "fast": dict(subjects=3, shape=(48, 64, 64), n_feats=8, n_blocks=1, patch_size=12, patches_per_epoch=16,
                 valid_patches_per_subject=4, batch_size=4, epochs=1, lr_max=1e-3),
    "cpu": dict(subjects=7, shape=(48, 128, 128), n_feats=16, n_blocks=4, patch_size=24, patches_per_epoch=192,
                valid_patches_per_subject=8, batch_size=8, epochs=8, lr_max=1e-3),
    "cuda": dict(subjects=10, shape=(64, 192, 192), n_feats=64, n_blocks=9, patch_size=32, patches_per_epoch=2048,
                 valid_patches_per_subject=32, batch_size=16, epochs=20, lr_max=2e-4),
}


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
             gif: str | Path = "volume_animations/demo.gif", mode: str | None = None, device: str | None = None,
             phantom_dir: str | Path = "data/phantoms", seed: int = 0, log=print) -> dict:
    """Train, predict and evaluate on phantoms (``data=None``) or the volumes in ``data``; ``mode`` is a key of
    `SETTINGS` (default ``"cuda"`` on a GPU, else ``"cpu"``). Returns the table, summary, verdict and paths."""
    start = time.perf_counter()
    device = default_device(device)
    mode = mode or ("cuda" if device.type == "cuda" else "cpu")
    if mode not in SETTINGS:
        raise ValueError(f"mode must be one of {list(SETTINGS)}, got {mode!r}")
    settings = dict(SETTINGS[mode])
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    n_subjects, shape = settings.pop("subjects"), settings.pop("shape")
    if data:
        paths = [Path(p) for p in data]
        source = f"{len(paths)} volume(s) of yours"
    else:
        paths = phantom_cases(Path(phantom_dir), n_subjects, shape)
        source = f"{n_subjects} phantom subjects of {shape[0]}x{shape[1]}x{shape[2]} voxels"
    cases, valid, test, axis = split_cases(paths, run_dir, preset(DEGRADATION))
    n_train = max(1, len(cases) - len(valid) - len(test))
    settings["patches_per_subject"] = patches_per_subject(settings.pop("patches_per_epoch"), n_train)
    config = ExperimentConfig(name="demo", cases=[str(p) for p in cases], valid_cases=valid, test_cases=test,
                              holdout_axis=axis, degradation=DEGRADATION, seed=seed, run_dir=str(run_dir), **settings)
    log(f"mrisr demo ({mode} mode on {device}): {source}; train on {len(cases) - len(valid) - len(test)}, "
        f"validate on {valid or 'a hold-out slab'}, test on {test}")
    learn = sr_learner(config, device=device)
    fit(learn, config)
    trained = time.perf_counter() - start

    test_volumes = {case_name(p): load_volume(p) for p in cases if case_name(p) in test}
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
