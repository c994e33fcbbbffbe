"""Downloads against a local HTTP server on 127.0.0.1: interruption, resume with Range, corruption, and the knee
catalogue end to end (a genuine ISMRMRD file of a known phantom, reconstructed and cached as NIfTI)."""

from __future__ import annotations

import numpy as np
import pytest

from mrisr import load_volume
from mrisr.data.phantom import knee_phantom
from mrisr.io.download import DownloadError, download_file, download_knees, knee_cases, parse_cases
from mrisr.testing import FileServer, mridata_mirror, write_ismrmrd


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def test_interrupted_transfer_keeps_part_and_resumes(server, tmp_path):
    payload = np.random.default_rng(0).bytes(300_000)
    server.files["/f.bin"] = payload
    server.drop_after["/f.bin"] = 120_000
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="run again to resume"):
        download_file(server.url + "/f.bin", dest, retries=0, quiet=True)
    part = tmp_path / "f.bin.part"
    assert not dest.exists() and part.stat().st_size == 120_000
    download_file(server.url + "/f.bin", dest, retries=0, quiet=True)
    assert dest.read_bytes() == payload
    assert server.ranges == [None, "bytes=120000-"]
    assert not part.exists()


def test_retries_resume_within_one_call(server, tmp_path):
    payload = np.random.default_rng(1).bytes(200_000)
    server.files["/g.bin"] = payload
    server.drop_after["/g.bin"] = 50_000
    assert download_file(server.url + "/g.bin", tmp_path / "g.bin", retries=2, quiet=True).read_bytes() == payload
    assert server.ranges[1] == "bytes=50000-"


def test_wrong_size_and_corrupt_files_are_not_kept(server, tmp_path):
    server.files["/h.bin"] = b"x" * 1000
    with pytest.raises(DownloadError, match="expected 999"):
        download_file(server.url + "/h.bin", tmp_path / "h.bin", expected_size=999, quiet=True)

    def must_start_with_hdf5_magic(path):
        if path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n":
            raise ValueError("not HDF5")

    with pytest.raises(DownloadError, match="corrupt"):
        download_file(server.url + "/h.bin", tmp_path / "h2.bin", validate=must_start_with_hdf5_magic, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_an_error(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_file(server.url + "/none", tmp_path / "none", retries=0, quiet=True)


def test_catalogue_has_twenty_knees():
    cases = knee_cases()
    assert [c.case for c in cases] == list(range(1, 21))
    assert len({c.uuid for c in cases}) == 20
    assert parse_cases("1,4,7-9") == [1, 4, 7, 8, 9]
    with pytest.raises(ValueError):
        parse_cases("0-3")


def test_download_knees_end_to_end(server, tmp_path):
    spacing = (1.0, 0.6, 0.6)
    phantom = knee_phantom(shape=(12, 32, 28), spacing=spacing, seed=5).data
    raw = write_ismrmrd(tmp_path / "src.h5", phantom, spacing=spacing, n_coils=4, layout="slices")
    case = knee_cases()[0]
    server.files[f"/download/{case.uuid}"] = raw.read_bytes()
    server.drop_after[f"/download/{case.uuid}"] = len(raw.read_bytes()) // 3
    url = server.url + "/download/{uuid}"
    dest = tmp_path / "knees"
    with pytest.raises(DownloadError, match="resume"):  # the first transfer breaks off
        download_file(url.format(uuid=case.uuid), dest / "raw" / f"{case.uuid}.h5", retries=0, quiet=True)
    (nifti,) = download_knees([1], dest=dest, url=url, quiet=True)
    assert server.ranges[-1].startswith("bytes=")  # the second run resumed
    volume = load_volume(nifti)
    assert volume.meta["phase_encoding_axes"] == (0, 1) and volume.meta["case"] == 1
    np.testing.assert_allclose(volume.spacing, spacing, rtol=1e-5)
    np.testing.assert_allclose(volume.data, phantom, atol=phantom.max() / 10000)  # int16 cache precision
    # A corrupt download (right length, wrong bytes) is refused and nothing is cached.
    other = knee_cases()[1]
    server.files[f"/download/{other.uuid}"] = b"\0" * 5000
    with pytest.raises(DownloadError, match="corrupt"):
        download_knees([2], dest=dest, url=url, quiet=True)
    assert not (dest / "knee_02.nii.gz").exists() and not list((dest / "raw").glob(f"{other.uuid}*"))


def test_a_local_mridata_mirror_downloads_and_reconstructs_like_the_real_knees(server, tmp_path):
    """`mrisr.testing.mridata_mirror`: real DESS images in the mridata knees' raw format (GE, 8 coils, oversampled
    readout, a slice per readout position), served on 127.0.0.1; `download_knees` fetches, checks and reconstructs
    them (the first transfer broken off and resumed), and each case is a different part of the knee."""
    import ismrmrd

    mirror = mridata_mirror(tmp_path / "mirror", cases=2, shape=(12, 20, 16), snr=30.0)
    header = ismrmrd.xsd.CreateFromDocument(ismrmrd.Dataset(str(mirror[0]), create_if_needed=False).read_xml_header())
    system = header.acquisitionSystemInformation
    assert (system.systemVendor, system.receiverChannels, system.systemFieldStrength_T) == ("GE MEDICAL SYSTEMS", 8, 3.0)
    assert header.encoding[0].encodedSpace.matrixSize.x == 2 * header.encoding[0].reconSpace.matrixSize.x
    url = server.serve_folder(tmp_path / "mirror")
    server.drop_after[f"/download/{mirror[0].stem}"] = mirror[0].stat().st_size // 2
    with pytest.raises(DownloadError, match="resume"):
        download_file(url.format(uuid=mirror[0].stem), tmp_path / "knees" / "raw" / mirror[0].name, retries=0,
                      quiet=True)
    first, second = (load_volume(p) for p in download_knees([1, 2], dest=tmp_path / "knees", url=url, quiet=True))
    assert first.shape == second.shape == (12, 20, 16) and first.meta["case"] == 1
    assert np.corrcoef(first.data.ravel(), second.data.ravel())[0, 1] < 0.9  # two different blocks of the knee
    assert first.data.max() > 10 * np.percentile(first.data, 5)  # tissue above air: an image, not noise
