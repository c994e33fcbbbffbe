"""mrisr: MRI super-resolution experiments on torch and fastai.

`Volume` (mrisr.volume) is the one image type; `load_volume` / `save_volume` (mrisr.io) move scans in and out.
"""

from mrisr.io import load_volume, save_volume
from mrisr.volume import Volume

__all__ = ["Volume", "load_volume", "save_volume"]
__version__ = "0.1.0"
