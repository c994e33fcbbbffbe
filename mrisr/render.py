"""Side-by-side pictures of volumes: `animate` (GIF/MP4 scrolling through slices) and `orthoview` (a figure).

Panels are labelled and share one intensity window, so a difference in brightness between panels is a difference in
the images. Volumes on a coarser grid (a low-resolution input) are shown on the reference grid by nearest-neighbour
interpolation through their affines, so each input voxel appears as a block of the size it really has. Pixels are made
square in millimetres (a 1.5 mm x 0.3 mm plane is stretched to its physical shape). Optional panels show the absolute
error against the reference, on their own window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrisr.baselines import resample
from mrisr.errors import check_number
from mrisr.io.atomic import atomic_path
from mrisr.spectrum import residual_spectrum
from mrisr.volume import Volume

GAP = 2  # pixels between panels
LABEL_HEIGHT = 16  # pixels of the caption band above each panel
FORMATS = (".gif", ".mp4")


def on_common_grid(volumes: dict[str, Volume | np.ndarray], reference: str | None = None,
                   frame: int | None = 0) -> tuple[dict[str, np.ndarray], tuple[float, float, float], str]:
    """``(arrays, spacing, reference label)``: every volume as a float array on the reference's grid (default: the
    last panel), 3D: 4D volumes give their ``frame``; with ``frame=None`` every array is 4D ``(frames, S, R, C)``.
    Arrays must already share the reference's shape."""
    reference = reference or list(volumes)[-1]
    if reference not in volumes:
        raise ValueError(f"reference {reference!r} is not among the panels {list(volumes)}")
    ref = volumes[reference]
    spacing = ref.spacing if isinstance(ref, Volume) else (1.0, 1.0, 1.0)
    arrays = {}
    for label, v in volumes.items():
        if isinstance(v, Volume) and isinstance(ref, Volume) and (v.shape != ref.shape
                                                                  or not np.allclose(v.affine, ref.affine)):
            v = resample(v, ref, order=0)
        data = v.data if isinstance(v, Volume) else np.asarray(v, np.float32)
        if frame is None:
            data = data if data.ndim == 4 else data[None]
        elif data.ndim == 4:
            data = data[frame]
        ref_shape = ref.shape if isinstance(ref, Volume) else np.shape(ref)[-3:]
        if data.shape[-3:] != tuple(ref_shape):
            raise ValueError(f"panel {label!r} has shape {data.shape}, the reference {reference!r} {tuple(ref_shape)}; "
                             "give Volumes (resampled through their affines) or arrays of one shape")
        arrays[label] = data
    return arrays, spacing, reference


