"""Every experiment's network and schedule, at each size, in one table: ``RECIPES[experiment][size]``.

A recipe is an `ExperimentConfig` that holds what sizes a run (network, patches, schedule) and what the experiment
is (model, loss, degradation), checked by `ExperimentConfig` when this module loads; a run adds its data and run
folder with `recipe`. Sizes are named for where they fit:

* ``"smoke"``: a tiny network for one epoch, every code path in a minute (the tests);
* ``"samples-cpu"``, ``"cpu"``, ``"fast"``, ``"thorough"``: a 2-core CPU;
* ``"samples"``, ``"gpu"``, ``"cuda"``, ``"full"``: one GPU at the seed's network size; ``"gpu"`` is the samples
  set cut in epochs (not in network size) to fit 8 minutes of one H200 (docs/benchmarks.md has the estimate).

The notebooks pick a size per mode (`mrisr.modes`); the demo, selfsr and the benchmarks take it as ``size``.
``patches_per_epoch`` is over all training subjects. The selfsr recipes count ``patch_size`` in the thick scan's
voxels (slices, columns): `mrisr.inference.selfsr` runs the network on the slice grid, so a patch is ``factor`` times
as many rows of the output.
"""

from __future__ import annotations

from mrisr.training.config import ExperimentConfig

_KNEE = dict(model="edsr3d", loss="mse", degradation="knee_fast_acquisition")  # seed 000: EDSR3D, MSE (+ VGG16)
_HEART = dict(model="srresnet2d", n_blocks=4, scale=4, loss="mse", degradation="cardiac_x4")  # seed 001
_SELFSR = dict(model="edsr2d", loss="l1")  # SMORE's through-plane network; the degradation comes from the scan

