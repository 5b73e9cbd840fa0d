"""The oracle of test_query_oracle.py: small random repositories and random where-clauses
(hypothesis strategies), built into a real repository, and a brute-force evaluator in plain
Python over the records inserted -- the natural join of the element records a query names,
visit definitions, region overlaps, SQL's three-valued logic, find-first by collection rank
and calibration validity.  It never reads SQL and never calls skybutler's query code."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lsst.sphgeom as sphgeom
from astropy.time import Time, TimeDelta
from hypothesis import strategies as st

from conftest import stack_locations
from skybutler import Butler, Timespan

T0 = Time("2026-03-01T00:00:00", scale="tai")
INSTRUMENTS = ("A", "B")
BANDS = ("g", "r")
SKYMAP = "sm"


def minute(m: int) -> Time:
    return T0 + TimeDelta(60 * m, format="sec", scale="tai")


def disk(ra: float, radius: float) -> sphgeom.Circle:
    """A circle centred on the equator (distances between centres are differences of RA)."""
    return sphgeom.Circle(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, 0.0)),
                          sphgeom.Angle.fromDegrees(radius))


# -- the random world ---------------------------------------------------------------------------


@dataclass
class World:
    """The records and datasets of one repository, as plain Python values.  Every element
    record is a dict of column values; timespans are (begin, end) minutes (None for NULL,
    ``None`` bounds inside for unbounded); regions (ra, radius) circles on the equator."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    visit_definition: set[tuple[str, int, int]] = field(default_factory=set)
    #: dataset id -> (type, data ID dict, run)
    datasets: dict[str, tuple[str, dict[str, Any], str]] = field(default_factory=dict)
    #: RUN/TAGGED collection -> dataset ids;  CALIBRATION -> [(id, begin, end)] (minutes or None)
    members: dict[str, list[str]] = field(default_factory=dict)
    certified: dict[str, list[tuple[str, int | None, int | None]]] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)

    def flatten(self, names: list[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            for child in (self.flatten(self.chains[name]) if name in self.chains else [name]):
                if child not in out:
                    out.append(child)
        return out


DATASET_TYPES = {"raw": ("instrument", "exposure", "detector"), "calexp": ("instrument", "visit", "detector"),
                 "bias": ("instrument", "detector")}


@st.composite
def worlds(draw) -> World:
    w = World()
    rec = w.records
    n_inst = draw(st.integers(1, 2))
    insts = INSTRUMENTS[:n_inst]
    rec["instrument"] = [{"name": i} for i in insts]
    rec["band"] = [{"name": b} for b in BANDS]
    rec["physical_filter"] = [{"instrument": i, "name": f"{i}-{b}", "band": b} for i in insts for b in BANDS]
    rec["day_obs"] = [{"instrument": i, "id": d, "timespan": (0, 1440) if d == 20260301 else (1440, 2880)}
                      for i in insts for d in (20260301, 20260302)]
    rec["group"] = [{"instrument": i, "name": "g1"} for i in insts]
    rec["detector"], rec["exposure"], rec["visit"], rec["visit_detector_region"] = [], [], [], []
    maybe_span = st.one_of(st.none(), st.tuples(st.integers(0, 60), st.integers(1, 8)).map(
        lambda t: (10 * t[0], 10 * t[0] + t[1])))
    for i in insts:
        for d in range(1, draw(st.integers(1, 3)) + 1):
            rec["detector"].append({"instrument": i, "id": d,
                                    "purpose": draw(st.sampled_from(["SCIENCE", "WAVEFRONT", None]))})
        exposures = []
        for e in range(1, draw(st.integers(1, 5)) + 1):
            span = draw(maybe_span)
            day = 20260301 if span is None or span[0] < 1440 else 20260302
            exposures.append({"instrument": i, "id": e, "physical_filter": f"{i}-{draw(st.sampled_from(BANDS))}",
                              "day_obs": day, "group": "g1",
                              "exposure_time": draw(st.sampled_from([None, 10.0, 20.0, 30.0])),
                              "observation_type": draw(st.sampled_from(["science", "bias", None])),
                              "timespan": span})
        rec["exposure"] += exposures
        for v in range(1, draw(st.integers(0, 4)) + 1):
            seed = draw(st.sampled_from(exposures))
            same = [e for e in exposures if (e["physical_filter"], e["day_obs"]) ==
                    (seed["physical_filter"], seed["day_obs"])]
            chosen = {seed["id"]} | {e["id"] for e in same if draw(st.booleans())}
            w.visit_definition |= {(i, e, v) for e in chosen}
            ra = draw(st.integers(0, 40))
            has_region = draw(st.integers(0, 4)) > 0
            rec["visit"].append({"instrument": i, "id": v, "physical_filter": seed["physical_filter"],
                                 "day_obs": seed["day_obs"], "exposure_time": draw(st.sampled_from([None, 15.0, 30.0])),
                                 "timespan": draw(maybe_span), "region": (ra, 1.2) if has_region else None})
            for det in rec["detector"]:
                if det["instrument"] == i and has_region and draw(st.booleans()):
                    rec["visit_detector_region"].append({"instrument": i, "visit": v, "detector": det["id"],
                                                         "region": (ra + draw(st.sampled_from([-0.5, 0.5])), 0.6)})
    rec["skymap"] = [{"name": SKYMAP}]
    rec["tract"], rec["patch"] = [], []
    for t in range(draw(st.integers(1, 2))):
        ra = draw(st.sampled_from([0, 12, 24, 36]))
        rec["tract"].append({"skymap": SKYMAP, "id": t, "region": (ra, 4.0)})
        for p in range(2):
            rec["patch"].append({"skymap": SKYMAP, "tract": t, "id": p, "region": (ra - 2 + 4 * p, 2.0)})

    def new_id() -> str:
        return str(uuid.UUID(int=draw(st.integers(0, 2**120)) * 2**7 + len(w.datasets)))

    def put(dtype: str, data_id: dict[str, Any], run: str) -> str:
        ds = new_id()
        w.datasets[ds] = (dtype, data_id, run)
        w.members.setdefault(run, []).append(ds)
        return ds

    for run in ("raw/1", "raw/2"):
        w.members[run] = []
        for e in rec["exposure"]:
            for det in rec["detector"]:
                if det["instrument"] == e["instrument"] and draw(st.integers(0, 2)) > 0:
                    put("raw", {"instrument": e["instrument"], "exposure": e["id"], "detector": det["id"]}, run)
    for run in ("proc/1", "proc/2"):
        w.members[run] = []
        for v in rec["visit"]:
            for det in rec["detector"]:
                if det["instrument"] == v["instrument"] and draw(st.booleans()):
                    put("calexp", {"instrument": v["instrument"], "visit": v["id"], "detector": det["id"]}, run)
    w.members["best"] = []
    tagged: set[tuple] = set()
    for ds in [d for run in ("proc/2", "proc/1") for d in w.members[run]]:
        key = tuple(w.datasets[ds][1].values())
        if key not in tagged and draw(st.integers(0, 2)) == 0:
            tagged.add(key)
            w.members["best"].append(ds)
    # biases: three RUNs of candidates, certified over random non-overlapping ranges
    cuts = st.lists(st.sampled_from([None, *range(0, 600, 30)]), min_size=0, max_size=4)
    for coll in ("calib/A", "calib/B"):
        w.certified[coll] = []
    for run in ("bias/0", "bias/1", "bias/2"):
        w.members[run] = []
        for det in rec["detector"]:
            put("bias", {"instrument": det["instrument"], "detector": det["id"]}, run)
    for det in rec["detector"]:
        key = {"instrument": det["instrument"], "detector": det["id"]}
        candidates = [d for d, (t, did, _) in w.datasets.items() if t == "bias" and did == key]
        for coll in ("calib/A", "calib/B"):
            points = sorted(set(p for p in draw(cuts) if p is not None))
            bounds = [None, *points, None]
            for begin, end in zip(bounds, bounds[1:]):
                if draw(st.booleans()):
                    w.certified[coll].append((draw(st.sampled_from(candidates)), begin, end))
    w.chains["processed"] = draw(st.permutations(["proc/2", "best", "proc/1"]).map(lambda p: p[:2] if
                                                                                     p[0] == "best" else p))
    w.chains["calibs"] = draw(st.permutations(["calib/A", "calib/B"]))
    w.chains["defaults"] = ["raw/1", "calibs", "raw/2"]
    return w


def build(world: World, stack: str, root) -> Butler:
    """A real repository holding exactly the world's records, datasets and collections."""
    butler = Butler.create(root, **stack_locations(stack, root.parent))

    def span(s: tuple[int, int] | None) -> Timespan | None:
        return None if s is None else Timespan(minute(s[0]), minute(s[1]))

    for element, rows in world.records.items():
        converted = []
        for row in rows:
            row = dict(row)
            if "timespan" in row:
                row["timespan"] = span(row["timespan"])
            if "region" in row:
                row["region"] = None if row["region"] is None else disk(*row["region"])
            converted.append(row)
        if converted:
            butler.insert_records(element, converted)
    if world.visit_definition:
        butler.insert_records("visit_definition", [{"instrument": i, "exposure": e, "visit": v}
                                                   for i, e, v in world.visit_definition])
    for name, dims in DATASET_TYPES.items():
        butler.register_dataset_type(name, dims, "Dict", is_calibration=name == "bias")
    refs = {}
    for run in [r for r in world.members if r != "best"]:
        butler.collections.register(run, "run")
        by_type: dict[str, list] = {}
        for ds in world.members[run]:
            dtype, data_id, _ = world.datasets[ds]
            by_type.setdefault(dtype, []).append((ds, data_id))
        for dtype, items in by_type.items():
            made = butler.put_many(dtype, [({"id": ds}, data_id) for ds, data_id in items], run=run,
                                   ids=[uuid.UUID(ds) for ds, _ in items])
            refs.update({str(r.id): r for r in made})
    butler.collections.register("best", "tagged")
    if world.members["best"]:
        butler.collections.associate("best", [refs[ds] for ds in world.members["best"]])
    for coll, rows in world.certified.items():
        butler.collections.register(coll, "calibration")
        for ds, begin, end in rows:
            butler.collections.certify(coll, [refs[ds]], begin=None if begin is None else minute(begin),
                                       end=None if end is None else minute(end))
    for name in ("processed", "calibs", "defaults"):
        butler.collections.register(name, "chained")
        butler.collections.set_chain(name, world.chains[name])
    return butler


# -- random where-clauses, each with its own Python meaning ------------------------------------------


@dataclass
class Clause:
    """A where-clause's text, its binds, the elements it names, and its value for a joined row
    (True, False or None for SQL's unknown)."""

    text: str
    binds: dict[str, Any]
    elements: frozenset[str]
    value: Callable[[dict[str, dict[str, Any]]], bool | None]
    #: A sky-region test, which may only be AND-ed with the rest.
    spatial: bool = False


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _and(values: list[bool | None]) -> bool | None:
    return False if False in values else (None if None in values else True)


def _or(values: list[bool | None]) -> bool | None:
    return True if True in values else (None if None in values else False)


#: (dimension, literal values to compare its key with)
KEYS = [("instrument", ["'A'", "'B'"]), ("detector", [1, 2, 3]), ("exposure", [1, 2, 3, 4, 5]),
        ("visit", [1, 2, 3, 4]), ("band", ["'g'", "'r'"]), ("physical_filter", ["'A-g'", "'B-r'", "'A-r'"]),
        ("day_obs", [20260301, 20260302]), ("tract", [0, 1]), ("patch", [0, 1])]
FIELDS = [("exposure.exposure_time", "exposure", "exposure_time", [10.0, 20.0, 25.0]),
          ("exposure.observation_type", "exposure", "observation_type", ["'science'", "'bias'"]),
          ("detector.purpose", "detector", "purpose", ["'SCIENCE'"]),
          ("visit.exposure_time", "visit", "exposure_time", [15.0, 20.0, 30.0])]


def _literal(text: Any) -> Any:
    return text[1:-1] if isinstance(text, str) and text.startswith("'") else text


@st.composite
def atoms(draw, allowed: frozenset[str], n_bind: list[int]) -> Clause:
    keys = [k for k in KEYS if k[0] in allowed]
    fields = [f for f in FIELDS if f[1] in allowed]
    kind = draw(st.sampled_from(["cmp", "cmp", "in", "field", "null", "bind", "time"]
                                + (["range"] if any(k[1][0] == 1 for k in keys) else [])))
    if kind in ("field", "null") and fields:
        name, element, column, values = draw(st.sampled_from(fields))
        if kind == "null":
            op = draw(st.sampled_from(["=", "!="]))
            return Clause(f"{name} {op} NULL", {}, frozenset({element}),
                          lambda row: (row[element][column] is None) == (op == "="))
        # strings only by (in)equality: SQLite and PostgreSQL collations order text differently
        op = draw(st.sampled_from(["=", "!="] if isinstance(values[0], str) else ["=", "!=", "<", "<=", ">", ">="]))
        lit = draw(st.sampled_from(values))
        return Clause(f"{name} {op} {lit}", {}, frozenset({element}),
                      lambda row: _compare(op, row[element][column], _literal(lit)))
    if kind == "time":
        timed = [e for e in ("exposure", "visit", "day_obs") if e in allowed]
        if timed:
            element = draw(st.sampled_from(timed))
            n_bind[0] += 1
            bind = f"t{n_bind[0]}"
            if draw(st.booleans()):
                b, length = draw(st.integers(0, 620)), draw(st.integers(0, 60))
                spec = Timespan(minute(b), minute(b + length)) if length else minute(b)

                def overlaps(row, b=b, length=length):
                    span = row[element]["timespan"]
                    if span is None:
                        return None
                    end = b + length if length else b + 1e-9  # a time is the instant [t, t + 1 ns)
                    return span[0] < end and b < span[1]
                return Clause(f"{element}.timespan OVERLAPS {bind}", {bind: spec}, frozenset({element}), overlaps)
            t = draw(st.integers(0, 620))
            op = draw(st.sampled_from(["<", ">"]))

            def order(row, t=t, op=op):
                span = row[element]["timespan"]
                if span is None:
                    return None
                return span[1] <= t if op == "<" else span[0] > t  # [begin, end) against [t, t + 1 ns)
            return Clause(f"{element}.timespan {op} {bind}", {bind: minute(t)}, frozenset({element}), order)
    if not keys:
        return Clause("TRUE", {}, frozenset(), lambda row: True)
    name, values = draw(st.sampled_from(keys))
    elements = frozenset({name})

    def get(row: dict[str, Any]) -> Any:
        return row["_values"][name]

    if kind == "range" and values[0] == 1:
        start = draw(st.integers(0, 4))
        stop = draw(st.integers(start, 6))  # a range that ends before it starts is refused, as Rubin's is
        stride = draw(st.sampled_from([1, 1, 2, 3]))
        text = f"{start}..{stop}" + (f":{stride}" if stride != 1 else "")
        extra = draw(st.lists(st.sampled_from(values), max_size=2))
        negated = draw(st.booleans())
        members = set(range(start, stop + 1, stride)) | set(extra)
        items = ", ".join([text, *map(str, extra)])

        def in_range(row, members=members, negated=negated):
            v = get(row)
            return None if v is None else (v in members) != negated
        return Clause(f"{name} {'NOT IN' if negated else 'IN'} ({items})", {}, elements, in_range)
    if kind == "in":
        chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
        negated = draw(st.booleans())
        members = {_literal(c) for c in chosen}
        return Clause(f"{name} {'NOT IN' if negated else 'IN'} ({', '.join(map(str, chosen))})", {}, elements,
                      lambda row: None if get(row) is None else (get(row) in members) != negated)
    if kind == "bind":
        n_bind[0] += 1
        bind = f"b{n_bind[0]}"
        if draw(st.booleans()):
            chosen = [_literal(v) for v in draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))]
            return Clause(f"{name} IN ({bind})", {bind: chosen}, elements, lambda row: get(row) in chosen)
        value = _literal(draw(st.sampled_from(values)))
        return Clause(f"{name} = {bind}", {bind: value}, elements, lambda row: get(row) == value)
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="] if not isinstance(values[0], str) else ["=", "!="]))
    lit = draw(st.sampled_from(values))
    return Clause(f"{name} {op} {lit}", {}, elements, lambda row: _compare(op, get(row), _literal(lit)))


