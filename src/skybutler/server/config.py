"""What ``skybutler serve`` serves and how: repositories by URL name, address and limits,
given on the command line or in a YAML file (``skybutler serve --config FILE``)::

    host: 0.0.0.0
    port: 8080
    workers: 4
    repositories:          # URL name: repository directory (relative to this file)
      main: /data/survey
      dr1: ../releases/dr1
    max_request_mb: 256
    user_concurrency: 4
    query_timeout: 600     # seconds a query may run on the server
    api_docs: false        # true: the interactive API page /docs (its scripts come from a CDN)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import CONFIG_NAME
from ..errors import ConfigError
from .state import ServerSettings, trust_header

#: How ``skybutler serve`` hands its configuration to the application each worker builds.
ENV = "SKYBUTLER_SERVE_CONFIG"
_MOUNT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class ServeConfig(BaseModel):
    """One server: the repositories it serves and its settings."""

    model_config = ConfigDict(extra="forbid")

    #: URL name -> repository directory: served at ``http://HOST:PORT/<name>``
    repositories: dict[str, str] = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_request_mb: int = Field(256, ge=1)
    user_concurrency: int = Field(4, ge=1)
    presign: int = Field(0, ge=0)
    trust_header: str | None = None
    access_recheck_seconds: float = Field(1.0, ge=0)
    query_timeout: float = Field(600.0, gt=0)
    api_docs: bool = False

    @field_validator("repositories")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, root in value.items():
            if _MOUNT.fullmatch(name) is None or name == "api":
                raise ValueError(f"{name!r} cannot name a repository in a URL: use letters, digits and _.- "
                                 "(at most 64)")
            if not (Path(root) / CONFIG_NAME).is_file():
                raise ValueError(f"{name}: {root} is not a repository (it has no {CONFIG_NAME})")
        return value

    @classmethod
    def load(cls, path: Path) -> ServeConfig:
        """The configuration in a YAML file; repository paths are relative to the file."""
        try:
            raw = yaml.safe_load(path.read_text())
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not YAML: {' '.join(str(err).split())}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a server configuration is a mapping (repositories:, port:, ...)")
        repos = raw.get("repositories")
        if isinstance(repos, dict):
            raw["repositories"] = {str(k): str((path.parent / str(v)).absolute()) for k, v in repos.items()}
        return cls.checked(raw, str(path))

    @classmethod
    def checked(cls, values: dict, where: str) -> ServeConfig:
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{where}: {field + ': ' if field else ''}{first['msg']}") from None

    def settings(self) -> ServerSettings:
        return ServerSettings(max_request_bytes=self.max_request_mb * 1024 * 1024,
                              user_concurrency=self.user_concurrency, presign_seconds=self.presign,
                              identify=trust_header(self.trust_header) if self.trust_header else None,
                              access_recheck_seconds=self.access_recheck_seconds, query_timeout=self.query_timeout,
                              api_docs=self.api_docs)

    def to_env(self) -> None:
        os.environ[ENV] = self.model_dump_json()

    @classmethod
    def from_env(cls) -> ServeConfig:
        return cls(**json.loads(os.environ[ENV]))
