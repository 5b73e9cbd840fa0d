"""export, import, transfer and retrieve-artifacts given a server URL: the same answers as on
the repository's path, only what the user may see going out, and an import that goes in whole
-- rights, records, IDs and quotas checked -- or not at all."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import populate
from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import (
    DatasetConflictError,
    DatasetNotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    SkybutlerError,
)
from skybutler.repository_transfer import export_datasets, import_datasets

pytest.importorskip("fastapi")


@pytest.fixture
def served(butler, make_butler, monkeypatch):
    """A source repository (three metrics in run/a, one in other/run) served, with an admin
    ``boss``, ``ana`` (reads other/*, writes her own area) and ``pat``, who reads
    everything but is outside the embargo's group; and an empty target repository served too."""
    butler.put_many("metrics", [({"v": v}, {"instrument": "Cam", "visit": v, "detector": 0}) for v in (1, 2, 3)],
                    run="run/a")
    butler.put({"v": 9}, "metrics", instrument="Cam", visit=1, detector=1, run="other/run")
    target = make_butler("target")
    tokens = {}
    for repo in (butler, target):
        access = Access(repo.registry.access)
        access.add_user("boss", admin=True)
        access.add_user("ana")
        access.grant("user", "ana", "other/*", "read")
        tokens[repo.root] = {name: access.create_token(name) for name in ("boss", "ana")}
    access = Access(butler.registry.access)
    access.add_user("pat")
    access.grant("user", "pat", "*", "read")
    access.add_embargo("metrics", "run/*", 80, ["rights"])
    tokens[butler.root]["pat"] = access.create_token("pat")
    monkeypatch.setenv("SKYBUTLER_TOKEN", tokens[butler.root]["boss"])
    with running_server(butler.root, clock=lambda: 0.0) as url, running_server(target.root) as target_url:
        yield butler, url, target, target_url, tokens


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def _tree(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` by relative path, with its content's hash (the lines of a
    JSON-lines file, and each element's records, taken in sorted order: an order means nothing there)."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".jsonl":
            items = []
            for line in data.splitlines():
                item = json.loads(line)
                items += [json.dumps([item["element"], r]) for r in item["records"]] if "records" in item else [line]
            data = "\n".join(sorted(map(str, items))).encode()
        out[str(path.relative_to(directory))] = hashlib.sha256(data).hexdigest()
    return out


def _runs(butler: Butler) -> list[str]:
    return [c.name for c in butler.collections.query("*", ["run"])]


def _contents(butler: Butler) -> list[tuple]:
    return sorted((r.id, r.run, r.dataset_type.name, tuple(r.data_id.required.items()), json.dumps(butler.get(r)))
                  for name in [t.name for t in butler.query_dataset_types()]
                  for r in butler.query_datasets(name, collections=_runs(butler), find_first=False))


def test_export_from_a_url_is_the_local_export(served, tmp_path):
    local, url, *_ = served
    _run("export", str(local.root), str(tmp_path / "here"), "-c", "run/a,other/run")
    _run("export", url, str(tmp_path / "there"), "-c", "run/a,other/run")
    assert _tree(tmp_path / "there") == _tree(tmp_path / "here")
    assert len((tmp_path / "there" / "export.datasets.jsonl").read_text().splitlines()) == 4
    for where in ("here", "there"):  # and the Rubin butler's export.yaml
        repo = str(local.root) if where == "here" else url
        _run("export", repo, str(tmp_path / f"rubin-{where}"), "-c", "run/a,other/run", "--format", "rubin")
    assert _tree(tmp_path / "rubin-there") == _tree(tmp_path / "rubin-here")


def test_an_export_from_a_url_never_replaces_a_file_and_finishes_a_killed_one(served, tmp_path):
    _, url, *_ = served
    out = tmp_path / "out"
    _run("export", url, str(out), "-c", "run/a")
    whole = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "export.json").unlink()  # as an export killed after placing its files leaves it
    _run("export", url, str(out), "-c", "run/a")  # its own files, already there, are taken
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == whole
    mine = tmp_path / "fresh" / next(out.rglob("*_1_0.json")).relative_to(out)
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"a person's own file")
    result = CliRunner().invoke(cli, ["export", url, str(tmp_path / "fresh"), "-c", "run/a"])
    assert result.exit_code != 0 and f"{mine} is already there" in result.output, result.output
    assert mine.read_bytes() == b"a person's own file"
    assert not [p for p in (tmp_path / "fresh").rglob(".*") if p.is_file()], "a partial download left behind"


def test_import_into_a_url_is_the_local_import(served, tmp_path, make_butler):
    local, _, target, target_url, tokens = served
    export_datasets(local, local.query_datasets("metrics", collections=["run/a", "other/run"], find_first=False),
                    tmp_path / "export")
    env = {"SKYBUTLER_TOKEN": tokens[target.root]["boss"]}
    assert "imported 4 datasets" in _run("import", target_url, str(tmp_path / "export"), env=env)
    oracle = make_butler("oracle")
    import_datasets(oracle, tmp_path / "export")
    assert _contents(target) == _contents(oracle) == _contents(local)
    assert "imported 0 datasets" in _run("import", target_url, str(tmp_path / "export"), env=env)  # IDs kept


@pytest.mark.parametrize("sides", ["url-to-path", "path-to-url", "url-to-url"])
def test_transfer_with_a_url_on_either_side(served, sides, make_butler):
    local, url, target, target_url, tokens = served
    if sides == "url-to-path":
        receiver = make_butler("receiver")
        _run("transfer", url, str(receiver.root), "-c", "run/a")
    else:
        receiver = target
        env = {"SKYBUTLER_SOURCE_TOKEN": tokens[local.root]["boss"],
               "SKYBUTLER_TARGET_TOKEN": tokens[target.root]["boss"]}
        _run("transfer", str(local.root) if sides == "path-to-url" else url, target_url, "-c", "run/a", env=env)
    assert _contents(receiver) == [c for c in _contents(local) if c[1] == "run/a"]


def test_retrieve_artifacts_from_a_url_is_the_local_copy(served, tmp_path):
    local, url, *_ = served
    for where in ("here", "there"):
        repo = str(local.root) if where == "here" else url
        _run("retrieve-artifacts", repo, str(tmp_path / where), "-c", "run/a,other/run", "--find-all")
        _run("retrieve-artifacts", repo, str(tmp_path / f"{where}-zip"), "-c", "run/a", "--zip")
    assert _tree(tmp_path / "there") == _tree(tmp_path / "here") and len(_tree(tmp_path / "here")) == 4
    assert [p.name for p in (tmp_path / "there-zip").iterdir()] == [p.name for p in (tmp_path / "here-zip").iterdir()]


def test_only_what_the_user_may_see_goes_out(served, tmp_path):
    """ana reads other/* only; pat reads everything but the embargo (frozen clock: still on) hides
    run/a's metrics from him; a dataset ID they may not see is missing (404), not forbidden."""
    local, url, _, _, tokens = served
    hidden = local.query_datasets("metrics", collections="run/a")
    for name in ("ana", "pat"):
        who = Butler(url, token=tokens[local.root][name])
        n = export_datasets(who, who.query_datasets("metrics", collections=_runs(who), find_first=False),
                            tmp_path / name)
        assert n == 1 and json.loads((tmp_path / name / "export.datasets.jsonl").read_text())["run"] == "other/run"
        assert len(list((tmp_path / name).rglob("*.json"))) == 2  # export.json and other/run's one file
        with pytest.raises(DatasetNotFoundError) as caught:
            export_datasets(who, hidden, tmp_path / f"{uuid.uuid4()}")
        assert caught.value.status == 404
        with pytest.raises(DatasetNotFoundError):
            who.retrieve_artifacts(hidden, tmp_path / "copies")
        # the files route on its own: one hidden ID among visible ones, and not a byte goes out
        visible = who.query_datasets("metrics", collections="other/run")
        with pytest.raises(DatasetNotFoundError, match=f"no dataset with ID {next(iter(hidden)).id}"):
            list(who._remote.stream_bytes("export/files", {"ids": [str(next(iter(visible)).id),
                                                                 str(next(iter(hidden)).id)]}))
    assert not (tmp_path / "copies").exists() or not any((tmp_path / "copies").rglob("*.json"))


def _unchanged(target: Butler) -> None:
    assert [c.name for c in target.collections.query("*")] == []
    assert [t.name for t in target.query_dataset_types()] == []
    for place in ("datastore", ".skybutler/uploads"):  # no file placed, no upload left behind
        directory = Path(target.root) / place
        assert not directory.exists() or not any(p.is_file() for p in directory.rglob("*")), place


def test_an_import_without_rights_writes_nothing(served, tmp_path):
    local, _, target, target_url, tokens = served
    export_datasets(local, local.query_datasets("metrics", collections="run/a"), tmp_path / "export")
    boss = Butler(target_url, token=tokens[target.root]["boss"])
    populate(boss)  # the records exist: what ana lacks is the right to write run/a
    ana = Butler(target_url, token=tokens[target.root]["ana"])
    with pytest.raises(PermissionDeniedError) as caught:
        import_datasets(ana, tmp_path / "export")
    assert caught.value.status == 403 and "run/a" in str(caught.value)
    _unchanged(target)


def test_an_import_bringing_records_needs_an_administrator(served, tmp_path):
    local, _, target, target_url, tokens = served
    _rename_runs(local, tmp_path / "export", "u/ana/copy")
    ana = Butler(target_url, token=tokens[target.root]["ana"])
    with pytest.raises(PermissionDeniedError, match="administrator may insert dimension records"):
        import_datasets(ana, tmp_path / "export")
    _unchanged(target)
    assert target.get_record("instrument", name="Cam") is None


def _rename_runs(local: Butler, directory: Path, run: str) -> None:
    """An export of run/a's metrics whose datasets go to ``run`` instead."""
    export_datasets(local, local.query_datasets("metrics", collections="run/a"), directory)
    manifest = json.loads((directory / "export.json").read_text())
    manifest["runs"] = [run]
    (directory / "export.json").write_text(json.dumps(manifest))
    lines = [json.loads(line) for line in (directory / "export.datasets.jsonl").open()]
    (directory / "export.datasets.jsonl").write_text("".join(json.dumps({**d, "run": run}) + "\n" for d in lines))


def test_an_import_over_quota_writes_nothing(served, tmp_path):
    local, _, target, target_url, tokens = served
    _rename_runs(local, tmp_path / "export", "u/ana/copy")
    populate(Butler(target_url, token=tokens[target.root]["boss"]))
    Access(target.registry.access).set_quota("user", "ana", max_datasets=2)
    ana = Butler(target_url, token=tokens[target.root]["ana"])
    with pytest.raises(QuotaExceededError) as caught:
        import_datasets(ana, tmp_path / "export")
    assert "u/ana" in str(caught.value)
    _unchanged(target)
    Access(target.registry.access).set_quota("user", "ana", max_datasets=3)
    assert import_datasets(ana, tmp_path / "export") == 3


def test_a_failure_mid_import_writes_nothing(served, tmp_path, monkeypatch):
    """One dataset a chunk: the first two chunks are in (rows and files) when the third's file
    turns out not to be what its formatter reads; everything goes back out."""
    import skybutler.repository_transfer as transfer

    local, _, target, target_url, tokens = served
    export_datasets(local, local.query_datasets("metrics", collections="run/a"), tmp_path / "export")
    last = json.loads((tmp_path / "export/export.datasets.jsonl").read_text().splitlines()[-1])
    (tmp_path / "export" / last["path"]).write_text("not JSON {")
    monkeypatch.setattr(transfer, "CHUNK", 1)
    with pytest.raises(SkybutlerError):
        import_datasets(Butler(target_url, token=tokens[target.root]["boss"]), tmp_path / "export")
    _unchanged(target)
    assert target.get_record("instrument", name="Cam") is None


def test_hostile_imported_ids_are_refused(served, tmp_path):
    """A deterministic (v5) ID that is not the one of its data ID, and a version-1 ID."""
    local, _, target, target_url, tokens = served
    boss = Butler(target_url, token=tokens[target.root]["boss"])
    export_datasets(local, local.query_datasets("metrics", collections="run/a"), tmp_path / "export")
    lines = (tmp_path / "export/export.datasets.jsonl").read_text().splitlines()
    for bad, message in ((uuid.uuid5(uuid.NAMESPACE_URL, "x"), "deterministic"), (uuid.uuid1(), "version-1")):
        entries = [json.loads(line) for line in lines]
        entries[0]["id"] = str(bad)
        (tmp_path / "export/export.datasets.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
        with pytest.raises(SkybutlerError, match=message):
            import_datasets(boss, tmp_path / "export")
        _unchanged(target)


@pytest.mark.parametrize("mode", ["dataid_type", "dataid_type_run"])
def test_an_import_takes_the_rubin_butlers_reproducible_ids(served, tmp_path, mode):
    """A version-5 ID made by the Rubin butler's DATAID_TYPE(_RUN) rule for its data ID is taken."""
    from skybutler.models import reproducible_dataset_id

    local, _, target, target_url, tokens = served
    boss = Butler(target_url, token=tokens[target.root]["boss"])
    refs = list(local.query_datasets("metrics", collections="run/a"))
    export_datasets(local, refs, tmp_path / "export")
    lines = (tmp_path / "export/export.datasets.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    first = next(r for r in refs if str(r.id) == entries[0]["id"])
    rubin_id = reproducible_dataset_id(mode, "metrics", first.data_id, first.run)
    entries[0]["id"] = str(rubin_id)
    (tmp_path / "export/export.datasets.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    import_datasets(boss, tmp_path / "export")
    assert rubin_id in {r.id for r in target.query_datasets("metrics", collections="run/a")}


def test_an_export_from_an_object_store_downloads_from_presigned_urls(butler, tmp_path):
    """With pre-signed URLs on, the export route hands one out per file and the client fetches the
    file from the object store itself (no token sent there); the export is the local one."""
    if butler.datastore.local:
        pytest.skip("pre-signed URLs are made by an object-store datastore (the PostgreSQL+S3 stack)")
    butler.put_many("metrics", [({"v": v}, {"instrument": "Cam", "visit": v, "detector": 0}) for v in (1, 2)])
    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    token = access.create_token("boss")
    refs = butler.query_datasets("metrics", collections="run/a")
    export_datasets(butler, refs, tmp_path / "here")
    with running_server(butler.root, presign_seconds=60) as url:
        remote = Butler(url, token=token)
        answer = remote._remote.post_json("export", {"ids": [str(r.id) for r in refs]})
        assert all("Signature" in item["url"] for item in answer["artifacts"])
        export_datasets(remote, remote.query_datasets("metrics", collections="run/a"), tmp_path / "there")
    assert _tree(tmp_path / "there") == _tree(tmp_path / "here")


def test_an_upload_naming_files_outside_itself_is_refused(served, tmp_path):
    """A dataset line naming a server file (``../``, absolute) or an upload framing one: refused
    before anything is read or written, and the files stay where they are."""
    from skybutler.remote import wire

    local, _, target, target_url, tokens = served
    export_datasets(local, local.query_datasets("metrics", collections="run/a"), tmp_path / "export")
    boss = Butler(target_url, token=tokens[target.root]["boss"])
    entries = [json.loads(line) for line in (tmp_path / "export/export.datasets.jsonl").open()]
    entries[0]["path"] = "../../butler.yaml"
    (tmp_path / "export/export.datasets.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    names = ["export.json", "export.records.jsonl", "export.datasets.jsonl"] + [e["path"] for e in entries[1:]]
    for framed, message in (([(n, tmp_path / "export" / n) for n in names], "was not uploaded"),
                            ([("../escape.json", tmp_path / "export/export.json")], "invalid uploaded file name")):
        with pytest.raises(SkybutlerError, match=message):
            boss._remote._send("POST", "import", content=wire.frame_files(framed))
        _unchanged(target)
    assert (Path(target.root) / "butler.yaml").exists() and not (Path(target.root).parent / "escape.json").exists()


def test_a_dataset_line_naming_a_run_the_manifest_does_not_is_checked_too(served, tmp_path):
    """The manifest lists only ana's own RUN, but one dataset line goes to run/a: refused (403)."""
    local, _, target, target_url, tokens = served
    _rename_runs(local, tmp_path / "export", "u/ana/copy")
    lines = [json.loads(line) for line in (tmp_path / "export/export.datasets.jsonl").open()]
    lines[-1]["run"] = "run/a"
    (tmp_path / "export/export.datasets.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    populate(Butler(target_url, token=tokens[target.root]["boss"]))
    with pytest.raises(PermissionDeniedError, match="run/a"):
        import_datasets(Butler(target_url, token=tokens[target.root]["ana"]), tmp_path / "export")
    _unchanged(target)


def test_an_imported_id_taken_by_a_dataset_the_user_may_not_see_is_refused_as_any_taken_id(served, tmp_path):
    """Skipping it would reveal it (the count imported, one fewer); writing over it is never done.
    The whole import is refused with the error an ID taken by another dataset gets, seen or not."""
    local, _, target, target_url, tokens = served
    boss = Butler(target_url, token=tokens[target.root]["boss"])
    populate(boss)
    boss.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    hidden = target.put({"secret": 1}, "metrics", instrument="Cam", visit=5, detector=0, run="secret/run")
    seen = target.put({"mine": 1}, "metrics", instrument="Cam", visit=5, detector=0, run="u/ana/other")
    _rename_runs(local, tmp_path / "export", "u/ana/copy")
    lines = (tmp_path / "export/export.datasets.jsonl").read_text().splitlines()
    ana = Butler(target_url, token=tokens[target.root]["ana"])
    before = _contents(target)
    answers = []
    for taken in (hidden.id, seen.id):
        entries = [json.loads(line) for line in lines]
        entries[0]["id"] = str(taken)
        (tmp_path / "export/export.datasets.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
        with pytest.raises(DatasetConflictError) as caught:
            import_datasets(ana, tmp_path / "export")
        answers.append((caught.value.status, str(caught.value).replace(str(taken), "ID")))
        assert _contents(target) == before and "u/ana/copy" not in _runs(target)
    assert answers[0] == answers[1] and "nothing of this upload was imported" in answers[0][1]
    (tmp_path / "export/export.datasets.jsonl").write_text("".join(line + "\n" for line in lines))
    assert import_datasets(ana, tmp_path / "export") == 3
    assert import_datasets(ana, tmp_path / "export") == 0  # her own datasets again: skipped


# -- an import bigger than the server's request-size limit: batches (remote/imports.py) --------

LIMIT = 12_000  # bytes a request: the export below (24 files of ~1.5 kB and its records) takes several


@pytest.fixture
def batched(butler, make_butler, tmp_path, monkeypatch):
    """An export of 24 metrics of about 1.5 kB each (two RUNs), a target repository served with a
    request-size limit it takes several batches to get under, its admin's butler, and the sizes
    (datasets per batch) of every import request sent."""
    from skybutler.remote import imports

    butler.put_many("metrics", [({"v": v, "d": d, "pad": "x" * 1500}, {"instrument": "Cam", "visit": v, "detector": d})
                                for v in range(1, 7) for d in range(3)], run="run/a")
    butler.put_many("metrics", [({"v": v, "pad": "y" * 1500}, {"instrument": "Cam", "visit": v, "detector": 3})
                                for v in range(1, 7)], run="run/b")
    export_datasets(butler, butler.query_datasets("metrics", collections=["run/a", "run/b"], find_first=False),
                    tmp_path / "export")
    target = make_butler("target")
    access = Access(target.registry.access)
    access.add_user("boss", admin=True)
    token = access.create_token("boss")
    sent: list[int] = []
    upload = imports._Batch.upload

    def counted(batch, manifest):
        sent.append(len(batch.datasets))
        return upload(batch, manifest)

    monkeypatch.setattr(imports._Batch, "upload", counted)
    with running_server(target.root, max_request_bytes=LIMIT) as url:
            yield tmp_path / "export", target, Butler(url, token=token), sent, url


def test_an_import_above_the_request_limit_goes_in_batches_and_equals_the_local_import(batched, make_butler):
    export, target, boss, sent, _ = batched
    told = []
    assert import_datasets(boss, export, progress=lambda done, total: told.append((done, total))) == 24
    assert len(sent) >= 4 and sum(sent) == 24 and told[-1] == (24, 24)
    oracle = make_butler("oracle")
    assert import_datasets(oracle, export) == 24
    assert _contents(target) == _contents(oracle) and len(_contents(oracle)) == 24
    assert import_datasets(boss, export) == 0  # every batch again: its IDs are there, skipped
    assert _contents(target) == _contents(oracle)


def test_a_file_above_the_request_limit_alone_refuses_the_import_naming_it(batched):
    export, target, boss, sent, url = batched
    entry = json.loads((export / "export.datasets.jsonl").read_text().splitlines()[5])
    (export / entry["path"]).write_text(json.dumps({"pad": "z" * LIMIT}))
    with pytest.raises(SkybutlerError) as caught:
        import_datasets(boss, export)
    message = str(caught.value)
    assert entry["path"] in message and f"limit of {LIMIT} bytes" in message and "\n" not in message
    assert sent == []  # refused before anything was sent
    shown = CliRunner().invoke(cli, ["import", url, str(export)], env={"SKYBUTLER_TOKEN": boss._remote.token})
    assert shown.exit_code == 1 and len(shown.stderr.strip().splitlines()) == 1 and entry["path"] in shown.stderr
    _unchanged(target)


def test_a_failed_batch_keeps_the_batches_before_it_and_the_same_import_resumes(batched, make_butler):
    """Batch 3's first file is not what its formatter reads: batches 1-2 stay, batch 3 and after
    are not in; the error says so; the same import, once the file is mended, ends where a local
    import of the whole export does (the IDs already there skipped through the server)."""
    export, target, boss, sent, _ = batched
    from skybutler.remote import imports

    plan = [len(b.datasets) for b in imports.batches(boss, export, LIMIT)[1]]
    assert len(plan) >= 4
    lines = (export / "export.datasets.jsonl").read_text().splitlines()
    bad = json.loads(lines[plan[0] + plan[1]])
    good = (export / bad["path"]).read_bytes()
    (export / bad["path"]).write_bytes(b"not JSON {" + b" " * (len(good) - 10))  # the same size: the same plan
    with pytest.raises(SkybutlerError) as caught:
        import_datasets(boss, export)
    message = str(caught.value)
    assert f"batch 3 of {len(plan)}" in message and f"{plan[0] + plan[1]} datasets" in message
    assert "run the same import again" in message
    assert f": {bad['path']}: not a readable json file" in message and "uploads" not in message  # named as exported
    stayed = {c[0] for c in _contents(target)}
    assert stayed == {uuid.UUID(json.loads(line)["id"]) for line in lines[:plan[0] + plan[1]]}
    (export / bad["path"]).write_bytes(good)
    before = len(sent)
    assert import_datasets(boss, export) == 24 - plan[0] - plan[1]
    assert sent[before:] == plan[2:]  # batches 1-2 are not sent again, records and files alike
    oracle = make_butler("oracle")
    import_datasets(oracle, export)
    assert _contents(target) == _contents(oracle)


def _ana_beside_a_hidden_and_an_own_dataset(target, url):
    """User ana on the server, a metrics dataset she may not see (secret/run) and one of hers
    (u/ana/other) with the same data ID; returns her remote butler and the two refs."""
    access = Access(target.registry.access)
    access.add_user("ana")
    ana = Butler(url, token=access.create_token("ana"))
    populate(target)
    target.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    hidden = target.put({"secret": 1}, "metrics", instrument="Cam", visit=5, detector=0, run="secret/run")
    own = target.put({"mine": 1}, "metrics", instrument="Cam", visit=5, detector=0, run="u/ana/other")
    return ana, hidden, own


def test_an_id_taken_in_a_later_batch_refuses_that_batch_alike_seen_or_not(batched):
    """ana imports into her area; batch 2 brings an ID held by a dataset she may not see, then by
    one of hers that is another dataset: the same 409 both times, batch 1 in, batch 2 not."""
    from skybutler.remote import imports

    export, target, boss, sent, url = batched
    ana, hidden, seen = _ana_beside_a_hidden_and_an_own_dataset(target, url)
    manifest = json.loads((export / "export.json").read_text())
    (export / "export.json").write_text(json.dumps({**manifest, "runs": ["u/ana/copy"]}))
    entries = [{**json.loads(line), "run": "u/ana/copy"} for line in (export / "export.datasets.jsonl").open()]
    plan = [len(b.datasets) for b in imports.batches(ana, export, LIMIT)[1]]
    answers = []
    for taken in (hidden.id, seen.id):
        entries[plan[0]]["id"] = str(taken)
        (export / "export.datasets.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
        with pytest.raises(DatasetConflictError) as caught:
            import_datasets(ana, export)
        answers.append((caught.value.status, str(caught.value).replace(str(taken), "ID")))
        assert {r.id for r in target.query_datasets("metrics", collections="u/ana/copy")} == \
            {uuid.UUID(e["id"]) for e in entries[:plan[0]]}
    assert answers[0] == answers[1] and answers[0][0] == 409 and "batch 2 of" in answers[0][1]


def test_asking_what_an_import_would_find_tells_no_more_than_the_import(batched):
    """``POST /import/present`` (a resumed import's question) judges as the import does: a RUN
    the user may not write is 403; an ID held by a dataset they may not see, or by another
    dataset of theirs, is the same 409; their own dataset, and records, are told as present."""
    export, target, boss, sent, url = batched
    ana, hidden, other = _ana_beside_a_hidden_and_an_own_dataset(target, url)
    mine = target.put({"mine": 2}, "metrics", instrument="Cam", visit=5, detector=1, run="u/ana/copy")
    types = [target.get_dataset_type("metrics").to_dict()]

    def ask(who, run, taken, data_id):
        line = {"id": str(taken), "type": "metrics", "run": run, "data_id": data_id}
        return who._remote.post_json("import/present", {"dataset_types": types, "datasets": [line], "records": [
            {"element": "instrument", "identities": [["Cam"], ["Nope"]]}]})

    with pytest.raises(PermissionDeniedError):
        ask(ana, "secret/run", uuid.uuid4(), {"instrument": "Cam", "visit": 5, "detector": 0})
    answers = []
    for taken in (hidden.id, other.id):
        with pytest.raises(DatasetConflictError) as caught:
            ask(ana, "u/ana/copy", taken, {"instrument": "Cam", "visit": 5, "detector": 0})
        answers.append((caught.value.status, str(caught.value).replace(str(taken), "ID")))
    assert answers[0] == answers[1] and answers[0][0] == 409
    assert ask(ana, "u/ana/copy", mine.id, {"instrument": "Cam", "visit": 5, "detector": 1}) == {
        "datasets": [str(mine.id)], "records": [[0]]}
    assert ask(ana, "u/ana/copy", uuid.uuid4(), {"instrument": "Cam", "visit": 5, "detector": 1}) == {
        "datasets": [], "records": [[0]]}