@st.composite
def clauses(draw, allowed: frozenset[str], n_bind: list[int], depth: int = 2) -> Clause:
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(atoms(allowed, n_bind))
    kind = draw(st.sampled_from(["AND", "OR", "NOT"]))
    if kind == "NOT":
        inner = draw(clauses(allowed, n_bind, depth - 1))
        return Clause(f"NOT ({inner.text})", inner.binds, inner.elements,
                      lambda row: None if (v := inner.value(row)) is None else not v)
    parts = draw(st.lists(clauses(allowed, n_bind, depth - 1), min_size=2, max_size=3))
    combine = _and if kind == "AND" else _or
    return Clause(f" {kind} ".join(f"({p.text})" for p in parts), {k: v for p in parts for k, v in p.binds.items()},
                  frozenset().union(*[p.elements for p in parts]),
                  lambda row: combine([p.value(row) for p in parts]))


@st.composite
def where_clauses(draw, allowed: frozenset[str]) -> Clause | None:
    """Nothing, or a clause, AND-ed at the top with a sky-region test now and then."""
    if draw(st.integers(0, 5)) == 0:
        return None
    n_bind = [0]
    clause = draw(clauses(allowed, n_bind))
    spatial = [e for e in ("visit", "tract") if e in allowed]
    if spatial and draw(st.integers(0, 3)) == 0:
        element = draw(st.sampled_from(spatial))
        ra = draw(st.integers(-2, 42)) + 0.5

        def inside(row, ra=ra):
            region = row[element]["region"]
            return region is not None and abs(region[0] - ra) < region[1]
        point = Clause(f"{element}.region OVERLAPS POINT({ra}, 0)", {}, frozenset({element}), inside, True)
        return Clause(f"({clause.text}) AND {point.text}", clause.binds, clause.elements | point.elements,
                      lambda row: _and([clause.value(row), point.value(row)]), True)
    return clause


