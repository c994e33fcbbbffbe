"""A procedural 3D knee-like phantom: the built-in default data that needs no download.

A sagittal knee in mrisr axes: axis 0 medial-lateral (slices), axis 1 superior to inferior (rows), axis 2 anterior to
posterior (columns). Femur above and tibia below a joint line, each with a dark cortical shell and trabecular marrow;
thin bright cartilage layers (about 1.5 mm, 2-3 voxels at the default 0.5 mm grid) on both articular surfaces with a
film of joint fluid between; a subcutaneous fat ring; a few small tortuous vessels (0.4-0.8 mm radius) behind the
joint; a smooth receive-coil bias field. Intensities mimic a fat-bright, fluid-bright gradient-echo contrast and lie
in about [0, 1].

The structures are chosen to be ones a blur destroys: cartilage layers and vessels are a few voxels across and the
trabecular network varies at the voxel scale. Each seed is a different "subject" (geometry, texture, bias field);
the same seed always gives the same volume.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from scipy import ndimage

from mrisr.volume import Volume


class Tissue(IntEnum):
    """Label values of the phantom's tissue map."""
    AIR = 0
    MUSCLE = 1
    FAT = 2
    MARROW = 3
    TRABECULA = 4
    CORTEX = 5
    CARTILAGE = 6
    FLUID = 7
    VESSEL = 8


INTENSITY = {Tissue.AIR: 0.0, Tissue.MUSCLE: 0.32, Tissue.FAT: 0.85, Tissue.MARROW: 0.62, Tissue.TRABECULA: 0.18,
             Tissue.CORTEX: 0.04, Tissue.CARTILAGE: 0.78, Tissue.FLUID: 1.0, Tissue.VESSEL: 0.95}


def knee_labels(shape=(48, 128, 128), spacing=(1.0, 0.5, 0.5), seed: int = 0) -> np.ndarray:
    """Tissue label map (uint8, values of `Tissue`) of the phantom for ``seed``; ``spacing`` in mm per axis."""
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing, float)
    extent = spacing * np.asarray(shape)
    z, y, x = np.meshgrid(*((np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)), indexing="ij")
    labels = np.zeros(shape, np.uint8)

    # Leg: elliptic cylinder along the superior-inferior axis, fat ring under the skin.
    rz, rx = extent[0] * rng.uniform(0.40, 0.46), extent[2] * rng.uniform(0.40, 0.45)
    leg = np.sqrt((z / rz) ** 2 + (x / rx) ** 2)
    labels[leg <= 1] = Tissue.FAT
    labels[leg <= 1 - 2.5 / min(rz, rx)] = Tissue.MUSCLE

    # Bones: femoral condyle (ellipsoid + shaft) above the joint line, tibial plateau (superellipse) below.
    joint = rng.uniform(-0.05, 0.05) * extent[1]
    cart, gap = rng.uniform(1.2, 1.8), 0.6  # cartilage thickness and fluid film, mm
    shift_x = rng.uniform(-0.04, 0.04) * extent[2]
    ca = np.array([0.62 * rz, rng.uniform(0.16, 0.2) * extent[1], 0.55 * rx])  # condyle semi-axes (z, y, x)
    cy = joint - gap / 2 - cart - ca[1]
    condyle = np.sqrt((z / ca[0]) ** 2 + ((y - cy) / ca[1]) ** 2 + ((x - shift_x) / ca[2]) ** 2)
    shaft = (np.sqrt((z / (0.45 * rz)) ** 2 + ((x - shift_x) / (0.4 * rx)) ** 2) <= 1) & (y < cy)
    femur = (condyle <= 1) | shaft
    plateau = ((z / (0.68 * rz)) ** 4 + ((x - shift_x) / (0.6 * rx)) ** 4) <= 1
    tibia_top = joint + gap / 2 + cart
    tibia = plateau & (y >= tibia_top)
    bone = femur | tibia

    femoral_cartilage = (condyle > 1) & (condyle <= 1 + cart / ca[1]) & (y > cy) & ~bone
    tibial_cartilage = plateau & (y >= tibia_top - cart) & (y < tibia_top)
    fluid = plateau & (np.abs(y - joint) <= gap) & ~femoral_cartilage & ~tibial_cartilage & ~bone

    # Trabecular marrow: band-passed noise cut into a thin-walled network; 1 mm cortical shell.
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=0.7 / spacing)
    noise -= ndimage.gaussian_filter(noise, sigma=3.0 / spacing)
    trabecula = np.abs(noise) < 0.12 * noise.std() * 2.5
    labels[bone] = Tissue.MARROW
    labels[bone & trabecula] = Tissue.TRABECULA
    inner = ndimage.binary_erosion(bone, iterations=max(1, round(1.0 / spacing.min())))
    labels[bone & ~inner] = Tissue.CORTEX
    labels[fluid] = Tissue.FLUID
    labels[femoral_cartilage | tibial_cartilage] = Tissue.CARTILAGE

    # Vessels: small tortuous tubes running superior-inferior behind the joint.
    for _ in range(3):
        z0, x0 = rng.uniform(-0.3, 0.3) * rz, shift_x + rng.uniform(0.62, 0.85) * rx
        amp, wavelength, phase = rng.uniform(0.5, 2.0), rng.uniform(10, 25), rng.uniform(0, 2 * np.pi)
        radius = rng.uniform(0.4, 0.8)
        path_z = z0 + amp * np.sin(2 * np.pi * y / wavelength + phase)
        path_x = x0 + amp * np.cos(2 * np.pi * y / (1.3 * wavelength) + phase)
        vessel = ((z - path_z) ** 2 + (x - path_x) ** 2 <= radius**2) & (labels == Tissue.MUSCLE)
        labels[vessel] = Tissue.VESSEL
    return labels


def knee_phantom(shape=(48, 128, 128), spacing=(1.0, 0.5, 0.5), seed: int = 0) -> Volume:
    """The phantom as a `Volume` (float32, about [0, 1]); ``shape`` in voxels, ``spacing`` in mm per axis.

    Geometry is in mm, so changing ``spacing`` changes the sampling, not the anatomy. The default 48x128x128 grid at
    1.0 x 0.5 x 0.5 mm takes well under a second to build.
    """
    labels = knee_labels(shape, spacing, seed)
    lut = np.zeros(len(Tissue), np.float32)
    for tissue, value in INTENSITY.items():
        lut[tissue] = value
    image = lut[labels]
    rng = np.random.default_rng([seed, 1])
    coords = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    bias = 1 + sum(rng.uniform(-0.12, 0.12) * c for c in coords) + rng.uniform(-0.08, 0.08) * coords[1] * coords[2]
    image = (image * bias).astype(np.float32)
    return Volume.from_spacing(image, spacing, {"source_format": "phantom", "seed": int(seed),
                                                "series_description": f"mrisr knee phantom, seed {seed}",
                                                "phase_encoding_axes": (0, 1)})
