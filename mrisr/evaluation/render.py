"""Side-by-side pictures of volumes: `animate` (GIF/MP4 scrolling through slices) and `orthoview` (a figure).

Panels are labelled and share one intensity window, so a difference in brightness between panels is a difference in
the images. Volumes on a coarser grid (a low-resolution input) are shown on the reference grid by nearest-neighbour
interpolation through their affines, so each input voxel appears as a block of the size it really has. Pixels are made
square in millimetres (a 1.5 mm x 0.3 mm plane is stretched to its physical shape) and a scale bar gives the mm.
Animations show the planes with anatomy, optionally cropped to it, with each panel's absolute error against the
reference on one fixed scale (``|error| x gain`` on the image window, written on the frame) and a magnified detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrisr.errors import check_number
from mrisr.evaluation.baselines import resample
from mrisr.imaging.foreground import foreground_mask
from mrisr.imaging.spectrum import residual_spectrum
from mrisr.io.atomic import atomic_path
from mrisr.volume import Volume

GAP = 2  # pixels between tiles
LABEL_HEIGHT = 16  # pixels of the caption band above each tile
HEADER_HEIGHT = LABEL_HEIGHT  # the band at the top of a frame: slice number, error scale
PANEL_SIZE = 256  # pixels of a panel's short side
ERROR_GAINS = (1, 2, 4, 8, 16, 32)
SCALE_BARS_MM = (5, 10, 20, 50)
MAX_GIF_BYTES = 6_000_000
FORMATS = (".gif", ".mp4")


def video_suffixes() -> tuple[str, ...]:
    """The animation formats this installation writes: ``.gif``, and ``.mp4`` where imageio-ffmpeg is installed."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return (".gif",)
    return FORMATS


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


def _font(size: int = LABEL_HEIGHT - 4):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _caption(draw, xy, text):
    draw.text(xy, text, fill=255, font=_font())


def _physical(image, axis: int, spacing, size_scale: float):
    """Resize a plane (PIL image) so its pixels are square in mm, times ``size_scale``."""
    from PIL import Image

    rows_mm, cols_mm = [s for k, s in enumerate(spacing) if k != axis]
    unit = min(rows_mm, cols_mm)
    height = max(1, round(image.height * rows_mm / unit * size_scale))
    width = max(1, round(image.width * cols_mm / unit * size_scale))
    return image.resize((width, height), Image.Resampling.BILINEAR) if (width, height) != image.size else image


def foreground_slices(mask: np.ndarray, axis: int, fraction: float = 0.25) -> np.ndarray:
    """Indices along ``axis`` of the planes that show anatomy: those where the foreground ``mask`` (`foreground_mask`
    of the reference) covers at least ``fraction`` of the largest plane's area; every plane when it is empty."""
    area = mask.sum(axis=tuple(k for k in range(3) if k != axis))
    return np.flatnonzero(area >= fraction * area.max()) if area.max() > 0 else np.arange(mask.shape[axis])


def foreground_box(mask: np.ndarray, spacing, margin_mm: float = 5.0) -> tuple[slice, slice, slice]:
    """Bounding box (slices per axis) of the foreground ``mask``, ``margin_mm`` wider on every side."""
    if not mask.any():
        return tuple(slice(None) for _ in range(3))
    box = []
    for axis, s in enumerate(spacing):
        hits = np.flatnonzero(mask.any(axis=tuple(k for k in range(3) if k != axis)))
        pad = round(margin_mm / s)
        box.append(slice(max(0, int(hits[0]) - pad), min(mask.shape[axis], int(hits[-1]) + 1 + pad)))
    return tuple(box)


def error_gain(errors: np.ndarray, window) -> int:
    """The largest of 1, 2, 4, ... 32 that keeps the 99th percentile of ``errors`` within half the image window:
    error maps drawn as ``|error| x gain`` on the image window are then bright where errors are large and not
    saturated."""
    top = intensity_window(errors, (0, 99))[1]
    width = window[1] - window[0]
    return max([g for g in ERROR_GAINS if g * top <= 0.5 * width] or [1])


