"""For the server tests: a real uvicorn server on loopback (a free port, a thread, and a stop),
and the per-ID visibility rule as an oracle."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def running_server(root: Path | None, apps: list | None = None, *, app=None, **settings) -> Iterator[str]:
    """Serve the repository at ``root`` (or a ready-made ``app``) on 127.0.0.1 (a free port) while the
    block runs; yields its URL (and appends the application to ``apps``, for tests that look inside)."""
    import uvicorn

    from skybutler.server.app import create_app
    from skybutler.server.state import ServerSettings

    if app is None:
        app = create_app(root, ServerSettings(**settings))
    if apps is not None:
        apps.append(app)
    sock = socket.socket(proto=socket.IPPROTO_TCP)  # so that asyncio sets TCP_NODELAY on connections, as in serve
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        if root is not None:
            app.state.skybutler.close()


def visible_one_by_one(butler, user, ids) -> set:
    """The IDs among ``ids`` that ``user`` may see, asked of ``authz.visible_ref`` one at a time
    (the oracle of the answers about many IDs at once)."""
    from skybutler.errors import DatasetNotFoundError
    from skybutler.server import authz

    seen = set()
    for dataset_id in ids:
        try:
            seen.add(authz.visible_ref(butler, user, dataset_id).id)
        except DatasetNotFoundError:
            pass
    return seen
