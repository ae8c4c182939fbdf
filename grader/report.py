"""The grade report: what one evaluation of one submission produced.

Every outcome, including a hostile or broken submission, ends as a `GradeReport`: either
`status="graded"` with a score, or `status="error"` with an `ErrorInfo` whose code says what went wrong.
Student-facing text is always given in English and Chinese.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorCode(StrEnum):
    """Stable machine-readable error codes (the API and the UI key on them)."""

    not_a_zip = "not_a_zip"
    unsafe_archive = "unsafe_archive"
    too_large = "too_large"
    bad_manifest = "bad_manifest"
    no_model_found = "no_model_found"
    ambiguous_model = "ambiguous_model"
    import_failed = "import_failed"
    load_failed = "load_failed"
    timeout = "timeout"
    memory_limit = "memory_limit"
    process_limit = "process_limit"
    bad_output = "bad_output"
    missing_function = "missing_function"
    crashed = "crashed"
    sandbox_unavailable = "sandbox_unavailable"
    internal = "internal"


class Message(BaseModel):
    """A student-facing message in English and Chinese."""

    en: str
    zh: str


class ErrorInfo(BaseModel):
    code: ErrorCode
    message: str
    message_zh: str


class GradeError(Exception):
    """Raised inside the grader for a submission problem; `grade()` turns it into an error report."""

    def __init__(self, code: ErrorCode, message: str, message_zh: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_zh = message_zh

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message, message_zh=self.message_zh)


class CheckResult(BaseModel):
    """One named check: what was expected, what the submission returned, and why it failed."""

    name: str
    passed: bool
    message: str = ""
    message_zh: str = ""
    input: Any = None
    expected: Any = None
    got: Any = None
    hint: Message | None = None


class DatasetInfo(BaseModel):
    name: str
    sha256: str
    n: int


class GradeReport(BaseModel):
    status: Literal["graded", "error"]
    assignment: str
    score: float = Field(default=0.0, ge=0.0, le=1.0)
    passed: bool = False
    metrics: dict[str, Any] = Field(default_factory=dict)
    checks: list[CheckResult] = Field(default_factory=list)
    hints: list[Message] = Field(default_factory=list)
    error: ErrorInfo | None = None
    discovery: dict[str, Any] = Field(default_factory=dict)
    attachments: list[str] = Field(default_factory=list)
    # The folders intake looked through ("hw" or "hw/hw"): `attachments` are relative to them, but for
    # those that sat beside them, listed by their zip path.
    attachments_root: str | None = None
    logs_tail: str = ""  # the student's code's own output (students see it)
    # For an `internal` error, where the grader itself failed: for the instructors, never shown to the
    # student (whose code did not cause it).
    grader_traceback: str = ""
    timings: dict[str, float] = Field(default_factory=dict)
    sandbox: str = ""
    dataset: DatasetInfo | None = None
    grader_version: str = "0.1.0"

    @classmethod
    def failure(cls, assignment: str, err: GradeError, **kw: Any) -> GradeReport:
        return cls(status="error", assignment=assignment, error=err.info(), **kw)
