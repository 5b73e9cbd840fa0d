"""skybutler's own astro-metadata-translator translators (imported only with the ``instruments`` extra).

Importing this package registers them with the library: SimCam's, and Rubin's
LSSTCam, LSSTComCam and LATISS unless the Rubin ``obs_lsst`` package is installed, in
which case its translators (the reference ones) are used.  Translators for cameras
described with header rules are made on demand by :mod:`.described`.
"""

from __future__ import annotations

import importlib.util

from .simcam import SimCamTranslator

__all__ = ["OBS_LSST", "SimCamTranslator"]


def _obs_lsst_installed() -> bool:
    try:
        return importlib.util.find_spec("lsst.obs.lsst.translators") is not None
    except ImportError:  # lsst is a namespace package; lsst.obs may be missing
        return False


#: Whether Rubin's own translators (obs_lsst) are installed and used for Rubin's cameras.
OBS_LSST = _obs_lsst_installed()

if OBS_LSST:
    importlib.import_module("lsst.obs.lsst.translators")
else:
    from . import rubin  # noqa: F401  (registers LSSTCam, LSSTComCam, LATISS)