# -- the brute-force evaluator ------------------------------------------------------------------------

ORDER = ["instrument", "band", "physical_filter", "day_obs", "group", "detector", "exposure", "visit",
         "skymap", "tract", "patch"]
#: element -> {dimension: column} for its identity and implied dimensions
LINKS = {
    "instrument": {"instrument": "name"}, "band": {"band": "name"},
    "physical_filter": {"instrument": "instrument", "physical_filter": "name", "band": "band"},
    "day_obs": {"instrument": "instrument", "day_obs": "id"}, "group": {"instrument": "instrument", "group": "name"},
    "detector": {"instrument": "instrument", "detector": "id"},
    "exposure": {"instrument": "instrument", "exposure": "id", "physical_filter": "physical_filter",
                 "day_obs": "day_obs", "group": "group"},
    "visit": {"instrument": "instrument", "visit": "id", "physical_filter": "physical_filter", "day_obs": "day_obs"},
    "skymap": {"skymap": "name"}, "tract": {"skymap": "skymap", "tract": "id"},
    "patch": {"skymap": "skymap", "tract": "tract", "patch": "id"},
}
CLOSURE = {"instrument": set(), "band": set(), "physical_filter": {"instrument", "band"},
           "day_obs": {"instrument"}, "group": {"instrument"}, "detector": {"instrument"},
           "exposure": {"instrument", "physical_filter", "band", "day_obs", "group"},
           "visit": {"instrument", "physical_filter", "band", "day_obs"}, "skymap": set(), "tract": {"skymap"},
           "patch": {"skymap", "tract"}}
