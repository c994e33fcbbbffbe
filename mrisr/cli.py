"""The ``mrisr`` command. Exit codes: 0 success, 1 bad input or failed download (one line on stderr), 2 usage."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from mrisr.degrade import PRESETS
from mrisr.download import DEFAULT_KNEE_URL, DownloadError, download_knees, parse_cases
from mrisr.errors import InputError


def _load_options(args) -> dict:
    options = {"series": args.series, "variable": args.variable, "axes": args.axes, "nan": args.nan,
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

    from mrisr.baselines import baselines
    from mrisr.degrade import preset
    from mrisr.evaluate import score_table
    from mrisr.io import load_volume
    from mrisr.io.atomic import atomic_path

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


def cmd_demo(args) -> int:
    """Interim demo: build phantom subjects, write and read them back through the loaders, report."""
    from mrisr.io import load_volume, save_volume
    from mrisr.phantom import knee_phantom

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mrisr-demo-") as tmp:
        for seed in range(args.subjects):
            volume = knee_phantom(seed=seed)
            path = save_volume(volume, Path(tmp) / f"phantom_{seed}.nii.gz")
            loaded = load_volume(path)
            same = bool((loaded.data == volume.data).all())
            print(f"phantom subject {seed}: shape {loaded.shape}, spacing {loaded.spacing} mm, intensity "
                  f"{loaded.data.min():.3f}..{loaded.data.max():.3f}, NIfTI round trip exact: {same}")
    print(f"done in {time.perf_counter() - start:.1f} s (training and evaluation arrive with issue 5)")
    return 0


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--series", help="DICOM: which series (UID, number or description) when a folder has several")
    parser.add_argument("--variable", help=".mat: which variable holds the image")
    parser.add_argument("--axes", help="arrays: one letter per axis from S (slice), R (row), C (column), T (time)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("S", "R", "C"), help="arrays: voxel size in mm")
    parser.add_argument("--kspace", action="store_true", help="fastMRI: reconstruct from kspace (RSS)")
    parser.add_argument("--nan", type=float, help="replace NaN/infinite voxels with this value instead of failing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrisr", description="MRI super-resolution experiments.")
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

    demo = sub.add_parser("demo", help="run the built-in phantom end to end (no download)")
    demo.add_argument("--subjects", type=int, default=3, help="number of phantom subjects (default 3)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, DownloadError, ValueError) as err:
        print(f"mrisr {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
