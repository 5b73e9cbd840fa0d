"""The application ``skybutler serve`` runs in each uvicorn worker: every repository named
in ``SKYBUTLER_SERVE`` mounted at ``/<its directory name>``."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from .app import create_app
from .state import ServerSettings, trust_header


def app() -> FastAPI:
    max_mb, concurrency, presign = (int(x) for x in os.environ.get("SKYBUTLER_SERVE_SETTINGS", "256,4,0").split(","))
    header = os.environ.get("SKYBUTLER_TRUST_HEADER")
    settings = ServerSettings(max_request_bytes=max_mb * 1024 * 1024, user_concurrency=concurrency,
                              presign_seconds=presign, identify=trust_header(header) if header else None)
    outer = FastAPI(title="skybutler repositories")
    for root in os.environ["SKYBUTLER_SERVE"].split(os.pathsep):
        outer.mount(f"/{Path(root).name}", create_app(root, settings))
    return outer
