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
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error the API answers, ours or the framework's (a 422 included)."""

    error: str = Field(description="a stable code: not_found, invalid_request, daily_limit, ...")
    detail: str = Field(description="what went wrong and what to do, in English")
    detail_zh: str | None = Field(default=None, description="the same in Chinese")


def documented(description: str) -> dict[str, Any]:
    """An error response for a route's `responses`, with the ErrorBody schema."""
    return {"model": ErrorBody, "description": description}


# The errors any API route may answer, for the OpenAPI document (routes add their own, such as 429).
API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: documented(
        "`invalid_request`: a value the service cannot use (a NUL in a name, an id out of range)"
    ),
    401: documented("`unauthorized`: no token, or an unknown one"),
    403: documented("`forbidden`: an instructor's route"),
    404: documented("`not_found`: no such assignment or submission (another student's is not found either)"),
    422: documented("`invalid_request`: the request's parameters or body do not validate"),
    500: documented("`internal`: a fault on the service's side"),
    503: documented("`unavailable`: the database or the broker is unreachable; try again shortly"),
}


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


class Invalid(ServiceError):
    """A well-formed request whose values the service cannot take (as pydantic's 422s)."""

    status_code = 422
    code = "invalid_request"


class UnusableValue(ServiceError):
    """A value the database refused (status 400, as a value that could never be stored)."""

    code = "invalid_request"


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


def _validation_zh(err: Any) -> str:
    """A pydantic validation error in Chinese, for the error types requests hit (the English text,
    pydantic's own, beside it otherwise)."""
    ctx = err.get("ctx") or {}
    kind = str(err.get("type", ""))
    texts = {
        "missing": "缺少此项",
        "int_parsing": "应为整数",
        "int_type": "应为整数",
        "float_parsing": "应为数字",
        "float_type": "应为数字",
        "bool_parsing": "应为 true 或 false",
        "less_than_equal": f"应小于或等于 {ctx.get('le')}",
        "less_than": f"应小于 {ctx.get('lt')}",
        "greater_than_equal": f"应大于或等于 {ctx.get('ge')}",
        "greater_than": f"应大于 {ctx.get('gt')}",
        "string_too_long": f"最多 {ctx.get('max_length')} 个字符",
        "string_too_short": f"至少 {ctx.get('min_length')} 个字符",
        "literal_error": f"取值应为 {ctx.get('expected')}",
        "enum": f"取值应为 {ctx.get('expected')}",
        "json_invalid": "不是合法的 JSON",
        "datetime_from_date_parsing": "应为日期时间，例如 2026-12-01T23:59:00+08:00",
        "timezone_aware": "应带时区，例如 +08:00",
        "deadline_range": "截止时间应在 2000 年至 2999 年之间",
        "extra_forbidden": "不是可修改的字段，请检查拼写（见 /docs）",
    }
    return texts.get(kind, str(err.get("msg", "invalid")))


def _http_detail(status: int, detail: str) -> tuple[str, str]:
    """The framework's own errors (unknown path, wrong method, unreadable form) in English and Chinese."""
    if status == 404:
        return detail, "找不到这个地址；API 的地址以 /api/v1/ 开头，完整列表见 /docs。"
    if status == 405:
        return detail, "该地址不支持这种请求方法（GET/POST 等）；请查看 /docs。"
    if "multipart" in detail.lower():
        return (
            f"{detail} Upload the zip as the form field `file` (curl -F file=@hw.zip ...); a file name of "
            "thousands of characters can cause this too: rename the file.",
            "上传的表单数据无法读取。请把 zip 作为表单字段 `file` 上传（curl -F file=@hw.zip ...）；"
            "文件名过长（数千个字符）也会导致这个错误：请重命名文件。",
        )
    return detail, f"请求无法处理（HTTP {status}）：{detail}"


def install_error_handlers(app: FastAPI) -> None:
    """Render every error, ours or the framework's, in the same {"error", "detail"} shape."""

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts, parts_zh = [], []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            msg, msg_zh = str(err.get("msg", "invalid")), _validation_zh(err)
            parts.append(f"{where}: {msg}" if where else msg)
            parts_zh.append(f"{where}：{msg_zh}" if where else msg_zh)
        return JSONResponse(
            {
                "error": "invalid_request",
                "detail": "; ".join(parts) or "invalid request",
                "detail_zh": "请求格式不正确：" + "；".join(parts_zh) if parts_zh else "请求格式不正确",
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail, detail_zh = _http_detail(exc.status_code, str(exc.detail))
        return JSONResponse(
            {"error": code, "detail": detail, "detail_zh": detail_zh},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's last resort, after logging nothing of ours: a bug, or a fault no handler
        # above names. The client gets the API's JSON shape, not a plain-text "Internal Server Error".
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {
                "error": "internal",
                "detail": "The server failed to handle this request (a fault on its side, not yours). Try "
                "again; if it keeps happening, tell your instructor.",
                "detail_zh": "服务器处理这个请求时出错（是服务器的问题，不是你的）。请重试；如果一直出错，请告诉教师。",
            },
            status_code=500,
        )

    @app.exception_handler(DataError)
    async def _unusable_value(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value from the request: a NUL character in a slug or a name
        # (Postgres text cannot hold one), a number past its column's range. The client's, not ours.
        log.warning("refused a value on %s %s: %s", request.method, request.url.path, str(exc.orig)[:200])
        return error_response(
            UnusableValue(
                "A value in this request cannot be used: it has a NUL character, or a number out of range. "
                "Check the ids and names in the URL, the query and the body.",
                "请求中的某个值无法使用：含有 NUL 字符，或数字超出范围。请检查 URL、查询参数和请求体中的编号与名称。",
            )
        )

    @app.exception_handler(OperationalError)
    async def _db_unavailable(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return error_response(
            Unavailable("The database is unavailable; try again shortly.", "数据库暂时不可用，请稍后重试。")
        )
