"""Repository configuration: ``butler.yaml`` at the repository root.

It says where the registry database and the datastore live and how files are
laid out.  It never holds a password: PostgreSQL credentials come from the
environment (``PGPASSWORD``, ``~/.pgpass`` or ``SKYBUTLER_DB_PASSWORD``), and a
registry URL may name an environment variable as ``${VAR}``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .datastore.checksums import ALGORITHMS
from .datastore.templates import PathTemplate
from .errors import ConfigError, DatastoreError, SkybutlerError
from .registry.database import url_holds_password
from .retention.policy import RetentionConfig

CONFIG_NAME = "butler.yaml"
#: Where a new repository keeps its dataset files, relative to its root: a tree of their own,
#: never mixed with ``butler.yaml`` and the registry's files.
DEFAULT_DATASTORE = "datastore"
#: Where the repository keeps its own bookkeeping (write journal, quarantine), relative to its root.
BOOKKEEPING_DIR = ".skybutler"


def _check_template(template: str) -> str:
    """A path template must compile and keep every path it makes inside the datastore."""
    try:
        PathTemplate(template)
    except DatastoreError as err:
        raise ValueError(str(err)) from None
    return template


class RepoConfig(BaseModel):
    """The settings of one repository; any other key is an error (a typo must not be ignored)."""

    # Validation errors must not echo a refused registry URL: it may hold a password.
    model_config = ConfigDict(hide_input_in_errors=True, extra="forbid")

    #: Database URL; None means a SQLite file ``registry.sqlite3`` in the repository root.
    registry: str | None = None
    #: Datastore root URI; a relative local path is taken inside the repository root.  None
    #: means the repository root itself (repositories made before datastore files got a
    #: directory of their own); new repositories record ``datastore`` (``DEFAULT_DATASTORE``).
    datastore: str | None = None
    #: Path templates by dataset type name (``default`` for all others).
    templates: dict[str, Annotated[str, AfterValidator(_check_template)]] = Field(default_factory=dict)
    #: Artifact checksum algorithm (``xxh3``, ``blake2b``) or None to skip checksums.
    checksum: str | None = "xxh3"
    #: Whether ``get`` checks every file against its recorded checksum by default (it reads
    #: the whole file then, even for a cut-out or a column subset).
    verify_checksums: bool = False
    #: Dimension universe: ``default`` or a path to a universe YAML file.
    universe: str = "default"
    #: Retention policies and the cold tier (see skybutler.retention.policy).
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @field_validator("registry")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if url and url_holds_password(url):
            raise ValueError("the registry URL holds a password; use PGPASSWORD, ~/.pgpass or SKYBUTLER_DB_PASSWORD")
        if url is not None and not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
            raise ValueError("a registry URL starts with sqlite:/// or postgresql:// "
                             "(e.g. postgresql://HOST/DB?schema=NAME)")
        return url

    @field_validator("checksum")
    @classmethod
    def _known_checksum(cls, algorithm: str | None) -> str | None:
        if algorithm is not None and algorithm not in ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)} or null")
        return algorithm

    @field_validator("templates")
    @classmethod
    def _default_names_the_type(cls, templates: dict[str, str]) -> dict[str, str]:
        default = templates.get("default")
        if default is not None and "dataset_type" not in PathTemplate(default).fields:
            raise ValueError(f"the default template {default!r} has no {{dataset_type}}: datasets of different "
                             "types would share files")
        return templates

    @classmethod
    def checked(cls, **settings: Any) -> RepoConfig:
        """Settings given in code (``Butler.create``), validated: ConfigError names each bad one."""
        try:
            return cls(**settings)
        except ValidationError as err:
            raise ConfigError("invalid repository settings: " + "; ".join(
                f"{_dotted(e['loc'])}: {_message(e)}" for e in err.errors())) from None

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
        (root / CONFIG_NAME).write_text(yaml.safe_dump(self.model_dump(exclude_defaults=True) or {}, sort_keys=False))

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
            raise ConfigError(f"{path} line 1: must be a mapping of settings ({', '.join(cls.model_fields)}), "
                              f"not a {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = [f"{path} line {_line_of(root_node, e['loc'])}: {_dotted(e['loc'])}: {_message(e)}"
                        for e in err.errors()]
            raise ConfigError("; ".join(problems)) from None


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


def _dotted(loc: tuple) -> str:
    """A validation error's location as a key path: ``retention.policies[0].keep_days``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (a typo?)"
    return str(error["msg"]).removeprefix("Value error, ")


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
