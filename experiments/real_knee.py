"""The real-data benchmark: does the network beat the strongest classical method on the same noisy input?

    .venv/bin/python -m experiments.real_knee --size cpu|gpu [--degradations NAME ...] [--seeds N]
                                             [--set KEY=VALUE ...] [--device cuda] [--markdown docs/benchmarks.md]
                                             [--out runs/real_knee]

The knee split used everywhere (`mrisr.data.samples.KNEE_SPLIT`): the DESS knee cut into four slabs along its rows
(`mrisr.data.samples.knee_slabs`, 10 mm apart); slabs 1-2 train, slab 4 validates, slab 3 (through the joint:
cartilage, menisci) tests; the FAIR knee (another subject and scanner, never seen) is a second test case, with noise
at `mrisr.data.samples.FAIR_SNR` (its 8-bit air shows none to measure). Per degradation (noisy presets: the scan's own
noise level, a new realisation):

1. the classical baselines are fitted on the validation slab only (`mrisr.evaluation.baselines.fit_baselines`:
   interpolation or the input, + data consistency, TV-POCS, Wiener where the degradation is a blur), and the best of
   them on validation is the one a network must beat;
2. an EDSR3D (``RECIPES["real_knee"]``, `mrisr.training.recipes`) is trained with each of ``--seeds`` seeds;
3. each test case is degraded once and super-resolved by every seed's network, alone and made consistent with the
   input (`mrisr.physics.consistency.enforce`, aware of the recorded noise).

Prints one table, on the foreground: degradation | case | method | PSNR | SSIM | HFEN | consistency error | gain
over the best classical baseline and its 95 % interval over the seeds and the correlated slices (moving-block
bootstrap, `mrisr.evaluation.tables.bootstrap_interval`) | verdict (`mrisr.evaluation.tables.verdict`). Model rows are
means over the seeds. ``--markdown`` appends it, with the device, the time and the command. ``--set`` overrides config
fields for ablations, which are to be scored on the validation slab only (`experiments/lr_study.py`), never on these
cases.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import numpy as np

from benchmarks.common import publish
from mrisr.data.cases import case_name, crop_to_multiple, slab_multiple
from mrisr.data.samples import FAIR_SNR, KNEE_SPLIT, fair_knee, knee_slabs
from mrisr.evaluation.baselines import SAME_GRID, fit_baselines
from mrisr.evaluation.tables import CONSISTENCY, LR_LABEL, SEED, compare, gains_over, seed_runs
from mrisr.io import load_volume
from mrisr.overrides import add_set_option
from mrisr.physics.degrade import preset
from mrisr.training.recipes import recipe
from mrisr.training.train import fit, sr_learner

DEGRADATIONS = ["knee_fast_acquisition", "knee_fast_acquisition_blur", "knee_thick_slices"]
COLUMNS = {"cpu": 192, "gpu": 512}  # per size of RECIPES["real_knee"]: the columns of the DESS knee kept


MODEL = "EDSR3D"


def evaluate_case(name: str, hr, models: dict, degradation, settings: dict, device) -> list[dict]:
    """Rows of the table for one test case: every classical baseline and every network (alone and +DC, means over
    the seeds), with its gain over the best classical baseline on validation (``settings["best"]``)."""
    table, volumes = compare(models, {name: hr}, degradation, consistency=True, keep=True,
                             baseline_settings=settings, device=device)
    seeds = range(len(models))
    runs = seed_runs(volumes, seeds)
    best = settings["best"]
    over_best = gains_over(runs, baseline=best).loc[name]
    over_input = gains_over(runs, baseline=LR_LABEL).loc[name]
    rows = table[table["region"] == "foreground"].copy()
    rows["method"] = rows["method"].str.replace(r" \(seed \d+\)", "", regex=True)
    means = rows.groupby("method", sort=False)[["psnr_db", "ssim", "hfen", CONSISTENCY]].mean()
    out = []
    for method, row in means.iterrows():
        key = LR_LABEL if method == SAME_GRID else method
        gain = over_best.loc[key] if key in over_best.index else None
        base = over_input.loc[key] if key in over_input.index else None
        out.append({"degradation": degradation.name, "case": name, "method": method,
                    "kind": "model" if method.startswith(MODEL) else "baseline", **row.to_dict(),
                    "gain_db": np.nan if gain is None else gain["psnr_gain_db"],
                    "gain_low": np.nan if gain is None else gain["ci_low"],
                    "gain_high": np.nan if gain is None else gain["ci_high"],
                    "verdict": "(the best baseline)" if gain is None else gain["verdict"],
                    "over_input_db": 0.0 if base is None else base["psnr_gain_db"],
                    "seeds": len(models) if method.startswith(MODEL) else 1, "best": best,
                    "slices": int(over_best["slices"].iloc[0]), "block": int(over_best["block"].iloc[0])})
    return out


def train_models(name: str, slabs: list[Path], size: str, overrides: dict, seeds: int, out_dir: Path,
                 device, resume: bool = False) -> tuple[dict, float]:
    """One EDSR3D per seed for degradation ``name`` on the training slabs (validated on the validation slab):
    ``({"EDSR3D (seed k)": model}, peak lr)``. ``resume``: carry on the runs already in ``out_dir`` (a finished one
    is reused as it is; one written with other settings is an error naming them:
    `mrisr.training.train.resume_state`)."""
    models, lr = {}, None
    for seed in range(seeds):
        config = recipe("real_knee", size, name=f"real_knee_{name}", train_paths=[str(p) for p in slabs[:2]],
                        valid_paths=[str(slabs[2])], test_paths=[str(slabs[3])], degradation=name,
                        run_dir=str(out_dir / name / f"seed{seed}"), seed=seed, **overrides)
        learn = sr_learner(config, device=device, progress=False, resume=resume)
        lr = fit(learn, config)
        models[MODEL + SEED.format(seed)] = learn.model.eval()
    return models, lr


def ablation_case(name: str, hr, models: dict, degradation, device) -> list[dict]:
    """Rows for one validation case of an ablation run: the networks' gain over their input (no classical fitting:
    recipes are compared with each other here, on validation data only)."""
    _, volumes = compare(models, {name: hr}, degradation, keep=True, device=device)
    gains = gains_over(seed_runs(volumes, range(len(models))), baseline=LR_LABEL).loc[name]
    return [{"degradation": degradation.name, "case": name, "method": method, "kind": "model", **row.to_dict()}
            for method, row in gains.iterrows()]


def run(size: str, degradations: list[str], overrides: dict, device: str, out_dir: Path, seeds: int = 3,
        ablation: bool = False, resume: bool = False, log=print) -> pd.DataFrame:
    columns = COLUMNS[size]
    slabs = knee_slabs(out_dir / f"slabs_{columns}", n=4, columns=columns, held_out=KNEE_SPLIT["test"])
    valid, test = slabs[2], slabs[3]  # held out last: slabs 1, 2 (train), 4, 3
    rows = []
    for name in degradations:
        degradation = preset(name)
        multiple = [slab_multiple(degradation, axis) for axis in range(3)]
        start = time.perf_counter()
        if ablation:
            models, _ = train_models(name, slabs, size, overrides, seeds, out_dir, device, resume)
            rows += ablation_case(f"DESS slab {KNEE_SPLIT['valid']} (validation)",
                                  crop_to_multiple(load_volume(valid), multiple), models, degradation, device)
            log(f"{name}: {seeds} seeds trained and scored on validation in {time.perf_counter() - start:.0f} s")
            continue
        fitted = fit_baselines({case_name(valid): crop_to_multiple(load_volume(valid), multiple)}, degradation,
                               log=lambda line: log(f"  [{name}] {line}"))
        fitting = time.perf_counter() - start
        models, lr = train_models(name, slabs, size, overrides, seeds, out_dir, device, resume)
        trained = time.perf_counter() - start - fitting
        tests = {f"DESS slab {KNEE_SPLIT['test']}": (load_volume(test), degradation),
                 "FAIR knee": (fair_knee(), degradation.at_snr(FAIR_SNR))}
        for case, (hr, spec) in tests.items():
            rows += evaluate_case(case, crop_to_multiple(hr, multiple), models, spec, fitted, device)
        log(f"{name}: baselines fitted on validation in {fitting:.0f} s (best: {fitted['best']}; {fitted['dc']}, "
            f"TV {fitted['tv']}, Wiener {fitted['wiener']}); {seeds} seeds trained in {trained:.0f} s (peak lr "
            f"{lr:.3g}); evaluated in {time.perf_counter() - start - fitting - trained:.0f} s")
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| degradation | case | method | PSNR (dB) | SSIM | HFEN | consistency error | gain over the input (dB) | "
             "gain over the best classical baseline (dB) [95 % CI, seeds and slices] | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        gain = "-" if not np.isfinite(r.gain_db) else f"{r.gain_db:+.3f} [{r.gain_low:+.3f}, {r.gain_high:+.3f}]"
        method = f"{r.method} (mean of {r.seeds} seeds)" if r.kind == "model" else r.method
        lines.append(f"| {r.degradation} | {r.case} | {method} | {r.psnr_db:.2f} | {r.ssim:.4f} | {r.hfen:.4f} | "
                     f"{getattr(r, CONSISTENCY):.4f} | {r.over_input_db:+.3f} | {gain} | {r.verdict} |")
    return "\n".join(lines) + "\n"


def ablation_markdown(table: pd.DataFrame, overrides: dict) -> str:
    lines = ["| degradation | case | overrides | method | gain over the input (dB) [95 % CI, seeds and slices] | "
             "HFEN change | seeds |", "|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.degradation} | {r.case} | `{overrides or 'the recipe'}` | {r.method} | "
                     f"{r.psnr_gain_db:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {r.hfen_change:+.4f} | {r.seeds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(COLUMNS), default="gpu" if torch.cuda.is_available() else "cpu",
                        help='RECIPES["real_knee"] (mrisr.training.recipes)')
    parser.add_argument("--degradations", nargs="+", default=DEGRADATIONS, choices=DEGRADATIONS)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per degradation (the interval covers "
                        "them)")
    parser.add_argument("--ablation", action="store_true", help="score on the validation slab only (recipe "
                        "choices): the networks' gain over their input, no test case")
    add_set_option(parser, "an ExperimentConfig field of every run (ablations)")
    parser.add_argument("--resume", action="store_true", help="carry on (or reuse, when finished) the training runs "
                        "already in --out, e.g. an ablation's, instead of training them again")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / f"mrisr-real-knee-{os.getuid()}"),
                        help="slabs, checkpoints and the CSV")
    parser.add_argument("--markdown", help="append the table to this Markdown file (e.g. docs/benchmarks.md)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    overrides = dict(args.set)
    out_dir = Path(args.out)
    start = time.perf_counter()
    table = run(args.size, args.degradations, overrides, args.device, out_dir, args.seeds, args.ablation,
                args.resume)
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "real_knee.csv", index=False)
    publish(f"Real-data benchmark, size {args.size}", args.device, seconds, "python -m experiments.real_knee", argv,
            f"Config overrides: {overrides or 'none'}. Scores on the foreground; gains per slice along axis 0, over "
            f"{args.seeds} training seeds. "
            + (f"Ablation: scored on validation slab {KNEE_SPLIT['valid']} only, over the input." if args.ablation else
               f"Baselines fitted on validation slab {KNEE_SPLIT['valid']} only; the best classical baseline is the "
               "best on validation."),
            ablation_markdown(table, overrides) if args.ablation else markdown(table), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
