"""Where job inputs and results live: a small key/value blob interface, filesystem now, S3 later.

Keys look like `jobs/<job_id>/input/0`, `jobs/<job_id>/reference`, `jobs/<job_id>/result.png`.
They are validated (no `..`, no absolute paths, a fixed alphabet), so a key can never escape the
store's root. Job payloads carry keys, never bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    from srserve.config import CommonSettings

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")
CHUNK_SIZE = 1 << 20


class BlobNotFoundError(KeyError):
    """The key does not exist (never stored, deleted or expired)."""


class InvalidBlobKeyError(ValueError):
    pass


@dataclass(frozen=True)
class BlobEntry:
    """One direct child of a prefix: a blob or a 'folder' of blobs."""

    name: str
    modified: float  # seconds since the epoch


@runtime_checkable
class BlobStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def get(self, key: str) -> bytes: ...  # raises BlobNotFoundError
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]: ...  # BlobNotFoundError
    def size(self, key: str) -> int: ...  # BlobNotFoundError
    def list_children(self, prefix: str) -> list[BlobEntry]: ...


def validate_key(key: str) -> str:
    if not KEY_PATTERN.match(key) or ".." in key or "//" in key or key.endswith("/"):
        raise InvalidBlobKeyError(f"invalid blob key {key!r}")
    return key


def _validate_prefix(prefix: str) -> str:
    if not prefix or not KEY_PATTERN.match(prefix) or ".." in prefix or "//" in prefix:
        raise InvalidBlobKeyError(f"invalid blob prefix {prefix!r}")
    return prefix


class FilesystemBlobStore:
    """Blobs as files under `root`. Writes are atomic (temp file in the same folder + os.replace),
    so a reader never sees half a file; the content type is implied by the key's extension."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if self.root not in path.parents:  # belt and braces on top of the key pattern
            raise InvalidBlobKeyError(f"invalid blob key {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFoundError(key) from exc

    def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        # open eagerly so a missing blob raises here, not half-way into a streamed response
        try:
            f = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFoundError(key) from exc
        return _iter_file(f, chunk_size)

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise BlobNotFoundError(key)
        return path.stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix`; returns how many were deleted."""
        prefix = _validate_prefix(prefix)
        base = (self.root / prefix).resolve()
        if base != self.root and self.root not in base.parents:
            raise InvalidBlobKeyError(f"invalid blob prefix {prefix!r}")
        count = 0
        if prefix.endswith("/") or base.is_dir():
            if base.is_dir():
                count = sum(1 for p in base.rglob("*") if p.is_file())
                shutil.rmtree(base, ignore_errors=True)
            return count
        for path in base.parent.glob(base.name + "*") if base.parent.is_dir() else []:
            if path.is_dir():
                count += sum(1 for p in path.rglob("*") if p.is_file())
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
                    count += 1
        return count

    def list_children(self, prefix: str) -> list[BlobEntry]:
        base = (self.root / _validate_prefix(prefix)).resolve()
        if not base.is_dir():
            return []
        entries = []
        for child in base.iterdir():
            if child.name.startswith(".tmp-"):
                continue
            with contextlib.suppress(OSError):
                entries.append(BlobEntry(child.name, child.stat().st_mtime))
        return entries


def _iter_file(f: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with f:
        while chunk := f.read(chunk_size):
            yield chunk


def make_blob_store(settings: CommonSettings) -> BlobStore:
    if settings.blob_backend == "fs":
        return FilesystemBlobStore(settings.blob_dir)
    if settings.blob_backend == "s3":
        from srserve.blobstore_s3 import s3_blob_store_from_settings  # boto3 only when asked for

        return s3_blob_store_from_settings(settings)
    raise ValueError(f"unknown blob backend {settings.blob_backend!r}")


def sweep_orphaned_jobs(
    store: BlobStore,
    job_exists: Callable[[str], bool],
    *,
    min_age_s: float = 3600.0,
    now: float | None = None,
) -> int:
    """Delete the blobs of jobs whose job record is gone (result TTL passed, or never enqueued).

    `min_age_s` protects uploads whose job is being enqueued right now. Returns jobs removed.
    """
    now = time.time() if now is None else now
    removed = 0
    for entry in store.list_children("jobs/"):
        if now - entry.modified < min_age_s:
            continue
        try:
            alive = job_exists(entry.name)
        except Exception:  # Redis hiccup: keep everything, try again next sweep
            log.warning("blob sweep: could not check job %s; skipping this sweep", entry.name, exc_info=True)
            return removed
        if not alive:
            store.delete_prefix(f"jobs/{entry.name}/")
            removed += 1
    if removed:
        log.info("blob sweep: removed the blobs of %d expired jobs", removed)
    return removed
