"""Speed benchmark: training and whole-volume inference of the seed-size EDSR3D, variant by variant (`run`).

The result is a JSON-ready dict with these sections (`report` turns it into the tables of docs/benchmarks.md):

* ``environment``: device, torch / CUDA / cuDNN versions, date, the sizes used.
* ``peak``: the device's own matrix-product rate in bf16 and fp32 (an n x n x n ``torch.matmul``), the yardstick of
  model FLOP utilisation: MFU = model FLOP/s / the faster of the two (bf16 on a GPU).
* ``train``: one optimiser step (forward, MSE, backward, Adam) on random patches already on the device, for each
  `Variant`, then batch- and patch-size sweeps with the fastest: patches/s, voxels/s, TFLOP/s (model FLOPs counted
  by ``torch.utils.flop_counter``), MFU, peak memory.
* ``pipeline``: the real loop, `mrisr.training.train.sr_learner` fitting phantom subjects through fastai: patches/s, the
  data loader's own time per batch, and the device's busy fraction (the compute-only step time of the same settings over
  the real step time). The first row uses the library's defaults.
* ``inference``: `mrisr.inference.tiled.predict_volume` of a random volume (256 x 320 x 320 on a GPU), per variant and
  per tile size: seconds, input voxels/s, peak memory.
* ``accuracy``: each variant's `predict_volume` of a degraded real (or phantom) volume against the fp32 result: the
  relative error ``||v - fp32|| / ||fp32||`` and the change in PSNR against the original, in dB. The network is the
  benchmark's, trained for a few fp32 steps on that volume so that its output differs from its input.

Timing (as in MONAI's and PyTorch's own benchmarks): warm-up calls first (cuDNN autotuning, compilation, the
allocator), then the median over repeats, each a run of several steps bracketed by CUDA events (on the CPU
``time.perf_counter``), so the host may run ahead of the device as in real training.

    python -m benchmarks.speed --volume ../shared/data/knee_dess_sample --markdown docs/benchmarks.md   # GPU
    python -m benchmarks.speed --size cpu --volume ../shared/data/knee_dess_sample                     # CPU

It prints the tables, writes JSON (``--json``, default
``runs/bench/bench-<time>.json``) and appends the tables to ``--markdown``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmarks.common import append_markdown, as_percent, device_name, log, markdown_table
from benchmarks.settings import CPU_VARIANTS, GPU_VARIANTS, SIZES, BenchSizes
from benchmarks.speed_inference import accuracy_section, inference_section
from benchmarks.speed_train import matmul_rate, pipeline_section, train_section
from mrisr.errors import check_outputs
from mrisr.io.atomic import atomic_path
from mrisr.networks.models import EDSR3D, count_parameters
from mrisr.overrides import add_set_option
from mrisr.training.device import default_device
from mrisr.volume import Volume


SECTIONS = ("train", "pipeline", "inference", "accuracy")


def environment(device: torch.device, sizes: BenchSizes, size: str) -> dict:
    cuda = device.type == "cuda"
    return {"device": device_name(device),
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "size": size, "sizes": dataclasses.asdict(sizes),
            "model": f"EDSR3D {sizes.n_feats}x{sizes.n_blocks} "
                     f"({count_parameters(EDSR3D(n_feats=sizes.n_feats, n_blocks=sizes.n_blocks)):,} parameters)"}


def run(size: str = "auto", device: str | torch.device | None = None, volume: Volume | None = None,
        sections: Sequence[str] = SECTIONS, on_section: Callable[[dict], None] | None = None,
        settings: dict | None = None) -> dict:
    """Measure everything in ``sections`` on ``device`` (default: CUDA when available) with the ``size``
    sizes (``"auto"``: ``"gpu"`` on CUDA, ``"cpu"`` elsewhere; ``"tiny"`` for tests). ``volume`` is the real scan the
    accuracy section degrades and predicts (default: a phantom). ``on_section(result so far)`` is called after
    each section (to save partial results of a long run). ``settings`` replace fields of the sizes (``--set``)."""
    device = default_device(device)
    if size == "auto":
        size = "gpu" if device.type == "cuda" else "cpu"
    if size not in SIZES:
        raise ValueError(f"size must be 'auto' or one of {list(SIZES)}, got {size!r}")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    sizes = SIZES[size].updated(settings or {})
    variants = [v for v in (GPU_VARIANTS if sizes.variants == "gpu" else CPU_VARIANTS) if sizes.compile or not
                v.compile]
    result: dict = {"environment": environment(device, sizes, size)}
    log(f"{result['environment']['device']}, torch {torch.__version__}, size {size}")
    # n^3 products; bf16 on a CPU without bf16 units takes seconds per product, so it is timed at n <= 1024 there
    sides = {"bf16": sizes.matmul_n if device.type == "cuda" else min(sizes.matmul_n, 1024), "fp32": sizes.matmul_n}
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    rates = {k: matmul_rate(device, dtypes[k], n) for k, n in sides.items()}
    peak_name = max(rates, key=rates.get)
    if device.type == "cpu" and rates["bf16"] < rates["fp32"]:  # no bf16 matrix units: bf16 steps take minutes
        result["skipped"] = [f"{v.name}: bf16 matrix products run at {rates['bf16'] / 1e9:.1f} GFLOP/s here, slower "
                             f"than fp32 ({rates['fp32'] / 1e9:.1f})" for v in variants if v.precision == "bf16"]
        variants = [v for v in variants if v.precision != "bf16"]
    result["peak"] = {**{f"{k}_tflops": round(v / 1e12, 2) for k, v in rates.items()},
                      **{f"{k}_n": n for k, n in sides.items()}, "mfu_against": peak_name}
    log("matrix-product peak: " + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in rates.items()))
    done = on_section or (lambda _: None)
    if "train" in sections:
        result["train"] = train_section(sizes, variants, device, rates[peak_name])
        done(result)
    # predict_volume runs eager (tiles change shape) and autocasts on CUDA only
    predicting = [v for v in variants if not v.compile and (device.type == "cuda" or v.precision == "fp32")]
    if "inference" in sections:
        result["inference"] = inference_section(sizes, predicting, device)
        done(result)
    if "pipeline" in sections:
        workers = min(8, max(1, (os.cpu_count() or 2) - 1))
        settings = [{}, {"num_workers": workers}] + [{"batch_size": b} for b in sizes.pipeline_batch_sizes]
        if sizes.compile and sizes.pipeline_batch_sizes:
            settings.append({"batch_size": max(sizes.pipeline_batch_sizes), "compile": True})
        result["pipeline"] = pipeline_section(sizes, device, settings)
        done(result)
    if "accuracy" in sections:
        if volume is None:
            from mrisr.data.phantom import knee_phantom

            volume = knee_phantom(sizes.accuracy_shape)
        result["accuracy"] = accuracy_section(sizes, predicting, device, volume)
    return result


def report(result: dict, command: str = "python -m benchmarks.speed") -> str:
    """The run as Markdown: a heading with device, versions and date, then one table per section."""
    env = result["environment"]
    versions = f"torch {env['torch']}" + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}" if env["cuda"] else "")
    out = [f"### Speed benchmark: {env['device']}, {env['date']}", "",
           f"`{command}` (size `{env['size']}`); {versions}; {env['model']}."]
    if result.get("skipped"):
        out.append("Not measured: " + "; ".join(result["skipped"]) + ".")
    if "peak" in result:
        peak = result["peak"]
        out.append(f"Matrix-product peak measured here: bf16 {peak['bf16_tflops']} TFLOP/s ({peak['bf16_n']}^3), "
                   f"fp32 {peak['fp32_tflops']} TFLOP/s ({peak['fp32_n']}^3); MFU is against {peak['mfu_against']}.")
    if "train" in result:
        train = result["train"]
        sizes = env["sizes"]
        out += ["", f"Training step, compute only (random {sizes['patch']}^3 patches on the device, batch "
                    f"{sizes['batch']}; {train['flops_per_voxel'] / 1e6:.1f} MFLOP per voxel forward+backward). "
                    f"Fastest: **{train['best']}**, {train['speedup_best_over_naive']}x the naive loop.", "",
                markdown_table(as_percent(train["variants"], "mfu"),
                       {"variant": "variant", "step_ms": "step ms", "patches_per_s": "patches/s",
                        "voxels_per_s": "voxels/s", "tflops": "TFLOP/s", "mfu": "MFU",
                        "peak_memory_gib": "peak GiB", "first_step_s": "first step s", "speedup": "vs naive"}),
                "", f"Batch and patch sweeps ({train['sweep_variant']}):", "",
                markdown_table(as_percent(train["sweeps"], "mfu"),
                       {"variant": "variant", "batch": "batch", "patch": "patch", "step_ms": "step ms",
                        "patches_per_s": "patches/s", "voxels_per_s": "voxels/s", "mfu": "MFU",
                        "peak_memory_gib": "peak GiB"})]
    if result.get("train", {}).get("profile"):
        out += ["", f"Where a training step's device time goes ({result['train']['sweep_variant']}, torch.profiler):",
                "", markdown_table(as_percent(result["train"]["profile"], "share"),
                           {"kernel": "kernel", "calls_per_step": "calls/step", "ms_per_step": "ms/step",
                            "share": "share"})]
    if "pipeline" in result:
        out += ["", "The real training loop (`sr_learner` on phantom subjects, fastai, the second epoch's training "
                    "phase); device busy = compute-only step / real step:", "",
                markdown_table(as_percent(result["pipeline"], "device_busy"),
                       {"settings": "settings", "batch": "batch", "num_workers": "workers",
                        "patches_per_s": "patches/s", "step_ms": "step ms", "loader_ms_per_batch": "loader ms/batch",
                        "compute_ms_per_step": "compute ms/step", "device_busy": "device busy"})]
    if "inference" in result:
        out += ["", f"Whole-volume inference, `predict_volume` of a {' x '.join(map(str, env['sizes']['volume']))} "
                    "volume (median of repeats after a warm-up; halo = receptive field, exact):", "",
                markdown_table(result["inference"], {"variant": "variant", "tile": "tile", "memory_gb": "budget GiB",
                                             "tile_used": "tile used", "seconds": "seconds",
                                             "voxels_per_s": "voxels/s", "peak_memory_gib": "peak GiB",
                                             "speedup": "vs naive"})]
    if "accuracy" in result:
        acc = result["accuracy"]
        out += ["", f"Accuracy against fp32 on `{acc['volume']}` {tuple(acc['shape'])} (degraded: "
                    f"{acc['input_psnr_db']} dB; fp32 network: {acc['fp32_psnr_db']} dB):", "",
                markdown_table(acc["variants"], {"variant": "variant", "relative_error": "relative error",
                                         "psnr_change_db": "PSNR change dB"})]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed",
                                     description="Times the seed-size EDSR3D: training steps (fp32, tf32, bf16, "
                                     "channels-last, cuDNN autotuning, torch.compile; batch and patch sweeps; MFU against the measured matrix-product peak), the real fastai "
                                     "loop, whole-volume inference, and each variant's accuracy against fp32.")
    parser.add_argument("--size", default="auto", choices=["auto", *SIZES],
                        help="sizes (default: gpu on CUDA, cpu otherwise; tiny is a smoke test)")
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS,
                        help="what to measure (default: all)")
    parser.add_argument("--volume", help="a real scan for the accuracy section (default: a phantom)")
    parser.add_argument("--json", help="JSON output file, '-' for stdout (default runs/bench/bench-<time>.json)")
    parser.add_argument("--markdown", help="append the tables to this Markdown file, e.g. docs/benchmarks.md")
    add_set_option(parser, "a field of the sizes (benchmarks.settings.BenchSizes, e.g. batch=8)")
    args = parser.parse_args(argv)
    from mrisr.io import load_volume

    path = None if args.json == "-" else Path(args.json or f"runs/bench/bench-{time.strftime('%Y%m%d-%H%M%S')}.json")
    check_outputs([path, args.markdown], [args.volume])
    volume = load_volume(args.volume) if args.volume else None

    def save(result: dict) -> None:  # after every section: a long run that is stopped keeps what it measured
        if path is not None:
            with atomic_path(path, ".json") as tmp:
                tmp.write_text(json.dumps(result, indent=2))

    result = run(args.size, device=args.device, volume=volume, sections=args.sections, on_section=save,
                 settings=dict(args.set))
    save(result)
    print(json.dumps(result, indent=2) if path is None else f"JSON: {path}")
    markdown = report(result, " ".join(["python -m benchmarks.speed", *(argv if argv is not None else sys.argv[1:])]))
    if args.markdown:
        print(f"Markdown appended to {append_markdown(Path(args.markdown), markdown)}")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
