"""Simulated acquisitions for the tests and benchmarks (the library itself never imports this module): a fully
sampled multi-coil Cartesian acquisition written as ISMRMRD HDF5 (`write_ismrmrd`), a local mirror of the mridata
knees made from real images (`mridata_mirror`), an HTTP server on 127.0.0.1 that can break off a transfer
(`FileServer`), and centred zero-padding of k-space or image axes (`center_pad`)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from mrisr.imaging.kspace import fftc
from mrisr.io.atomic import atomic_path


def center_pad(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Zero-pad ``axis`` to ``size`` samples keeping the centre index ``n // 2`` at ``size // 2``."""
    n = array.shape[axis]
    if size < n:
        raise ValueError(f"cannot pad {n} samples to {size}")
    before = size // 2 - n // 2
    widths = [(0, 0)] * array.ndim
    widths[axis] = (before, size - n - before)
    return np.pad(array, widths)


def write_ismrmrd(path: str | Path, image: np.ndarray, spacing=(1.0, 1.0, 1.0), n_coils: int = 8,
                  readout_oversampling: int = 2, layout: str = "3d", noise_lines: int = 4,
                  field_strength_t: float = 3.0, noise_std: float = 0.0, seed: int = 0,
                  system: tuple[str, str] = ("mrisr", "simulation")) -> Path:
    """Simulate a fully sampled multi-coil Cartesian acquisition of ``image`` and write it as ISMRMRD HDF5.

    ``image``: real or complex ``(z, y, x)`` array (mrisr axes), ``spacing`` in mm along those axes. Coil
    sensitivities are smooth and normalised so their root-sum-of-squares is 1 everywhere: an exact reconstruction
    returns ``abs(image)``. The readout is oversampled ``readout_oversampling`` times (object padded with zeros, as
    the scanner's wider readout FOV sees air). ``layout="3d"`` encodes z with ``kspace_encode_step_2``;
    ``layout="slices"`` stores z in image space in the ``slice`` counter with alternating sign, like the mridata.org
    knees. A few noise-measurement lines come first, as on a scanner. ``noise_std``: complex Gaussian noise of this
    standard deviation (per channel, real and imaginary) on every k-space sample, as thermal noise (the image's noise
    has the same standard deviation: the transform is orthonormal). ``system``: (vendor, model) in the header.
    Written to a temporary name, then renamed.
    """
    path = Path(path)
    image = np.asarray(image)
    nz, ny, nx = image.shape
    rng = np.random.default_rng(seed)
    ox = nx * readout_oversampling
    kspace = np.empty((n_coils, nz, ny, ox), np.complex64)  # one coil at a time: a full-size knee fits in memory
    rss = np.sqrt(sum(np.abs(_coil_sensitivity(image.shape, c, n_coils)) ** 2 for c in range(n_coils)))
    for c in range(n_coils):
        wide = np.zeros((nz, ny, ox), np.complex64)
        wide[..., ox // 2 - nx // 2: ox // 2 - nx // 2 + nx] = _coil_sensitivity(image.shape, c, n_coils) / rss * image
        kspace[c] = fftc(wide, axes=(0, 1, 2) if layout == "3d" else (1, 2))
        if noise_std:
            for z in range(nz):  # float32 noise a slice at a time
                kspace[c, z] += noise_std * (rng.standard_normal((ny, ox), np.float32)
                                             + 1j * rng.standard_normal((ny, ox), np.float32))

    fov = np.array(spacing, float) * np.array(image.shape)
    header = ismrmrd.xsd.ismrmrdHeader(
        experimentalConditions=ismrmrd.xsd.experimentalConditionsType(H1resonanceFrequency_Hz=int(42.58e6 * 3)),
        acquisitionSystemInformation=ismrmrd.xsd.acquisitionSystemInformationType(
            systemVendor=system[0], systemModel=system[1], systemFieldStrength_T=field_strength_t,
            receiverChannels=n_coils),
        measurementInformation=ismrmrd.xsd.measurementInformationType(protocolName="mrisr simulated phantom",
                                                                       patientPosition="HFS"),
        encoding=[ismrmrd.xsd.encodingType(
            trajectory=ismrmrd.xsd.trajectoryType.CARTESIAN,
            encodedSpace=_space(ox, ny, nz if layout == "3d" else 1, fov[2] * readout_oversampling, fov[1],
                                fov[0] if layout == "3d" else spacing[0]),
            reconSpace=_space(nx, ny, nz if layout == "3d" else 1, fov[2], fov[1],
                              fov[0] if layout == "3d" else spacing[0]),
            encodingLimits=ismrmrd.xsd.encodingLimitsType(
                kspace_encoding_step_1=ismrmrd.xsd.limitType(minimum=0, maximum=ny - 1, center=ny // 2),
                kspace_encoding_step_2=ismrmrd.xsd.limitType(minimum=0, maximum=(nz - 1) if layout == "3d" else 0,
                                                             center=nz // 2 if layout == "3d" else 0),
                slice=ismrmrd.xsd.limitType(minimum=0, maximum=0 if layout == "3d" else nz - 1, center=0)))])

    n_lines = noise_lines + nz * ny
    noise_flag = np.uint64(1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1))
    dz = np.array([0.0, 1.0, 0.0]) * spacing[0]

    def records(lines: int) -> np.ndarray:
        block = np.zeros(lines, acquisition_dtype)
        head = block["head"]
        head["version"] = 1
        head["active_channels"] = head["available_channels"] = n_coils
        head["number_of_samples"] = ox
        head["center_sample"] = ox // 2
        head["read_dir"], head["phase_dir"], head["slice_dir"] = (0, 0, 1), (1, 0, 0), (0, 1, 0)  # coronal-ish LPS
        for i in range(lines):
            block["traj"][i] = np.zeros(0, np.float32)
        return block

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("dataset")
        xml = group.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes))
        text = ismrmrd.xsd.ToXML(header)
        xml[0] = text.encode() if isinstance(text, str) else text
        data = group.create_dataset("data", shape=(n_lines,), dtype=acquisition_dtype, maxshape=(None,),
                                    chunks=(min(n_lines, 256),))
        block = records(noise_lines)
        for i in range(noise_lines):
            block["head"]["flags"][i] = noise_flag
            noise = (rng.standard_normal((n_coils, ox)) + 1j * rng.standard_normal((n_coils, ox))).astype(np.complex64)
            block["data"][i] = noise.view(np.float32).ravel()
        block["head"]["scan_counter"] = np.arange(noise_lines)
        data[:noise_lines] = block
        for z in range(nz):  # one slice (partition) of lines at a time
            block = records(ny)
            head = block["head"]
            first = noise_lines + z * ny
            head["idx"]["kspace_encode_step_1"] = np.arange(ny)
            head["scan_counter"] = first + np.arange(ny)
            if layout == "3d":
                head["idx"]["kspace_encode_step_2"] = z
                lines = kspace[:, z]
            else:
                head["idx"]["slice"] = z
                head["position"] = (z - nz // 2) * dz
                lines = kspace[:, z] * (-1) ** z  # the GE knees' chop: a sign per slice
            for y in range(ny):
                block["data"][y] = np.ascontiguousarray(lines[:, y]).view(np.float32).ravel()
            data[first:first + ny] = block
    return path


def _coil_sensitivity(shape, coil: int, n_coils: int) -> np.ndarray:
    """Coil ``coil`` of ``n_coils`` around the (y, x) plane: a smooth Gaussian bump with a linear phase, complex64."""
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
    a = 2 * np.pi * coil / n_coils
    return (np.exp(-((yy - 0.9 * np.cos(a)) ** 2 + (xx - 0.9 * np.sin(a)) ** 2 + 0.3 * zz**2))
            * np.exp(1j * (a + 0.5 * xx))).astype(np.complex64)


def _space(nx, ny, nz, fx, fy, fz):
    return ismrmrd.xsd.encodingSpaceType(matrixSize=ismrmrd.xsd.matrixSizeType(x=int(nx), y=int(ny), z=int(nz)),
                                         fieldOfView_mm=ismrmrd.xsd.fieldOfViewMm(x=float(fx), y=float(fy),
                                                                                  z=float(fz)))


def mridata_mirror(folder: str | Path, cases: int = 6, shape=(40, 48, 48), source: str | Path | None = None,
                   snr: float = 30.0, seed: int = 0) -> list[Path]:
    """A local stand-in for mridata.org: the first ``cases`` knees of `mrisr.io.download.knee_cases`, each written to
    ``folder/<uuid>.h5`` as the "Stanford Fullysampled 3D FSE Knees" are stored (GE 3 T, 8 coils, Cartesian, the
    readout twice oversampled, the readout axis in image space in the ``slice`` counter with a sign per slice, one
    acquisition per (slice, ky) line: ``write_ismrmrd(layout="slices")``), with simulated coil sensitivities and
    thermal noise at ``snr`` (the images' mean over their foreground, over the noise's standard deviation).

    The images are real: blocks of the DESS knee (``source``, default the sample in ``../shared/data``) at
    different places for different cases, resampled to ``shape`` (voxels ``(z, y, x)`` in mrisr's axes; the real
    files are 256 x 320 x 320) over the block's field of view. ``shape`` changes sizes only, never the format."""
    from scipy import ndimage

    from mrisr.data.samples import sample_dir
    from mrisr.imaging.foreground import foreground_mask
    from mrisr.io import load_volume
    from mrisr.io.download import knee_cases

    dess = load_volume(source or sample_dir() / "knee_dess_sample")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    catalogue = knee_cases()
    if cases > len(catalogue):
        raise ValueError(f"the catalogue has {len(catalogue)} knees, asked for {cases}")
    block = [min(n, int(round(n * 0.75))) for n in dess.shape]  # three quarters of the knee along each axis
    written = []
    for i, case in enumerate(catalogue[:cases]):
        start = [int(round((n - b) * f)) for n, b, f in zip(dess.shape, block, ((i * 0.37) % 1, (i * 0.61) % 1,
                                                                                     (i * 0.23) % 1))]
        region = dess.data[tuple(slice(a, a + b) for a, b in zip(start, block))]
        image = ndimage.zoom(region, [n / b for n, b in zip(shape, block)], order=1)[
            tuple(slice(0, n) for n in shape)].astype(np.float32)
        spacing = tuple(float(sp * b / n) for sp, b, n in zip(dess.spacing, block, shape))
        level = float(image[foreground_mask(image)].mean())
        written.append(write_ismrmrd(folder / f"{case.uuid}.h5", image, spacing=spacing, n_coils=8,
                                     readout_oversampling=2, layout="slices", noise_std=level / snr,
                                     system=("GE MEDICAL SYSTEMS", "DISCOVERY MR750"), seed=seed + i))
    return written


class FileServer:
    """Serves ``files`` (URL path -> bytes) with Range support. ``drop_after[path] = n``: the next response for
    ``path`` sends only ``n`` bytes of its body and closes the connection. ``corrupt[path]``: serve other bytes.
    ``ranges`` and ``requested``: each GET's Range header (or None) and path, in order."""

    def __init__(self):
        self.files, self.drop_after, self.corrupt, self.ranges, self.requested = {}, {}, {}, [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = server.corrupt.get(self.path, server.files.get(self.path))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                header = self.headers.get("Range")
                server.ranges.append(header)
                server.requested.append(self.path)
                if header:
                    start = int(header.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                drop = server.drop_after.pop(self.path, None)
                self.wfile.write(body[start:] if drop is None else body[start:start + drop])
                if drop is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve_folder(self, folder: str | Path, prefix: str = "/download/") -> str:
        """Serve every ``.h5`` file in ``folder`` at ``prefix + <stem>``; returns the URL template (``{uuid}``)."""
        for path in sorted(Path(folder).glob("*.h5")):
            self.files[prefix + path.stem] = path.read_bytes()
        return self.url + prefix + "{uuid}"
