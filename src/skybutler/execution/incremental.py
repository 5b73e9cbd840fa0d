"""Incremental runs: redo exactly the quanta whose recorded inputs differ from today's.

Today's graph is built as for a full run; each quantum is then judged against the products
the output chain shows (find-first) and the quanta recorded with them
(:mod:`..provenance.staleness`).  A quantum whose recorded inputs, config (unless told to
ignore it, ``config=False``) and, if asked, task code equal today's is kept: it leaves the graph, and its products become existing
inputs of what runs.  New quanta and changed ones run into a new RUN put in front of the
chain, so the chain's find-first view is current and older products stay queryable in
their RUNs.  A quantum whose calibration was superseded since it ran follows the user's
choice: ``refuse`` (the default: stop and say which), ``recorded`` (read the recorded one
again, noted) or ``today`` (redo it with today's).  A run that finds nothing to do writes
nothing, not even a RUN.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..pipeline.errors import ExecutionError
from ..pipeline.graph import QuantumGraph
from ..provenance.staleness import SHOWN, CalibrationChoice, assess

if TYPE_CHECKING:
    from ..butler import Butler


def incremental_graph(butler: Butler, graph: QuantumGraph, output: str, *, calibrations: CalibrationChoice = "refuse",
                      software: bool = False, config: bool = True) -> QuantumGraph:
    """``graph`` less the quanta that are current in the chain ``output``; notes say what was
    kept, redone and why, and which products no quantum would make today.  ``config=False``:
    a changed task config alone does not redo a quantum (as ``stale(config=False)``)."""
    if not butler.collections.exists(output):
        return graph  # a first run: everything is new
    result = assess(butler, graph, [output], config=config, software=software,
                    calibrations="recorded" if calibrations == "recorded" else "today", where=graph.where)
    superseded = [d for d in result.decisions if d.calibrations]
    decertified = [o for o in result.orphans if o.reasons[0].startswith("calibration")]
    if calibrations == "refuse" and (superseded or decertified):
        named = [f"{graph.quanta[d.index].describe()}: {d.reasons[0]}" for d in superseded[:SHOWN]]
        named += [f"{o.dataset_type}@{o.data_id}: {o.reasons[0]}" for o in decertified[:SHOWN]]
        raise ExecutionError(
            f"{len(superseded) + len(decertified)} quanta read a calibration that was decertified or superseded "
            f"since they ran ({'; '.join(named)}); choose --calibrations recorded (keep reading the recorded one, "
            "noted) or --calibrations today (redo them with today's)")
    done = {d.index: d.products for d in result.decisions if d.status == "current"}
    stale = [d for d in result.decisions if d.status == "stale"]
    pruned = graph.without(done)
    notes = []
    if stale:
        why: dict[str, int] = {}
        for d in stale:
            for reason in d.reasons:
                kind = reason.split(":")[0].split(" superseded")[0]
                kind = "calibration superseded" if kind.startswith("calibration ") else kind
                why[kind] = why.get(kind, 0) + 1
        notes.append(f"{len(stale)} quanta redone (" + ", ".join(f"{k}: {n}" for k, n in why.items()) + ")")
    if result.recalibrated:
        notes.append(f"{result.recalibrated} quanta read their recorded calibration, superseded since "
                     "(--calibrations recorded)")
    if superseded and calibrations == "today":
        notes.append(f"{len(superseded)} quanta redone with today's calibration instead of the recorded one")
    if result.orphans:
        shown = ", ".join(f"{o.dataset_type}@{o.data_id}" for o in result.orphans[:SHOWN])
        notes.append(f"{len(result.orphans)} products in {output!r} would not be made today and stay as they are "
                     f"({shown}{' ...' if len(result.orphans) > SHOWN else ''}): {result.orphans[0].reasons[0]}")
    pruned.notes = notes
    pruned.stale = dict(Counter(d.task for d in stale))
    return pruned
