"""Benchmark: whole-exposure DECam files (62 CCDs in one file) against the same CCDs split into
one file each, through :func:`skybutler.ingest.ingest_raws` (transfer ``copy``, headers read in
this process), and the removal of every raw of them.

The files (written beforehand, not timed) carry the real DECam raw header of
tests/data/translator_headers (tests/multi_ccd_files.py), each CCD's extension a small
RICE-compressed image.  Before whole-exposure files were taken, a DECam exposure had to be split
into one file per CCD first; the split files are that baseline.  Figures: CPU and wall seconds,
ms of CPU a raw; removal: seconds to remove all raws (for shared files one look-up of the paths
still held).

Usage: ``python benchmarks/bench_multi_ccd.py [--json FILE] [--exposures N]``.

Measured on the shared 2-core host (load 14-18), 3 exposures of 62 CCDs (186 raws), one sitting:
whole-exposure files first took 124.7 ms of CPU a raw (23.2 s CPU, 92.6 s wall) against 20.4 ms
for the split files: checking each tile-compressed CCD reopened the file and parsed again every
header before it (~1,900 header parses a file).  With the file opened once for all its CCDs
(``fits_validation._Opened``): 14.4 ms a raw (2.7 s CPU, 12.5 s wall) against 21.5 ms split;
removing all 186 raws 0.09 s (shared) against 0.05 s (split).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from astropy.io import fits  # noqa: E402

from multi_ccd_files import decam_exposure  # noqa: E402
from skybutler import Butler  # noqa: E402
from skybutler.ingest import ingest_raws  # noqa: E402
from skybutler.instruments import get_instrument  # noqa: E402


def _files(directory: Path, exposures: int) -> tuple[list[Path], list[Path]]:
    """``exposures`` whole-exposure files, and the same CCDs as one file each."""
    ccds = {d.id: (d.full_name, d.serial or "") for d in get_instrument("DECam").detectors}
    whole, split = directory / "whole", directory / "split"
    whole.mkdir()
    split.mkdir()
    wholes, splits = [], []
    for n in range(exposures):
        path = decam_exposure(whole / f"DECam_{n}.fits.fz", ccds, guide=False, exposure=177764 + n)
        with fits.open(path) as hdus, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index in range(1, len(hdus)):
                one = split / f"DECam_{n}_{index:02d}.fits.fz"
                fits.HDUList([fits.PrimaryHDU(header=hdus[0].header), hdus[index]]).writeto(one)
                splits.append(one)
        wholes.append(path)
    return wholes, splits


def _run(root: Path, files: list[Path]) -> dict[str, float]:
    with Butler.create(root) as butler:
        cpu, wall = time.process_time(), time.perf_counter()
        result = ingest_raws(butler, files, processes=1)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert result.ok, result.failures[:3]
        raws = len(result.refs)
        start = time.perf_counter()
        butler.remove(result.refs)
        removal = time.perf_counter() - start
    return {"files": len(files), "raws": raws, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "cpu_ms_per_raw": round(1000 * cpu / raws, 3), "remove_all_s": round(removal, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here as well")
    parser.add_argument("--exposures", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wholes, splits = _files(Path(tmp), args.exposures)
        _run(Path(tmp) / "warm", wholes[:1])  # imports and first-use camera registration
        figures = {"whole_exposure_files": _run(Path(tmp) / "whole-repo", wholes),
                   "one_file_per_ccd": _run(Path(tmp) / "split-repo", splits)}
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