def detail_box(errors: np.ndarray, axis: int, spacing, side_mm: float,
               inside: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """``(row, column, rows, columns)`` in plane voxels: the square of ``side_mm`` where ``errors`` (the first
    panel's absolute error, summed over the frames) is largest, i.e. where the fine detail lost by the degradation
    lies. Its centre stays half a square from the border and, given ``inside`` (a 3D foreground mask), half a square
    within the anatomy: not on the skin's edge or the ringing at the volume's border."""
    from scipy import ndimage

    rows_mm, cols_mm = [s for k, s in enumerate(spacing) if k != axis]
    total = errors.sum(axis=axis)
    size = (min(total.shape[0], max(2, round(side_mm / rows_mm))),
            min(total.shape[1], max(2, round(side_mm / cols_mm))))
    score = ndimage.uniform_filter(total, size, mode="constant")
    allowed = np.zeros_like(score, bool)
    allowed[size[0]:total.shape[0] - size[0], size[1]:total.shape[1] - size[1]] = True
    if inside is not None:
        within = ndimage.binary_erosion(inside.any(axis=axis), np.ones((size[0] // 2 * 2 + 1, size[1] // 2 * 2 + 1)))
        allowed = allowed & within if (allowed & within).any() else allowed
    r, c = np.unravel_index(np.argmax(np.where(allowed, score, -np.inf) if allowed.any() else score), score.shape)
    r0 = int(np.clip(r - size[0] // 2, 0, total.shape[0] - size[0]))
    c0 = int(np.clip(c - size[1] // 2, 0, total.shape[1] - size[1]))
    return r0, c0, size[0], size[1]


def _scale_bar(draw, x, y, px_per_mm: float, max_px: int):
    """A white bar of 5, 10, 20 or 50 mm (the longest that fits in ``max_px``), its length written above it."""
    fits = [mm for mm in SCALE_BARS_MM if mm * px_per_mm <= max_px] or [SCALE_BARS_MM[0]]
    mm = fits[-1]
    length = round(mm * px_per_mm)
    draw.rectangle((x - 1, y - 1, x + length + 1, y + 4), fill=0)
    draw.rectangle((x, y, x + length, y + 3), fill=255)
    draw.text((x, y - LABEL_HEIGHT + 2), f"{mm} mm", fill=255, font=_font(), stroke_width=1, stroke_fill=0)


def compose(planes: dict[str, np.ndarray], window, axis: int, spacing, panel_size: int = PANEL_SIZE,
            errors: dict[str, np.ndarray] | None = None, gain: int = 1, detail=None, header: str = ""):
    """One frame (uint8, 2D) of labelled tiles.

    Each panel is a *track* of tiles: its image (pixels square in mm, short side ``panel_size`` pixels, a scale bar
    on the first), its ``detail`` box ``(row, column, rows, columns)`` magnified to a ``panel_size`` square and,
    with ``errors`` (label -> |panel - reference| plane), its error map drawn as ``|error| x gain`` on the image
    window. Portrait panels put a track's tiles in a column and the tracks side by side; landscape
    panels put them in a row and stack the tracks. ``header`` (the slice number, the error scale) heads the frame.
    """
    from PIL import Image, ImageDraw

    rows_mm, cols_mm = [s for k, s in enumerate(spacing) if k != axis]
    first = next(iter(planes.values()))
    height_mm, width_mm = first.shape[0] * rows_mm, first.shape[1] * cols_mm
    px_per_mm = panel_size / min(height_mm, width_mm)
    scale = px_per_mm * min(rows_mm, cols_mm)
    tracks = []
    for k, (label, plane) in enumerate(planes.items()):
        image = _physical(Image.fromarray(_to_uint8(plane, window)), axis, spacing, scale)
        draw = ImageDraw.Draw(image)
        tiles = [(label, image)]
        if detail is not None:
            r, c, n_rows, n_cols = detail
            zoom = Image.fromarray(_to_uint8(plane[r:r + n_rows, c:c + n_cols], window))
            tiles.append((f"detail x{panel_size / (n_cols * cols_mm * px_per_mm):.0f}",
                          zoom.resize((panel_size, panel_size), Image.Resampling.BILINEAR)))
            draw.rectangle((round(c * cols_mm * px_per_mm), round(r * rows_mm * px_per_mm),
                            round((c + n_cols) * cols_mm * px_per_mm) - 1,
                            round((r + n_rows) * rows_mm * px_per_mm) - 1), outline=255)
        if k == 0:
            _scale_bar(draw, 6, image.height - 10, px_per_mm, image.width // 3)
        if errors is not None:
            error = errors.get(label)
            tile = np.zeros_like(plane, np.uint8) if error is None else _to_uint8(error * gain,
                                                                                 (0, window[1] - window[0]))
            tiles.append(("" if error is None else f"|error| x{gain}",
                          _physical(Image.fromarray(tile), axis, spacing, scale)))
        tracks.append(tiles)
    landscape = tracks[0][0][1].width > tracks[0][0][1].height
    along = [max(t[k][1].width if landscape else t[k][1].height for t in tracks) for k in range(len(tracks[0]))]
    across = tracks[0][0][1].height if landscape else tracks[0][0][1].width
    cell = LABEL_HEIGHT + across if landscape else across  # a track's thickness across the tracks
    length = sum(along) + GAP * (len(along) - 1) + (0 if landscape else LABEL_HEIGHT * len(along))
    n = len(tracks)
    size = (length, n * cell + (n - 1) * GAP) if landscape else (n * cell + (n - 1) * GAP, length)
    canvas = Image.new("L", (size[0], HEADER_HEIGHT + size[1]), 0)
    draw = ImageDraw.Draw(canvas)
    if header:
        _caption(draw, (2, 1), header)
    for t, tiles in enumerate(tracks):
        offset = 0
        for k, (caption, tile) in enumerate(tiles):
            if landscape:
                x, y = offset, HEADER_HEIGHT + t * (cell + GAP) + LABEL_HEIGHT
                offset += along[k] + GAP
            else:
                x, y = t * (cell + GAP), HEADER_HEIGHT + offset + LABEL_HEIGHT
                offset += along[k] + LABEL_HEIGHT + GAP
            canvas.paste(tile, (x, y))
            if caption:
                _caption(draw, (x + 2, y - LABEL_HEIGHT + 1), caption)
    return np.asarray(canvas)


def animate(volumes: dict[str, Volume | np.ndarray], path: str | Path, axis: int | None = None, fps: float = 8.0,
            reference: str | None = None, window: tuple[float, float] | None = None, errors: bool = False,
            crop: Sequence[slice] | str | None = None, slices: str | Sequence[int] | None = "foreground",
            step: int = 1, panel_size: int = PANEL_SIZE, detail: tuple[int, int, int, int] | str | None = None,
            detail_mm: float | None = None, frame: int = 0, gray_levels: int = 64,
            max_bytes: int | None = MAX_GIF_BYTES) -> Path:
    """Write an animation that scrolls through the slices of several volumes side by side.

    Args:
        volumes: caption -> `Volume` (or array, all one shape), e.g. ``{"LR input": lr, "MSE": a,
            "MSE+perceptual": b, "HR": hr}``. Coarser grids are shown on the reference grid, voxels as blocks.
        path: ``.gif`` (Pillow), or ``.mp4`` (needs the ``imageio-ffmpeg`` package). Written atomically.
        axis: volume axis scrolled through (0 slice, 1 row, 2 column); default: the axis along which the shown
            region is thinnest in mm, so each frame shows the largest planes.
        fps: frames per second.
        reference: caption of the panel whose grid, window, foreground and errors count (default: the last).
        window: intensity ``(low, high)`` mapped to black and white for every panel; default `intensity_window` of
            the reference.
        errors: add each panel's absolute error against the reference, drawn as ``|error| x gain`` on the image
            window, one gain for every panel and frame (`error_gain`), written on the frame.
        crop: ``"foreground"``: the box around the reference's anatomy (`foreground_box`); or slices per volume
            axis (reference voxels); None: the whole volume.
        slices: which planes along ``axis`` become frames: ``"foreground"`` (those with anatomy,
            `foreground_slices`), indices (after ``crop``), or None (all); then every ``step``-th.
        panel_size: pixels of each panel's short side (at least 256 reads well in a browser).
        detail: ``(row, column, rows, columns)`` in voxels of the shown planes (after ``crop``), or ``"auto"``:
            the ``detail_mm`` square where the first panel's error against the reference is largest (needs two
            panels). It is outlined on each panel and shown magnified beside it.
        detail_mm: side of the automatic detail square; default a third of the planes' short side.
        frame: which time frame of 4D volumes.
        gray_levels: distinct grays in a GIF (2 to 256). MR noise defeats GIF compression: at 256 levels a frame
            costs about a byte per pixel; 64 levels saves 40 %.
        max_bytes: a GIF larger than this keeps every k-th frame (the smallest k that fits); None: no limit.

    Returns:
        ``path``.
    """
    path = Path(path)
    _check_animation(path, fps, step, axis, panel_size)
    arrays, spacing, reference = on_common_grid(volumes, reference, frame)
    wants_mask = isinstance(crop, str) or isinstance(slices, str) or isinstance(detail, str)
    mask = foreground_mask(Volume.from_spacing(arrays[reference], spacing)) if wants_mask else None
    if isinstance(crop, str):
        if crop != "foreground":
            raise ValueError(f"crop must be 'foreground', slices per axis or None, got {crop!r}")
        crop = foreground_box(mask, spacing)
    if crop is not None:
        arrays = {k: a[tuple(crop)] for k, a in arrays.items()}
        mask = None if mask is None else mask[tuple(crop)]
    ref = arrays[reference]
    if axis is None:
        axis = int(np.argmin(np.multiply(ref.shape, spacing)))
    if isinstance(slices, str):
        if slices != "foreground":
            raise ValueError(f"slices must be 'foreground', indices or None, got {slices!r}")
        slices = foreground_slices(mask, axis)
    indices = list(range(ref.shape[axis]) if slices is None else slices)[::step]
    window = window or intensity_window(ref)
    diffs = {k: np.abs(a - ref) for k, a in arrays.items() if k != reference} if errors else None
    gain = error_gain(np.concatenate([d.ravel() for d in diffs.values()]), window) if diffs else 1
    if isinstance(detail, str):
        if detail != "auto" or len(arrays) < 2:
            raise ValueError(f"detail must be 'auto' (with two panels or more), a box or None, got {detail!r}")
        plane_mm = [n * s for k, (n, s) in enumerate(zip(ref.shape, spacing)) if k != axis]
        first = np.abs(next(iter(arrays.values())) - ref)
        detail = detail_box(np.take(first, indices, axis=axis), axis, spacing, detail_mm or min(plane_mm) / 3,
                            np.take(mask, indices, axis=axis))
    names = {0: "slice", 1: "row", 2: "column"}
    note = f"   errors: |panel - {reference}| x{gain} on the image window" if diffs else ""
    frames = [compose({k: _plane(a, axis, i) for k, a in arrays.items()}, window, axis, spacing, panel_size,
                      None if diffs is None else {k: _plane(d, axis, i) for k, d in diffs.items()}, gain, detail,
                      f"{names[axis]} {i + 1}/{ref.shape[axis]}{note}")
              for i in indices]
    return _write_animation(path, frames, fps, gray_levels, max_bytes)


def _check_animation(path: Path, fps, step, axis, panel_size) -> None:
    """`animate`'s numbers and output format, each refused with an error that names it."""
    check_number("fps", fps, "a number of frames per second > 0", above=0)
    check_number("step", step, "a number of slices, an integer >= 1", minimum=1, integer=True)
    if axis is not None:
        check_number("axis", axis, "a volume axis: 0, 1 or 2", minimum=0, below=3, integer=True)
    check_number("panel_size", panel_size, "pixels, an integer >= 8", minimum=8, integer=True)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: animations are written as .gif or .mp4")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: MP4 needs an ffmpeg backend (pip install imageio-ffmpeg); or write a .gif") \
                from None


def _write_animation(path: Path, frames: list[np.ndarray], fps: float, gray_levels: int, max_bytes: int | None) -> Path:
    """``frames`` (uint8 ``(H, W)``) written atomically to ``path``, a GIF within ``max_bytes`` or an H.264 MP4."""
    import imageio.v3 as iio

    suffix = path.suffix.lower()
    with atomic_path(path, suffix) as tmp:
        if suffix == ".gif":
            tmp.write_bytes(_gif_within(frames, fps, gray_levels, max_bytes))
        else:
            video = np.stack(frames)  # H.264 (yuv420p) needs even sizes
            video = np.pad(video, ((0, 0), (0, video.shape[1] % 2), (0, video.shape[2] % 2)))
            iio.imwrite(tmp, video, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=1)
    return path


def _gif_within(frames: list[np.ndarray], fps: float, gray_levels: int, max_bytes: int | None) -> bytes:
    """The GIF of ``frames``, or of every k-th frame for the smallest k that brings it within ``max_bytes``."""
    keep = 1
    while True:
        data = _gif_bytes(frames[::keep], fps, gray_levels)
        if max_bytes is None or len(data) <= max_bytes or len(frames[::keep]) == 1:
            return data
        keep = max(keep + 1, int(np.ceil(keep * len(data) / max_bytes)))


def _gif_bytes(frames: list[np.ndarray], fps: float, gray_levels: int = 256) -> bytes:
    """Grayscale frames, quantised to ``gray_levels`` evenly spaced grays, as palette images with a gray ramp (GIFs
    that Pillow would otherwise store as mode L are not read back by every reader), looping forever."""
    import io

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
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0,
                   optimize=False)
    return buffer.getvalue()


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
    the reference (`mrisr.imaging.spectrum.residual_spectrum`) over all frames and slices, where a periodic pattern
    shows as isolated bright dots on a grid. Returns the figure."""
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
