"""Bringing data into a repository: raw files, visits, sky maps and curated calibrations.

- :func:`ingest_raws` reads raw headers (in parallel), registers the camera and
  observation records and stores the files with deterministic dataset IDs;
- :func:`register_instrument` registers a camera (records and description) in a
  repository; :func:`load_repository_instruments` reads the registered ones back;
- :func:`define_visits` defines one visit per science exposure, with sky regions;
- :func:`register_skymap` registers tracts and patches tiling the sky;
  :func:`find_tracts` finds the tracts holding a position;
- :func:`write_curated_calibrations` ingests and certifies YAML calibrations.
"""

from .calibrations import CuratedResult, read_curated_directory, write_curated_calibrations
from .instruments import DESCRIPTION_TYPE, load_repository_instruments, register_instrument, update_instrument
from .raws import RAW_DIMENSIONS, IngestFailure, IngestResult, find_raw_files, ingest_raws, raw_run, read_raw_metadata
from .skymaps import RingsSkyMap, find_patches, find_tracts, load_skymap, register_skymap
from .visits import VisitResult, define_visits

__all__ = [
    "DESCRIPTION_TYPE",
    "RAW_DIMENSIONS",
    "CuratedResult",
    "IngestFailure",
    "IngestResult",
    "RingsSkyMap",
    "VisitResult",
    "define_visits",
    "find_patches",
    "find_raw_files",
    "find_tracts",
    "ingest_raws",
    "load_repository_instruments",
    "load_skymap",
    "raw_run",
    "read_curated_directory",
    "read_raw_metadata",
    "register_instrument",
    "update_instrument",
    "register_skymap",
    "write_curated_calibrations",
]