#: Dimensions that require another (two families of such dimensions with nothing relating them: refused)
OBSERVATION = {"physical_filter", "day_obs", "group", "detector", "exposure", "visit"}
SKY = {"tract", "patch"}


def closure(names: set[str]) -> set[str]:
    return set(names).union(*[CLOSURE[n] for n in names])


def unrelated(dims: set[str]) -> bool:
    return bool(dims & OBSERVATION) and bool(dims & SKY) and "visit" not in dims


def joined_rows(world: World, dims: set[str]) -> list[dict[str, Any]]:
    """Every consistent combination of one record per element of ``dims`` (shared dimension
    values equal), paired only through the visit definitions, related to a sky map only by
    region overlap (the spatial join a query of visits and tracts or patches makes)."""
    rows: list[dict[str, Any]] = [{"_values": {}}]
    for element in [e for e in ORDER if e in dims]:
        links = LINKS[element]
        out = []
        for row in rows:
            values = row["_values"]
            for record in world.records[element]:
                if all(values.get(d, record[c]) == record[c] for d, c in links.items()):
                    new = dict(row)
                    new[element] = record
                    new["_values"] = {**values, **{d: record[c] for d, c in links.items()}}
                    out.append(new)
        rows = out
    if {"exposure", "visit"} <= dims:
        rows = [r for r in rows if (r["_values"]["instrument"], r["_values"]["exposure"], r["_values"]["visit"])
                in world.visit_definition]
    sky = "patch" if "patch" in dims else ("tract" if "tract" in dims else None)
    if "visit" in dims and sky is not None:
        def regions(row):
            if "detector" in dims:
                v = row["_values"]
                return [r["region"] for r in world.records["visit_detector_region"]
                        if (r["instrument"], r["visit"], r["detector"]) == (v["instrument"], v["visit"], v["detector"])]
            return [row["visit"]["region"]]

        def meet(a, b):
            return a is not None and b is not None and abs(a[0] - b[0]) < a[1] + b[1]
        rows = [r for r in rows if any(meet(reg, r[sky]["region"]) for reg in regions(r))]
    return rows


