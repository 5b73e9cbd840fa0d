"""Repository configuration: ``butler.yaml`` at the repository root.

It says where the registry database and the datastore live and how files are
laid out.  It never holds a password: PostgreSQL credentials come from the
environment (``PGPASSWORD``, ``~/.pgpass`` or ``SKYBUTLER_DB_PASSWORD``), and a
registry URL may name an environment variable as ``${VAR}``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import yaml

from .datastore.checksums import ALGORITHMS
from .datastore.templates import PathTemplate
from .errors import ConfigError, DatastoreError, SkybutlerError
from .registry.database import url_holds_password
from .retention.policy import RetentionConfig
from .settings import Settings, SettingsError, dotted

CONFIG_NAME = "butler.yaml"
#: Where a new repository keeps its dataset files, relative to its root: a tree of their own,
#: never mixed with ``butler.yaml`` and the registry's files.
DEFAULT_DATASTORE = "datastore"
#: Where the repository keeps its own bookkeeping (write journal, quarantine), relative to its root.
BOOKKEEPING_DIR = ".skybutler"
#: Where a server writes the publications it makes, relative to its repository's root.
PUBLICATIONS_DIR = f"{BOOKKEEPING_DIR}/publications"


def _registry_url(url: str | None) -> None:
    if url and url_holds_password(url):
        raise ValueError("the registry URL holds a password; use PGPASSWORD, ~/.pgpass or SKYBUTLER_DB_PASSWORD")
    if url is not None and not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise ValueError("a registry URL starts with sqlite:/// or postgresql:// "
                         "(e.g. postgresql://HOST/DB?schema=NAME)")


def _checksum(algorithm: str | None) -> None:
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)} or null")


def _templates(templates: dict[str, str]) -> None:
    """Each path template must compile and keep every path it makes inside the datastore; the
    default one must name the dataset type."""
    problems = []
    for name, template in templates.items():
        try:
            PathTemplate(template)
        except DatastoreError as err:
            problems.append(((name,), str(err)))
    default = templates.get("default")
    if not problems and default is not None and "dataset_type" not in PathTemplate(default).fields:
        problems.append(((), (f"the default template {default!r} has no {{dataset_type}}: datasets of different "
                              "types would share files")))
    if problems:
        raise SettingsError(problems)


@dataclasses.dataclass(kw_only=True)
class RepoConfig(Settings):
    """The settings of one repository; any other key is an error (a typo must not be ignored).
    No error message echoes a refused registry URL: it may hold a password."""

    #: Database URL; None means a SQLite file ``registry.sqlite3`` in the repository root.
    registry: str | None = dataclasses.field(default=None, metadata={"check": _registry_url})
    #: Datastore root URI; a relative local path is taken inside the repository root.  None
    #: means the repository root itself (repositories made before datastore files got a
    #: directory of their own); new repositories record ``datastore`` (``DEFAULT_DATASTORE``).
    datastore: str | None = None
    #: Path templates by dataset type name (``default`` for all others).
    templates: dict[str, str] = dataclasses.field(default_factory=dict, metadata={"check": _templates})
    #: Artifact checksum algorithm (``xxh3``, ``blake2b``) or None to skip checksums.
    checksum: str | None = dataclasses.field(default="xxh3", metadata={"check": _checksum})
    #: Whether ``get`` checks every file against its recorded checksum by default (it reads
    #: the whole file then, even for a cut-out or a column subset).
    verify_checksums: bool = False
    #: Dimension universe: ``default`` or a path to a universe YAML file.
    universe: str = "default"
    #: Retention policies and the cold tier (see skybutler.retention.policy).
    retention: RetentionConfig = dataclasses.field(default_factory=RetentionConfig)

    @classmethod
    def checked(cls, **settings: Any) -> RepoConfig:
        """Settings given in code (``Butler.create``), validated: ConfigError names each bad one."""
        try:
            return cls.from_mapping(settings)
        except SettingsError as err:
            raise ConfigError(f"invalid repository settings: {err}") from None

    def registry_url(self, root: Path) -> str:
        url = self.registry or f"sqlite:///{root / 'registry.sqlite3'}"
        return re.sub(r"\$\{(\w+)\}", lambda m: os.environ.get(m.group(1), ""), url)

    def datastore_uri(self, root: Path) -> str:
        if self.datastore is None:
            return str(root)
        if "://" in self.datastore or os.path.isabs(self.datastore):
            return self.datastore
        return str(root / self.datastore)

    def save(self, root: Path) -> None:
        (root / CONFIG_NAME).write_text(yaml.safe_dump(self.to_dict(exclude_defaults=True) or {}, sort_keys=False))

    @classmethod
    def load(cls, root: Path) -> RepoConfig:
        path = root / CONFIG_NAME
        if not path.exists():
            raise SkybutlerError(f"{root} is not a skybutler repository (no {CONFIG_NAME}); create one with "
                                 "'skybutler create'")
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: Path) -> RepoConfig:
        """Read and validate a config file; every problem is a ConfigError naming the file, the
        line and the key (all of them at once when several keys are wrong)."""
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte offset {err.start})") from None
        try:
            root_node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err)
            raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
        duplicates = _duplicate_keys(root_node)
        if duplicates:  # YAML would keep the last silently: which one the user meant is unknown
            raise ConfigError("; ".join(f"{path} line {line}: {key}: given twice (first on line {first})"
                                        for key, line, first in duplicates))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} line 1: must be a mapping of settings ({', '.join(f.name for f in dataclasses.fields(cls))}), "
                              f"not a {type(data).__name__}")
        if _is_rubin_config(data):
            raise ConfigError(f"{path.parent} is a Rubin butler (lsst-daf-butler) repository, which skybutler "
                              "does not open in place: import it into a skybutler repository with "
                              f"'skybutler import REPO {path.parent}' (needs lsst-daf-butler installed)")
        try:
            return cls.from_mapping(data)
        except SettingsError as err:
            raise ConfigError("; ".join(f"{path} line {_line_of(root_node, loc)}: {dotted(loc)}: {message}"
                                        for loc, message in err.problems)) from None


def _duplicate_keys(node: Any, prefix: str = "") -> list[tuple[str, int, int]]:
    """Keys given twice in one mapping, anywhere in a composed YAML document: (key path, line,
    line of the first)."""
    out: list[tuple[str, int, int]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = f"{prefix}.{key.value}" if prefix else str(key.value)
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and name in seen:
                out.append((name, line, seen[name]))
            seen.setdefault(name, line)
            out += _duplicate_keys(value, name)
    elif isinstance(node, yaml.SequenceNode):
        for number, item in enumerate(node.value):
            out += _duplicate_keys(item, f"{prefix}[{number}]")
    return out


def _line_of(node: Any, loc: tuple) -> int:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest parent found)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _is_rubin_config(data: dict[str, Any]) -> bool:
    """Whether a butler.yaml is the Rubin butler's: its datastore or registry is a mapping naming
    lsst.daf.butler classes or its ``<butlerRoot>`` placeholder."""
    return any(isinstance(data.get(key), dict) and ("lsst.daf.butler" in str(data[key]) or "<butlerRoot>" in str(data[key]))
               for key in ("datastore", "registry"))
