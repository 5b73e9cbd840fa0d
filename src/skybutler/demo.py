"""The skybutler demo, run as ``python -m skybutler.demo [--dir DIR] [--keep] [--science N] [--jobs N]``.

It plays the commissioning scientist's night of the walkthrough on the simulated
camera SimCam, in a new repository (a temporary one unless ``--dir`` is given):

1. simulate a night: biases, flats and science exposures in two bands, some of
   them crossed by a satellite glint; the night arrives in two halves;
2. ingest the first half's raws, define visits and register a sky map;
3. make master biases and flats with a pipeline and certify them into ``SimCam/calib``;
4. process the science exposures (ISR, calibration, visit summaries, coadds per
   patch and band) on a local process pool into ``demo/run1``, again with another
   detection threshold into ``demo/run2``, and chain them as ``demo/best``;
5. the second half arrives: ingest it, list the coadds it made stale, run incrementally
   (exactly the new and stale quanta, into a new RUN in front of ``demo/best``) and show
   one coadd's provenance before and after;
6. find the detectors a glint crossed with one query, and ask a spatial and a
   metrics question;
7. show the provenance of a coadd and where the outputs are.

Every step is a small function of the shared :class:`Demo` state (:data:`STEPS`);
``tests/test_demo.py`` runs the same steps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from . import Butler
from .errors import SkybutlerError

DAY_OBS = 20260301
INSTRUMENT = "SimCam"
BANDS = ("g", "r")
RAW_RUN = "SimCam/raw/all"
CALIB = "SimCam/calib"
CALIB_RUN = f"SimCam/calib/{DAY_OBS}"
DEFAULTS = "SimCam/defaults"
SKYMAP = "rings"
RUN1, RUN2, BEST = "demo/run1", "demo/run2", "demo/best"
RUN2_THRESHOLD = 15.0
"""Detection threshold (sigma) of the second run; the first uses the pipeline's 10."""
GLINT_CUT = 25
"""``src.n_rows > GLINT_CUT``: at 15 sigma a clean 256-pixel SimCam detector has at most
~20 sources, one a glint crosses 33 or more (see :mod:`skybutler.demo_tasks`)."""
SEEING_CUT = 1.4
"""Arcsec: the metrics query asks for detectors with a PSF wider than this."""


@dataclass
class Demo:
    """What the steps share: the repository, the console, and facts earlier steps left behind."""

    root: Path
    console: Console
    science: int = 6
    """Science exposures in the simulated night (split between the two bands)."""
    jobs: int = 2
    """Worker processes of the local pool that runs the pipelines."""
    butler: Butler | None = None
    raw_dir: Path | None = None
    later_dir: Path | None = None
    """The second half of the night's raws, ingested after the first half is processed."""
    later: set[int] = field(default_factory=set)
    """Exposure (= visit) IDs of the second half."""
    glints: dict[int, set[int]] = field(default_factory=dict)
    """Exposure (= visit) ID -> the detectors its glint crosses: the ground truth."""
    reports: dict[str, Any] = field(default_factory=dict)
    """Execution report of each pipeline run, by RUN name."""
    found: set[tuple[int, int]] = field(default_factory=set)
    """(visit, detector) pairs the glint query returned."""
    coadd_ref: Any = None
    stale: list[Any] = field(default_factory=list)
    """The coadds the second half made stale (StaleProduct)."""
    incremental: Any = None
    """The quantum graph of the incremental run (what it kept and what it ran)."""
    publication: Any = None
    """The HATS publication of the best sources (a ``Publication``), and the cone searched there."""
    cone: tuple[float, float, float] | None = None

    @property
    def b(self) -> Butler:
        assert self.butler is not None, "the create_repository step runs first"
        return self.butler

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def code(self, text: str) -> None:
        """Show the call a step makes (what a user would type)."""
        self.console.print(f"  [cyan]>>> {escape(text)}[/cyan]", highlight=False)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        table = Table(title=title, title_justify="left", show_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*[escape(str(v)) for v in row])
        self.console.print(table)