RECIPES: dict[str, dict[str, ExperimentConfig]] = {
    # The knee networks of notebook 02. lr_max: 2e-4 is the recipe's for the seed-size network (docs/training.md),
    # small networks want 1e-3. Full: 14 training knees x 256 patches.
    "knee3d": {
        "full": ExperimentConfig(**_KNEE, n_feats=64, n_blocks=9, patch_size=32, batch_size=16, patches_per_epoch=3584,
                                 valid_patches_per_subject=32, epochs=30, lr_max=2e-4),
        "samples": ExperimentConfig(**_KNEE, n_feats=64, n_blocks=9, patch_size=32, batch_size=32,
                                    patches_per_epoch=2048, valid_patches_per_subject=128, epochs=16, lr_max=2e-4),
        "gpu": ExperimentConfig(**_KNEE, n_feats=64, n_blocks=9, patch_size=32, batch_size=64, patches_per_epoch=2048,
                                valid_patches_per_subject=128, epochs=6, lr_max=2e-4),
        "samples-cpu": ExperimentConfig(**_KNEE, n_feats=16, n_blocks=2, patch_size=24, batch_size=8,
                                        patches_per_epoch=320, valid_patches_per_subject=32, epochs=6, lr_max=1e-3),
        "smoke": ExperimentConfig(**_KNEE, n_feats=8, n_blocks=1, patch_size=16, batch_size=4, patches_per_epoch=16,
                                  valid_patches_per_subject=4, epochs=1, lr_max=2e-4),
    },
    # The four cardiac networks of notebook 04 (x4: 4 residual + 2 upscaling blocks); the upsampler and the
    # perceptual weight are what the four differ in.
    "cardiac2d": {
        "full": ExperimentConfig(**_HEART, n_feats=64, patch_size=96, batch_size=16, patches_per_epoch=2048,
                                 valid_patches_per_subject=64, epochs=40, lr_max=1e-3),
        "samples": ExperimentConfig(**_HEART, n_feats=64, patch_size=96, batch_size=16, patches_per_epoch=2048,
                                    valid_patches_per_subject=64, epochs=20, lr_max=1e-3),
        "gpu": ExperimentConfig(**_HEART, n_feats=64, patch_size=96, batch_size=16, patches_per_epoch=2048,
                                valid_patches_per_subject=64, epochs=3, lr_max=1e-3),
        "samples-cpu": ExperimentConfig(**_HEART, n_feats=32, patch_size=64, batch_size=8, patches_per_epoch=192,
                                        valid_patches_per_subject=32, epochs=4, lr_max=1e-3),
        "smoke": ExperimentConfig(**_HEART, n_feats=8, patch_size=32, batch_size=4, patches_per_epoch=16,
                                  valid_patches_per_subject=4, epochs=1, lr_max=1e-3),
    },
    # Self-supervised SR (`mrisr.inference.selfsr`), trained on the scan's two in-plane orientations.
    # fast: a 96 x 192 x 192 brain crop in under 2 minutes of a 2-core CPU; training longer paid most
    # (docs/benchmarks.md: at x4, +0.28 dB over cubic at 8 epochs, +0.55 at 24, +0.71 at 72).
    # thorough: up to 15 CPU minutes, fast trained 5x longer (64 x 8 for 24 epochs, +0.69 dB, took longer than
    # 32 x 4 for 72, +0.71). full: EDSR-baseline width and depth (Lim et al. 2017), larger patches (a GPU).
    "selfsr": {
        "full": ExperimentConfig(**_SELFSR, n_feats=64, n_blocks=16, patch_size=[12, 96], batch_size=32,
                                 patches_per_epoch=2048, valid_patches_per_subject=64, epochs=40, lr_max=5e-4),
        "gpu": ExperimentConfig(**_SELFSR, n_feats=64, n_blocks=16, patch_size=[12, 96], batch_size=32,
                                patches_per_epoch=2048, valid_patches_per_subject=64, epochs=10, lr_max=5e-4),
        "thorough": ExperimentConfig(**_SELFSR, n_feats=32, n_blocks=4, patch_size=[8, 48], batch_size=16,
                                     patches_per_epoch=384, valid_patches_per_subject=32, epochs=120, lr_max=1e-3),
        "fast": ExperimentConfig(**_SELFSR, n_feats=32, n_blocks=4, patch_size=[8, 48], batch_size=16,
                                 patches_per_epoch=384, valid_patches_per_subject=32, epochs=24, lr_max=1e-3),
        "smoke": ExperimentConfig(**_SELFSR, n_feats=8, n_blocks=1, patch_size=[8, 48], batch_size=8,
                                  patches_per_epoch=64, valid_patches_per_subject=8, epochs=1, lr_max=1e-3),
    },
    # The demo (`mrisr.demo`, notebook 00) on phantom knees or your scans.
    "demo": {
        "cuda": ExperimentConfig(n_feats=64, n_blocks=9, patch_size=32, batch_size=16, patches_per_epoch=2048,
                                 valid_patches_per_subject=32, epochs=20, lr_max=2e-4),
        "cpu": ExperimentConfig(n_feats=16, n_blocks=4, patch_size=24, batch_size=8, patches_per_epoch=192,
                                valid_patches_per_subject=8, epochs=8, lr_max=1e-3),
        "fast": ExperimentConfig(n_feats=8, n_blocks=1, patch_size=12, batch_size=4, patches_per_epoch=16,
                                 valid_patches_per_subject=4, epochs=1, lr_max=1e-3),
    },
    # The real-data benchmark (experiments/real_knee.py): EDSR3D on the DESS slabs, 2 training slabs.
    "real_knee": {
        "gpu": ExperimentConfig(n_feats=64, n_blocks=9, patch_size=32, batch_size=64, patches_per_epoch=4096,
                                valid_patches_per_subject=256, epochs=24),
        "cpu": ExperimentConfig(n_feats=16, n_blocks=2, patch_size=24, batch_size=8, patches_per_epoch=320,
                                valid_patches_per_subject=32, epochs=8, lr_max=1e-3),
    },
}


def recipe(experiment: str, size: str, **fields) -> ExperimentConfig:
    """``RECIPES[experiment][size]`` with ``fields`` (data, run folder, overrides) added, checked as a new config."""
    if experiment not in RECIPES:
        raise ValueError(f"no recipes for {experiment!r}; experiments: {', '.join(RECIPES)}")
    if size not in RECIPES[experiment]:
        raise ValueError(f"size must be one of {', '.join(RECIPES[experiment])} for {experiment}, got {size!r}")
    return RECIPES[experiment][size].updated(fields)
