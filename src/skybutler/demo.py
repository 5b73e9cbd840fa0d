"""A short tour of skybutler, run as ``python -m skybutler.demo [--dir DIR] [--keep]``.

It creates a repository (in a temporary directory unless ``--dir`` is given),
describes the simulated camera SimCam, stores and reads back a dataset of every
storage class, organises them in collections of all four kinds and looks up a
calibration by observation time, printing what each step did.

The tour is a list of small step functions (:data:`STEPS`), each taking the shared
:class:`Demo` state; a longer demo adds its own steps to the list.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import Butler, Timespan
from .dimensions import regions
from .errors import SkybutlerError
from .instruments import SimCam, simcam_exposure_id
from .instruments.records import day_obs_timespan

DAY_OBS = 20260301
RUN = "demo/run1"
RERUN = "demo/run2"
TAGGED = "demo/best"
CHAIN = "demo/current"
CALIB = "demo/calib"
BIAS_CHANGE = "2026-03-02T01:00:00"
"""When the demo's second bias becomes valid: between the night's two visits."""
IMAGE_SIZE = 256
"""Pixels on a side of the demo images: SimCam's 2048-pixel sensors binned 8x8."""


@dataclass
class Demo:
    """What the steps share: the repository, the console, and facts earlier steps left behind."""

    root: Path
    console: Console
    butler: Butler | None = None
    camera: SimCam = field(default_factory=SimCam)
    visits: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Visit id -> its record, as inserted."""
    refs: dict[str, Any] = field(default_factory=dict)
    """Refs of stored datasets, by a short label, for later steps."""

    @property
    def b(self) -> Butler:
        assert self.butler is not None, "the create_repository step runs first"
        return self.butler

    def say(self, text: str) -> None:
        self.console.print(text)

    def code(self, text: str) -> None:
        """Show the call a step makes (what a user would type)."""
        self.console.print(f"  [cyan]>>> {escape(text)}[/cyan]", highlight=False)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        table = Table(title=title, title_justify="left", show_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*[str(v) for v in row])
        self.console.print(table)


# -- steps ------------------------------------------------------------------------


def create_repository(demo: Demo) -> None:
    """A SQLite registry and a local-file datastore in one directory."""
    demo.code(f"butler = Butler.create({str(demo.root)!r}, run={RUN!r})")
    demo.butler = Butler.create(demo.root, run=RUN)
    files = sorted(p.name for p in demo.root.iterdir())
    demo.say(f"created a repository at [bold]{demo.root}[/bold] holding {', '.join(files)}")


def register_camera(demo: Demo) -> None:
    """SimCam's instrument, filter and detector records, a night, and two visits with regions."""
    b, cam = demo.b, demo.camera
    demo.code("for element, records in SimCam().dimension_records().items(): butler.insert_records(element, records)")
    counts = {}
    for element, records in cam.dimension_records().items():
        counts[element] = b.insert_records(element, records)
    night = day_obs_timespan(DAY_OBS)
    b.insert_records("day_obs", [{"instrument": cam.name, "id": DAY_OBS, "timespan": night}])
    counts["day_obs"] = 1
    from astropy.time import TimeDelta

    for seq, (band, ra, dec, hour) in enumerate([("r", 150.1, 2.2, 12), ("i", 150.4, 2.2, 14)], start=1):
        visit = simcam_exposure_id(DAY_OBS, seq)
        begin = night.begin + TimeDelta(hour * 3600, format="sec")
        demo.visits[visit] = {
            "instrument": cam.name, "id": visit, "physical_filter": cam.filter_for_band(band), "day_obs": DAY_OBS,
            "exposure_time": 30.0, "observation_type": "science", "target_name": "COSMOS",
            "region": regions.rectangle(ra, dec, 0.2, 0.2),
            "timespan": Timespan(begin, begin + TimeDelta(30, format="sec")),
        }
    demo.code("butler.insert_records('visit', [{'instrument': 'SimCam', 'id': ..., 'region': ..., ...}])")
    counts["visit"] = b.insert_records("visit", list(demo.visits.values()))
    demo.table("dimension records inserted", ["element", "records"], sorted(counts.items()))


