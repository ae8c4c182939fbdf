"""Typed service errors and the one handler that renders every error as {"error", "detail"}.

Each error carries its HTTP status, a stable code, an English detail and a Chinese `detail_zh`
(students read the Chinese one).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ServiceError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, detail: str, detail_zh: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.detail_zh = detail_zh
        self.headers = headers

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.detail_zh:
            body["detail_zh"] = self.detail_zh
        return body


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, detail: str, detail_zh: str = "") -> None:
        super().__init__(detail, detail_zh, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class UploadError(ServiceError):
    """A rejected upload; subclasses name the reason."""


class EmptyFile(UploadError):
    code = "empty_file"


class MissingFile(UploadError):
    code = "missing_file"


class ExpectedMultipart(UploadError):
    status_code = 415
    code = "expected_multipart"


class NotAZip(UploadError):
    status_code = 415
    code = "not_a_zip"


class WrongArchiveKind(UploadError):
    status_code = 415
    code = "unsupported_archive"


class TooLarge(UploadError):
    status_code = 413
    code = "too_large"


class LengthRequired(UploadError):
    status_code = 411
    code = "length_required"


class DailyLimitReached(ServiceError):
    status_code = 429
    code = "daily_limit"


class DeadlinePassed(ServiceError):
    status_code = 403
    code = "deadline_passed"


class Unavailable(ServiceError):
    status_code = 503
    code = "unavailable"


def error_response(err: ServiceError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status_code, headers=err.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error, ours or the framework's, in the same {"error", "detail"} shape."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
        return JSONResponse(
            {
                "error": "invalid_request",
                "detail": "; ".join(parts) or "invalid request",
                "detail_zh": "请求格式不正确",
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def _db_unavailable(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return error_response(
            Unavailable("The database is unavailable; try again shortly.", "数据库暂时不可用，请稍后重试。")
        )
