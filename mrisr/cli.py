"""The ``mrisr`` command.

Exit codes scripts can rely on: 0 success; 1 bad input, a failed download or out of memory (one line on stderr,
naming the file and the problem); 2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mrisr.errors import InputError, UsageError, check_outputs
from mrisr.io.download import DEFAULT_KNEE_URL, DownloadError, download_knees, parse_cases
from mrisr.overrides import add_set_option
from mrisr.physics.degrade import PRESETS
from mrisr.quiet import quiet_dependencies


def _load_options(args) -> dict:
    options = {"series": args.series, "variable": args.variable, "axes": args.axes, "nan": args.nan,
               "skip_unreadable": args.skip_unreadable or None,
               "spacing": tuple(args.spacing) if args.spacing else None, "kspace": args.kspace or None}
    return {k: v for k, v in options.items() if v is not None}


def _print_info(info: dict) -> None:
    print(f"{info['path']}")
    print(f"  format               {info['format']}")
    print(f"  shape                {tuple(info['shape'])}  axes {info['axes']}")
    print(f"  spacing              {' x '.join(f'{s:g}' for s in info['spacing_mm'])} mm")
    lo, hi = info["intensity_range"] or (float("nan"), float("nan"))
    print(f"  intensity            {lo:g} .. {hi:g}")
    rows = (" ".join(f"{v:10.4f}" for v in row) for row in info["affine"])
    print("  affine               " + "\n                       ".join(rows))
    for key, value in info["meta"].items():
        print(f"  {key:<20} {value}")


def cmd_info(args) -> int:
    from mrisr.io import load_volume

    volume = load_volume(args.path, **_load_options(args))
    info = volume.describe()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        _print_info(info)
    return 0


def cmd_download(args) -> int:
    cases = parse_cases(args.cases)
    paths = download_knees(cases, dest=args.dest, url=args.url, keep_raw=not args.delete_raw, quiet=args.quiet)
    print(f"{len(paths)} knee volume(s) ready in {args.dest}")
    return 0


def cmd_baselines(args) -> int:
    """Degrade a scan with each preset and print the interpolation baselines' scores against the original."""
    import pandas as pd

    from mrisr.evaluation.baselines import baselines
    from mrisr.evaluation.tables import score_table
    from mrisr.io import load_volume
    from mrisr.io.atomic import atomic_path
    from mrisr.physics.degrade import preset

    check_outputs([args.csv], [args.path])
    volume = load_volume(args.path, **_load_options(args))
    tables = []
    for name in args.preset:
        degradation = preset(name)
        start = time.perf_counter()
        lr = degradation(volume, seed=args.seed)
        seconds = time.perf_counter() - start
        table = score_table(baselines(lr, volume), volume, ndim=degradation.ndim).reset_index()
        table.insert(0, "preset", name)
        tables.append(table)
        if not args.json:
            print(f"{name}: {volume.data.shape} degraded in {seconds:.2f} s; scores against the original "
                  f"(data range = max - min of the original)")
            print(table.drop(columns="preset").to_string(index=False, float_format="%.4f"), end="\n\n")
    result = pd.concat(tables, ignore_index=True)
    if args.json:
        print(result.to_json(orient="records", indent=2))
    if args.csv:
        with atomic_path(Path(args.csv), ".csv") as tmp:
            result.to_csv(tmp, index=False)
    return 0