def query_dims(requested: set[str], clause: Clause | None, data_id: dict[str, Any]) -> set[str]:
    named = set(requested) | set(data_id) | (set(clause.elements) if clause else set())
    return closure(named)


def passes(clause: Clause | None, row: dict[str, Any], data_id: dict[str, Any]) -> bool:
    if any(row["_values"][k] != v for k, v in data_id.items()):
        return False
    return clause is None or clause.value(row) is True


def output_key(row: dict[str, Any], dims: tuple[str, ...]) -> tuple:
    return tuple(row["_values"][d] for d in dims)


REQUIRES = {"physical_filter": {"instrument"}, "day_obs": {"instrument"}, "group": {"instrument"},
            "detector": {"instrument"}, "exposure": {"instrument"}, "visit": {"instrument"}, "tract": {"skymap"},
            "patch": {"skymap", "tract"}}
IMPLIES = {"physical_filter": {"band"}, "exposure": {"physical_filter", "day_obs", "group"},
           "visit": {"physical_filter", "day_obs"}}


def required_of(names: set[str]) -> tuple[str, ...]:
    """The dimensions that identify a data ID of ``names``: the named ones and what they
    require, less a named one that another implies (``{visit, band}`` is the visit's)."""
    required = set(names).union(*[REQUIRES.get(n, set()) for n in names])
    implied = set().union(*[IMPLIES.get(n, set()) for n in required])
    required -= implied - set().union(*[REQUIRES.get(n, set()) for n in required])
    return tuple(d for d in ORDER if d in required)


def minutes(span: Timespan | None) -> tuple[int | None, int | None] | None:
    if span is None:
        return None
    return tuple(None if t is None else round((t - T0).to_value("sec") / 60) for t in (span.begin, span.end))
