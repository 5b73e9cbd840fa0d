"""Content checksums of artifacts: fast by default (xxh3), cryptographic on request."""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

import xxhash

from ..errors import DatastoreError

ALGORITHMS = ("xxh3", "blake2b")
#: Bytes read at a time when a file is hashed as a stream (``verify --checksums``).
CHUNK = 1 << 22


def _hasher(algorithm: str) -> Any:
    if algorithm == "xxh3":
        return xxhash.xxh3_64()
    if algorithm == "blake2b":
        return hashlib.blake2b(digest_size=16)
    raise DatastoreError(f"unknown checksum algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)} or none")


def checksum(data: bytes, algorithm: str | None) -> str | None:
    """The hex digest of ``data`` prefixed by the algorithm name, or None when disabled."""
    if algorithm is None:
        return None
    if algorithm == "xxh3":
        return "xxh3:" + xxhash.xxh3_64_hexdigest(data)
    hasher = _hasher(algorithm)
    hasher.update(data)
    return f"{algorithm}:{hasher.hexdigest()}"


def stream_checksum(stream: BinaryIO, algorithm: str) -> str:
    """The checksum of everything left in ``stream``, read a chunk at a time (same value as
    :func:`checksum` of the whole content, without holding it in memory)."""
    hasher = _hasher(algorithm)
    while chunk := stream.read(CHUNK):
        hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def algorithm_of(recorded: str) -> str:
    """The algorithm a recorded checksum was made with (its prefix)."""
    return recorded.split(":", 1)[0]


def verify(data: bytes, recorded: str | None) -> bool:
    """Whether ``data`` matches a recorded checksum (always true when none was recorded)."""
    if recorded is None:
        return True
    return checksum(data, algorithm_of(recorded)) == recorded
