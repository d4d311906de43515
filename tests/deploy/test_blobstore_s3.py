"""S3BlobStore against a real S3-compatible HTTP server (moto's server mode, started locally:
MinIO cannot be installed on the development machines). Everything goes over HTTP through boto3,
exactly as it would against MinIO or AWS."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from PIL import Image

from srserve.blobstore import BlobNotFoundError, BlobStore, InvalidBlobKeyError
from srserve.blobstore_s3 import S3BlobStore, s3_blob_store_from_settings
from srserve.client import Client
from tests.deploy.compose import load_compose, service_environment
from tests.deploy.conftest import run_stack
from tests.deploy.helpers import VENV_BIN, child_process, free_port, http_status, wait_until

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("moto_server", path=str(VENV_BIN)) or shutil.which("moto_server")
    assert exe, "moto_server not installed: pip install 'moto[server]' (a dev dependency)"
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with child_process([exe, "-H", "127.0.0.1", "-p", str(port)], log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_status(url + "/moto-api/") == 200, 30, "moto_server", proc, log)
        yield url


def make_store(endpoint: str, bucket: str, prefix: str = "") -> S3BlobStore:
    store = S3BlobStore(
        bucket,
        prefix=prefix,
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    store.ensure_bucket(create=True)
    return store


def raw_keys(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_put_get_exists_size_stream(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint, "basic")
    assert isinstance(store, BlobStore)  # satisfies the protocol the service and worker use
    data = bytes(range(256)) * 4096  # 1 MiB, not valid UTF-8: bytes survive unchanged
    store.put("jobs/j1/input/0", data, content_type="image/png")
    assert store.exists("jobs/j1/input/0")
    assert not store.exists("jobs/j1/input/1")
    assert store.get("jobs/j1/input/0") == data
    assert store.size("jobs/j1/input/0") == len(data)
    chunks = list(store.stream("jobs/j1/input/0", chunk_size=100_000))
    assert len(chunks) > 1 and b"".join(chunks) == data
    head = store.client.head_object(Bucket="basic", Key="jobs/j1/input/0")
    assert head["ContentType"] == "image/png"
    store.put("jobs/j1/input/0", b"replaced")  # overwrite
    assert store.get("jobs/j1/input/0") == b"replaced"


def test_missing_blobs_raise_blob_not_found(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint, "missing")
    with pytest.raises(BlobNotFoundError):
        store.get("jobs/nope/result.png")
    with pytest.raises(BlobNotFoundError):
        store.stream("jobs/nope/result.png")
    with pytest.raises(BlobNotFoundError):
        store.size("jobs/nope/result.png")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "jobs/../x", "jobs//x", "jobs/x/", ""])
def test_invalid_keys_are_refused_before_any_request(s3_endpoint: str, key: str) -> None:
    store = make_store(s3_endpoint, "keys")
    with pytest.raises(InvalidBlobKeyError):
        store.put(key, b"x")
    with pytest.raises(InvalidBlobKeyError):
        store.exists(key)


def test_delete_prefix_counts_and_keeps_others(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint, "deletes", prefix="tenant-a")
    other = make_store(s3_endpoint, "deletes", prefix="tenant-b")
    for i in range(3):
        store.put(f"jobs/a/input/{i}", b"x")
    store.put("jobs/a/result.png", b"r")
    store.put("jobs/b/result.png", b"r")
    other.put("jobs/a/result.png", b"other tenant")
    assert raw_keys(s3_endpoint, "deletes")[0] == "tenant-a/jobs/a/input/0"  # the prefix is applied
    assert store.delete_prefix("jobs/a/") == 4
    assert not store.exists("jobs/a/result.png")
    assert store.exists("jobs/b/result.png")
    assert other.get("jobs/a/result.png") == b"other tenant"  # another prefix is untouched
    assert store.delete_prefix("jobs/a/") == 0
    with pytest.raises(InvalidBlobKeyError):
        store.delete_prefix("")  # never "delete the whole bucket"


def test_delete_prefix_pages_past_one_listing(s3_endpoint: str) -> None:
    # S3 lists and deletes at most 1000 keys per request: 1005 blobs exercise both paginations.
    store = make_store(s3_endpoint, "many")
    with ThreadPoolExecutor(8) as pool:  # the store is shared by threads in the worker too
        list(pool.map(lambda i: store.put(f"jobs/big/tile/{i}", b"t"), range(1005)))
    store.put("jobs/keep/result.png", b"k")
    assert store.delete_prefix("jobs/big/") == 1005
    assert raw_keys(s3_endpoint, "many") == ["jobs/keep/result.png"]


def test_list_children_reports_newest_object_per_folder(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint, "children")
    store.put("jobs/old/input/0", b"x")
    time.sleep(1.1)  # S3 timestamps have 1 s resolution
    store.put("jobs/new/input/0", b"x")
    store.put("jobs/new/result.png", b"x")
    entries = {e.name: e.modified for e in store.list_children("jobs/")}
    assert set(entries) == {"old", "new"}
    assert entries["new"] > entries["old"]
    assert abs(entries["new"] - time.time()) < 60
    assert store.list_children("nothing/") == []


def test_missing_bucket_fails_clearly_unless_created(s3_endpoint: str) -> None:
    store = S3BlobStore(
        "absent-bucket",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    with pytest.raises(RuntimeError, match="absent-bucket"):
        store.ensure_bucket(create=False)
    store.ensure_bucket(create=True)
    store.put("k", b"v")
    assert store.get("k") == b"v"


def test_bucket_is_created_in_its_region(s3_endpoint: str) -> None:
    # outside us-east-1 S3 refuses a CreateBucket without a LocationConstraint
    store = S3BlobStore(
        "eu-bucket",
        endpoint_url=s3_endpoint,
        region="eu-west-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    store.ensure_bucket(create=True)
    assert store.client.get_bucket_location(Bucket="eu-bucket")["LocationConstraint"] == "eu-west-1"


class _S3Settings:
    """The s3_* settings fields the lead adds to CommonSettings (see docs/DEPLOYMENT.md)."""

    def __init__(self, endpoint: str) -> None:
        self.blob_backend = "s3"
        self.s3_endpoint_url = endpoint
        self.s3_bucket = "from-settings"
        self.s3_region = "us-east-1"
        self.s3_access_key_id = ACCESS_KEY
        self.s3_secret_access_key = SECRET_KEY
        self.s3_prefix = "srserve"
        self.s3_create_bucket = True
        self.blob_dir = Path("unused")


def test_store_from_settings_and_a_job_result_round_trip(s3_endpoint: str) -> None:
    store = s3_blob_store_from_settings(_S3Settings(s3_endpoint))
    # A job's blobs as the API and worker write them: input, then an encoded result image.
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 10)).save(buf, format="PNG")
    store.put("jobs/job-123/input/0", buf.getvalue(), content_type="image/png")
    lr = Image.open(io.BytesIO(store.get("jobs/job-123/input/0"))).convert("RGB")
    result = lr.resize((lr.width * 2, lr.height * 2), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    result.save(out, format="PNG")
    store.put("jobs/job-123/result.png", out.getvalue(), content_type="image/png")
    fetched = Image.open(io.BytesIO(b"".join(store.stream("jobs/job-123/result.png"))))
    assert fetched.size == (16, 12)
    assert fetched.convert("RGB").getpixel((8, 6)) == (200, 30, 10)
    assert raw_keys(s3_endpoint, "from-settings") == ["srserve/jobs/job-123/input/0", "srserve/jobs/job-123/result.png"]
    assert store.delete_prefix("jobs/job-123/") == 2


def test_compose_s3_profile_runs_a_job_through_s3(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The compose services with SRSERVE_BLOB_BACKEND=s3 (as docs/DEPLOYMENT.md tells users to set),
    the `minio` service stood in for by the local S3 server: make_blob_store selects S3 in both the
    API and the worker, the job's input and result travel through the bucket, none through the volume."""
    compose = load_compose({"SRSERVE_BLOB_BACKEND": "s3", "SRSERVE_QUEUE_NAME": "srserve-s3-test"})
    minio_port = 9000  # MinIO's S3 port (its console is on 9001)
    endpoint = service_environment(compose["services"]["api"])["SRSERVE_S3_ENDPOINT_URL"]
    assert endpoint == f"http://minio:{minio_port}"
    ports = {8000: free_port(), 9100: free_port(), minio_port: int(s3_endpoint.rsplit(":", 1)[1])}
    root = tmp_path_factory.mktemp("compose-s3")
    with run_stack(compose, root, ports, flush=False) as stack:
        bucket = stack.api.env["SRSERVE_S3_BUCKET"]
        with Client(stack.api_url, timeout=30) as client:
            result = client.upscale(png_bytes(), model="bicubic", scale=2, timeout=120)
        assert result.job.status == "succeeded"
        assert Image.open(io.BytesIO(result.data)).size == (16, 12)
        keys = raw_keys(s3_endpoint, bucket)
        assert any(k.startswith(f"jobs/{result.job.id}/result") for k in keys), keys
        # nothing touched the shared volume: the input reached the worker through the bucket too
        blob_dir = Path(stack.api.env["SRSERVE_BLOB_DIR"])
        assert not any(p.is_file() for p in blob_dir.rglob("*")), "blobs written to the volume, not to S3"


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()
