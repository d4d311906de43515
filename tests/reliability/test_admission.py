"""Retries and overload against the live service (real HTTP, Redis, worker): `Idempotency-Key`
makes a retried submission return the first job, and backpressure refuses new jobs with 429 +
Retry-After once the queue is deeper than SRSERVE_MAX_QUEUE_DEPTH."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from service.auth import KeyStore
from tests.conftest import LiveService
from tests.reliability.conftest import ExtraApi
from tests.service import images


def _post(client: httpx.Client, image: bytes, key: str | None = None, token: str | None = None,
          **form: str) -> httpx.Response:
    headers = {}
    if key is not None:
        headers["Idempotency-Key"] = key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/v1/upscale", files={"image": ("a.png", image, "image/png")},
                       data={"scale": "2", "model": "bicubic", **form}, headers=headers)


def test_same_idempotency_key_same_request_same_job(live: LiveService, redis_conn: Redis) -> None:
    key, image = f"order-{uuid.uuid4()}", images.png(20, 14, seed=1)
    with live.client() as c:
        first = _post(c, image, key)
        again = _post(c, image, key)
        other_key = _post(c, image, f"order-{uuid.uuid4()}")
        plain = _post(c, image)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.headers["Location"] == first.headers["Location"]
    assert len({first.json()["id"], other_key.json()["id"], plain.json()["id"]}) == 3
    done = live.wait_for(first.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    with live.client() as c:  # still the same job once it has finished
        late = _post(c, image, key)
    assert late.status_code == 202 and late.json()["id"] == first.json()["id"]
    assert late.json()["status"] == "succeeded"


def test_same_key_different_request_is_refused(live: LiveService) -> None:
    key = f"k-{uuid.uuid4()}"
    with live.client() as c:
        first = _post(c, images.png(20, 14, seed=1), key)
        other_image = _post(c, images.png(20, 14, seed=2), key)
        other_scale = _post(c, images.png(20, 14, seed=1), key, scale="3")
    assert first.status_code == 202
    for resp in (other_image, other_scale):
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "idempotency_key_reused"


def test_failed_first_attempt_does_not_hold_the_key(live: LiveService) -> None:
    key = f"k-{uuid.uuid4()}"
    with live.client() as c:
        bad = _post(c, b"not an image", key)
        good = _post(c, images.png(12, 12), key)  # the retry with a fixed upload goes through
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "not_an_image"
    assert good.status_code == 202, good.text


def test_concurrent_duplicates_create_one_job(live: LiveService, redis_conn: Redis) -> None:
    key, image = f"k-{uuid.uuid4()}", images.png(40, 30, seed=7)

    def send(_: int) -> httpx.Response:
        with live.client() as c:
            return _post(c, image, key)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    created = [r for r in answers if r.status_code == 202]
    assert created and all(r.status_code in (202, 409) for r in answers), [r.text for r in answers]
    assert {r.json()["id"] for r in created} == {created[0].json()["id"]}
    for r in answers:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "idempotency_key_in_flight" and r.headers["Retry-After"]
    fresh = [r for r in created if "Idempotent-Replayed" not in r.headers]
    assert len(fresh) == 1, "more than one request created a job"


def test_idempotency_keys_are_per_api_key(live: LiveService, redis_conn: Redis) -> None:
    store = KeyStore(redis_conn)
    (_, token_a), (_, token_b) = store.create("tenant-a"), store.create("tenant-b")
    key, image = f"k-{uuid.uuid4()}", images.png(16, 16, seed=3)
    with live.client() as c:
        a1, b1, a2 = _post(c, image, key, token_a), _post(c, image, key, token_b), _post(c, image, key, token_a)
    assert a1.status_code == b1.status_code == a2.status_code == 202
    assert a1.json()["id"] == a2.json()["id"] != b1.json()["id"]


def test_backpressure_429_with_retry_after(make_api: ExtraApi, redis_conn: Redis) -> None:
    queue_name = f"bp-{uuid.uuid4().hex[:8]}"  # no worker listens: accepted jobs stay queued
    overrides = {"SRSERVE_MAX_QUEUE_DEPTH": "3", "SRSERVE_QUEUE_NAME": queue_name, "SRSERVE_RETRY_AFTER_S": "7"}
    with make_api(**overrides) as api, api.client() as c:
        accepted = [_post(c, images.png(10, 10, seed=i)) for i in range(3)]
        refused = _post(c, images.png(10, 10, seed=9))
        still_readable = c.get(f"/v1/jobs/{accepted[0].json()['id']}")
        assert [r.status_code for r in accepted] == [202, 202, 202]
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "queue_full"
        assert refused.json()["detail"] == {"queued": 3, "limit": 3}
        assert refused.headers["Retry-After"] == "7"
        assert still_readable.status_code == 200  # only new work is refused
        assert c.delete(f"/v1/jobs/{accepted[0].json()['id']}").status_code == 200
        assert _post(c, images.png(10, 10, seed=10)).status_code == 202  # room again
        metrics = c.get("/metrics").text
    queue = Queue(queue_name, connection=redis_conn, serializer=JSONSerializer)
    assert queue.count == 3  # nothing accepted was dropped, nothing refused was stored
    assert 'status="429"' in metrics  # refusals are counted like every other answer
