"""The built-in phantom: deterministic per seed, with thin structures that a blur destroys."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mrisr.data.phantom import Tissue, knee_labels, knee_phantom


def test_same_seed_same_volume_different_seed_different_subject():
    a, b, c = knee_phantom(seed=0), knee_phantom(seed=0), knee_phantom(seed=1)
    np.testing.assert_array_equal(a.data, b.data)
    assert np.mean(a.data != c.data) > 0.05
    assert a.data.shape == (48, 128, 128) and a.spacing == (1.0, 0.5, 0.5)


def test_all_tissues_present():
    labels = knee_labels(seed=2)
    for tissue in Tissue:
        assert (labels == tissue).sum() > 0, tissue.name


def test_cartilage_and_vessels_are_thin():
    labels = knee_labels(seed=0)
    for tissue, max_mm in ((Tissue.CARTILAGE, 2.0), (Tissue.VESSEL, 1.0)):
        # Largest inscribed half-thickness, in voxels of 0.5 mm in-plane: a thin layer has a small maximum.
        half_thickness = ndimage.distance_transform_edt(labels == tissue, sampling=(1.0, 0.5, 0.5)).max()
        assert half_thickness <= max_mm / 2 + 0.5, (tissue.name, half_thickness)


def test_blur_destroys_cartilage_contrast():
    volume, labels = knee_phantom(seed=0), knee_labels(seed=0)
    cartilage = labels == Tissue.CARTILAGE
    around = ndimage.binary_dilation(cartilage, iterations=3) & ~cartilage
    blurred = ndimage.gaussian_filter(volume.data, sigma=(1.0, 2.0, 2.0))  # 1 mm Gaussian
    contrast = volume.data[cartilage].mean() - volume.data[around].mean()
    contrast_blurred = blurred[cartilage].mean() - blurred[around].mean()
    assert contrast > 0.1
    assert contrast_blurred < 0.6 * contrast


def test_geometry_is_in_mm():
    coarse = knee_labels(shape=(24, 64, 64), spacing=(2.0, 1.0, 1.0), seed=4)
    fine = knee_labels(shape=(48, 128, 128), spacing=(1.0, 0.5, 0.5), seed=4)
    bone_fraction = [np.isin(x, [Tissue.MARROW, Tissue.TRABECULA, Tissue.CORTEX]).mean() for x in (coarse, fine)]
    assert abs(bone_fraction[0] - bone_fraction[1]) < 0.02


def test_a_sagittal_knee_femur_tibia_patella_and_menisci_between_the_bones():
    labels = knee_labels(seed=3)
    bone = np.isin(labels, [Tissue.MARROW, Tissue.TRABECULA, Tissue.CORTEX])
    parts, n = ndimage.label(bone)
    sizes = np.bincount(parts.ravel())[1:]
    assert n >= 3 and np.sort(sizes)[-3] > 500  # femur, tibia and patella, each a real bone
    centres = sorted((ndimage.center_of_mass(parts == k + 1) for k in np.argsort(sizes)[-3:]), key=lambda c: c[1])
    patella, femur, tibia = sorted(centres[:2], key=lambda c: c[2]) + [centres[2]]  # rows: axis 1 runs downwards
    assert patella[2] < femur[2] and femur[1] < tibia[1]  # patella in front of the femur, femur above the tibia
    menisci_rows = np.flatnonzero((labels == Tissue.MENISCUS).any(axis=(0, 2)))
    assert menisci_rows.size and femur[1] < menisci_rows.mean() < tibia[1]
