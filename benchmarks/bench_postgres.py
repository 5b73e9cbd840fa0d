"""PostgreSQL write paths: put_many, ingest, single puts, and 8 concurrent writers.

    python benchmarks/bench_postgres.py [--json FILE] [--quick] [--datasets N] [--puts N]
    python benchmarks/bench_postgres.py --writers-only [--rounds N] [--same-session] [--json FILE]  # writers alone
    python benchmarks/bench_postgres.py --bulk-only [--datasets N] [--json FILE]    # put_many and ingest alone

Needs ``SKYBUTLER_TEST_POSTGRES_URL`` (``.ci/services.sh`` provides one); files go to a
temporary directory (set ``TMPDIR=/dev/shm`` to keep the disk out of the figures).
Each figure is taken on a fresh repository in a schema of its own (dropped at the end)
holding the W1 records for the datasets written:

- ``put_many``: N ``metrics`` datasets (10-float dicts) in one call, one transaction;
- ``ingest``: N pre-written JSON files in one ``ingest`` call, transfer ``copy`` and ``direct``;
- ``single puts``: one dataset per ``put``, one writer process, and the SQL statements a put
  sends (its file placed first, all of them go to the server as one query, its BEGIN and
  COMMIT included: one round trip);
- ``8 writers``: eight processes putting one dataset per call into one RUN, and the ratio
  to one writer (``--writers-only`` takes this figure alone, ``--rounds N`` times in turn
  with one writer, and reports each round's ratio and their median: on a shared machine
  one round's ratio swings with what else runs).  Every writer process puts once before the clock starts: a process's first
  put imports the formatters (numpy, pyarrow: about a second of CPU), which would otherwise
  be counted eight times against the eight writers and once against the one.

Single puts depend on the server's durability settings, which the output names.  The
production setting is PostgreSQL's default, ``fsync=on`` and ``synchronous_commit=on`` with
the data directory on a real disk: each COMMIT then waits for its WAL to reach the disk, so
one writer spends most of a put waiting, and concurrent writers share those flushes (group
commit): 8 writers gain more than the CPUs alone would give.  The CI server runs with
``fsync=off`` on a tmpfs (a throwaway database): there a put waits on nothing but CPU, and on
a 2-core machine 8 writers cannot go beyond about twice one writer.  To measure the
production case, point ``SKYBUTLER_TEST_POSTGRES_URL`` at a cluster with default settings
whose data directory is on disk::

    eval "$(benchmarks/durable_postgres.sh start)"   # a throwaway durable cluster in /var/tmp
    python benchmarks/bench_postgres.py --writers-only --rounds 5
    benchmarks/durable_postgres.sh stop

Each writer process starts a session of its own (``setsid``), as separately started jobs
are.  Where the kernel shares the CPUs between sessions before processes
(``sched_autogroup``, on by default in many Linux kernels), writers left in this
process's session (``--same-session``) share one session's CPU however many they are:
against the server's session they get at most half the cores, and on a machine busy with
other sessions' work a 1/N share, the same share one writer gets, so their ratio measures
the scheduler, not the butler.  (On such a busy machine eight sessions in turn take eight
shares from the other work where one writer takes one: there too the ratio is more the
machine's than the butler's, and the split below says how much.)  For each count of writers the output splits a writer's
wall time per put (from ``/proc/PID/schedstat``, of the writer and of the server
backends it uses) into CPU, time runnable but waiting for a CPU, and the rest, blocked:
waiting on a WAL flush, a lock or I/O.  Contention between writers shows as blocked time
growing with the writers; a machine short of CPU, as waiting for a CPU.  The CPU time of a put
(client and server, ``cpu_ms_per_put_*``) bounds the ratio where a put waits on nothing but
CPU: eight writers can do at most the machine's CPUs times one writer's CPU time per put over
eight writers' (``writers_8_cpu_ceiling``), the number of CPUs less what eight writers spend
more per put (each runs colder: sixteen processes take turns on the CPUs at every round trip);
on a 2-core machine about 1.4-1.6x, never 3x.  One writer waiting on a WAL flush leaves the
CPUs idle meanwhile, and eight writers can pass the bound by that share; on a machine busy with
other work, eight sessions also take more of the CPUs than one (above), and pass it by more.

Every figure has wall-clock seconds, this process's (or the writers') CPU seconds and the
CPU seconds of the PostgreSQL server processes that served them (read from ``/proc``, so
only when the server runs on this host): on a shared machine the wall clock also counts
waiting for a CPU, and CPU time does not.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload as w  # noqa: E402
from skybutler import Butler  # noqa: E402

TARGETS = {"put_many_per_s": 10_000.0, "ingest_copy_per_s": 10_000.0, "writers_8_speedup": 3.0}
RUN = "bench/pg"


def timed(fn, server: w.ServerCpu | None = None) -> dict[str, Any]:
    """Run ``fn`` once; wall and CPU seconds of this process and of the server's backends."""
    server_before = server.seconds() if server else None
    cpu, wall = time.process_time(), time.perf_counter()
    count = fn()
    out = {"count": count, "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
    server_after = server.seconds() if server else None
    if server_before is not None and server_after is not None:
        out["server_cpu_seconds"] = server_after - server_before
    out["rate_per_s"] = w.rate(count, out["seconds"])
    out["rate_per_cpu_s"] = w.rate(count, out["cpu_seconds"] + out.get("server_cpu_seconds", 0.0))
    out["cpu_seconds_per_10k"] = (out["cpu_seconds"] + out.get("server_cpu_seconds", 0.0)) * 10_000 / max(count, 1)
    return out


def new_repo(work: Path, pg: str, scale: w.Scale, schemas: list[str]) -> Butler:
    schema = f"bench_pg_{uuid.uuid4().hex[:8]}"
    schemas.append(schema)
    butler = Butler.create(work / schema, registry=f"{pg}?schema={schema}", collections=[RUN])
    w.register_dimensions(butler, scale)
    w.register_metrics(butler)
    return butler


def bench_put_many(work: Path, pg: str, scale: w.Scale, schemas: list[str]) -> dict[str, Any]:
    with new_repo(work, pg, scale, schemas) as butler:
        items = [(w.metrics_payload(d["visit"], d["detector"]), d) for d in w.metrics_data_ids(scale)]
        server = w.ServerCpu(butler)
        out = timed(lambda: len(butler.put_many(w.METRICS_TYPE, items, run=RUN)), server)
        assert butler.query_datasets(w.METRICS_TYPE).count() == len(items)
    return out


def bench_ingest(work: Path, pg: str, scale: w.Scale, schemas: list[str]) -> dict[str, Any]:
    source = work / "ingest_source"
    source.mkdir()
    items = []
    for d in w.metrics_data_ids(scale):
        path = source / f"m_{d['visit']}_{d['detector']}.json"
        path.write_text(json.dumps(w.metrics_payload(d["visit"], d["detector"])))
        items.append((path, d))
    out = {}
    with new_repo(work, pg, scale, schemas) as butler:
        server = w.ServerCpu(butler)
        for mode in ("copy", "direct"):
            out[mode] = timed(lambda: len(butler.ingest(w.METRICS_TYPE, items, run=f"{RUN}/{mode}", transfer=mode)),
                              server)
    return out


def scheduled(pids: list[int]) -> tuple[float, float] | None:
    """Seconds ``pids`` have run on a CPU and waited, runnable, for one (``/proc/PID/schedstat``);
    None where the kernel keeps no such figures or a process is not on this host."""
    run = wait = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/schedstat").read_text().split()
        except OSError:
            return None
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


def autogroups() -> bool:
    """Whether the kernel shares the CPUs between sessions before processes (``sched_autogroup``)."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def _writer(root: str, data_ids: list[dict[str, Any]], start: Any, finished: Any, own_session: bool) -> None:
    if own_session:  # a scheduling group of its own, as a separately started job has (see the docstring)
        os.setsid()
    butler = Butler(root, run=RUN)
    server = w.ServerCpu(butler)
    first, *rest = data_ids  # a first put, untimed, imports what a put needs (formatters, numpy)
    butler.put(w.metrics_payload(first["visit"], first["detector"]), w.METRICS_TYPE, **first)
    start.wait()  # every writer has imported, opened the repository and put once
    server.seconds()  # the backends this writer uses, its read cache's watcher included
    backends = sorted(server.pids)
    cpu, began, served = time.process_time(), time.time(), server.seconds()
    sched = scheduled([os.getpid()]), scheduled(backends)
    for data_id in rest:
        butler.put(w.metrics_payload(data_id["visit"], data_id["detector"]), w.METRICS_TYPE, **data_id)
    ended = time.time()
    sched_after = scheduled([os.getpid()]), scheduled(backends)
    split = None
    if None not in sched + sched_after and set(server.pids) == set(backends):
        (c0, s0), (c1, s1) = sched, sched_after
        split = {"client_cpu": c1[0] - c0[0], "client_waiting_for_cpu": c1[1] - c0[1],
                 "server_cpu": s1[0] - s0[0], "server_waiting_for_cpu": s1[1] - s0[1]}
        split["blocked"] = ended - began - sum(split.values())
    finished.put((began, ended, time.process_time() - cpu,
                  None if served is None else server.seconds() - served, len(rest), split))
    butler.close()


def time_writers(root: Path, data_ids: list[dict[str, Any]], n_proc: int, own_session: bool = True) -> dict[str, Any]:
    """``n_proc`` processes put ``data_ids`` between them, one put per call."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(n_proc + 1)
    finished = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(root), data_ids[i::n_proc], start, finished, own_session),
                         daemon=True)  # ended with this process: in a session of their own no ^C reaches them
             for i in range(n_proc)]
    for p in procs:
        p.start()
    start.wait()
    reports = [finished.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a writer process failed with exit code {p.exitcode}")
    seconds = max(r[1] for r in reports) - min(r[0] for r in reports)
    count = sum(r[4] for r in reports)
    out = {"count": count, "processes": n_proc, "own_sessions": own_session, "seconds": seconds,
           "cpu_seconds": sum(r[2] for r in reports)}
    if all(r[3] is not None for r in reports):
        out["server_cpu_seconds"] = sum(r[3] for r in reports)
    if all(r[5] is not None for r in reports):  # where each writer's wall time per put went
        out["per_put_ms"] = {key: sum(r[5][key] for r in reports) * 1000 / count for key in reports[0][5]}
    out["rate_per_s"] = w.rate(count, seconds)
    out["rate_per_cpu_s"] = w.rate(count, out["cpu_seconds"] + out.get("server_cpu_seconds", 0.0))
    return out


def statements_per_put(butler: Butler, data_id: dict[str, Any]) -> dict[str, int]:
    """What one put (after a first put of its RUN) sends to the server: statements, how many of
    them went in a pipeline or together in one query, and COMMITs (sent with the rows or psycopg's
    own), counted at psycopg's cursor; and round trips, the times
    the client waited for the server's answer (a Sync or a simple Query in libpq's protocol trace)."""
    import psycopg
    import sqlalchemy as sa

    seen = {"statements": 0, "pipelined": 0, "together": 0, "commits": 0, "round_trips": 0}
    trace = tempfile.TemporaryFile("w+")
    traced: list[Any] = []

    def on_checkout(dbapi, *_):
        if dbapi not in traced:  # a second trace() would drop what the first one buffered
            dbapi.pgconn.trace(trace.fileno())
            traced.append(dbapi)

    originals = {name: getattr(psycopg.Cursor, name) for name in ("execute", "executemany", "copy")}
    commit = psycopg.Connection.commit

    def spy(original):
        def counted(self, query, *args, **kwargs):
            parts = str(query).split("; ")  # statements sent together as one query (none has "; " in its text)
            seen["statements"] += len(parts)
            seen["together"] += len(parts) if len(parts) > 1 else 0
            seen["pipelined"] += self.connection.info.pipeline_status != psycopg.pq.PipelineStatus.OFF
            seen["commits"] += sum(p.lstrip().upper().startswith("COMMIT") for p in parts)
            return original(self, query, *args, **kwargs)
        return counted

    def counted_commit(self):  # a COMMIT of psycopg's own: none when the pipeline has committed
        seen["commits"] += self.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        return commit(self)

    try:
        for name, original in originals.items():
            setattr(psycopg.Cursor, name, spy(original))
        psycopg.Connection.commit = counted_commit
        sa.event.listen(butler.registry.db.engine, "checkout", on_checkout)
        butler.put(w.metrics_payload(data_id["visit"], data_id["detector"]), w.METRICS_TYPE, run=RUN, **data_id)
    finally:
        for name, original in originals.items():
            setattr(psycopg.Cursor, name, original)
        psycopg.Connection.commit = commit
        sa.event.remove(butler.registry.db.engine, "checkout", on_checkout)
        for dbapi in traced:
            dbapi.pgconn.untrace()
    with trace:
        trace.seek(0)
        messages = [line.rstrip("\n").split("\t")[1:4] for line in trace]  # F (client) or B, length, type
        seen["round_trips"] = sum(m[0] == "F" and m[2] in ("Sync", "Query") for m in messages if len(m) == 3)
    return seen


def bench_single_puts(work: Path, pg: str, scale: w.Scale, schemas: list[str], n_puts: int,
                      rounds: int = 1, own_sessions: bool = True) -> dict[str, Any]:
    """One writer's ``n_puts`` single puts, then eight writers' ``4 * n_puts``, ``rounds`` times."""
    ids = list(w.metrics_data_ids(scale))
    with new_repo(work, pg, scale, schemas) as butler:
        root = butler.root
        # the RUN registered, the visit and detector of ids[51] cached, and a single put's statement
        # prepared on the connection (as it is for every put of a writer but its first)
        warm = [ids[0], ids[50]]
        butler.put_many(w.METRICS_TYPE, [(w.metrics_payload(d["visit"], d["detector"]), d) for d in warm], run=RUN)
        butler.put(w.metrics_payload(ids[1]["visit"], ids[1]["detector"]), w.METRICS_TYPE, run=RUN, **ids[1])
        per_put = statements_per_put(butler, ids[51])
    rest = [d for n, d in enumerate(ids) if n not in (0, 1, 50, 51)]
    taken = []
    for r in range(rounds):
        mine = rest[5 * n_puts * r:5 * n_puts * (r + 1)]
        one = time_writers(root, mine[:n_puts], 1, own_sessions)
        eight = time_writers(root, mine[n_puts:], 8, own_sessions)
        taken.append({"writers_1": one, "writers_8": eight, "writers_8_speedup": eight["rate_per_s"] / one["rate_per_s"],
                      "writers_8_cpu_ceiling": cpu_ceiling(one, eight)})
    with Butler(root, collections=[RUN]) as butler:
        assert butler.query_datasets(w.METRICS_TYPE).count() == 4 + 5 * n_puts * rounds, \
            "a dataset was lost or duplicated"
    middle = sorted(taken, key=lambda t: t["writers_8_speedup"])[(rounds - 1) // 2]  # the median round (lower)
    return {"per_put": per_put, **middle, "rounds": taken,
            "writers_8_speedup_each_round": [t["writers_8_speedup"] for t in taken]}


def cpu_ms_per_put(figure: dict[str, Any]) -> dict[str, float] | None:
    """CPU milliseconds a put took in the writers (``process_time``) and in their server backends."""
    if "server_cpu_seconds" not in figure:
        return None
    return {"client": figure["cpu_seconds"] * 1000 / figure["count"],
            "server": figure["server_cpu_seconds"] * 1000 / figure["count"]}


def cpu_ceiling(one: dict[str, Any], eight: dict[str, Any]) -> float | None:
    """The most eight writers can do over one on this machine's CPUs when a put waits on nothing
    but CPU: its CPUs times the CPU time (client and server) of one writer's put, over that of a
    put of eight writers.  From CPU times alone, so the same on a busy machine; one writer that
    also waits (a WAL flush on a disk) leaves the CPUs idle meanwhile, and eight can pass this
    by that share."""
    cpu_1, cpu_8 = cpu_ms_per_put(one), cpu_ms_per_put(eight)
    if cpu_1 is None or cpu_8 is None:
        return None
    return len(os.sched_getaffinity(0)) * (cpu_1["client"] + cpu_1["server"]) / (cpu_8["client"] + cpu_8["server"])


def server_settings(pg: str) -> dict[str, str]:
    """The settings that decide what a COMMIT waits for, and the server's version."""
    import sqlalchemy as sa

    engine = sa.create_engine(pg.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        out = {name: conn.exec_driver_sql(f"SHOW {name}").scalar_one()
               for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "commit_delay")}
    engine.dispose()
    return out


def durability(settings: dict[str, str]) -> str:
    if settings["fsync"] == "on" and settings["synchronous_commit"] == "on":
        return "durable commits (fsync=on, synchronous_commit=on: the production setting)"
    return (f"commits not flushed (fsync={settings['fsync']}, synchronous_commit={settings['synchronous_commit']}: "
            "a throwaway server's setting, not production's)")


def drop_schemas(pg: str, schemas: list[str]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(pg.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        for schema in schemas:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


def line(label: str, figure: dict[str, Any]) -> str:
    server = figure.get("server_cpu_seconds")
    return (f"  {label:22s} {figure['rate_per_s']:>9,.0f}/s  ({figure['count']:,} in {figure['seconds']:.2f} s wall; "
            f"CPU {figure['cpu_seconds']:.2f} s client" + (f" + {server:.2f} s server" if server is not None else "")
            + f" = {figure['rate_per_cpu_s']:,.0f} per CPU-second"
            + (f", {figure['cpu_seconds_per_10k']:.2f} CPU-s per 10k" if "cpu_seconds_per_10k" in figure else "")
            + ")")


def split_line(n: int, ms: dict[str, float]) -> str:
    """Where a writer's wall time per put went: CPU, waiting for a CPU, and blocked (WAL flush, locks, I/O)."""
    return (f"  a put of {n} writer{'s' if n > 1 else ''}, ms: {ms['client_cpu']:.2f} client CPU + {ms['server_cpu']:.2f} "
            f"server CPU, {ms['client_waiting_for_cpu']:.2f} + {ms['server_waiting_for_cpu']:.2f} waiting for a CPU, "
            f"{ms['blocked']:.2f} the rest: blocked (WAL flush, locks, I/O) less client and server overlapping")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="2,000 datasets and 100 puts, for a smoke run")
    parser.add_argument("--datasets", type=int, default=20_000, help="datasets for put_many and ingest")
    parser.add_argument("--puts", type=int, default=400, help="single puts of one writer (8 writers put 4x as many)")
    parser.add_argument("--writers-only", action="store_true",
                        help="only the single puts of one writer and of eight, and their ratio (no put_many, ingest)")
    parser.add_argument("--bulk-only", action="store_true",
                        help="only put_many and ingest (no single puts): the bulk paths' figures alone")
    parser.add_argument("--rounds", type=int, default=1,
                        help="take the writers' figures this many times in turn; the median round is reported")
    parser.add_argument("--same-session", action="store_true",
                        help="leave the writer processes in this process's session (one scheduling group "
                             "for all of them where the kernel groups by session; see above)")
    args = parser.parse_args(argv)
    if args.writers_only and args.bulk_only:
        parser.error("--writers-only and --bulk-only leave nothing to measure together")
    pg = os.environ.get("SKYBUTLER_TEST_POSTGRES_URL")
    if not pg:
        parser.error("set SKYBUTLER_TEST_POSTGRES_URL (source .ci/services.sh) to a PostgreSQL database")
    n, n_puts = (2_000, 100) if args.quick else (args.datasets, args.puts)
    scale = w.Scale(n_visits=max(1, -(-n // 50)), n_detectors=50)
    settings = server_settings(pg)
    load_before = os.getloadavg()[0]
    schemas: list[str] = []
    with tempfile.TemporaryDirectory(prefix="skybutler-bench-pg-") as tmp:
        work = Path(tmp)
        try:
            put_many = None if args.writers_only else bench_put_many(work, pg, scale, schemas)
            ingest = None if args.writers_only else bench_ingest(work, pg, scale, schemas)
            puts_scale = w.Scale(n_visits=max(2, -(-(4 + 5 * n_puts * args.rounds) // 50)))
            singles = None if args.bulk_only else bench_single_puts(work, pg, puts_scale, schemas, n_puts,
                                                                     args.rounds, not args.same_session)
        finally:
            drop_schemas(pg, schemas)
    figures = {} if singles is None else {"puts_per_s_1_writer": singles["writers_1"]["rate_per_s"],
                                          "puts_per_s_8_writers": singles["writers_8"]["rate_per_s"],
                                          "writers_8_speedup": singles["writers_8_speedup"],
                                          "writers_8_cpu_ceiling": singles["writers_8_cpu_ceiling"],
                                          "cpu_ms_per_put_1_writer": cpu_ms_per_put(singles["writers_1"]),
                                          "cpu_ms_per_put_8_writers": cpu_ms_per_put(singles["writers_8"])}
    if put_many is not None and ingest is not None:
        figures.update({"put_many_per_s": put_many["rate_per_s"], "ingest_copy_per_s": ingest["copy"]["rate_per_s"],
                        "ingest_direct_per_s": ingest["direct"]["rate_per_s"]})
    doc = {"benchmark": "bench_postgres", "quick": args.quick, "writers_only": args.writers_only,
           "bulk_only": args.bulk_only,
           "datasets": scale.n_datasets, **w.environment(), **figures, "targets": TARGETS,
           "targets_met": {k: figures[k] >= v for k, v in TARGETS.items() if k in figures},
           "timings": {"put_many": put_many, "ingest": ingest, "single_puts": singles},
           "server_settings": settings, "sched_autogroup": autogroups(), "tmpdir": tempfile.gettempdir(), "load_avg_1m_before": load_before,
           "load_avg_1m_after": os.getloadavg()[0], "peak_rss_bytes": w.peak_rss_bytes()}
    print(f"PostgreSQL write paths ({scale.n_datasets:,} datasets; files in {tempfile.gettempdir()}; "
          f"1-minute load {load_before:.1f} -> {doc['load_avg_1m_after']:.1f} on {os.cpu_count()} CPUs)")
    print(f"  server: PostgreSQL {settings['server_version']}, {durability(settings)}")
    if singles is not None:
        print(f"  writer processes: {'in this session' if args.same_session else 'each in a session of its own'}"
              + ("; the kernel shares the CPUs between sessions first (sched_autogroup)" if autogroups() else ""))
    if put_many is not None and ingest is not None:
        print(line("put_many", put_many))
        print(line("ingest copy", ingest["copy"]))
        print(line("ingest direct", ingest["direct"]))
    if singles is None:
        w.save_json(doc, args.json)
        return 0
    print(line("puts, 1 writer", singles["writers_1"]))
    print(line("puts, 8 writers", singles["writers_8"]))
    for n in (1, 8):
        if "per_put_ms" in singles[f"writers_{n}"]:
            print(split_line(n, singles[f"writers_{n}"]["per_put_ms"]))
    per_put = singles["per_put"]
    print(f"  8 writers / 1 writer: {singles['writers_8_speedup']:.2f}x; one put sends {per_put['statements']} "
          f"statements ({per_put['pipelined']} of them in a pipeline, {per_put['together']} in one query), "
          f"{per_put['commits']} of them a COMMIT, "
          f"in {per_put['round_trips']} round trips")
    one, eight = (cpu_ms_per_put(singles[f"writers_{n}"]) for n in (1, 8))
    if one is not None and eight is not None:
        print(f"  CPU per put, ms: 1 writer {one['client']:.3f} client + {one['server']:.3f} server, 8 writers "
              f"{eight['client']:.3f} + {eight['server']:.3f}: the CPUs allow 8 writers at most "
              f"{singles['writers_8_cpu_ceiling']:.2f}x one writer on a machine doing nothing else, where a put "
              "waits on nothing but CPU (CPUs x one writer's CPU per put / 8 writers' CPU per put)")
    if args.rounds > 1:
        print("  ratio of each round: " + ", ".join(f"{r:.2f}x" for r in singles["writers_8_speedup_each_round"])
              + " (the median round is the one above)")
    w.save_json(doc, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
