"""The application ``skybutler serve`` runs in each uvicorn worker: every repository of the
server's configuration (:class:`~skybutler.server.config.ServeConfig`, handed over in the
``SKYBUTLER_SERVE_CONFIG`` environment variable) mounted at ``/<its name>``."""

from __future__ import annotations

from fastapi import FastAPI

from .app import create_app
from .config import ServeConfig


def app() -> FastAPI:
    return build(ServeConfig.from_env())


def build(config: ServeConfig) -> FastAPI:
    """One application serving every repository of ``config``."""
    settings = config.settings()
    outer = FastAPI(title="skybutler repositories")
    for name, root in config.repositories.items():
        outer.mount(f"/{name}", create_app(root, settings))
    return outer
