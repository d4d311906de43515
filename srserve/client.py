"""Python client for the srserve HTTP API (sync `Client` and async `AsyncClient`, both on httpx).

    from srserve.client import Client
    with Client("http://127.0.0.1:8000") as c:
        out = c.upscale("photo.png", scale=4)
        out.save("photo_x4.png"); print(out.metrics.lr_consistency_psnr)

Results are the service's own pydantic models (`srserve.schemas`), never re-declared here. Every
non-2xx answer raises `APIError` carrying the parsed `ErrorResponse`; a job that ends `failed` or
`canceled` raises `JobFailedError` carrying the final `JobView`. 429/503 answers are retried after
their `Retry-After`. Waiting for a job long-polls (`GET /v1/jobs/{id}?wait=S`: one request that the
server answers when the job ends); against a server without long polls it polls, backing off
exponentially with jitter so many clients do not poll in step.
"""

from __future__ import annotations

import asyncio
import email.utils
import mimetypes
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Self

import httpx
from pydantic import ValidationError

from srserve.schemas import ErrorInfo, ErrorResponse, JobMetrics, JobView, ModelList, ModelView, OutputFormat

__all__ = [
    "DEFAULT_URL",
    "APIError",
    "AsyncClient",
    "Client",
    "ImageSource",
    "JobFailedError",
    "JobTimeoutError",
    "SRServeError",
    "UpscaleResult",
]

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
RETRY_STATUSES = frozenset({429, 503})  # the service's "come back later" answers (backpressure, Redis down)

# An image given as a path, raw bytes or an open binary file.
ImageSource = str | os.PathLike[str] | bytes | IO[bytes]
ProgressCallback = Callable[[JobView], None]


class SRServeError(Exception):
    """Base of every error this client raises."""


class APIError(SRServeError):
    """A non-2xx answer. `response` is the service's ErrorResponse (synthesised when the body was not one)."""

    def __init__(self, status_code: int, response: ErrorResponse, headers: httpx.Headers | None = None) -> None:
        super().__init__(f"HTTP {status_code} {response.error.code}: {response.error.message}")
        self.status_code = status_code
        self.response = response
        self.headers = headers or httpx.Headers()

    @property
    def code(self) -> str:
        return self.response.error.code

    @property
    def message(self) -> str:
        return self.response.error.message

    @property
    def detail(self) -> Any:
        return self.response.detail


class JobFailedError(SRServeError):
    """The job ended `failed` or `canceled`; `job.error` says why."""

    def __init__(self, job: JobView) -> None:
        err = job.error or ErrorInfo(code=f"job_{job.status}", message=f"job {job.id} was {job.status}")
        super().__init__(f"job {job.id} {job.status}: {err.code}: {err.message}")
        self.job = job
        self.error = err

    @property
    def code(self) -> str:
        return self.error.code


class JobTimeoutError(SRServeError, TimeoutError):
    """The job did not finish within the caller's timeout (it keeps running on the server)."""

    def __init__(self, job: JobView, timeout: float) -> None:
        super().__init__(f"job {job.id} still {job.status} after {timeout:g} s")
        self.job = job


@dataclass
class UpscaleResult:
    """A finished job and its image bytes."""

    job: JobView
    data: bytes
    content_type: str

    @property
    def metrics(self) -> JobMetrics | None:
        return self.job.metrics

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the result as reported by the service."""
        if self.job.result is None:
            raise ValueError("job has no result info")
        return self.job.result.width, self.job.result.height

    def save(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.write_bytes(self.data)
        return out


@dataclass
class Backoff:
    """Exponential backoff with "equal jitter": half the delay fixed, half random."""

    initial: float = 0.2
    factor: float = 1.6
    maximum: float = 2.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        d = min(self.maximum, self.initial * self.factor**attempt)
        return d / 2 + self.rng.uniform(0, d / 2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_from_response(response: httpx.Response) -> APIError:
    """Parse the service's ErrorResponse; fall back to a synthetic one for foreign bodies (proxies, FastAPI's
    own request-validation 422) so callers can always switch on `.code`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    try:
        parsed = ErrorResponse.model_validate(body)
    except ValidationError:
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, str):
            message = detail
        else:
            message = (response.text[:500] if body is None else "") or response.reason_phrase or "error"
        parsed = ErrorResponse(
            error=ErrorInfo(code=f"http_{response.status_code}", message=message),
            detail=body if body is not None else None,
        )
    return APIError(response.status_code, parsed, response.headers)


