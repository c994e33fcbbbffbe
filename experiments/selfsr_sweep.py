"""One `mrisr.inference.selfsr` setting at a time, on one thick scan: the quick sweep that chose the recipes.

    .venv/bin/python -m experiments.selfsr_sweep brain|dess TAG [--set epochs=72 --set n_feats=64]

The brain (a 96 x 192 x 192 crop of the 0.7 mm isotropic brain, noise at SNR 30) or the DESS (a 48 x 192 x 192 crop,
its own noise) is made thick x4 (`mrisr.evaluation.thick_slices.thick_degradation`, seed 0); the network is trained with
the fields given overriding ``RECIPES["selfsr"]["fast"]`` (`mrisr.training.recipes`) and applied. One JSON line: the
foreground PSNR of cubic interpolation (scikit-image's ``peak_signal_noise_ratio``, data range of the reference's
foreground), the gain over it of the fused output and of the plain mean of the two orientations, and the seconds. No
interval and no classical baseline: a screening tool; `experiments/selfsr.py` is the measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from skimage.metrics import peak_signal_noise_ratio

from experiments.selfsr import load_reference
from mrisr.data.cases import crop_to_multiple
from mrisr.evaluation.thick_slices import thick_degradation
from mrisr.imaging.foreground import foreground_mask
from mrisr.inference import selfsr
from mrisr.overrides import add_set_option
from mrisr.training.recipes import recipe

FACTOR = 4
CROPS = {"brain": (96, 192, 192), "dess": (48, 192, 192)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scan", choices=list(CROPS))
    parser.add_argument("tag", help="a name for this setting in the output line")
    add_set_option(parser, 'a field of RECIPES["selfsr"]["fast"]')
    args = parser.parse_args(argv)
    scan, tag, settings = args.scan, args.tag, dict(args.set)
    hr, snr = load_reference(scan, CROPS[scan])
    hr = crop_to_multiple(hr, (FACTOR, 1, 1))
    thick = thick_degradation(FACTOR, snr)(hr, seed=0)
    geometry = selfsr.slice_geometry(thick, target_spacing=hr.spacing[0])
    start = time.perf_counter()
    model = selfsr.train_network(thick, geometry, recipe("selfsr", "fast", **settings), "cpu", progress=False)
    trained = time.perf_counter()
    grid, estimates = selfsr.through_plane_estimates(model, thick, geometry, progress=False)
    fused = selfsr.fourier_burst_accumulation(estimates).cpu().numpy()
    applied = time.perf_counter()
    mask = foreground_mask(hr)
    data_range = float(hr.data[mask].max() - hr.data[mask].min())

    def psnr(x):
        return peak_signal_noise_ratio(hr.data[mask], x[mask], data_range=data_range)

    cubic = psnr(grid.data)
    print(json.dumps(dict(scan=scan, tag=tag, cubic=round(cubic, 3), fused_gain=round(psnr(fused) - cubic, 3),
                          mean_gain=round(psnr(estimates.mean(0).cpu().numpy()) - cubic, 3),
                          train_s=round(trained - start), apply_s=round(applied - trained), settings=settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