def _read_config(path: str):
    from mrisr.training.config import ExperimentConfig

    try:
        return ExperimentConfig.from_json(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(path, "config file not found") from None
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise InputError(path, f"not a valid experiment config ({err})") from None


def cmd_train(args) -> int:
    """Train the experiment a config file describes; the best model lands in ``<run_dir>/best.pth``, the last epoch's
    state in ``last.pth``, from which ``--resume`` continues."""
    from mrisr.training.checkpoint import LAST_CHECKPOINT
    from mrisr.training.distributed import is_writer
    from mrisr.training.train import fit, sr_learner

    if _relaunch(args):
        return _launch(args.nproc, _without_option(args.argv, "--nproc"))
    config = _read_config(args.config)
    try:
        config = config.updated(dict(args.set))  # checked like the file's own values
    except ValueError as err:
        raise UsageError(args.config, str(err)) from None
    run_dir = Path(config.run_dir)
    check_outputs([run_dir / "config.json", run_dir / "best.pth", run_dir / LAST_CHECKPOINT],
                  [args.config, *config.train_paths, *config.valid_paths, *config.test_paths])
    best, last = run_dir / "best.pth", run_dir / LAST_CHECKPOINT
    if best.exists() and not args.overwrite and not args.resume:
        raise UsageError(best, "holds the model of an earlier run; pass --resume to continue it, --overwrite to "
                               "replace it, or give another --set run_dir=FOLDER")
    if best.exists() and args.resume and not last.exists():
        raise UsageError(last, "not found, so the run that wrote best.pth beside it cannot be resumed; pass "
                               "--overwrite to start again, or give another --set run_dir=FOLDER")
    learn = sr_learner(config, device=args.device, resume=args.resume)
    lr = fit(learn, config)
    if is_writer():
        print(f"peak learning rate {lr:.3g}{' (lr_find)' if config.lr_max is None else ''}")
        print(f"best model: {best}")
    return 0


def _relaunch(args) -> bool:
    """Whether this command asked for ``--nproc N > 1`` processes and has not been launched by torchrun yet."""
    if args.nproc < 1:
        raise UsageError(None, f"--nproc is a number of processes >= 1, got {args.nproc}")
    return args.nproc > 1 and "RANK" not in os.environ


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` (or ``option=VALUE``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def _launch(nproc: int, argv: list[str]) -> int:
    """``torchrun --nproc_per_node NPROC -m mrisr.cli ARGV`` on this machine (gloo on the CPU, NCCL on GPUs). A
    process that fails ends the others; its own one-line error is what it printed, and this says which rank.
    ``ARGV[0]`` is the command."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(["--nproc_per_node", str(nproc), "--standalone", "-m", "mrisr.cli", *argv])
    except ChildFailedError as err:
        rank, failure = next(iter(err.failures.items()))
        print(f"mrisr {argv[0]}: rank {rank} of {nproc} failed (exit {failure.exitcode}); its error is above",
              file=sys.stderr)
        return 1
    return 0


def _predict_options(args) -> dict:
    return {"tile_size": args.tile_size, "overlap": args.overlap, "batch_size": args.batch_size,
            "device": args.device, "dtype": args.dtype}


def _nifti_output(path: str) -> None:
    if not path.endswith((".nii", ".nii.gz")):
        raise InputError(path, "the output is written as NIfTI: name it .nii or .nii.gz")


def cmd_predict(args) -> int:
    """Super-resolve one scan with a trained model and write it as NIfTI with the matching affine."""
    from mrisr.inference.tiled import predict_volume
    from mrisr.io import load_volume, save_volume
    from mrisr.physics.degrade import load_degradation
    from mrisr.training.train import load_model

    _nifti_output(args.output)
    spec = args.consistency if args.consistency and Path(args.consistency).is_file() else None
    check_outputs([args.output], [args.input, args.checkpoint, spec])
    model, config = load_model(args.checkpoint, args.device or "cpu")
    volume = load_volume(args.input, **_load_options(args))
    start = time.perf_counter()
    consistency = load_degradation(args.consistency) if args.consistency else None
    result = predict_volume(model, volume, progress=not args.quiet, consistency=consistency,
                            **_predict_options(args))
    seconds = time.perf_counter() - start
    save_volume(result, args.output)
    print(f"{args.output}: {result.data.shape} at {' x '.join(f'{s:.4g}' for s in result.spacing)} mm "
          f"({config.name}, {seconds:.1f} s, {volume.data.size / seconds:,.0f} input voxels/s)")
    return 0


def cmd_selfsr(args) -> int:
    """Super-resolve one anisotropic scan along its slice axis from the scan alone (SMORE), write NIfTI."""
    from mrisr.inference.selfsr import super_resolve
    from mrisr.io import load_volume, save_volume
    from mrisr.training.recipes import recipe

    _nifti_output(args.output)
    check_outputs([args.output], [args.scan])
    network = recipe("selfsr", args.size, **dict(args.set))
    volume = load_volume(args.scan, **_load_options(args))
    result = super_resolve(volume, args.target_spacing, network, args.device, progress=not args.quiet,
                           slice_thickness=args.slice_thickness, profile=args.profile, consistency=args.consistency,
                           seed=args.seed)
    save_volume(result, args.output)
    seconds = result.meta["selfsr"]["train_s"] + result.meta["selfsr"]["apply_s"]
    print(f"{args.output}: {result.data.shape} at {' x '.join(f'{s:.4g}' for s in result.spacing)} mm "
          f"(self-supervised, {args.size} size{' + ' + str(dict(args.set)) if args.set else ''}, {seconds:.0f} s)")
    if args.validate_against:
        from mrisr.evaluation.crossplane import to_text, validate_against

        shared = {k: v for k, v in _load_options(args).items() if k in ("nan", "skip_unreadable")}
        other = load_volume(args.validate_against, **shared)
        label = "selfsr + DC" if args.consistency else "selfsr"
        print(to_text(validate_against(volume, other, {label: result}, profile=args.other_profile)))
    return 0


def cmd_evaluate(args) -> int:
    """Degrade reference scans, super-resolve them with each model, score models and baselines per subject."""
    from mrisr.data.cases import case_name
    from mrisr.evaluation.tables import compare, save_tables, summarize, verdict_lines
    from mrisr.io import load_volume
    from mrisr.training.device import default_device
    from mrisr.training.distributed import is_writer, join, process_device, share
    from mrisr.training.train import load_model

    if _relaunch(args):
        return _launch(args.nproc, _without_option(args.argv, "--nproc"))
    device = process_device(default_device(args.device))
    join(device)
    loaded = [load_model(path, device) for path in args.checkpoint]
    labels = args.labels or [Path(path).parent.name or Path(path).stem for path in args.checkpoint]
    if len(labels) != len(loaded):
        raise ValueError(f"{len(labels)} labels for {len(loaded)} checkpoints")
    specs = {json.dumps(config.get_degradation().to_dict(), sort_keys=True) for _, config in loaded}
    if len(specs) > 1:
        raise ValueError("the checkpoints were trained for different degradations; evaluate them separately")
    config = loaded[0][1]
    cases = args.cases or config.test_paths
    if not cases:
        raise ValueError(f"no cases given and {args.checkpoint[0]} names no test cases; list the scans to evaluate")
    if args.out:
        stem = Path(args.out)
        check_outputs([stem.with_suffix(".csv"), stem.with_name(stem.name + "_summary.csv"), stem.with_suffix(".md")],
                      [*cases, *args.checkpoint])
    volumes = {case_name(p): load_volume(p, **config.load_options) for p in share(cases)}  # this process's
    table, _ = compare(dict(zip(labels, (m for m, _ in loaded))), volumes, config.get_degradation(), seed=args.seed,
                       consistency=args.consistency, **{**_predict_options(args), "device": device})
    if not is_writer():
        return 0
    summary = summarize(table)
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print("\n".join(verdict_lines(summary)))
    if args.out:
        print("wrote " + ", ".join(map(str, save_tables(table, summary, Path(args.out)))))
    return 0


def panel_labels(paths: list[str]) -> list[str]:
    """One label per scan: its file name without the extension, with as many parent folders as it takes to make the
    labels distinct (``a/x.nii.gz``, ``b/x.nii.gz`` -> ``a/x``, ``b/x``)."""
    parts = [Path(p).resolve().parts[:-1] + (Path(p).name.split(".")[0],) for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return labels  # the same file given twice: the caller refuses duplicate labels


def cmd_animate(args) -> int:
    """Write a side-by-side animation of scans (e.g. input, predictions, reference) scrolling through slices."""
    from mrisr.evaluation.render import FORMATS, animate
    from mrisr.io import load_volume

    if Path(args.output).suffix.lower() not in FORMATS:
        raise InputError(args.output, "animations are written as .gif or .mp4")
    check_outputs([args.output], args.volumes)
    labels = args.labels or panel_labels(args.volumes)
    if len(labels) != len(args.volumes):
        raise ValueError(f"{len(labels)} labels for {len(args.volumes)} volumes")
    if len(set(labels)) != len(labels):
        raise ValueError(f"two panels would share a label ({', '.join(labels)}): give distinct --labels")
    volumes = {label: load_volume(p) for label, p in zip(labels, args.volumes)}
    path = animate(volumes, args.output, axis=args.axis, fps=args.fps, reference=args.reference, errors=args.errors,
                   step=args.step, panel_size=args.panel_size, crop=args.crop, detail=args.detail,
                   slices=None if args.all_slices else "foreground")
    print(f"{path}: {len(volumes)} panels, {path.stat().st_size / 1e6:.1f} MB")
    return 0


def cmd_demo(args) -> int:
    """Train, predict and evaluate on the built-in phantom (or ``--data``), write the table and an animation."""
    from mrisr.demo import run_demo

    check_outputs([args.gif, Path(args.run_dir) / "config.json"], args.data or [])
    run_demo(args.data, run_dir=args.run_dir, gif=args.gif, size="fast" if args.fast else None, device=args.device)
    return 0


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--series", help="DICOM: which series (UID, number or description) when a folder has several")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="DICOM: leave out files that cannot be read, with a warning (default: an error)")
    parser.add_argument("--variable", help=".mat: which variable holds the image")
    parser.add_argument("--axes", help="arrays: one letter per axis from S (slice), R (row), C (column), T (time)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("S", "R", "C"), help="arrays: voxel size in mm")
    parser.add_argument("--kspace", action="store_true", help="fastMRI: reconstruct from kspace (RSS)")
    parser.add_argument("--nan", type=float, help="replace NaN/infinite voxels with this value instead of failing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrisr", description="MRI super-resolution experiments.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print what a scan loads as: format, shape, spacing, affine, intensities")
    info.add_argument("path", help="DICOM folder, .nii/.nii.gz, ISMRMRD or fastMRI .h5, .mat or .npy")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_load_options(info)
    info.set_defaults(func=cmd_info)

    download = sub.add_parser("download", help="download and reconstruct the mridata.org knees")
    download.add_argument("dataset", choices=["knees"])
    download.add_argument("--cases", default="1-20", help="case numbers, e.g. 1-20 or 1,4,7-9 (default 1-20)")
    download.add_argument("--dest", default="data/knees", help="folder for raw files and NIfTI (default data/knees)")
    download.add_argument("--url", default=DEFAULT_KNEE_URL, help="URL template with {uuid} (env MRISR_MRIDATA_URL)")
    download.add_argument("--delete-raw", action="store_true", help="delete each 1.7 GB raw file once converted")
    download.add_argument("--quiet", action="store_true", help="no progress output")
    download.set_defaults(func=cmd_download)

    base = sub.add_parser("baselines", help="score nearest/linear/cubic interpolation of a degraded scan")
    base.add_argument("path", help="any scan `mrisr info` reads")
    base.add_argument("--preset", nargs="+", default=list(PRESETS), choices=list(PRESETS),
                      help="degradation presets (default: all)")
    base.add_argument("--seed", type=int, default=0, help="random seed of the degradation (default 0)")
    base.add_argument("--csv", help="also write the table to this CSV file")
    base.add_argument("--json", action="store_true", help="print JSON records instead of text tables")
    _add_load_options(base)
    base.set_defaults(func=cmd_baselines)

    train = sub.add_parser("train", help="train the experiment described by a config JSON")
    train.add_argument("config", help="ExperimentConfig JSON (see mrisr.training.config.ExperimentConfig)")
    add_set_option(train, "a config field, checked as the file's own (run_dir=FOLDER: another run folder)")
    train.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    train.add_argument("--nproc", type=int, default=1, help="processes training together on this machine (data "
                                                             "parallel, one per GPU; gloo on the CPU); default 1")
    again = train.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run from its folder's last.pth (the same "
                                                             "config): reaches the weights of an uninterrupted run")
    again.add_argument("--overwrite", action="store_true", help="start again, replacing the run folder's best.pth and "
                                                                "last.pth of an earlier run")
    train.set_defaults(func=cmd_train)

    def add_predict_options(p):
        p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
        p.add_argument("--tile-size", type=int, help="tile size in input voxels, halo included (default: largest "
                                                      "that fits in memory)")
        p.add_argument("--overlap", type=float, help="fraction of a tile shared with a neighbour (default: 0 with "
                                                     "the exact halo, as predict_volume)")
        p.add_argument("--batch-size", type=int, help="tiles per forward pass (default: fill memory)")
        p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"],
                       help="precision on CUDA (default: the fast path benchmarks/speed.py chose, "
                            "mrisr.training.device.FAST_PATH)")

    predict = sub.add_parser("predict", help="super-resolve a scan with a trained model, write NIfTI")
    predict.add_argument("input", help="any scan `mrisr info` reads (on the grid the model was trained for)")
    predict.add_argument("output", help="output .nii or .nii.gz (affine scaled for networks with scale > 1)")
    predict.add_argument("--checkpoint", required=True, help="best.pth of a training run")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--consistency", metavar="PRESET|SPEC.json",
                         help="the degradation that made the input: make the output consistent with the input "
                              "under it (measured k-space put back, or back-projection; mrisr.physics.consistency)")
    add_predict_options(predict)
    _add_load_options(predict)
    predict.set_defaults(func=cmd_predict)

    selfsr = sub.add_parser("selfsr", help="super-resolve one anisotropic scan through-plane from itself (SMORE)",
                            description="Trains a 2D network on the scan's own in-plane images, degraded along one "
                                        "axis as its slices degrade the slice axis, applies it to the through-plane "
                                        "images of both orientations and fuses them (mrisr.inference.selfsr). No "
                                        "other scan or ground truth is needed.")
    selfsr.add_argument("scan", help="any scan `mrisr info` reads, its slice axis (axis 0) coarser than in-plane")
    selfsr.add_argument("output", help="output .nii or .nii.gz")
    selfsr.add_argument("--target-spacing", type=float, metavar="MM",
                        help="output slice spacing in mm (default: about the in-plane spacing, dividing the slice "
                             "spacing: isotropic); one that does not divide it is resampled from a finer grid")
    selfsr.add_argument("--slice-thickness", type=float, metavar="MM",
                        help="slice thickness in mm when the header does not give it (default: the header's, else "
                             "the slice spacing); thinner than the spacing is a gap")
    selfsr.add_argument("--profile", default="rect", choices=["rect", "gaussian"],
                        help="slice profile: rect (thickness wide) or gaussian (FWHM the thickness); default rect")
    selfsr.add_argument("--size", default="fast", choices=["fast", "thorough", "full", "smoke"],
                        help="fast: about 2 minutes for a 96 x 192 x 192 crop on a 2-core CPU; thorough: up to 15; "
                             "full: a GPU (default fast; RECIPES['selfsr'] in mrisr.training.recipes)")
    add_set_option(selfsr, "a field of the size's recipe (an ExperimentConfig)")
    selfsr.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    selfsr.add_argument("--consistency", action="store_true",
                        help="make the output consistent with the scan (its slices averaged give the scan back)")
    selfsr.add_argument("--validate-against", metavar="OTHER_SERIES",
                        help="another series of the same exam (e.g. the coronal one of a sagittal scan): score the "
                             "output and interpolations against its acquired images (mrisr.evaluation.crossplane)")
    selfsr.add_argument("--other-profile", default="rect", choices=["rect", "gaussian"],
                        help="the slice profile of --validate-against's series (default rect)")
    selfsr.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    selfsr.add_argument("--quiet", action="store_true", help="no progress output")
    _add_load_options(selfsr)
    selfsr.set_defaults(func=cmd_selfsr)

    evaluate = sub.add_parser("evaluate", help="score trained models and baselines on reference scans")
    evaluate.add_argument("cases", nargs="*", help="high-resolution reference scans (default: the first "
                                                  "checkpoint's test cases)")
    evaluate.add_argument("--checkpoint", nargs="+", required=True, help="one or more best.pth")
    evaluate.add_argument("--nproc", type=int, default=1, help="processes sharing the subjects on this machine (one "
                                                                "per GPU; gloo on the CPU); default 1")
    evaluate.add_argument("--labels", nargs="+", help="one name per checkpoint (default: run folder names)")
    evaluate.add_argument("--seed", type=int, default=0, help="degradation seed (default 0)")
    evaluate.add_argument("--out", help="write <OUT>.csv, <OUT>_summary.csv and <OUT>.md")
    evaluate.add_argument("--consistency", action="store_true",
                          help="also score each model made consistent with its input ('<label>+DC' rows)")
    add_predict_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    anim = sub.add_parser("animate", help="side-by-side GIF/MP4 of scans scrolling through slices")
    anim.add_argument("output", help=".gif, or .mp4 with imageio-ffmpeg installed")
    anim.add_argument("volumes", nargs="+", help="scans, left to right (the last is the reference)")
    anim.add_argument("--labels", nargs="+", help="one caption per scan (default: file names)")
    anim.add_argument("--reference", help="caption of the reference panel (default: the last)")
    anim.add_argument("--axis", type=int, default=0, choices=[0, 1, 2], help="axis to scroll: 0 slice, 1 row, "
                                                                             "2 column (default 0)")
    anim.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    anim.add_argument("--step", type=int, default=1, help="every STEP-th slice (default 1)")
    anim.add_argument("--errors", action="store_true", help="add absolute-error panels against the reference")
    anim.add_argument("--panel-size", type=int, default=256, help="pixels of each panel's short side (default 256)")
    anim.add_argument("--crop", choices=["foreground"], help="zoom on the box around the anatomy")
    anim.add_argument("--detail", choices=["auto"], help="outline and magnify the region the first panel gets most "
                                                         "wrong")
    anim.add_argument("--all-slices", action="store_true", help="every slice, not only those with anatomy")
    anim.set_defaults(func=cmd_animate)

    demo = sub.add_parser("demo", help="train, predict and evaluate on the built-in phantom (no download)",
                          description="Makes phantom knees, degrades them (knee_fast_acquisition), trains a small "
                                      "EDSR3D, predicts the held-out subjects and prints the table against the "
                                      "interpolation baselines. About 3 minutes on a 2-core CPU.")
    demo.add_argument("--data", nargs="+", help="your own scans instead of the phantom (one scan: a slab at its "
                                                "end is held out)")
    demo.add_argument("--run-dir", default="runs/demo", help="checkpoint, config and tables (default runs/demo)")
    demo.add_argument("--gif", default="volume_animations/demo.gif", help="animation of the first test subject")
    demo.add_argument("--device", help="cuda or cpu (default: cuda when available; larger model there)")
    demo.add_argument("--fast", action="store_true", help="tiny phantoms and model, one epoch (a smoke test)")
    demo.set_defaults(func=cmd_demo)

    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every expected failure is one line on stderr naming the file and the problem (exit 1; 2 for
    a refused request such as writing over an input; 130 when interrupted); ``--debug`` shows the traceback."""
    quiet_dependencies()
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except Exception as err:
        if args.debug:
            raise
        code, message = _expected_failure(err)
        if code is None:
            raise
        where = f" (rank {os.environ['RANK']})" if "RANK" in os.environ else ""
        print(f"mrisr {args.command}{where}: error: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if args.debug:
            raise
        again = "; `--resume` continues from the last finished epoch" if args.command == "train" else ""
        print(f"mrisr {args.command}: interrupted (nothing half-written is kept){again}", file=sys.stderr)
        return 130


def _expected_failure(err: Exception) -> tuple[int | None, str]:
    """``(exit code, one-line message)`` for the failures a user can act on; ``(None, "")`` for a bug."""
    if isinstance(err, UsageError):
        return 2, str(err)
    if isinstance(err, (InputError, DownloadError, ValueError, MemoryError, FloatingPointError)):
        return 1, " ".join(str(err).split())
    if "RANK" in os.environ and isinstance(err, RuntimeError) and (
            type(err).__name__ == "DistBackendError" or "closed by peer" in str(err)):
        return 1, "another process of the run stopped (its own error line says why), so this one stops too"
    if isinstance(err, OSError):  # permission, disk full, missing folder: name the file the system names
        where = err.filename if err.filename is not None else "a file"
        return 1, f"{where}: {err.strerror or type(err).__name__}"
    return None, ""


if __name__ == "__main__":
    sys.exit(main())
