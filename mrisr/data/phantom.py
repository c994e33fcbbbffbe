"""A procedural 3D knee phantom, seen in sagittal slices: the built-in default data that needs no download.

mrisr axes: axis 0 medial to lateral (slices), axis 1 superior to inferior (rows), axis 2 anterior to posterior
(columns). Each sagittal slice shows what a knee MRI shows:

* the femur coming down from the top and ending in a condyle with a rounded (near circular) end; two condyles,
  medial and lateral, with the intercondylar notch between them, so the profile changes from slice to slice;
* the tibia below the joint line, its plateau with rounded edges, narrowing into the shaft;
* the patella in front of the femur, the quadriceps tendon above it and the patellar tendon down to the tibia;
* articular cartilage (1.3-1.8 mm, about 3 voxels at the default 0.5 mm grid) on the femoral condyles, the tibial
  plateau and the back of the patella, with a film of joint fluid between femur and tibia;
* the menisci: dark wedges at the front and back of each compartment, between femoral and tibial cartilage;
* fat: a subcutaneous layer, Hoffa's fat pad behind the patellar tendon, popliteal fat behind the joint, with a few
  tortuous vessels (0.4-0.8 mm radius) in it; muscle everywhere else in the leg;
* bone: a dark cortical shell (1 mm) around trabecular marrow, a network that varies at the voxel scale;
* a smooth receive-coil bias field.

Intensities mimic a fat-bright, fluid-bright gradient-echo (DESS-like) contrast and lie in about [0, 1]. The anatomy
is scaled to the field of view (a whole knee in any grid), while thicknesses (cartilage, cortex, fat layer) are in
mm, so a finer grid samples the same thin layers with more voxels. Each seed is a different "subject" (proportions,
texture, bias field); the same seed always gives the same volume.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch
from scipy import ndimage

from mrisr.imaging.noise import NOISE_KEY, signal_level
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
    MENISCUS = 9
    TENDON = 10


INTENSITY = {Tissue.AIR: 0.0, Tissue.MUSCLE: 0.32, Tissue.FAT: 0.85, Tissue.MARROW: 0.62, Tissue.TRABECULA: 0.18,
             Tissue.CORTEX: 0.04, Tissue.CARTILAGE: 0.78, Tissue.FLUID: 1.0, Tissue.VESSEL: 0.95,
             Tissue.MENISCUS: 0.07, Tissue.TENDON: 0.06}


def _ellipsoid(coords, centre, semi_axes):
    """Signed distance (mm, negative inside) to an axis-aligned ellipsoid, to first order near its surface (the
    level-set value divided by its gradient's length)."""
    scaled = [(c - c0) / a for c, c0, a in zip(coords, centre, semi_axes)]
    r = np.sqrt(sum(s ** 2 for s in scaled))
    gradient = np.sqrt(sum((s / a) ** 2 for s, a in zip(scaled, semi_axes)))
    return (r - 1) * r / np.maximum(gradient, 1e-9)


def _capsule(y, x, start, end, radius):
    """Signed distance (mm) in the sagittal (y, x) plane to a segment from ``start`` to ``end`` of ``radius``."""
    (y0, x0), (y1, x1) = start, end
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((y - y0) * dy + (x - x0) * dx) / (dy * dy + dx * dx), 0, 1)
    return np.hypot(y - y0 - t * dy, x - x0 - t * dx) - radius