def _pipeline(name: str, config: dict[str, dict[str, Any]] | None = None) -> Any:
    """A pipeline shipped in :mod:`skybutler.demo_tasks`, with config overrides per task label."""
    from .pipeline import Pipeline

    pipeline = Pipeline.from_yaml(str(files("skybutler.demo_tasks") / name))
    if not config:
        return pipeline
    data = pipeline.to_dict()
    for label, overrides in config.items():
        data["tasks"][label]["config"].update(overrides)
    return Pipeline.from_dict(data, source=name)


def _run_pipeline(demo: Demo, pipeline: Any, inputs: list[str], run: str, where: str) -> Any:
    """Build the quantum graph, show it, execute it on the process pool and show the result."""
    from .execution import build_graph, execute_graph

    b = demo.b
    start = time.perf_counter()
    graph = build_graph(b, pipeline, inputs, output_run=run, where=where)
    built = time.perf_counter() - start
    per_task = Counter(q.task for q in graph.quanta)
    demo.say(f"  quantum graph: {len(graph)} quanta ({', '.join(f'{n} {t}' for t, n in per_task.items())}), "
             f"built in {built:.2f} s")
    demo.code(f"execute_graph(butler, graph, 'pool', jobs={demo.jobs})")
    report = execute_graph(b, graph, "pool", jobs=demo.jobs, progress=demo.console.is_terminal)
    demo.reports[run] = report
    status = "[green]all succeeded[/green]" if report.ok else \
        f"[red]{len(report.failed)} failed, {len(report.blocked)} blocked[/red]"
    demo.say(f"  RUN [bold]{run}[/bold]: {report.succeeded}/{report.total} quanta in {report.seconds:.1f} s, {status}")
    for failure in report.failed[:3]:
        demo.say(f"  [red]{escape(str(failure.get('error')))}[/red]")
    if not report.ok:
        raise SkybutlerError(f"pipeline run {run} had failures")
    return report


# -- steps ------------------------------------------------------------------------


def create_repository(demo: Demo) -> None:
    """A SQLite registry and a local-file datastore in one directory."""
    demo.code(f"butler = Butler.create({str(demo.root)!r})")
    demo.butler = Butler.create(demo.root)
    demo.say(f"created a repository at [bold]{escape(str(demo.root))}[/bold]")


