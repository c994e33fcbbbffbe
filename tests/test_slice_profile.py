"""The slice-profile estimator (mrisr.inference.slice_profile) on the real isotropic brain made thick with known
profiles."""

from __future__ import annotations

import pytest

from mrisr.data.cases import sub_volume
from mrisr.inference.slice_profile import estimate_slice_profile
from mrisr.physics.degrade import Degradation, RicianNoise, SliceProfile

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def brain(sample_data):
    from mrisr import load_volume

    volume = load_volume(sample_data / "brain_t1_iso" / "studyforrest_t1w_0.7mm.nii.gz")
    for axis, (start, size) in enumerate([(80, 96), (96, 192), (96, 192)]):
        volume = sub_volume(volume, axis, start, start + size)
    return volume


def test_a_thicker_profile_is_estimated_thicker(brain):
    """Slices 2.67 mm apart (4 fine slices), 1.33 mm thick (a gap), 2.67 (contiguous) and 4.0 (an overlap): the
    estimates keep that order. (Their bias, 0.3-1.1 mm thin, is in the module docstring.)"""
    estimates = []
    for width in (2.0, 4.0, 6.0):
        thick = Degradation([RicianNoise(30.0), SliceProfile(width, 4)])(brain, seed=0)
        estimate = estimate_slice_profile(thick, shapes=("rect",))
        assert set(estimate.table["shape"]) == {"rect"} and estimate.table["distance"].min() >= 0
        estimates.append(estimate.thickness_mm)
    assert estimates[0] < estimates[1] < estimates[2], estimates
