"""S3-compatible blob store (AWS S3, MinIO, Ceph RGW, ...) for multi-host deployments.

Implements the same `BlobStore` protocol as `FilesystemBlobStore`, so the API and the workers can
run on different machines without a shared volume. Selected by `SRSERVE_BLOB_BACKEND=s3`
through `make_blob_store(settings)`. Imported only then: boto3 is an optional extra (`srserve[s3]`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from srserve.blobstore import (
    CHUNK_SIZE,
    BlobEntry,
    BlobNotFoundError,
    _validate_prefix,
    validate_key,
)

log = logging.getLogger(__name__)

# S3's DeleteObjects accepts at most this many keys per request.
_DELETE_BATCH = 1000
# Error codes S3 (and MinIO/moto) use for "no such object"; HEAD responses carry only the status.
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3BlobStore:
    """Blobs as objects `<prefix><key>` in one bucket. boto3 clients are thread-safe, so one
    instance is shared by the API's request handlers and the worker's job threads."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 blob store needs a bucket name (SRSERVE_S3_BUCKET)")
        if prefix:
            # the same alphabet as keys, so the object names stay portable
            prefix = _validate_prefix(prefix if prefix.endswith("/") else prefix + "/")
        self.bucket = bucket
        self.prefix = prefix
        self.region = region or None
        if client is None:
            # Explicit keys win; when unset boto3 falls back to its usual chain (AWS_* env vars,
            # shared config, instance/IRSA roles), which is what production clusters use.
            session = boto3.session.Session(
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                region_name=region or None,
            )
            config = Config(
                # Path-style addressing: MinIO and most self-hosted servers do not serve
                # virtual-host buckets; AWS still accepts path style.
                s3={"addressing_style": "path"} if endpoint_url else {},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            )
            client = session.client("s3", endpoint_url=endpoint_url or None, config=config)
        self.client = client

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return self.prefix + key

    def ensure_bucket(self, create: bool = False) -> None:
        """Fail early with a clear message when the bucket is missing; create it if asked
        (development servers such as MinIO start empty)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _MISSING_CODES | {"NoSuchBucket"} or not create:
                raise RuntimeError(f"S3 bucket {self.bucket!r} is not accessible: {exc}") from exc
        log.info("creating S3 bucket %s", self.bucket)
        # AWS wants the region spelled out everywhere but in its default region
        extra = (
            {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
            if self.region and self.region != "us-east-1"
            else {}
        )
        self.client.create_bucket(Bucket=self.bucket, **extra)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data, **extra)

    def _get_object(self, key: str) -> dict[str, Any]:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise BlobNotFoundError(key) from exc
            raise

    def get(self, key: str) -> bytes:
        body = self._get_object(key)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def stream(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        # GET eagerly so a missing blob raises here, not half-way into a streamed response
        body = self._get_object(key)["Body"]
        return _iter_body(body, chunk_size)

    def size(self, key: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise BlobNotFoundError(key) from exc
            raise
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return False
            raise
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with `prefix` (plain string prefix, as S3 lists
        them: `jobs/ab` matches `jobs/abc/...` too, like the filesystem store); returns the count."""
        full_prefix = self.prefix + _validate_prefix(prefix)
        deleted = 0
        batch: list[dict[str, str]] = []
        for obj in self._list(full_prefix):
            batch.append({"Key": obj["Key"]})
            if len(batch) == _DELETE_BATCH:
                deleted += self._delete_batch(batch)
                batch = []
        if batch:
            deleted += self._delete_batch(batch)
        return deleted

    def list_children(self, prefix: str) -> list[BlobEntry]:
        """Direct children of `prefix` (blobs and 'folders'). S3 has no folder timestamps, so a
        folder's `modified` is its newest object's: one listing of everything below `prefix`
        instead of a request per folder."""
        full_prefix = self.prefix + _validate_prefix(prefix)
        if not full_prefix.endswith("/"):
            full_prefix += "/"
        newest: dict[str, float] = {}
        for obj in self._list(full_prefix):
            name = obj["Key"][len(full_prefix) :].split("/", 1)[0]
            if not name:
                continue
            modified = obj["LastModified"].timestamp()
            newest[name] = max(newest.get(name, modified), modified)
        return [BlobEntry(name, modified) for name, modified in newest.items()]

    def _list(self, full_prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            yield from page.get("Contents", [])

    def _delete_batch(self, batch: list[dict[str, str]]) -> int:
        response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = response.get("Errors", [])
        if errors:
            raise RuntimeError(f"S3 delete failed for {len(errors)} objects, first: {errors[0]}")
        return len(batch)


def _iter_body(body: Any, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def s3_blob_store_from_settings(settings: Any) -> S3BlobStore:
    """Build the store from the settings fields `s3_*` (env `SRSERVE_S3_*`)."""
    store = S3BlobStore(
        settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=_secret(settings.s3_secret_access_key),
    )
    store.ensure_bucket(create=settings.s3_create_bucket)
    return store


def _secret(value: Any) -> str | None:
    # Accept pydantic SecretStr as well as a plain string.
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter else str(value)