def register_dataset_types(demo: Demo) -> None:
    """One dataset type per storage class, plus a calibration type."""
    types = [("summary", ["instrument", "visit", "detector"], "Dict", False),
             ("src", ["instrument", "visit", "detector"], "Table", False),
             ("calexp", ["instrument", "visit", "detector"], "Image", False),
             ("bias", ["instrument", "detector"], "Image", True)]
    demo.code("butler.register_dataset_type('calexp', ['instrument', 'visit', 'detector'], 'Image')")
    for name, dims, storage_class, is_calib in types:
        demo.b.register_dataset_type(name, dims, storage_class, is_calibration=is_calib)
    demo.table("dataset types", ["name", "dimensions", "storage class", "calibration"],
               [(t.name, ", ".join(t.dimensions), t.storage_class, t.is_calibration)
                for t in sorted(demo.b.query_dataset_types(), key=lambda t: t.name)])


def _visit(demo: Demo, index: int) -> int:
    return sorted(demo.visits)[index]


def store_dicts(demo: Demo) -> None:
    """A Dict is written as JSON and read back equal."""
    b = demo.b
    visit = _visit(demo, 0)
    rows = []
    for detector in (0, 4):
        summary = {"n_sources": 120 + detector, "seeing_arcsec": 0.7 + 0.01 * detector, "ok": True}
        ref = b.put(summary, "summary", instrument="SimCam", visit=visit, detector=detector)
        demo.refs[f"summary-{detector}"] = ref
        back = b.get("summary", instrument="SimCam", visit=visit, detector=detector, collections=RUN)
        assert back == summary, (back, summary)
        rows.append((detector, back["n_sources"], Path(b.get_uri(ref).removeprefix("file://")).relative_to(demo.root)))
    demo.code(f"butler.put({{'n_sources': 120, ...}}, 'summary', instrument='SimCam', visit={visit}, detector=0)")
    demo.code(f"butler.get('summary', instrument='SimCam', visit={visit}, detector=0, collections={RUN!r})")
    demo.table("Dict datasets, stored as JSON and read back equal", ["detector", "n_sources read back", "file in the datastore"], rows)


def _catalog(n: int, seed: int) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n), "ra": 150.1 + rng.normal(0, 0.05, n),
                         "dec": 2.2 + rng.normal(0, 0.05, n), "flux": rng.lognormal(5, 1, n),
                         "flag": rng.random(n) < 0.05})


def store_tables(demo: Demo) -> None:
    """A pandas catalog stored as Parquet, read back as astropy and as a column subset."""
    b = demo.b
    visit = _visit(demo, 0)
    frame = _catalog(500, seed=1)
    demo.code(f"butler.put(pandas_frame, 'src', instrument='SimCam', visit={visit}, detector=4)")
    ref = b.put(frame, "src", instrument="SimCam", visit=visit, detector=4)
    demo.refs["src"] = ref
    demo.code("butler.get('src', ..., parameters={'as': 'astropy'})")
    table = b.get("src", instrument="SimCam", visit=visit, detector=4, collections=RUN, parameters={"as": "astropy"})
    assert len(table) == len(frame) and list(table.colnames) == list(frame.columns)
    demo.say(f"  read back as an astropy {type(table).__name__}: {len(table)} rows, "
             f"columns {', '.join(table.colnames)}")
    demo.code("butler.get('src', ..., parameters={'columns': ['ra', 'dec']})")
    subset = b.get(ref, parameters={"columns": ["ra", "dec"]})
    assert subset.column_names == ["ra", "dec"]
    assert np.allclose(subset.column("ra").to_numpy(), frame["ra"].to_numpy())
    demo.say(f"  column subset read as a pyarrow {type(subset).__name__} (the default) with columns "
             f"{', '.join(subset.column_names)} only")
    facts = b.get_metadata(ref)
    demo.say(f"  facts recorded when it was stored (queryable): n_rows={facts['n_rows']}, "
             f"n_columns={facts['n_columns']}")


