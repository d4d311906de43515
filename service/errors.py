"""Every error the API returns is `ErrorResponse` JSON: {"error": {"code", "message"}, "detail"}.

Routes raise `ApiError` (an HTTPException with a stable code); the handlers here turn it, FastAPI's
validation errors, Starlette's 404/405, Redis outages (503 + Retry-After) and anything unexpected
(500, logged) into that shape.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from srserve.schemas import ErrorInfo, ErrorResponse

log = logging.getLogger(__name__)

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "upload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(StarletteHTTPException):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.extra = detail


def error_response(
    status_code: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(code=code, message=message), detail=detail)
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code, headers=headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.message, exc.extra, exc.headers)
    if exc.status_code == 400 and isinstance(exc.detail, str) and (mapped := multipart_error(exc.detail)):
        return error_response(mapped[0], mapped[1], exc.detail, None)
    code = _CODES_BY_STATUS.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, None, getattr(exc, "headers", None))


# Starlette's multipart parser reports its limits (service.main: form_limits) as a 400 with these
# messages; give them the API's stable codes
_MULTIPART_ERRORS = (
    ("Too many files.", 413, "too_many_parts"),
    ("Too many fields.", 413, "too_many_fields"),
    ("Field exceeded maximum size", 413, "form_field_too_large"),
    ("Part exceeded maximum size", 413, "form_field_too_large"),
    ("The Content-Disposition header field", 400, "malformed_multipart"),
    ("Missing boundary in multipart", 400, "malformed_multipart"),
    ("Invalid multipart data", 400, "malformed_multipart"),
)


def multipart_error(message: str) -> tuple[int, str] | None:
    for prefix, status, code in _MULTIPART_ERRORS:
        if message.startswith(prefix):
            return status, code
    return None


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie", "form")]
    return ".".join(parts) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # keep loc/msg/type only: `input` may hold the uploaded bytes, `ctx` exception objects
    errors = [
        {"field": _field(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return error_response(422, "invalid_request", message, errors)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    settings = getattr(request.app.state, "settings", None)
    retry_after = str(getattr(settings, "retry_after_s", 5))
    log.warning("Redis unavailable: %s", exc)
    return error_response(
        503,
        "redis_unavailable",
        "the job store is unreachable; retry shortly",
        None,
        {"Retry-After": retry_after},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(redis.exceptions.ConnectionError, _redis_down)
    app.add_exception_handler(redis.exceptions.TimeoutError, _redis_down)
    app.add_exception_handler(Exception, _unexpected)


# OpenAPI: the error shape of each documented status
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse} for s in statuses}
