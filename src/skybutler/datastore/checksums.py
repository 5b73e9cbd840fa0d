"""Content checksums of artifacts: fast by default (xxh3), cryptographic on request."""

from __future__ import annotations

import hashlib

import xxhash

from ..errors import DatastoreError

ALGORITHMS = ("xxh3", "blake2b")


def checksum(data: bytes, algorithm: str | None) -> str | None:
    """The hex digest of ``data`` prefixed by the algorithm name, or None when disabled."""
    if algorithm is None:
        return None
    if algorithm == "xxh3":
        return "xxh3:" + xxhash.xxh3_64_hexdigest(data)
    if algorithm == "blake2b":
        return "blake2b:" + hashlib.blake2b(data, digest_size=16).hexdigest()
    raise DatastoreError(f"unknown checksum algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)} or none")


def verify(data: bytes, recorded: str | None) -> bool:
    """Whether ``data`` matches a recorded checksum (always true when none was recorded)."""
    if recorded is None:
        return True
    algorithm = recorded.split(":", 1)[0]
    return checksum(data, algorithm) == recorded
