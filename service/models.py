"""Every table, imported in one place (Alembic, the worker and tests need the full metadata)."""

from service.assignments.models import Assignment
from service.db import Base
from service.leaderboards.models import BoardEntry
from service.submissions.models import Result, Submission, SubmissionStatus
from service.users.models import Role, User

__all__ = ["Assignment", "Base", "BoardEntry", "Result", "Role", "Submission", "SubmissionStatus", "User"]