def knee_labels(shape=(48, 128, 128), spacing=(1.0, 0.5, 0.5), seed: int = 0) -> np.ndarray:
    """Tissue label map (uint8, values of `Tissue`) of the phantom for ``seed``; ``spacing`` in mm per axis."""
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing, float)
    extent = spacing * np.asarray(shape)
    z, y, x = np.meshgrid(*((np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)), indexing="ij")
    half_z, size = extent[0] / 2, min(extent[1], extent[2]) / 2  # slice half-extent; sagittal scale, mm
    labels = np.zeros(shape, np.uint8)

    # Leg: an elliptic cylinder along superior-inferior, a subcutaneous fat layer, muscle inside.
    leg = _ellipsoid((z, x), (0, 0), (half_z * rng.uniform(0.86, 0.94), size * rng.uniform(0.86, 0.92)))
    labels[leg <= 0] = Tissue.FAT
    labels[leg <= -rng.uniform(2.0, 3.5)] = Tissue.MUSCLE
    deep = leg <= -3  # more than 3 mm under the skin, below the fat layer
    labels[(_ellipsoid((z, y, x), (0, -0.05 * size, 0.62 * size), (0.5 * half_z, 0.45 * size, 0.2 * size)) <= 0)
           & deep] = Tissue.FAT  # popliteal fat

    # Femur: two condyles (rounded in the sagittal plane) and the trochlea, joined to the shaft above.
    cart, gap = rng.uniform(1.3, 1.8), 0.5  # cartilage thickness and fluid film, mm
    joint = rng.uniform(0.02, 0.1) * size  # joint line (y), mm below the centre
    radius = size * rng.uniform(0.33, 0.38)  # condyle radius of curvature in the sagittal plane
    cx = size * rng.uniform(0.08, 0.14)  # condyle centres lie behind the shaft
    cy = joint - gap / 2 - cart - radius
    condyle_z = half_z * rng.uniform(0.36, 0.42)
    femur = np.minimum.reduce([
        _ellipsoid((z, y, x), (side * condyle_z, cy, cx), (0.36 * half_z, radius, radius)) for side in (-1, 1)] + [
        _ellipsoid((z, y, x), (0, cy - 0.15 * size, cx - 0.25 * size), (0.62 * half_z, 0.8 * radius, 0.7 * radius)),
        np.maximum(_ellipsoid((z, x), (0, cx - 0.2 * size), (0.5 * half_z, 0.3 * size)), y - cy)])

    # Tibia: a plateau with rounded edges, sloping a little backwards, narrowing into the shaft.
    tibia_top = joint + gap / 2 + cart + 0.08 * (x - cx)  # posterior slope of about 5 degrees
    depth = np.clip((y - tibia_top) / (0.5 * size), 0, 1)  # 0 at the plateau, 1 in the shaft
    width = 1 - 0.35 * depth ** 2
    footprint = _ellipsoid((z, x), (0, cx - 0.02 * size), (0.8 * half_z * width, 0.62 * size * width))
    tibia = np.maximum(footprint, tibia_top - y)

    # Patella in front of the trochlea, tendons above and below it.
    py, px = cy - 0.1 * size, cx - 0.62 * size - 2 * cart - gap  # clear of the trochlea and the shaft
    patella = _ellipsoid((z, y, x), (0, py, px), (0.4 * half_z, 0.24 * size, 0.12 * size))
    tendon = np.minimum(_capsule(y, x, (py + 0.16 * size, px - 0.02 * size), (joint + 0.45 * size, px + 0.05 * size),
                                 0.035 * size),
                        _capsule(y, x, (py - 0.55 * size, px - 0.02 * size), (py - 0.15 * size, px), 0.04 * size))
    tendon = np.maximum(tendon, np.abs(z) - 0.3 * half_z)
    labels[(_ellipsoid((z, y, x), (0, joint - 0.02 * size, px + 0.08 * size), (0.55 * half_z, 0.2 * size,
                                                                               0.13 * size)) <= 0)
           & deep] = Tissue.FAT  # Hoffa's fat pad

    # Trabecular marrow: band-passed noise cut into a thin-walled network; 1 mm cortical shell.
    bone = (femur <= 0) | (tibia <= 0) | (patella <= 0)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=0.7 / spacing)
    noise -= ndimage.gaussian_filter(noise, sigma=3.0 / spacing)
    labels[bone] = Tissue.MARROW
    labels[bone & (np.abs(noise) < 0.3 * noise.std())] = Tissue.TRABECULA
    labels[bone & (np.minimum.reduce([femur, tibia, patella]) > -1.0)] = Tissue.CORTEX

    # Cartilage on the articular surfaces, the fluid film between them, the menisci at the margins.
    femoral = (femur > 0) & (femur <= cart) & (y > cy - 0.3 * size)
    tibial = (tibia > 0) & (tibia <= cart) & (y < tibia_top + 0.5) & (np.abs(z) < 0.75 * half_z)
    patellar = (patella > 0) & (patella <= cart) & (x > px)
    cartilage = (femoral | tibial | patellar) & ~bone & deep
    fluid = (femur > cart) & (footprint <= 0) & (y > tibia_top - 2 * cart - gap) & (y < tibia_top - cart)
    menisci = np.zeros(shape, bool)
    for side in (-1, 1):
        rho = np.hypot(z - side * condyle_z, x - cx)  # distance from the compartment's centre, mm
        inner, outer = 0.45 * radius, 0.95 * radius
        height = 0.18 * radius * np.clip((rho - inner) / (outer - inner), 0, 1)
        menisci |= (rho >= inner) & (rho <= outer) & (y >= tibia_top - cart - height) & (y < tibia_top - cart)
    menisci &= (femur > cart) & (tibia > 0)
    labels[fluid] = Tissue.FLUID
    labels[cartilage] = Tissue.CARTILAGE
    labels[menisci] = Tissue.MENISCUS
    labels[(tendon <= 0) & (leg <= -1) & ~bone & ~cartilage] = Tissue.TENDON

    # Vessels: small tortuous tubes running superior-inferior through the popliteal fat.
    for _ in range(3):
        z0, x0 = rng.uniform(-0.25, 0.25) * half_z, rng.uniform(0.55, 0.7) * size
        amp, wavelength, phase = rng.uniform(0.5, 2.0), rng.uniform(10, 25), rng.uniform(0, 2 * np.pi)
        radius_v = rng.uniform(0.4, 0.8)
        path_z = z0 + amp * np.sin(2 * np.pi * y / wavelength + phase)
        path_x = x0 + amp * np.cos(2 * np.pi * y / (1.3 * wavelength) + phase)
        vessel = ((z - path_z) ** 2 + (x - path_x) ** 2 <= radius_v ** 2) & np.isin(labels, (Tissue.MUSCLE,
                                                                                             Tissue.FAT))
        labels[vessel & deep] = Tissue.VESSEL
    return labels


def knee_phantom(shape=(48, 128, 128), spacing=(1.0, 0.5, 0.5), seed: int = 0,
                 snr: float | None = None) -> Volume:
    """The phantom as a `Volume` (float32, about [0, 1]); ``shape`` in voxels, ``spacing`` in mm per axis.

    ``snr``: ``None`` for a noise-free image, else the thermal noise a scan of it would carry (Rician, one
    channel; mean tissue signal over the noise sigma, as `mrisr.imaging.noise.snr` reads it back from the air). The
    default 48x128x128 grid at 1.0 x 0.5 x 0.5 mm (a 48 x 64 x 64 mm field of view) takes well under a second to build.
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
    meta = {"source_format": "phantom", "seed": int(seed), "series_description": f"mrisr knee phantom, seed {seed}",
            "phase_encoding_axes": (0, 1)}
    if snr is not None:
        sigma = float(signal_level(torch.from_numpy(image).reshape(-1), 1)) / snr
        noise = sigma * np.random.default_rng([seed, 2]).standard_normal((2, *shape))
        image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2).astype(np.float32)
        meta[NOISE_KEY] = sigma  # known: no need to read it from the air
    return Volume.from_spacing(image, spacing, meta)