def _file_part(source: ImageSource, default_name: str) -> tuple[str, bytes, str]:
    """(filename, bytes, content type) for one multipart file field."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), default_name
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        data, name = path.read_bytes(), path.name
    else:
        data = source.read()
        name = Path(str(getattr(source, "name", default_name))).name or default_name
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, data, ctype


class _Base:
    """What the sync and async clients share: request building and response parsing, no I/O."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        poll: Backoff | None,
        max_retries: int,
        max_retry_wait: float,
        timeout: float = 60.0,
        long_poll: float = 20.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.long_poll = long_poll
        self.api_key = api_key
        self.poll = poll or Backoff()
        self.retry_backoff = Backoff(initial=0.5, factor=2.0, maximum=10.0)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait

    def _long_poll_kwargs(self, wait: float) -> dict[str, Any]:
        if wait <= 0:
            return {}
        # the server holds the request up to `wait` s: the read timeout must outlast it
        return {"params": {"wait": f"{wait:g}"}, "timeout": self.timeout + wait}

    def _next_wait(self, deadline: float | None, on_progress: ProgressCallback | None) -> float:
        """Seconds the next status request may be held by the server (0: a plain poll). With a
        progress callback, 1 s: the answer still comes the moment the job ends."""
        if self.long_poll <= 0:
            return 0.0
        wait = min(self.long_poll, 1.0) if on_progress is not None else self.long_poll
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        return round(wait, 3)

    def _poll_delay(self, waited: float, asked: float, attempt: int) -> float:
        """Pause before the next status request: none after a long poll the server held (it already
        waited), else the polling backoff (plain polls, or a server that answered at once)."""
        return 0.0 if asked > 0 and waited >= asked / 2 else self.poll.delay(attempt)

    def _after_status(self, job: JobView, *, waited: float, asked: float, attempt: int,
                      deadline: float | None, timeout: float | None,
                      on_progress: ProgressCallback | None) -> float | None:
        """After one status answer: None when the job is terminal, else the pause before the next
        request (raises JobTimeoutError once the deadline has passed)."""
        if on_progress is not None:
            on_progress(job)
        if job.status in TERMINAL_STATUSES:
            return None
        delay = self._poll_delay(waited, asked, attempt)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobTimeoutError(job, timeout or 0.0)
            delay = min(delay, left)
        return delay

    def _limit_from(self, error: APIError) -> bool:
        """A server with a shorter (or no) long poll says so: adopt its limit and retry."""
        if error.response.error.code != "wait_too_long":
            return False
        detail = error.response.detail if isinstance(error.response.detail, dict) else {}
        self.long_poll = float(detail.get("max_wait_s", 0.0))
        return True

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "srserve-client"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    @staticmethod
    def _upload(
        image: ImageSource | None,
        frames: Sequence[ImageSource] | None,
        model: str | None,
        scale: int,
        reference: ImageSource | None,
        format: OutputFormat,
        reference_frame: int | None,
    ) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
        if (image is None) == (not frames):
            raise ValueError("give exactly one of `image` or `frames`")
        data: dict[str, str] = {"scale": str(int(scale)), "format": format}
        if model:
            data["model"] = model
        if reference_frame is not None:
            data["reference_frame"] = str(int(reference_frame))
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        if image is not None:
            files.append(("image", _file_part(image, "image")))
        else:
            assert frames is not None
            files.extend(("frames", _file_part(f, f"frame{i}")) for i, f in enumerate(frames))
        if reference is not None:
            files.append(("reference", _file_part(reference, "reference")))
        return data, files

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when this answer is final."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        after = parse_retry_after(response.headers.get("Retry-After"))
        delay = self.retry_backoff.delay(attempt) if after is None else after
        return min(delay, self.max_retry_wait)

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        raise error_from_response(response)

    @staticmethod
    def _job(response: httpx.Response) -> JobView:
        return JobView.model_validate(response.json())

    @staticmethod
    def _result_path(job: JobView) -> str:
        if job.result is not None and job.result.url:
            return job.result.url
        return job.links.get("result") or f"/v1/jobs/{job.id}/result"

    def _url(self, path: str) -> str:
        # the service may hand back absolute URLs (links) or paths; keep absolute ones as they are
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"


