"""A Rubin butler export (export.yaml directory and zip, made by the real lsst-daf-butler)
imported into a server URL: the repository ends as a local import of the same export leaves its
twin (datasets, file bytes, collections with chains, TAGGED members and CALIBRATION validity,
dimension records), in batches under the server's request-size limit; and an import cut short
resumes without sending again what went in."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import PermissionDeniedError, ServerError
from skybutler.interchange import RubinImportError, import_rubin
from skybutler.repository_transfer import import_datasets

pytest.importorskip("fastapi")
from test_rubin_interchange import assert_same_repository, rubin  # noqa: E402,F401 - the module's fixture

LIMIT = 3_500  # bytes a request: the export's records and files take several batches


def _state(butler: Butler) -> tuple:
    """Everything an import writes, in plain values: datasets with their file bytes, collections
    (type, children, doc), TAGGED members, validity ranges, dataset types and every record."""
    runs = [c.name for c in butler.collections.query("*", ["run"])]
    types = sorted((t.name, t.dimensions, t.storage_class, t.is_calibration) for t in butler.query_dataset_types())
    datasets, members, validity = [], [], []
    for name, _, _, is_calibration in types:
        for ref in butler.query_datasets(name, collections=runs, find_first=False):
            datasets.append((ref.id, ref.run, name, tuple(sorted(ref.data_id.required.items())),
                             butler.download(ref) if butler._remote else _bytes(butler, ref)))
        for info in butler.collections.query("*", ["tagged"]):
            members += [(info.name, r.id) for r in butler.query_datasets(name, collections=info.name)]
        for info in butler.collections.query("*", ["calibration"]) if is_calibration else []:
            validity += [(info.name, r.id, span.to_ns()) for r, span in butler.collections.validity(info.name, name)]
    collections = sorted((c.name, c.type.value, c.children, c.doc) for c in butler.collections.query("*"))
    records = {element: sorted(json.dumps(dict(r.items()), default=str) for r in butler.query_dimension_records(element))
               for element in ("instrument", "physical_filter", "band", "detector", "day_obs", "group", "exposure",
                               "visit", "visit_system", "visit_definition", "visit_system_membership",
                               "visit_detector_region", "skymap", "tract", "patch")}
    return sorted(datasets), collections, sorted(members), sorted(validity), types, records


def _bytes(butler: Butler, ref) -> bytes:
    import fsspec

    with fsspec.open(butler.get_uri(ref), "rb") as stream:
        return stream.read()


class Counting(httpx.BaseTransport):
    """The client's transport, counting each request's body bytes by path; ``fail_at``: the
    number of the ``POST /import`` request that fails as a dropped connection would (never sent)."""

    def __init__(self, inner: httpx.BaseTransport, fail_at: int | None = None):
        self.inner, self.fail_at = inner, fail_at
        self.sent: list[list] = []  # [path, bytes]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rsplit("/api/v1/", 1)[-1]
        if path == "import" and self.fail_at is not None:
            if sum(1 for p, _ in self.sent if p == "import") + 1 == self.fail_at:
                raise httpx.ConnectError("connection dropped (test)", request=request)
        entry = [path, 0]
        self.sent.append(entry)
        body = request.stream

        class Stream(httpx.SyncByteStream):
            def __iter__(self):
                for chunk in body:
                    entry[1] += len(chunk)
                    yield chunk

        request.stream = Stream()
        return self.inner.handle_request(request)

    def bytes_to(self, path: str) -> list[int]:
        return [n for p, n in self.sent if p == path]


def _counted(client: Butler, fail_at: int | None = None) -> Counting:
    counting = Counting(client._remote.http._transport, fail_at)
    client._remote.http._transport = counting
    return counting


@pytest.fixture
def target(make_butler):
    """An empty repository served with a small request-size limit, with an admin ``boss``
    (yields the repository, the URL and boss's token)."""
    repo = make_butler("target")
    access = Access(repo.registry.access)
    access.add_user("boss", admin=True)
    with running_server(repo.root, max_request_bytes=LIMIT) as url:
        yield repo, url, access.create_token("boss")


@pytest.mark.parametrize("form", ["export", "zip"])
def test_a_rubin_export_through_a_server_is_the_local_import(rubin, target, make_butler, form):  # noqa: F811
    repo, url, token = target
    twin = make_butler("twin")
    expected = import_rubin(twin, rubin[form])
    boss = Butler(url, token=token)
    counting = _counted(boss)
    assert import_datasets(boss, rubin[form]) == expected == len(rubin["refs"])
    assert len(counting.bytes_to("import")) >= 3 and max(counting.bytes_to("import")) <= LIMIT  # batched
    assert _state(repo) == _state(twin)
    if form == "export":  # the Rubin butler itself as the oracle too
        assert_same_repository(rubin["butler"], repo)
    # Read back through the server as a user would: through the chain, and a calibration by time.
    assert boss.get("summary", instrument="Cam", visit=2, detector=1, collections="Cam/defaults" if form == "export"
                    else "Cam/run1") == {"visit": 2, "detector": 1, "values": [1.0, 1]}
    # Again: everything is there; what is sent is the questions, and one manifest (types and RUNs) alone.
    before = len(counting.bytes_to("import"))
    assert import_datasets(boss, rubin[form]) == 0
    again = counting.bytes_to("import")[before:]
    assert len(again) == 1 and again[0] < 1_000
    assert _state(repo) == _state(twin)


def test_the_import_command_takes_a_rubin_export_and_a_server_url(rubin, target, make_butler):  # noqa: F811
    repo, url, token = target
    result = CliRunner().invoke(cli, ["import", url, str(rubin["export"])], env={"SKYBUTLER_TOKEN": token})
    assert result.exit_code == 0, result.output
    assert f"imported {len(rubin['refs'])} datasets" in result.output
    twin = make_butler("twin")
    import_rubin(twin, rubin["export"])
    assert _state(repo) == _state(twin)


def test_a_rubin_import_cut_short_resumes_without_sending_again_what_went_in(rubin, target, make_butler):  # noqa: F811
    """The connection drops at batch k+1: batches 1..k stay and the error says so; the same
    import again sends none of their records or files -- those batches are not sent at all,
    only the questions of what is there -- and the repository ends as the twin's."""
    from skybutler.remote import imports

    repo, url, token = target
    twin = make_butler("twin")
    import_rubin(twin, rubin["export"])
    boss = Butler(url, token=token)
    k = 3
    counting = _counted(boss, fail_at=k + 1)
    with pytest.raises(ServerError) as caught:
        import_datasets(boss, rubin["export"])
    message = str(caught.value)
    assert f"batch {k + 1} of" in message and "run the same import again" in message
    n_batches = int(message.split(f"batch {k + 1} of ", 1)[1].split(";")[0])
    first = counting.bytes_to("import")
    assert len(first) == k and n_batches > k + 1
    went_in = {str(r.id) for name in ("summary", "cat", "bias", "deepSummary")
               for r in repo.query_datasets(name, collections=["Cam/run1", "Cam/calib/run"], find_first=False)}
    assert went_in  # batches 1..k brought datasets, not only records

    resent: list[str] = []
    upload = imports._Batch.upload

    def recorded(batch, manifest):
        resent.extend(json.loads(line)["id"] for line in batch.datasets)
        return upload(batch, manifest)

    imports._Batch.upload = recorded
    counting.fail_at = None
    try:
        again = _counted(boss)
        assert import_datasets(boss, rubin["export"]) == len(rubin["refs"]) - len(went_in)
    finally:
        imports._Batch.upload = upload
    assert not set(resent) & went_in and len(resent) == len(rubin["refs"]) - len(went_in)
    assert len(again.bytes_to("import")) == n_batches - k  # batches 1..k: not one byte of theirs again
    asked = sum(again.bytes_to("import/present"))
    print(f"first run: {k} batches, {sum(first)} bytes; rerun: {sum(again.bytes_to('import'))} bytes in "
          f"{n_batches - k} batches, {asked} bytes of questions for {n_batches} batches")
    assert asked < sum(first)  # the questions cost less than what they save
    assert _state(repo) == _state(twin)


def test_memberships_failing_keep_the_datasets_and_the_same_import_finishes(rubin, target, make_butler):  # noqa: F811
    """A chain naming a collection the user may not see: the datasets go in, the memberships
    step (one transaction) does not, the error says how to finish; once allowed, the same
    import finishes it and the repository is the twin's."""
    repo, url, token = target
    access = Access(repo.registry.access)
    access.add_user("ana")
    ana = Butler(url, token=access.create_token("ana"))
    with pytest.raises(PermissionDeniedError):  # ana may write none of the export's collections: nothing goes in
        import_datasets(ana, rubin["export"])
    assert repo.collections.query("*") == []
    boss = Butler(url, token=token)
    real = boss.collections.set_chain

    def refused(name, children):
        raise PermissionDeniedError(f"no (test): {name}")

    boss.collections.set_chain = refused
    with pytest.raises(PermissionDeniedError) as caught:
        import_datasets(boss, rubin["export"])
    assert "datasets are in" in str(caught.value) and "run the same import again" in str(caught.value)
    assert repo.collections.get_chain("Cam/defaults") == ()
    assert not list(repo.query_datasets("summary", collections="Cam/best"))  # the TAGGED members with the chain
    boss.collections.set_chain = real
    assert import_datasets(boss, rubin["export"]) == 0
    twin = make_butler("twin")
    import_rubin(twin, rubin["export"])
    assert _state(repo) == _state(twin)


def test_a_broken_rubin_export_is_refused_on_the_client_before_anything_is_sent(rubin, target, tmp_path):  # noqa: F811
    import shutil

    repo, url, token = target
    shutil.copytree(rubin["export"], tmp_path / "export")
    text = (tmp_path / "export" / "export.yaml").read_text()
    missing = next(line.split("path: ")[1] for line in text.splitlines() if "path: " in line and "/cat/" in line)
    (tmp_path / "export" / missing).unlink()
    boss = Butler(url, token=token)
    counting = _counted(boss)
    with pytest.raises(RubinImportError, match="nothing was imported") as caught:
        import_datasets(boss, tmp_path / "export")
    assert caught.value.problems == [f"{missing}: file missing from the export"]
    assert counting.sent == [] and repo.collections.query("*") == []


def test_a_whole_rubin_repository_through_a_server_is_its_export(rubin, target):  # noqa: F811
    """The Rubin repository's directory itself: the Rubin butler exports it on the client and
    that export is uploaded, as an export given directly would be."""
    repo, url, token = target
    boss = Butler(url, token=token)
    assert import_datasets(boss, rubin["export"].parent / "repo") == len(rubin["refs"])
    assert_same_repository(rubin["butler"], repo)



def test_pipeline_outputs_through_a_server_are_the_local_import(make_butler, tmp_path):
    """Read and kept datasets alike: the server holds what a local import of the same export holds."""
    from test_rubin_outputs import make_outputs_repo

    repo = make_butler("target")
    access = Access(repo.registry.access)
    access.add_user("boss", admin=True)
    rubin_butler, refs = make_outputs_repo(tmp_path / "rubin")
    with running_server(repo.root) as url:
        assert import_datasets(Butler(url, token=access.create_token("boss")), tmp_path / "rubin" / "export") \
            == len(refs)
    local = make_butler("local")
    import_rubin(local, tmp_path / "rubin" / "export")
    assert _state(repo) == _state(local)
    for ref in refs:
        (mine,) = repo.registry.refs_by_id([ref.id])
        assert _bytes(repo, mine) == rubin_butler.getURI(ref).read()
    (config,) = repo.query_datasets("isr_config", collections="Cam/pipeline/run")
    assert config.dataset_type.storage_class == "rubin:Config"