def _image(demo: Demo, visit: int, detector: int, seed: int, with_wcs: bool = True) -> Any:
    """A small SimCam-like image: noise plus a few stars, with the detector's TAN WCS."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    pixels = rng.normal(1000.0, 10.0, (IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    for x, y in rng.uniform(20, IMAGE_SIZE - 20, (8, 2)):
        pixels += (5000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)).astype(np.float32)
    header = fits.Header()
    if with_wcs:
        record = demo.visits[visit]
        ra, dec = regions.vertices_of(record["region"])[0]  # any point of the field will do
        header.update(demo.camera.wcs_header(detector, ra + 0.1, dec + 0.1, 0.0, binning=2048 / IMAGE_SIZE))
    header["EXPTIME"] = 30.0
    header["FILTER"] = demo.visits[visit]["physical_filter"] if visit else "none"
    return fits.ImageHDU(data=pixels, header=header)


def store_images(demo: Demo) -> None:
    """A FITS image with a WCS, read back whole, as a pixel box, and as header/wcs components."""
    b = demo.b
    visit = _visit(demo, 0)
    hdu = _image(demo, visit, 4, seed=2)
    demo.code(f"butler.put(image_hdu, 'calexp', instrument='SimCam', visit={visit}, detector=4)")
    ref = b.put(hdu, "calexp", instrument="SimCam", visit=visit, detector=4)
    demo.refs["calexp"] = ref
    whole = b.get(ref)
    assert np.array_equal(whole.data, hdu.data)
    box = (100, 60, 164, 124)
    demo.code(f"butler.get('calexp', ..., parameters={{'bbox': {box}}})")
    cut = b.get(ref, parameters={"bbox": box})
    assert np.array_equal(cut.data, hdu.data[box[1]:box[3], box[0]:box[2]])
    demo.code("butler.get('calexp', ..., component='wcs')")
    wcs = b.get(ref, component="wcs")
    header = b.get(ref, component="header")
    from astropy.wcs import WCS

    cut_wcs = WCS(cut.header)
    full_sky = wcs.pixel_to_world(box[0], box[1])
    cut_sky = cut_wcs.pixel_to_world(0, 0)
    demo.table("Image dataset read four ways", ["read", "what came back"], [
        ("whole", f"ImageHDU {whole.data.shape[1]}x{whole.data.shape[0]} {whole.data.dtype}"),
        (f"bbox {box}", f"ImageHDU {cut.data.shape[1]}x{cut.data.shape[0]}, pixels equal to the slice"),
        ("component='header'", f"Header of {len(header)} cards, EXPTIME={header['EXPTIME']}"),
        ("component='wcs'", f"{wcs.wcs.ctype[0]}/{wcs.wcs.ctype[1]} WCS"),
    ])
    separation = full_sky.separation(cut_sky).arcsec
    demo.say(f"  the cut-out's WCS puts its pixel (0, 0) at the sky position of full-image pixel "
             f"{box[:2]}: {full_sky.ra.deg:.5f}, {full_sky.dec.deg:.5f} (difference {separation:.2g} arcsec)")
    facts = b.get_metadata(ref)
    demo.say(f"  facts recorded: n_x={facts['n_x']}, n_y={facts['n_y']}, "
             f"centre RA/Dec={facts['ra_center']:.4f}, {facts['dec_center']:.4f}")


def show_collections(demo: Demo) -> None:
    """RUNs own datasets, a TAGGED collection picks some, a CHAINED one searches in order."""
    b = demo.b
    visit = _visit(demo, 0)
    redo = {"n_sources": 999, "seeing_arcsec": 0.65, "ok": True}
    demo.code(f"butler.put({{...}}, 'summary', instrument='SimCam', visit={visit}, detector=0, run={RERUN!r})")
    b.put(redo, "summary", instrument="SimCam", visit=visit, detector=0, run=RERUN)
    demo.code(f"butler.collections.associate({TAGGED!r}, [ref])")
    b.collections.associate(TAGGED, [demo.refs["summary-4"]])
    demo.code(f"butler.collections.set_chain({CHAIN!r}, [{RERUN!r}, {RUN!r}])")
    b.collections.set_chain(CHAIN, [RERUN, RUN])
    rows = []
    for detector in (0, 4):
        ref = b.find_dataset("summary", instrument="SimCam", visit=visit, detector=detector, collections=CHAIN)
        rows.append((detector, ref.run, b.get(ref)["n_sources"]))
    assert rows[0][1] == RERUN and rows[1][1] == RUN
    demo.table(f"'summary' found through the chain {CHAIN}", ["detector", "found in RUN", "n_sources"], rows)
    in_tag = b.find_dataset("summary", instrument="SimCam", visit=visit, detector=4, collections=TAGGED)
    demo.say(f"  the TAGGED collection holds the dataset of RUN {in_tag.run} (same ID: "
             f"{in_tag.id == demo.refs['summary-4'].id})")


def certify_calibrations(demo: Demo) -> None:
    """Two biases certified over consecutive validity ranges; the observation time picks one."""
    b = demo.b
    detector = 4
    for label, run, begin, end in (("old", "demo/calib/bias-2026-02", "2026-02-01T00:00:00", BIAS_CHANGE),
                                   ("new", "demo/calib/bias-2026-03", BIAS_CHANGE, None)):
        bias = np.full((IMAGE_SIZE, IMAGE_SIZE), 100.0 if label == "old" else 110.0, dtype=np.float32)
        ref = b.put(bias, "bias", instrument="SimCam", detector=detector, run=run)
        b.collections.certify(CALIB, [ref], begin=begin, end=end)
    demo.code(f"butler.collections.certify({CALIB!r}, [ref], begin={BIAS_CHANGE!r}, end=None)")
    validity = b.collections.validity(CALIB, "bias")
    demo.table(f"validity ranges in CALIBRATION collection {CALIB}", ["RUN", "valid from", "until"],
               [(ref.run, span.begin.isot if span.begin else "-inf", span.end.isot if span.end else "+inf")
                for ref, span in sorted(validity, key=lambda item: item[1].to_ns())])
    rows = []
    for visit, record in sorted(demo.visits.items()):
        span = record["timespan"]
        ref = b.find_dataset("bias", instrument="SimCam", detector=detector, collections=CALIB, timespan=span)
        level = float(b.get(ref).data.mean())
        rows.append((visit, span.begin.isot, ref.run, level))
    demo.code(f"butler.find_dataset('bias', detector={detector}, collections={CALIB!r}, timespan=visit_timespan)")
    demo.table("the bias valid at each visit's time", ["visit", "observed", "bias from RUN", "bias level"], rows)


def summarize(demo: Demo) -> None:
    """Every collection and how many datasets it holds."""
    b = demo.b
    rows = []
    for info in sorted(b.collections.query(), key=lambda c: c.name):
        contents = (", ".join(info.children) if info.children
                    else f"{len(b.registry.datasets.ids_in_collection(info.name))} dataset(s)")
        rows.append((info.name, info.type.value, contents))
    demo.table("collections in the repository", ["name", "type", "holds"], rows)


Step = Callable[[Demo], None]

STEPS: list[Step] = [create_repository, register_camera, register_dataset_types, store_dicts, store_tables,
                     store_images, show_collections, certify_calibrations, summarize]
"""The tour, in order; each step may use what the earlier ones left in :class:`Demo`."""


def run(root: Path, console: Console | None = None, steps: Sequence[Step] = STEPS) -> Demo:
    """Run ``steps`` on a new repository at ``root`` and return the final state."""
    demo = Demo(root=root, console=console or Console())
    try:
        for number, step in enumerate(steps, 1):
            title = (step.__doc__ or step.__name__).strip().splitlines()[0]
            demo.console.rule(f"[bold]{number}. {step.__name__.replace('_', ' ')}[/bold]", align="left")
            demo.say(f"[dim]{title}[/dim]")
            step(demo)
    finally:
        if demo.butler is not None:
            demo.butler.close()
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skybutler.demo", description="A short tour of skybutler.")
    parser.add_argument("--dir", type=Path, help="create the repository here (default: a new temporary directory, "
                                                 "deleted at the end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository")
    args = parser.parse_args(argv)
    console = Console()
    temporary = args.dir is None
    root = Path(tempfile.mkdtemp(prefix="skybutler-demo-")) / "repo" if temporary else args.dir
    try:
        run(root, console)
    except SkybutlerError as err:
        console.print(f"[red]error:[/red] {err}")
        return 1
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root.parent, ignore_errors=True)
    where = "deleted" if temporary and not args.keep else f"kept at {root}"
    console.print(f"\n[green]demo finished[/green]: every dataset read back as stored; the repository was {where}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