def simulate_night(demo: Demo) -> None:
    """SimCam's raw files of one night (biases, flats, science exposures, some glinting), delivered in two halves.

    The second half holds the later exposures of each band, so it adds visits to patches the first half covered."""
    from .instruments import glint_detectors, plan_night, write_exposure

    demo.raw_dir = Path(tempfile.mkdtemp(prefix="skybutler-raws-"))
    demo.later_dir = Path(tempfile.mkdtemp(prefix="skybutler-raws-later-"))
    demo.code(f"simulate_night(raw_dir, day_obs={DAY_OBS}, n_science={demo.science}, bands={BANDS}, size=256)")
    specs = plan_night(DAY_OBS, demo.science, BANDS)
    by_band: dict[str, list[int]] = {}
    for spec in specs:
        if spec.observation_type == "science":
            by_band.setdefault(spec.physical_filter, []).append(spec.exposure_id)
    later = demo.later = {e for ids in by_band.values() for e in ids[(len(ids) + 1) // 2:]}  # each band's later ones
    rows = []
    paths = []
    for spec in specs:
        paths += write_exposure(demo.later_dir if spec.exposure_id in later else demo.raw_dir, spec, size=256)
        crossed = glint_detectors(spec.exposure_id, spec.observation_type)
        if spec.observation_type == "science":
            demo.glints[spec.exposure_id] = crossed
        rows.append((spec.seq_num, spec.exposure_id, spec.observation_type, spec.physical_filter,
                     spec.begin.isot[:16].replace("T", " "),
                     f"{spec.seeing:.2f}" if spec.observation_type == "science" else "",
                     ", ".join(map(str, sorted(crossed))) or "", "second" if spec.exposure_id in later else "first"))
    demo.table(f"{len(specs)} exposures x 9 detectors = {len(paths)} raw files of 256x256 pixels",
               ["seq", "exposure", "type", "filter", "start (TAI)", "seeing", "glint on detectors", "half"], rows)


def ingest(demo: Demo) -> None:
    """Ingest the first half's raws (deterministic IDs), define one visit per science exposure, register a sky map."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .ingest import define_visits, ingest_raws, register_skymap

    b = demo.b
    demo.code("ingest_raws(butler, raw_dir, transfer='move')")
    result = ingest_raws(b, demo.raw_dir, transfer="move")
    demo.say(f"  {result.summary()} into RUN {', '.join(result.runs)} in {result.seconds:.1f} s")
    shutil.rmtree(demo.raw_dir, ignore_errors=True)
    demo.code("define_visits(butler)")
    visits = define_visits(b)
    demo.say(f"  {visits.summary()}, each with a sky region per detector")
    demo.code(f"register_skymap(butler, {SKYMAP!r})")
    start = time.perf_counter()
    # The demo's longest step: a bar on a terminal rather than seconds of silence.
    with Progress(TextColumn("  registering patches"), BarColumn(), MofNCompleteColumn(), console=demo.console,
                  transient=True, disable=not demo.console.is_terminal) as bar:
        task = bar.add_task("patches", total=None)
        skymap, _ = register_skymap(b, SKYMAP, progress=lambda done, total: bar.update(task, completed=done,
                                                                                       total=total))
    demo.say(f"  sky map {SKYMAP!r}: {skymap.n_tracts} tracts of {skymap.patches}x{skymap.patches} patches "
             f"(~{skymap.ring_height / skymap.patches:.2f} degrees), registered in {time.perf_counter() - start:.1f} s")
    counts = Counter(r["observation_type"] for r in b.query_dimension_records("exposure"))
    demo.table("what the registry now knows", ["element", "records"], [
        ("exposure", ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))),
        ("visit", len(list(b.query_dimension_records("visit")))),
        ("detector", len(list(b.query_dimension_records("detector")))),
        ("patch", skymap.n_tracts * skymap.patches**2)])


def make_calibrations(demo: Demo) -> None:
    """Master biases and flats by a pipeline, certified into a CALIBRATION collection."""
    from .demo_tasks.tasks import register_calibration_types
    from .ingest.skymaps import SKYMAP_RUN
    from .instruments import day_obs_timespan

    b = demo.b
    demo.code("register_calibration_types(butler)   # bias, flat: calibration dataset types")
    register_calibration_types(b)
    where = "exposure.observation_type IN ('bias', 'flat')"
    demo.code(f"build_graph(butler, demo_calibs.yaml, [{RAW_RUN!r}], output_run={CALIB_RUN!r}, where={where!r})")
    _run_pipeline(demo, _pipeline("demo_calibs.yaml"), [RAW_RUN], CALIB_RUN, where)
    refs = [*b.query_datasets("bias", collections=CALIB_RUN), *b.query_datasets("flat", collections=CALIB_RUN)]
    begin = day_obs_timespan(DAY_OBS).begin
    demo.code(f"butler.collections.certify({CALIB!r}, refs, begin={begin.isot[:19]!r}, end=None)")
    b.collections.certify(CALIB, refs, begin=begin, end=None)
    rows = []
    for name in ("bias", "flat"):
        validity = b.collections.validity(CALIB, name)
        spans = {(span.begin.isot[:19] if span.begin else "-inf", span.end.isot[:19] if span.end else "+inf")
                 for _, span in validity}
        rows.append((name, len(validity), "; ".join(f"{a} .. {e}" for a, e in sorted(spans))))
    demo.table(f"certified into CALIBRATION collection {CALIB}", ["dataset type", "datasets", "valid"], rows)
    demo.code(f"butler.collections.set_chain({DEFAULTS!r}, [{RAW_RUN!r}, {CALIB!r}, {SKYMAP_RUN!r}])")
    b.collections.set_chain(DEFAULTS, [RAW_RUN, CALIB, SKYMAP_RUN])


def process(demo: Demo) -> None:
    """ISR, calibration, visit summaries and coadds, twice with different configs, chained as the current best."""
    b = demo.b
    where = "exposure.observation_type = 'science'"
    demo.code(f"build_graph(butler, demo_pipeline.yaml, [{DEFAULTS!r}], output_run={RUN1!r}, where={where!r})")
    _run_pipeline(demo, _pipeline("demo_pipeline.yaml"), [DEFAULTS], RUN1, where)
    demo.say(f"again with a more conservative detection threshold ({RUN2_THRESHOLD:g} sigma):")
    demo.code(f"build_graph(butler, demo_pipeline.yaml + {{'calibrate': {{'detection_threshold': "
              f"{RUN2_THRESHOLD}}}}}, [{DEFAULTS!r}], output_run={RUN2!r}, where=...)")
    pipeline = _pipeline("demo_pipeline.yaml", {"calibrate": {"detection_threshold": RUN2_THRESHOLD}})
    _run_pipeline(demo, pipeline, [DEFAULTS], RUN2, where)
    demo.code(f"butler.collections.set_chain({BEST!r}, [{RUN2!r}, {RUN1!r}])")
    b.collections.set_chain(BEST, [RUN2, RUN1])
    configs = {run: b.get("calibrate_config", {}, collections=run) for run in (RUN1, RUN2)}
    changed = [(k, configs[RUN1][k], configs[RUN2][k]) for k in configs[RUN1] if configs[RUN1][k] != configs[RUN2][k]]
    demo.table("stored configs (calibrate_config) that differ",
               ["field", RUN1, RUN2], changed)
    rows = []
    for name in ("postISRCCD", "calexp", "src", "visitSummary", "visitMetrics", "deepCoadd", "deepCoadd_nImage"):
        rows.append((name, *[len(list(b.query_datasets(name, collections=run))) for run in (RUN1, RUN2)]))
    demo.table("datasets written by each run", ["dataset type", RUN1, RUN2], rows)


def _coadd_inputs(b: Butler, ref: Any) -> str:
    """Which visits a coadd was made from, by its recorded quantum."""
    q = b.provenance.producer(ref)
    visits = sorted({link.data_id["visit"] for link in q.inputs if link.dataset_type == "calexp"})
    return f"RUN {q.run}: {len(visits)} visit(s) {', '.join(map(str, visits))}"


def second_half(demo: Demo) -> None:
    """The second half arrives: the coadds it made stale, an incremental run redoing them, provenance before/after."""
    from .execution import build_graph, execute_graph
    from .ingest import define_visits, ingest_raws

    b = demo.b
    where = "exposure.observation_type = 'science'"
    demo.code("ingest_raws(butler, later_dir, transfer='move'); define_visits(butler)")
    result = ingest_raws(b, demo.later_dir, transfer="move")
    shutil.rmtree(demo.later_dir, ignore_errors=True)
    demo.say(f"  {result.summary()}; {define_visits(b).summary()}")
    demo.code(f"butler.provenance.stale('deepCoadd', [{BEST!r}, {DEFAULTS!r}], where={where!r})")
    demo.stale = b.provenance.stale("deepCoadd", [BEST, DEFAULTS], where=where)
    demo.table(f"{len(demo.stale)} stale coadds (the pipeline recorded with them, today's inputs)",
               ["band", "patch", "RUN", "why"],
               [(p.data_id["band"], p.data_id["patch"], p.run, "; ".join(p.reasons)) for p in demo.stale])
    before = {p.dataset_id: _coadd_inputs(b, b.registry.refs_by_id([p.dataset_id])[0]) for p in demo.stale[:1]}
    existing = {ref.data_id.required_values for ref in b.query_datasets("deepCoadd", collections=BEST)}
    pipeline = _pipeline("demo_pipeline.yaml", {"calibrate": {"detection_threshold": RUN2_THRESHOLD}})
    demo.code(f"build_graph(butler, pipeline, [{DEFAULTS!r}], output={BEST!r}, where=..., incremental=True)")
    graph = build_graph(b, pipeline, [DEFAULTS], output=BEST, where=where, incremental=True)
    demo.incremental = graph
    per_task = ", ".join(f"{n} {t}" for t, n in graph.counts().items() if n)
    demo.say(f"  incremental graph: {len(graph)} quanta to run ({per_task}), {sum(graph.unchanged.values())} "
             "unchanged kept")
    for note in graph.notes:
        demo.say(f"  {escape(note)}")
    report = execute_graph(b, graph, "pool", jobs=demo.jobs, progress=demo.console.is_terminal)
    demo.reports[report.run] = report
    if not report.ok:
        raise SkybutlerError(f"incremental run {report.run} had failures")
    demo.say(f"  {escape(report.describe())}; {BEST} is now {' -> '.join(b.collections.get_chain(BEST))}")
    redone = {tuple(q.data_id.required_values) for q in graph.quanta if q.task == "coadd"}
    order = b.universe.group(pipeline["coadd"].dimensions).required
    stale = {tuple(p.data_id[d] for d in order) for p in demo.stale}
    existed = redone & existing
    exact = "[green]exactly the stale ones[/green]" if existed == stale else "[red]not the stale ones[/red]"
    demo.say(f"  coadds made again: {len(existed)} of {len(existing)}, {exact}; new coadds: {len(redone - existing)}")
    rows = []
    for dataset_id, text in before.items():
        old = b.registry.refs_by_id([dataset_id])[0]
        new = b.find_dataset("deepCoadd", old.data_id, collections=BEST)
        rows += [("before", text), ("after", _coadd_inputs(b, new))]
    if rows:
        data_id = _data_id_text(demo.stale[0].data_id)
        demo.table(f"provenance of the stale coadd {data_id} before and after", ["", "made from"], rows)


def find_glints(demo: Demo) -> None:
    """The detectors of visits with a suspiciously large number of detections: one query."""
    b = demo.b
    where = f"src.n_rows > {GLINT_CUT}"
    demo.code(f"butler.query_data_ids(['visit', 'detector'], where={where!r}, collections={BEST!r})")
    found = {(int(d["visit"]), int(d["detector"]))
             for d in b.query_data_ids(["visit", "detector"], where=where, collections=BEST)}
    demo.found = found
    truth = {(visit, det) for visit, dets in demo.glints.items() for det in dets}
    rows = []
    for visit, det in sorted(found | truth):
        n_rows = {}
        for run in (RUN1, BEST):
            ref = b.find_dataset("src", instrument=INSTRUMENT, visit=visit, detector=det, collections=run)
            n_rows[run] = b.get_metadata(ref)["n_rows"] if ref is not None else "-"
        verdict = ("[green]found, glint[/green]" if (visit, det) in found and (visit, det) in truth else
                   "[red]missed[/red]" if (visit, det) in truth else "[red]false alarm[/red]")
        rows.append((visit, det, n_rows[RUN1], n_rows[BEST], verdict))
    table = Table(title="the query's answer against the simulation's ground truth (glint_detectors())",
                  title_justify="left", show_edge=False)
    for column in ("visit", "detector", f"src rows {RUN1}", f"src rows {BEST}", "verdict"):
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(v) for v in row])
    demo.console.print(table)
    clean = sorted(b.get_metadata(ref)["n_rows"] for ref in b.query_datasets("src", collections=BEST)
                   if (int(ref.data_id["visit"]), int(ref.data_id["detector"])) not in truth)
    exact = "[green]exactly the glint detectors[/green]" if found == truth else "[red]not the glint detectors[/red]"
    demo.say(f"  {len(found)} detector(s) found, {len(truth)} crossed by a glint: {exact}; "
             f"clean detectors have {clean[0]}..{clean[-1]} sources (median {clean[len(clean) // 2]})")


def spatial_and_metrics(demo: Demo) -> None:
    """A spatial question (which patches a visit overlaps) and a metrics question (which detectors had bad seeing)."""
    from .instruments import plan_night

    b = demo.b
    visit = min(demo.glints)
    demo.code(f"butler.query_data_ids(['tract', 'patch'], where='visit = {visit}', instrument='SimCam', "
              f"skymap={SKYMAP!r})")
    patches = sorted({(int(d["tract"]), int(d["patch"]))
                      for d in b.query_data_ids(["tract", "patch"], where=f"visit = {visit}", instrument=INSTRUMENT,
                                                skymap=SKYMAP)})
    rows = []
    for tract, patch in patches:
        coadds = b.query_datasets("deepCoadd", collections=BEST, skymap=SKYMAP, tract=tract, patch=patch)
        rows.append((tract, patch, ", ".join(sorted(str(r.data_id["band"]) for r in coadds))))
    demo.table(f"visit {visit}'s patches",
               ["tract", "patch", "coadds in bands"], rows)
    # Metrics are facts attached to a dataset after it is stored, queryable like the
    # facts extracted at put time: here each calexp's PSF width from its visit summary.
    demo.code("butler.set_metrics(calexp_ref, psf_fwhm_arcsec=...)   # for each calexp, from visitSummary")
    calexps = {(int(r.data_id["visit"]), int(r.data_id["detector"])): r
               for r in b.query_datasets("calexp", collections=BEST)}
    for ref in b.query_datasets("visitSummary", collections=BEST):
        summary = b.get(ref)
        for det, fwhm in zip(summary["detector"].to_pylist(), summary["psf_fwhm_arcsec"].to_pylist(), strict=True):
            b.set_metrics(calexps[int(ref.data_id["visit"]), det], psf_fwhm_arcsec=fwhm)
    where = f"calexp.psf_fwhm_arcsec > {SEEING_CUT}"
    demo.code(f"butler.query_data_ids(['visit', 'detector'], where={where!r}, collections={BEST!r})")
    bad = Counter(int(d["visit"]) for d in b.query_data_ids(["visit", "detector"], where=where, collections=BEST))
    seeing = {spec.exposure_id: spec.seeing for spec in plan_night(DAY_OBS, demo.science, BANDS)
              if spec.exposure_id in demo.glints}
    demo.table(f"visits with a PSF wider than {SEEING_CUT}\"",
               ["visit", "detectors", "simulated seeing (arcsec)"],
               [(v, n, f"{seeing[v]:.2f}") for v, n in sorted(bad.items())])
    good = sorted(seeing[v] for v in seeing if v not in bad)
    if good:
        demo.say(f"  the other {len(good)} visit(s) were simulated with seeing {good[0]:.2f}..{good[-1]:.2f} arcsec "
                 "(the measured PSF is wider: 0.8-arcsec pixels)")


def show_provenance(demo: Demo) -> None:
    """How one coadd was made, down to the raw files and calibrations, and where the outputs are."""
    b = demo.b
    refs = sorted(b.query_datasets("deepCoadd", collections=BEST), key=lambda r: r.data_id.required_values)
    ref = max(refs, key=lambda r: b.get_metadata(r)["n_x"] * b.get_metadata(r)["n_y"])
    demo.coadd_ref = ref
    data_id = {k: ref.data_id[k] for k in ("skymap", "tract", "patch", "band")}
    demo.code(f"butler.provenance.tree(butler.find_dataset('deepCoadd', {data_id}, collections={BEST!r}))")
    node = b.provenance.tree(ref)
    tree = Tree(f"[bold]provenance of deepCoadd {escape(_data_id_text(node.data_id))}[/bold] "
                "[dim](one input of each kind expanded)[/dim]")
    _add_node(tree, node)
    demo.console.print(tree)
    from astropy.wcs import WCS

    image = b.get(ref)
    scale = float(WCS(image.header).proj_plane_pixel_scales()[1].to_value("arcsec"))
    demo.say(f"  the coadd: {image.data.shape[1]}x{image.data.shape[0]} pixels of {scale:.1f} arcsec "
             f"(the part of the patch's grid its {image.header['NINPUTS']} calexps cover)")
    rows = [(name, b.get_uri(name, data, collections=BEST)) for name, data in (
        ("deepCoadd", data_id),
        ("calexp", {"instrument": INSTRUMENT, "visit": min(demo.glints), "detector": 4}),
        ("src", {"instrument": INSTRUMENT, "visit": min(demo.glints), "detector": 4}),
        ("visitSummary", {"instrument": INSTRUMENT, "visit": min(demo.glints)}))]
    demo.table("where the outputs are (butler.get_uri)", ["dataset type", "URI"], rows)


def publish_catalogs(demo: Demo) -> None:
    """The best run's source catalogs published as HATS, and one cone search over them."""
    import numpy as np

    from .catalogs.search import cone_search

    b = demo.b
    dest = demo.root / "hats" / "src"
    demo.code(f"butler.publish_catalog('src', {str(dest)!r}, collections={BEST!r})")
    demo.publication = b.publish_catalog("src", dest, collections=BEST)
    done = demo.publication
    demo.say(f"  {done.total_rows} sources of {done.datasets_added} catalogs in {done.partitions} HEALPix "
             f"partition(s) with a margin cache, in {done.seconds:.1f} s; registered as "
             f"{done.ref.dataset_type.name} in {done.ref.run}")
    ref = b.find_dataset("src", instrument=INSTRUMENT, visit=min(demo.glints), detector=4, collections=BEST)
    sources = b.get(ref, parameters={"columns": ["ra", "dec"]})
    demo.cone = (float(np.nanmedian(sources["ra"].to_numpy())), float(np.nanmedian(sources["dec"].to_numpy())), 0.02)
    ra, dec, radius = demo.cone
    demo.code(f"cone_search({str(dest)!r}, ra={ra:.4f}, dec={dec:.4f}, radius={radius})")
    found = cone_search(dest, ra, dec, radius, columns=["ra", "dec", "flux"])
    demo.table(f"sources within {radius * 3600:.0f} arcsec (from every visit that saw them)",
               ["ra", "dec", "flux"],
               [(f"{r['ra']:.5f}", f"{r['dec']:.5f}", f"{r['flux']:.1f}") for r in found.to_pylist()[:8]])
    if found.num_rows > 8:
        demo.say(f"  ... {found.num_rows} in all")


def _data_id_text(data_id: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in data_id.items() if k != "instrument")


def _add_node(tree: Tree, node: Any) -> None:
    """Add a provenance node; of a quantum's many inputs of one type, expand only the first."""
    branch = tree.add(f"[cyan]{escape(node.dataset_type)}[/cyan] {escape(_data_id_text(node.data_id))}")
    q = node.quantum
    if q is None:
        return
    took = f" in {q.seconds:.2f} s" if q.seconds is not None else ""
    made = branch.add(f"made by [bold]{escape(q.task_label)}[/bold] [green]{q.status}[/green]{took}, "
                      f"RUN {escape(q.run)}")
    by_type: dict[str, list[Any]] = {}
    for child in node.inputs:
        by_type.setdefault(child.dataset_type, []).append(child)
    for children in by_type.values():
        _add_node(made, children[0])
        if len(children) > 1:
            visits = sorted({c.data_id.get("visit") for c in children if "visit" in c.data_id})
            also = f" of visits {', '.join(map(str, visits))}" if visits else ""
            made.add(f"[dim]... and {len(children) - 1} more {escape(children[0].dataset_type)}{also}[/dim]")


def summarize(demo: Demo) -> None:
    """Every collection and what it holds."""
    b = demo.b
    rows = []
    held: dict[str, int] = {}
    for (collection, _), n in b.registry.dataset_counts().items():
        held[collection] = held.get(collection, 0) + n
    for info in sorted(b.collections.query(), key=lambda c: c.name):
        contents = " -> ".join(info.children) if info.children else f"{held.get(info.name, 0)} dataset(s)"
        rows.append((info.name, info.type.value, contents))
    demo.table("collections in the repository", ["name", "type", "holds"], rows)


Step = Callable[[Demo], None]

STEPS: list[Step] = [create_repository, simulate_night, ingest, make_calibrations, process, second_half, find_glints,
                     spatial_and_metrics, show_provenance, publish_catalogs, summarize]
"""The demo, in order; each step may use what the earlier ones left in :class:`Demo`."""


def run(root: Path, console: Console | None = None, steps: Sequence[Step] = STEPS, *, science: int = 6,
        jobs: int = 2) -> Demo:
    """Run ``steps`` on a new repository at ``root`` and return the final state."""
    demo = Demo(root=root, console=console or Console(), science=science, jobs=jobs)
    try:
        for number, step in enumerate(steps, 1):
            title = (step.__doc__ or step.__name__).strip().splitlines()[0]
            demo.console.rule(f"[bold]{number}. {step.__name__.replace('_', ' ')}[/bold]", align="left")
            demo.say(f"[dim]{escape(title)}[/dim]")
            start = time.perf_counter()
            step(demo)
            demo.say(f"[dim]({time.perf_counter() - start:.1f} s)[/dim]")
    finally:
        if demo.butler is not None:
            demo.butler.close()
        for directory in (demo.raw_dir, demo.later_dir):
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skybutler.demo", description="The skybutler demo: a simulated "
                                     "night ingested, calibrated, processed twice, queried and traced.")
    parser.add_argument("--dir", type=Path, help="create the repository here (default: a new temporary directory, "
                                                 "deleted at the end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository")
    parser.add_argument("--science", type=int, default=6, help="science exposures to simulate (default 6)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes for the pipelines (default 2)")
    args = parser.parse_args(argv)
    console = Console()
    temporary = args.dir is None
    root = Path(tempfile.mkdtemp(prefix="skybutler-demo-")) / "repo" if temporary else args.dir
    start, cpu = time.perf_counter(), time.process_time()
    try:
        run(root, console, science=args.science, jobs=args.jobs)
    except SkybutlerError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}")
        return 1
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root.parent, ignore_errors=True)
    kept = not temporary or args.keep
    where = f"kept at {root}" if kept else "deleted"
    console.print(f"\n[green]demo finished[/green] in {time.perf_counter() - start:.0f} s "
                  f"({time.process_time() - cpu:.0f} s of CPU in this process, workers not counted); "
                  f"the repository was {escape(where)}.")
    console.print(escape(web_view_hint(root, kept)), highlight=False, soft_wrap=True)
    return 0


def web_view_hint(root: Path, kept: bool, port: int = 8080) -> str:
    """How to browse the repository: the commands that serve it, and the web view's URL."""
    url = f"http://127.0.0.1:{port}/{root.absolute().name}/"
    if not kept:
        return f"To browse a repository in the web view, run the demo with --keep or --dir DIR; it is then served at {url}"
    return (f"Browse it: skybutler token create {root} $USER  (prints your token), then\n"
            f"           skybutler serve {root}  and open the web view at {url}")


if __name__ == "__main__":
    sys.exit(main())
