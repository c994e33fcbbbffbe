"""What a dataset is: its cases (scan files), how they split into training, validation and test subjects, and the
spatially disjoint slabs that stand in for subjects when there is only one scan.

* `Split`: which scan paths train, validate and test; `split_cases` makes one by subject (about a quarter test, one
  validation subject when three or more remain); one scan gives up its last quarter along its longest axis as the
  test subject.
* `split_slabs`: a training part and a hold-out slab of one volume, behind a margin in mm, each cut to a multiple of
  voxels for degradations that downsample (`slab_multiple`).
* `load_subjects`: a config's training and validation cases, loaded, cut and degraded
  (`mrisr.data.pipeline.prepare_subject`).
* `case_name`: a case's name, its file name without the format suffix: the subject's name in tables and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisr.data.pipeline import Subject, prepare_subject
from mrisr.errors import check_number
from mrisr.io import load_volume, save_volume
from mrisr.physics.degrade import Degradation
from mrisr.volume import Volume


@dataclass(frozen=True)
class Split:
    """A split of scan paths by subject: ``train`` and ``valid`` are loaded for training and model selection, ``test``
    never is. With no ``valid`` path, a slab of the last training case validates (`load_subjects`), cut along volume
    axis ``slab_axis`` (0, 1 or 2)."""

    train: tuple[Path, ...]
    valid: tuple[Path, ...]
    test: tuple[Path, ...]
    slab_axis: int = 0

    @property
    def names(self) -> tuple[list[str], list[str], list[str]]:
        """The case names (`case_name`) of ``(train, valid, test)``."""
        return tuple([case_name(p) for p in paths] for paths in (self.train, self.valid, self.test))

    def config_fields(self) -> dict:
        """The `ExperimentConfig` fields that hold this split: ``ExperimentConfig(**split.config_fields(), ...)``."""
        return {"train_paths": [str(p) for p in self.train], "valid_paths": [str(p) for p in self.valid],
                "test_paths": [str(p) for p in self.test], "holdout_axis": self.slab_axis}


def load_subjects(config) -> list[Subject]:
    """Load, degrade and normalise the config's training and validation cases (test cases are left alone), each
    cut to the degradation's size multiple (`crop_to_multiple`).

    Without ``valid_paths``, the last training case is split into a training part and a spatially disjoint hold-out
    slab named ``<case>:holdout`` that validates.
    """
    spec = config.get_degradation()
    split = config.split
    if not split.train:
        raise ValueError("no training cases: train_paths is empty")
    subjects = []
    multiple = [slab_multiple(spec, axis) for axis in range(3)]
    for path in split.train + split.valid:
        volume = crop_to_multiple(load_volume(path, **config.load_options), multiple)
        if path == split.train[-1] and not split.valid:
            train, holdout = split_slabs(volume, config.holdout_slab, config.holdout_margin_mm, config.holdout_axis,
                                         slab_multiple(spec, config.holdout_axis))
            parts = [(train, case_name(path)), (holdout, f"{case_name(path)}:holdout")]
        else:
            parts = [(volume, case_name(path))]
        subjects += [prepare_subject(part, spec, name, config.seed, on_the_fly=config.degrade_on_the_fly)
                     for part, name in parts]
    return subjects


def slab_multiple(degradation: Degradation, axis: int) -> int:
    """The length a slab along volume ``axis`` must be a multiple of for ``degradation`` (its downsampling)."""
    return dict(zip(range(3 - degradation.ndim, 3), degradation.size_multiple())).get(axis, 1)


def case_name(path: str | Path) -> str:
    """A case's name: its file name without the format suffix (a DICOM folder: the folder's name)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".h5", ".mat", ".npy"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def split_cases(paths: list[Path], run_dir: Path, degradation: Degradation | None = None,
                load_options: dict | None = None, n_test: int | None = None, n_valid: int | None = None) -> Split:
    """A subject-level `Split` of scan ``paths``, in their order.

    The last ``n_test`` subjects test (default: about a quarter, at least one), the ``n_valid`` before them validate
    (default: one when three or more remain, else none), the rest train.
    Slabs (a hold-out for validation when no subject is left for it, `load_subjects`) are cut along the first
    volume's longest axis. A single volume gives up its last quarter along that axis (behind a 10 mm margin, cut to
    ``degradation``'s size multiple) as the test subject; both parts are written as NIfTI in ``run_dir``.
    """
    first = load_volume(paths[0], **(load_options or {}))
    axis = int(np.argmax(first.shape))
    if len(paths) == 1:
        multiple = slab_multiple(degradation, axis) if degradation is not None else 1
        train, test = split_slabs(first, holdout=0.25, margin_mm=10.0, axis=axis, multiple=multiple)
        name = case_name(paths[0])
        train, test = (save_volume(part, run_dir / f"{name}_{role}.nii.gz") for part, role in ((train, "train"),
                                                                                                 (test, "test")))
        return Split((train,), (), (test,), axis)
    n_test = n_test or max(1, round(len(paths) / 4))
    n_valid = n_valid if n_valid is not None else int(len(paths) - n_test >= 3)
    n_train = len(paths) - n_test - n_valid
    if n_train < 1:
        raise ValueError(f"{len(paths)} subjects cannot give {n_test} to test and {n_valid} to validate and keep one "
                         "to train")
    paths = tuple(Path(p) for p in paths)
    return Split(paths[:n_train], paths[n_train:n_train + n_valid], paths[n_train + n_valid:], axis)


