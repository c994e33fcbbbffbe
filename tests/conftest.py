"""Shared fixtures. Real samples come from ``../shared/data`` or ``$MRISR_SAMPLE_DATA``; in CI their absence fails."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mrisr.notebook import CACHES

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = Path(os.environ.get("MRISR_SAMPLE_DATA", REPO.parent / "shared" / "data"))

_CACHE = Path(tempfile.gettempdir()) / f"mrisr-test-cache-{os.getuid()}"
for _var in CACHES:  # before anything imports matplotlib
    os.environ.setdefault(_var, str(_CACHE / _var.lower()))


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """Folder of the real MRI samples; skips locally, fails in CI (CI=true), when missing."""
    if not (SAMPLE_DATA / "knee_dess_sample").is_dir():
        message = f"real sample data not found at {SAMPLE_DATA} (set MRISR_SAMPLE_DATA)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def dess_dir(sample_data) -> Path:
    return sample_data / "knee_dess_sample"


@pytest.fixture(scope="session")
def dess(dess_dir):
    from mrisr import load_volume

    return load_volume(dess_dir)


@pytest.fixture(scope="session")
def dess_block(dess):
    """A 24 x 160 x 160 block of the real DESS knee (bone, cartilage, fat and some air), with its geometry."""
    from mrisr import Volume

    start = np.array([20, 160, 150])
    affine = dess.affine.copy()
    affine[:3, 3] += dess.affine[:3, :3] @ start
    return Volume(dess.data[20:44, 160:320, 150:310], affine, dess.meta)


@pytest.fixture(scope="session")
def cardiac(sample_data):
    """The real ACDC cine slice: (30 frames, 1 slice, 184, 256)."""
    from mrisr import load_volume

    return load_volume(sample_data / "cardiac_acdc_cine_slice" / "demo_data.mat", axes="RCT")