class Client(_Base):
    """Synchronous client. Use as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        poll: Backoff | None = None,
        max_retries: int = 8,
        max_retry_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        long_poll: float = 20.0,
    ) -> None:
        super().__init__(base_url, api_key, poll, max_retries, max_retry_wait, timeout, long_poll)
        self._http = httpx.Client(timeout=timeout, transport=transport, headers=self._headers())
        self._sleep = sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        attempt = 0
        while True:
            response = self._http.request(method, self._url(path), **kw)
            delay = self._retry_delay(response, attempt)
            if delay is None:
                return self._check(response)
            self._sleep(delay)
            attempt += 1

    def submit(
        self,
        image: ImageSource | None = None,
        *,
        frames: Sequence[ImageSource] | None = None,
        model: str | None = None,
        scale: int = 4,
        reference: ImageSource | None = None,
        format: OutputFormat = "png",
        reference_frame: int | None = None,
    ) -> JobView:
        """POST /v1/upscale: one `image`, or a burst of `frames`. Returns the queued job."""
        data, files = self._upload(image, frames, model, scale, reference, format, reference_frame)
        return self._job(self._request("POST", "/v1/upscale", data=data, files=files))

    def status(self, job_id: str, *, wait: float = 0.0) -> JobView:
        """GET /v1/jobs/{id}; with `wait`, the server answers when the job ends or after `wait` s."""
        return self._job(self._request("GET", f"/v1/jobs/{job_id}", **self._long_poll_kwargs(wait)))

    def result(self, job_id: str | JobView) -> bytes:
        """The result image bytes (APIError 409 while the job is not finished)."""
        path = self._result_path(job_id) if isinstance(job_id, JobView) else f"/v1/jobs/{job_id}/result"
        return self._request("GET", path, headers={"Accept": "*/*"}).content

    def cancel(self, job_id: str) -> JobView:
        response = self._request("DELETE", f"/v1/jobs/{job_id}")
        return self._job(response) if response.content else self.status(job_id)

    def models(self) -> list[ModelView]:
        return ModelList.model_validate(self._request("GET", "/v1/models").json()).models

    def wait(
        self, job_id: str, *, timeout: float | None = 600.0, on_progress: ProgressCallback | None = None
    ) -> JobView:
        """Wait until the job reaches a terminal status; returns it whatever that status is. Long polls
        (`?wait=`, `long_poll` s each) when the server offers them, else polls with backoff."""
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            wait = self._next_wait(deadline, on_progress)
            started = time.monotonic()
            try:
                job = self.status(job_id, wait=wait)
            except APIError as exc:
                if wait > 0 and self._limit_from(exc):
                    continue
                raise
            delay = self._after_status(job, waited=time.monotonic() - started, asked=wait, attempt=attempt,
                                       deadline=deadline, timeout=timeout, on_progress=on_progress)
            if delay is None:
                return job
            if delay > 0:
                self._sleep(delay)
            attempt += 1

    def upscale(
        self,
        image: ImageSource | None = None,
        *,
        model: str | None = None,
        scale: int = 4,
        reference: ImageSource | None = None,
        format: OutputFormat = "png",
        frames: Sequence[ImageSource] | None = None,
        reference_frame: int | None = None,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> UpscaleResult:
        """Submit, wait, download. Raises JobFailedError when the job fails or is canceled."""
        job = self.submit(
            image, frames=frames, model=model, scale=scale, reference=reference,
            format=format, reference_frame=reference_frame,
        )  # fmt: skip
        job = self.wait(job.id, timeout=timeout, on_progress=on_progress)
        if job.status != "succeeded":
            raise JobFailedError(job)
        response = self._request("GET", self._result_path(job), headers={"Accept": "*/*"})
        return UpscaleResult(job, response.content, response.headers.get("content-type", ""))


class AsyncClient(_Base):
    """asyncio twin of `Client`: the same methods, awaited."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        poll: Backoff | None = None,
        max_retries: int = 8,
        max_retry_wait: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        long_poll: float = 20.0,
    ) -> None:
        super().__init__(base_url, api_key, poll, max_retries, max_retry_wait, timeout, long_poll)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, headers=self._headers())
        self._sleep = sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        attempt = 0
        while True:
            response = await self._http.request(method, self._url(path), **kw)
            delay = self._retry_delay(response, attempt)
            if delay is None:
                return self._check(response)
            await self._sleep(delay)
            attempt += 1

    async def submit(
        self,
        image: ImageSource | None = None,
        *,
        frames: Sequence[ImageSource] | None = None,
        model: str | None = None,
        scale: int = 4,
        reference: ImageSource | None = None,
        format: OutputFormat = "png",
        reference_frame: int | None = None,
    ) -> JobView:
        # file reading is small and local; building the parts synchronously keeps one code path
        data, files = self._upload(image, frames, model, scale, reference, format, reference_frame)
        return self._job(await self._request("POST", "/v1/upscale", data=data, files=files))

    async def status(self, job_id: str, *, wait: float = 0.0) -> JobView:
        return self._job(await self._request("GET", f"/v1/jobs/{job_id}", **self._long_poll_kwargs(wait)))

    async def result(self, job_id: str | JobView) -> bytes:
        path = self._result_path(job_id) if isinstance(job_id, JobView) else f"/v1/jobs/{job_id}/result"
        return (await self._request("GET", path, headers={"Accept": "*/*"})).content

    async def cancel(self, job_id: str) -> JobView:
        response = await self._request("DELETE", f"/v1/jobs/{job_id}")
        return self._job(response) if response.content else await self.status(job_id)

    async def models(self) -> list[ModelView]:
        return ModelList.model_validate((await self._request("GET", "/v1/models")).json()).models

    async def wait(
        self, job_id: str, *, timeout: float | None = 600.0, on_progress: ProgressCallback | None = None
    ) -> JobView:
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            wait = self._next_wait(deadline, on_progress)
            started = time.monotonic()
            try:
                job = await self.status(job_id, wait=wait)
            except APIError as exc:
                if wait > 0 and self._limit_from(exc):
                    continue
                raise
            delay = self._after_status(job, waited=time.monotonic() - started, asked=wait, attempt=attempt,
                                       deadline=deadline, timeout=timeout, on_progress=on_progress)
            if delay is None:
                return job
            if delay > 0:
                await self._sleep(delay)
            attempt += 1

    async def upscale(
        self,
        image: ImageSource | None = None,
        *,
        model: str | None = None,
        scale: int = 4,
        reference: ImageSource | None = None,
        format: OutputFormat = "png",
        frames: Sequence[ImageSource] | None = None,
        reference_frame: int | None = None,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> UpscaleResult:
        job = await self.submit(
            image, frames=frames, model=model, scale=scale, reference=reference,
            format=format, reference_frame=reference_frame,
        )  # fmt: skip
        job = await self.wait(job.id, timeout=timeout, on_progress=on_progress)
        if job.status != "succeeded":
            raise JobFailedError(job)
        response = await self._request("GET", self._result_path(job), headers={"Accept": "*/*"})
        return UpscaleResult(job, response.content, response.headers.get("content-type", ""))
