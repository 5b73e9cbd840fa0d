"""The repository config, butler.yaml: validated on open, errors that name the file, line and
key, and a config-dump that loads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.errors import ConfigError

# (butler.yaml text, the line and key the error must name, a part of the reason)
BROKEN = {
    "unknown key": ("datastore: datastore\nchecksums: xxh3\n", "line 2: checksums", "unknown key"),
    "unclosed list": ("datastore: datastore\ntemplates: [a, b\n", "line 3, column 1", "not valid YAML"),
    "tab indentation": ("datastore: datastore\ntemplates:\n\tcalexp: x\n", "line 3, column 1", "not valid YAML"),
    "not a mapping": ("- datastore\n- registry\n", "line 1", "must be a mapping of settings"),
    "registry not a string": ("datastore: datastore\nregistry: 5\n", "line 2: registry", "valid string"),
    "registry not a URL": ("datastore: datastore\nregistry: my-database\n", "line 2: registry",
                           "starts with sqlite:/// or postgresql://"),
    "registry password": ("datastore: datastore\nregistry: postgresql://ana:secret@host/db\n", "line 2: registry",
                          "holds a password"),
    "unknown checksum": ("datastore: datastore\nchecksum: md5\n", "line 2: checksum", "unknown checksum algorithm"),
    "verify_checksums not a bool": ("datastore: datastore\nverify_checksums: maybe\n", "line 2: verify_checksums",
                                    "valid boolean"),
    "template not a string": ("datastore: datastore\ntemplates:\n  calexp: 5\n", "line 3: templates.calexp",
                              "valid string"),
    "template without fields": ("datastore: datastore\ntemplates:\n  calexp: fixed/name\n",
                                "line 3: templates.calexp", "has no fields"),
    "nested retention key": ("datastore: datastore\nretention:\n  policies:\n    - keep_days: 3\n      acton: cold\n",
                             "line 5: retention.policies[0].acton", "unknown key"),
    "a key given twice": ("datastore: datastore\nchecksum: xxh3\nchecksum: blake2b\n", "line 3: checksum",
                          "given twice (first on line 2)"),
    "a nested key given twice": ("datastore: datastore\nretention:\n  policies:\n    - keep_days: 3\n"
                                 "      keep_days: 30\n", "line 5: retention.policies[0].keep_days", "given twice"),
    "negative keep_days": ("datastore: datastore\nretention:\n  policies:\n    - keep_days: -1\n",
                           "line 4: retention.policies[0].keep_days", "greater than or equal to 0"),
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    Butler.create(tmp_path / "repo").close()
    return tmp_path / "repo"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_butler_yaml_names_file_line_and_key(repo: Path, case: str) -> None:
    text, where, reason = BROKEN[case]
    config = repo / "butler.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Butler(repo)
    message = str(caught.value)
    assert f"{config} {where}" in message and reason in message, message
    assert "password" not in message or "secret" not in message  # never echo a password
    result = CliRunner().invoke(cli, ["query-collections", str(repo)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and f"{config} {where}" in result.stderr


def test_every_bad_key_is_named_at_once(repo: Path) -> None:
    (repo / "butler.yaml").write_text("datastore: datastore\nchecksum: md5\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"line 2: checksum: .*; .*line 3: bogus: unknown key"):
        Butler(repo)


def test_a_non_utf8_butler_yaml(repo: Path) -> None:
    (repo / "butler.yaml").write_bytes("datastore: datastore  # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=f"{repo / 'butler.yaml'}: not UTF-8 text"):
        Butler(repo)


def test_a_missing_universe_file_is_a_config_error(repo: Path, tmp_path: Path) -> None:
    (repo / "butler.yaml").write_text(f"datastore: datastore\nuniverse: {tmp_path / 'absent.yaml'}\n")
    with pytest.raises(ConfigError, match="universe .*absent.yaml.* cannot read it"):
        Butler(repo)
    (tmp_path / "bad.yaml").write_text("just text\n")
    (repo / "butler.yaml").write_text(f"datastore: datastore\nuniverse: {tmp_path / 'bad.yaml'}\n")
    with pytest.raises(ConfigError, match="is not a dimension universe file"):
        Butler(repo)


@pytest.mark.parametrize("settings, reason", [
    ({"checksum": "md5"}, "checksum: unknown checksum algorithm 'md5'"),
    ({"templates": {"default": "no/fields"}}, "templates.default: path template 'no/fields' has no fields"),
    ({"registry": "mysql://host/db"}, "registry: a registry URL starts with"),
])
def test_create_refuses_bad_settings_with_a_config_error(tmp_path: Path, settings: dict, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        Butler.create(tmp_path / "new", **settings)
    assert not (tmp_path / "new").exists()


def test_config_dump_loads_back_with_every_setting(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    templates = {"calexp": "{run}/{dataset_type}/{visit}/{detector}"}
    Butler.create(root, checksum="blake2b", verify_checksums=True, templates=templates).close()
    config = root / "butler.yaml"
    with config.open("a") as stream:
        stream.write("retention:\n  policies:\n    - dataset_type: calexp\n      keep_days: 30\n")
    original = yaml.safe_load(config.read_text())
    for args in ([], ["--json"]):
        result = CliRunner().invoke(cli, ["config-dump", str(root), *args])
        assert result.exit_code == 0, result.output
        dumped = yaml.safe_load(result.stdout) if not args else json.loads(result.stdout)
        config.write_text(result.stdout)  # saved back as butler.yaml (JSON is YAML too)
        with Butler(root) as butler:
            assert butler.config.checksum == "blake2b" and butler.config.verify_checksums is True
            assert butler.config.templates["calexp"] == templates["calexp"]
            assert butler.config.retention.policies[0].keep_days == 30
            assert butler.config.universe == "default"
        again = CliRunner().invoke(cli, ["config-dump", str(root), "--json"])
        assert json.loads(again.stdout) == dumped
    assert original["datastore"] == "datastore"
