"""hwgrade's evaluation engine: safe intake, sandboxed runs of student code, trusted scoring.

A library with no database, web or Celery imports (service -> grader -> reference).
"""

from grader.assignments import BUILTIN_ASSIGNMENTS, AssignmentSpec, get_assignment
from grader.grade import grade
from grader.report import CheckResult, ErrorCode, GradeReport

__all__ = [
    "AssignmentSpec",
    "BUILTIN_ASSIGNMENTS",
    "CheckResult",
    "ErrorCode",
    "GradeReport",
    "get_assignment",
    "grade",
]