def intensity_window(image: np.ndarray, percentiles=(0.5, 99.5)) -> tuple[float, float]:
    """Display window ``(low, high)`` from percentiles of ``image`` (subsampled for speed)."""
    sample = image.ravel()[:: max(1, image.size // 2_000_000)]
    low, high = np.percentile(sample, percentiles)
    return float(low), float(high) if high > low else float(low) + 1.0


def _to_uint8(plane: np.ndarray, window) -> np.ndarray:
    low, high = window
    return (np.clip((plane - low) / (high - low), 0, 1) * 255 + 0.5).astype(np.uint8)


def _plane(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(array, index, axis=axis)


def _physical(image, axis: int, spacing, size_scale: float):
    """Resize a plane (PIL image) so its pixels are square in mm, times ``size_scale``."""
    from PIL import Image

    rows_mm, cols_mm = [s for k, s in enumerate(spacing) if k != axis]
    unit = min(rows_mm, cols_mm)
    height = max(1, round(image.height * rows_mm / unit * size_scale))
    width = max(1, round(image.width * cols_mm / unit * size_scale))
    return image.resize((width, height), Image.Resampling.BILINEAR) if (width, height) != image.size else image


def _caption(draw, xy, text):
    from PIL import ImageFont

    try:
        font = ImageFont.load_default(size=LABEL_HEIGHT - 4)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    draw.text(xy, text, fill=255, font=font)


def _inset(panel, box, zoom: int):
    """Draw ``box`` = (row, column, size) on ``panel`` and paste it magnified ``zoom`` times in the lower right."""
    from PIL import Image, ImageDraw

    r, c, size = box
    patch = panel.crop((c, r, c + size, r + size)).resize((size * zoom, size * zoom), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(panel)
    draw.rectangle((c, r, c + size - 1, r + size - 1), outline=255)
    x, y = panel.width - patch.width, panel.height - patch.height
    panel.paste(patch, (x, y))
    draw.rectangle((x, y, panel.width - 1, panel.height - 1), outline=255)


def compose(planes: dict[str, np.ndarray], window, axis: int, spacing, size_scale: float = 1.0,
            errors: dict[str, np.ndarray] | None = None, error_window=None, inset=None, inset_zoom: int = 3,
            counter: str = ""):
    """One frame (uint8, 2D): captioned panels side by side, ``GAP`` pixels apart; a second row of error panels
    when ``errors`` (label -> |panel - reference| plane; panels without one stay black); ``counter`` (e.g. the slice
    number) is written at the right end of the caption band."""
    from PIL import Image, ImageDraw

    def row(images: dict[str, np.ndarray], win, captions):
        panels = []
        for label, plane in images.items():
            panel = _physical(Image.fromarray(_to_uint8(plane, win)), axis, spacing, size_scale)
            if inset is not None and np.isfinite(plane).any():
                _inset(panel, inset, inset_zoom)
            panels.append((captions.get(label, label), panel))
        width, height = panels[0][1].size
        strip = Image.new("L", (len(panels) * width + (len(panels) - 1) * GAP, LABEL_HEIGHT + height), 0)
        draw = ImageDraw.Draw(strip)
        for k, (caption, panel) in enumerate(panels):
            strip.paste(panel, (k * (width + GAP), LABEL_HEIGHT))
            if caption:
                _caption(draw, (k * (width + GAP) + 2, 1), caption)
        return np.asarray(strip)

    top = row(planes, window, {})
    if counter:
        strip = Image.fromarray(top)
        _caption(ImageDraw.Draw(strip), (strip.width - 8 * len(counter) - 2, 1), counter)
        top = np.asarray(strip)
    if errors is None:
        return top
    blank = {label: errors.get(label, np.full_like(plane, -np.inf)) for label, plane in planes.items()}
    bottom = row(blank, error_window, {label: f"|error| {label}" if label in errors else "" for label in planes})
    return np.concatenate([top, np.zeros((GAP, top.shape[1]), np.uint8), bottom])


def animate(volumes: dict[str, Volume | np.ndarray], path: str | Path, axis: int = 0, fps: float = 10.0,
            reference: str | None = None, window: tuple[float, float] | None = None, errors: bool = False,
            error_window: tuple[float, float] | None = None, crop: Sequence[slice] | None = None, step: int = 1,
            size_scale: float | None = None, max_width: int = 1280, inset: tuple[int, int, int] | None = None,
            inset_zoom: int = 3, frame: int = 0, gray_levels: int = 64) -> Path:
    """Write an animation that scrolls through the slices of several volumes side by side.

    Args:
        volumes: caption -> `Volume` (or array, all one shape), left to right, e.g. ``{"LR input": lr, "MSE": a,
            "MSE+perceptual": b, "HR": hr}``.
        path: ``.gif`` (Pillow), or ``.mp4`` (needs the ``imageio-ffmpeg`` package). Written atomically.
        axis: volume axis scrolled through (0 slice, 1 row, 2 column); one frame per slice.
        fps: frames per second.
        reference: caption of the panel whose grid, window and errors count (default: the last).
        window: intensity ``(low, high)`` mapped to black and white for every panel; default `intensity_window` of
            the reference.
        errors: add a row with the absolute error of each other panel against the reference, on ``error_window``
            (default 0 to the 99th percentile of the errors).
        crop: slices per volume axis (voxels of the reference grid) to show only a region.
        step: show every ``step``-th slice (fewer frames, a smaller file).
        size_scale: display size relative to the reference's in-plane voxels; default: 1, or smaller to keep
            the frame within ``max_width`` pixels.
        inset: ``(row, column, size)`` box in displayed panel pixels, shown magnified ``inset_zoom`` times in each
            panel's lower right corner.
        frame: which time frame of 4D volumes.
        gray_levels: distinct grays in a GIF (2 to 256). MR noise defeats GIF compression: at 256 levels a frame
            costs about a byte per pixel; 64 levels saves 40 %. A 256-slice 4-panel 320 x 320 knee is about 65 MB
            as GIF at the defaults; ``step=2``, ``crop`` or a smaller ``max_width`` shrink it further, and MP4 is
            a few MB.

    Returns:
        ``path``. The frame count is ``ceil(n_slices / step)`` along ``axis`` after ``crop``.
    """
    import imageio.v3 as iio

    path = Path(path)
    check_number("fps", fps, "a number of frames per second > 0", above=0)
    check_number("step", step, "a number of slices, an integer >= 1", minimum=1, integer=True)
    check_number("axis", axis, "a volume axis: 0, 1 or 2", minimum=0, below=3, integer=True)
    check_number("inset_zoom", inset_zoom, "a magnification, an integer >= 1", minimum=1, integer=True)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: animations are written as .gif or .mp4")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: MP4 needs an ffmpeg backend (pip install imageio-ffmpeg); or write a .gif") \
                from None
    arrays, spacing, reference = on_common_grid(volumes, reference, frame)
    if crop is not None:
        arrays = {k: a[tuple(crop)] for k, a in arrays.items()}
    ref = arrays[reference]
    window = window or intensity_window(ref)
    diffs = {k: np.abs(a - ref) for k, a in arrays.items() if k != reference} if errors else None
    if errors and error_window is None:
        error_window = (0.0, intensity_window(np.concatenate([d.ravel() for d in diffs.values()]), (0, 99))[1])
    if size_scale is None:
        sample = compose({k: _plane(a, axis, 0) for k, a in arrays.items()}, window, axis, spacing)
        size_scale = min(1.0, max_width / sample.shape[1])
    frames = [compose({k: _plane(a, axis, i) for k, a in arrays.items()}, window, axis, spacing, size_scale,
                      None if diffs is None else {k: _plane(d, axis, i) for k, d in diffs.items()}, error_window,
                      inset, inset_zoom, f"{i + 1}/{ref.shape[axis]}")
              for i in range(0, ref.shape[axis], step)]
    with atomic_path(path, suffix) as tmp:
        if suffix == ".gif":
            _write_gif(frames, tmp, fps, gray_levels)
        else:
            video = np.stack(frames)  # H.264 (yuv420p) needs even sizes
            video = np.pad(video, ((0, 0), (0, video.shape[1] % 2), (0, video.shape[2] % 2)))
            iio.imwrite(tmp, video, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=1)
    return path


def _write_gif(frames: list[np.ndarray], path: Path, fps: float, gray_levels: int = 256) -> None:
    """Grayscale frames, quantised to ``gray_levels`` evenly spaced grays, as palette images with a gray ramp (GIFs
    that Pillow would otherwise store as mode L are not read back by every reader), looping forever."""
    from PIL import Image

    if not 2 <= gray_levels <= 256:
        raise ValueError(f"gray_levels must be between 2 and 256, got {gray_levels}")
    ramp = [v for g in range(256) for v in (g, g, g)]
    images = []
    for frame in frames:
        frame = np.round(np.round(frame / 255 * (gray_levels - 1)) * 255 / (gray_levels - 1)).astype(np.uint8)
        image = Image.frombytes("P", frame.shape[::-1], np.ascontiguousarray(frame).tobytes())
        image.putpalette(ramp)
        images.append(image)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0,
                   optimize=False)


def orthoview(volumes: dict[str, Volume | np.ndarray], index: Sequence[int] | None = None,
              reference: str | None = None, window: tuple[float, float] | None = None, errors: bool = False,
              frame: int = 0, title: str | None = None, panel_size: float = 2.6):
    """A matplotlib figure: one column per volume (plus one per error map with ``errors``), one row per plane
    through voxel ``index`` (default: the centre) of the reference grid: axis 0 cut, axis 1 cut, axis 2 cut.
    Aspect ratios follow the voxel spacing in mm. Returns the figure."""
    import matplotlib.pyplot as plt

    arrays, spacing, reference = on_common_grid(volumes, reference, frame)
    ref = arrays[reference]
    index = [n // 2 for n in ref.shape] if index is None else list(index)
    window = window or intensity_window(ref)
    panels = [(label, a, window, "gray") for label, a in arrays.items()]
    if errors:
        diffs = {k: np.abs(a - ref) for k, a in arrays.items() if k != reference}
        top = intensity_window(np.concatenate([d.ravel() for d in diffs.values()]), (0, 99))[1]
        panels += [(f"|{k} - {reference}|", d, (0.0, top), "magma") for k, d in diffs.items()]
    fig, axes = plt.subplots(3, len(panels), figsize=(panel_size * len(panels), panel_size * 3), squeeze=False)
    for row, axis in enumerate(range(3)):
        rows_mm, cols_mm = [s for k, s in enumerate(spacing) if k != axis]
        for col, (label, array, (low, high), cmap) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(_plane(array, axis, index[axis]), cmap=cmap, vmin=low, vmax=high, aspect=rows_mm / cols_mm,
                      interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def checkerboard_figure(volumes: dict[str, Volume | np.ndarray], reference: str | None = None, frame: int = 0,
                        slice_index: int = 0, box: tuple[int, int, int] | None = None, panel_size: float = 2.4):
    """Checkerboard artefacts made visible: per panel, a zoomed crop (``box`` = row, column, size in reference
    pixels; default the central quarter) on one window, and below it the log power spectrum of the residual against
    the reference (`mrisr.spectrum.residual_spectrum`) over all frames and slices, where a periodic pattern shows
    as isolated bright dots on a grid. Returns the figure."""
    import matplotlib.pyplot as plt

    stacks, _, reference = on_common_grid(volumes, reference, frame=None)  # every frame, on the reference grid
    ref = stacks[reference]
    h, w = ref.shape[-2:]
    r, c, size = box or (h // 2 - h // 8, w // 2 - w // 8, min(h, w) // 4)
    low, high = intensity_window(ref)
    fig, axes = plt.subplots(2, len(stacks), figsize=(panel_size * len(stacks), 2 * panel_size), squeeze=False)
    for k, (label, stack) in enumerate(stacks.items()):
        axes[0, k].imshow(stack[frame, slice_index, r:r + size, c:c + size], cmap="gray", vmin=low, vmax=high,
                          interpolation="nearest")
        axes[0, k].set_title(label, fontsize=9)
        if label != reference:
            axes[1, k].imshow(np.log10(residual_spectrum(stack, ref) + 1e-12), cmap="magma")
            axes[1, k].set_title("residual spectrum (log)", fontsize=8)
        for ax in axes[:, k]:
            ax.set_axis_off()
    fig.tight_layout()
    return fig
