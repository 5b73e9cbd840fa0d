"""A repository served by ``skybutler serve`` in its own process, for the benchmarks that time work
through a server (bench_server.py, bench_export_import.py --server), and reading a process's memory."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from skybutler import Butler


def rss_kib(pid: int | str, field: str) -> int:
    """A memory figure (``VmRSS``, ``VmHWM``) of process ``pid`` from /proc, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a running process (and its waited-for children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def served(root: Path, note: str) -> Iterator[tuple[str, str, int]]:
    """``root`` served on a free loopback port while the block runs: (URL, an administrator's token
    made for ``note``, the server's pid)."""
    from skybutler.access import Access

    with Butler(root) as admin:
        access = Access(admin.registry.access)
        access.add_user("bench", admin=True)
        token = access.create_token("bench", note=note)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen([sys.executable, "-m", "skybutler.cli", "serve", str(root), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/{root.name}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                Butler(url, token=token).close()
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server did not start: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        yield url, token, server.pid
    finally:
        server.terminate()
        server.wait(20)
