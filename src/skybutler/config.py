"""Repository configuration: ``butler.yaml`` at the repository root.

It says where the registry database and the datastore live and how files are
laid out.  It never holds a password: PostgreSQL credentials come from the
environment (``PGPASSWORD``, ``~/.pgpass`` or ``SKYBUTLER_DB_PASSWORD``), and a
registry URL may name an environment variable as ``${VAR}``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import SkybutlerError
from .retention.policy import RetentionConfig
from .registry.database import url_holds_password

CONFIG_NAME = "butler.yaml"
#: Where a new repository keeps its dataset files, relative to its root: a tree of their own,
#: never mixed with ``butler.yaml`` and the registry's files.
DEFAULT_DATASTORE = "datastore"
#: Where the repository keeps its own bookkeeping (write journal, quarantine), relative to its root.
BOOKKEEPING_DIR = ".skybutler"


class RepoConfig(BaseModel):
    """The settings of one repository."""

    # Validation errors must not echo a refused registry URL: it may hold a password.
    model_config = ConfigDict(hide_input_in_errors=True)

    #: Database URL; None means a SQLite file ``registry.sqlite3`` in the repository root.
    registry: str | None = None
    #: Datastore root URI; a relative local path is taken inside the repository root.  None
    #: means the repository root itself (repositories made before datastore files got a
    #: directory of their own); new repositories record ``datastore`` (``DEFAULT_DATASTORE``).
    datastore: str | None = None
    #: Path templates by dataset type name (``default`` for all others).
    templates: dict[str, str] = Field(default_factory=dict)
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
        return url

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
        return cls.model_validate(yaml.safe_load(path.read_text()) or {})

