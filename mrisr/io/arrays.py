"""Plain arrays: MATLAB ``.mat`` (v4-v7 through scipy, v7.3 through h5py) and NumPy ``.npy``.

Arrays carry no geometry, so two options say what the file cannot:

* ``axes``: one letter per array axis, from ``S`` (slice), ``R`` (row), ``C`` (column), ``T`` (time). Default
  ``"SRC"`` for 3D, ``"TSRC"`` for 4D; a 2D image needs ``axes="RC"`` to load as a one-slice volume, a cine slice
  stored ``(rows, cols, frames)`` needs ``axes="RCT"``.
* ``spacing``: mm per voxel along (slice, row, column). Default 1 mm, flagged ``spacing_unknown`` in ``meta``, except
  for FAIR-toolbox files whose ``omega`` variable gives the physical extent (``[0 ext1 0 ext2 0 ext3]``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.io

from mrisr.errors import InputError
from mrisr.volume import Volume


def _read_mat(path: Path, variable: str | None) -> tuple[np.ndarray, dict]:
    try:
        content = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3 is HDF5; h5py sees arrays with axes reversed
        with h5py.File(path, "r") as f:
            content = {k: np.asarray(v[()]).T for k, v in f.items() if isinstance(v, h5py.Dataset)}
    except Exception as err:
        raise InputError(path, f"cannot be read as a MATLAB file ({type(err).__name__}: {err})") from None
    arrays = {k: v for k, v in content.items() if isinstance(v, np.ndarray) and v.ndim >= 2 and v.size > 8}
    if variable is None:
        if len(arrays) != 1:
            raise InputError(path, f"holds {len(arrays)} image arrays {sorted(arrays)}; choose one with "
                                   "variable=<name> (mrisr info --variable)")
        variable = next(iter(arrays))
    if variable not in content:
        raise InputError(path, f"has no variable {variable!r}; it holds {sorted(content)}")
    return np.asarray(content[variable]), {"variable": variable, "omega": content.get("omega")}


def read_array(path: Path, variable: str | None = None, axes: str | None = None, spacing=None) -> Volume:
    if path.suffix.lower() == ".npy":
        try:
            array, extra = np.load(path, allow_pickle=False), {}
        except Exception as err:
            raise InputError(path, f"cannot be read as .npy ({type(err).__name__}: {err})") from None
        fmt = "npy"
    else:
        array, extra = _read_mat(path, variable)
        fmt = "mat"
    if np.iscomplexobj(array):
        array = np.abs(array)
    if axes is None:
        axes = {3: "SRC", 4: "TSRC"}.get(array.ndim)
        if axes is None:
            raise InputError(path, f"holds a {array.ndim}-D array of shape {array.shape}; a volume needs 3 axes "
                                   "(pass axes='RC' to load a 2D image as a one-slice volume)")
    axes = axes.upper()
    if len(axes) != array.ndim or not set(axes) <= set("SRCT") or len(set(axes)) != len(axes) or \
            not {"R", "C"} <= set(axes):
        raise InputError(path, f"axes={axes!r} does not describe the array of shape {array.shape} (one letter per "
                               "axis from S, R, C, T, with R and C present)")
    for letter in "S":
        if letter not in axes:
            array, axes = array[..., None], axes + letter
    order = [axes.index(a) for a in "TSRC" if a in axes]
    array = np.ascontiguousarray(np.transpose(array, order))
    meta = {"source_format": fmt}
    if extra.get("variable"):
        meta["variable"] = extra["variable"]
    omega = extra.get("omega")
    if spacing is None and omega is not None and np.size(omega) == 2 * 3 and array.ndim == 3:
        extent = np.diff(np.asarray(omega, float).reshape(3, 2), axis=1).ravel()  # FAIR: [a1 b1 a2 b2 a3 b3]
        spacing = tuple(extent[order] / np.array(array.shape))
    if spacing is None:
        spacing, meta["spacing_unknown"] = (1.0, 1.0, 1.0), True
    try:
        return Volume.from_spacing(array, spacing, meta)
    except ValueError as err:
        raise InputError(path, str(err)) from None