def patches_per_subject(patches_per_epoch: int, n_train: int) -> int:
    """Training patches per subject that give an epoch at least ``patches_per_epoch`` patches (rounded up)."""
    return -(-patches_per_epoch // n_train)


def validation_names(config, subjects: list[Subject]) -> list[str]:
    """The names of the ``subjects`` that validate: the config's validation cases, else the hold-out slabs."""
    return config.split.names[1] or [s.name for s in subjects if s.name.endswith(":holdout")]


def split_slabs(volume: Volume, holdout: float = 0.25, margin_mm: float = 10.0, axis: int = 0,
                multiple: int = 1) -> tuple[Volume, Volume]:
    """Split one volume into a training part and a spatially disjoint hold-out slab along ``axis`` (0, 1 or 2).

    The hold-out is the last ``holdout`` fraction of the voxels along ``axis``; ``margin_mm`` of tissue between the
    two is dropped, so no training patch touches a hold-out voxel's neighbourhood. Each part's length is cut down to a
    ``multiple`` (for degradations that downsample). Affines follow each part.
    """
    _check_slab_options(axis, margin_mm, multiple)
    check_number("holdout", holdout, "a fraction of the voxels in (0, 1)", above=0, below=1)
    n = volume.shape[axis]
    margin = int(np.ceil(round(margin_mm / volume.spacing[axis], 3)))  # rounding keeps 6 / 1.499997 mm at 4
    start = n - int(round(holdout * n))
    train_stop = (start - margin) // multiple * multiple
    start = n - (n - start) // multiple * multiple
    if train_stop < 1 or start >= n:
        raise ValueError(f"cannot hold out {holdout:.0%} of {n} voxels with a {margin_mm} mm margin along axis {axis}")
    return sub_volume(volume, axis, 0, train_stop), sub_volume(volume, axis, start, n)


def disjoint_slabs(volume: Volume, n: int, axis: int = 0, margin_mm: float = 10.0, multiple: int = 1) -> list[Volume]:
    """``n`` spatially disjoint slabs of one volume along ``axis``, ``margin_mm`` apart, each cut to a ``multiple``
    of voxels: stand-ins for subjects when only one scan exists (smoke runs, tests). They share one anatomy, so
    scores between them say less than scores between real subjects."""
    _check_slab_options(axis, margin_mm, multiple)
    check_number("n", n, "a number of slabs, an integer >= 1", minimum=1, integer=True)
    size = volume.shape[axis]
    margin = int(np.ceil(round(margin_mm / volume.spacing[axis], 3)))
    length = (size - (n - 1) * margin) // n // multiple * multiple
    if length < 1:
        raise ValueError(f"cannot cut {n} slabs {margin_mm} mm apart from {size} voxels along axis {axis}")
    return [sub_volume(volume, axis, k * (length + margin), k * (length + margin) + length) for k in range(n)]


def _check_slab_options(axis, margin_mm, multiple) -> None:
    check_number("axis", axis, "a volume axis: 0, 1 or 2", minimum=0, below=3, integer=True)
    check_number("margin_mm", margin_mm, "a distance in mm >= 0", minimum=0)
    check_number("multiple", multiple, "a number of voxels, an integer >= 1", minimum=1, integer=True)


def crop_to_multiple(volume: Volume, multiple) -> Volume:
    """``volume`` with each of its three axes cut at the end to a multiple of ``multiple`` (one int per axis, or
    one for all): what a degradation with downsampling or thick slices needs (`Degradation.size_multiple`)."""
    multiple = np.broadcast_to(multiple, 3)
    for axis, m in enumerate(multiple):
        n = volume.shape[axis]
        if n % m:
            if n < m:
                raise ValueError(f"axis {axis} has {n} voxels, fewer than the multiple {m} it must be cut to")
            volume = sub_volume(volume, axis, 0, n // m * m)
    return volume


def sub_volume(volume: Volume, axis: int, start: int, stop: int) -> Volume:
    """Voxels ``start:stop`` along volume ``axis`` (0, 1 or 2; frames kept), the affine shifted to match."""
    index = [slice(None)] * volume.data.ndim
    index[volume.data.ndim - 3 + axis] = slice(start, stop)
    return Volume(volume.data[tuple(index)], volume.resampled_affine({axis: (1, start)}),
                  {**volume.meta, "slab": [start, stop, axis]})


# -- patches ------------------------------------------------------------------------------------------------------
