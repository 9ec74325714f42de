"""Content-addressed store: each imported file, dose array and built object kept byte for byte under its SHA-256.

A blob's name is its hash, so every read that matters can prove the bytes are still the ones stored:
:meth:`BlobStore.verified` and :meth:`BlobStore.verified_path` raise :class:`~rtexport.errors.StoreError` naming
the blob when they are not.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from rtexport.errors import StoreError

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class BlobStore:
    """Files under ``root/ab/cdef…``; writes are atomic (temporary file, fsync, rename); owner-only access."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; return (digest, whether this call created the blob)."""
        digest = sha256_bytes(data)
        target = self.path(digest)
        if target.is_file():
            return digest, False
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest, True

    def _damaged(self, digest: str, found: str | None) -> StoreError:
        where = self.path(digest)
        if found is None:
            return StoreError(f"stored file {where} is missing (expected sha256 {digest}); run 'rtexport verify'")
        return StoreError(
            f"stored file {where} is damaged: its sha256 is {found}, expected {digest}; "
            "nothing was exported; run 'rtexport verify' and re-import or recompute what it names"
        )

    def verified(self, digest: str) -> bytes:
        """The blob's bytes, proven to hash to ``digest``."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise self._damaged(digest, None) from None
        found = sha256_bytes(data)
        if found != digest:
            raise self._damaged(digest, found)
        return data

    def verified_path(self, digest: str) -> Path:
        """The blob's path after hashing it whole (for readers that need a file, e.g. memory-mapped arrays)."""
        path = self.path(digest)
        try:
            found = sha256_file(path)
        except FileNotFoundError:
            raise self._damaged(digest, None) from None
        if found != digest:
            raise self._damaged(digest, found)
        return path

    def found(self, digest: str) -> str | None:
        """The sha256 the blob's bytes have now (the digest itself when intact), or None when it is missing."""
        try:
            return sha256_file(self.path(digest))
        except FileNotFoundError:
            return None

    def check(self, digest: str, found: str) -> None:
        """Raise unless ``found`` (a hash computed while reading the blob) is ``digest``."""
        if found != digest:
            raise self._damaged(digest, found)

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
