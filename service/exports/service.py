"""Grades out as CSV for Excel: UTF-8 with a BOM (so Chinese names open correctly), CRLF lines."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from service.assignments.models import Assignment
from service.config import Settings
from service.leaderboards.service import gradebook_rows
from service.submissions.models import Result, Submission, SubmissionStatus
from service.users.models import Role, User

SCORES_HEADER = (
    "student_number",
    "display_name",
    "best_score",
    "passed",
    "submissions",
    "best_submission_id",
    "best_submitted_at",
    "late",
)

# Excel runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def excel_text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _flag(value: bool) -> str:
    return "1" if value else "0"


def to_csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """CSV as Excel opens it: UTF-8 with a BOM and CRLF line endings."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8-sig")


def scores_csv(session: Session, assignment: Assignment, settings: Settings) -> bytes:
    """One row per student: best graded score (ties to the earlier submission), passed, counts."""
    nth = (
        func.row_number()
        .over(
            partition_by=Result.owner_id,
            order_by=(Result.score.desc(), Result.submitted_at.asc(), Result.submission_id.asc()),
        )
        .label("nth")
    )
    graded = (
        select(
            Result.owner_id,
            Result.submission_id,
            Result.score,
            Result.submitted_at,
            Submission.late,
            func.max(case((Result.passed, 1), else_=0)).over(partition_by=Result.owner_id).label("passed"),
            nth,
        )
        .join(Submission, Submission.id == Result.submission_id)
        .where(Result.assignment_id == assignment.id, Submission.status == SubmissionStatus.graded)
        .subquery("graded")
    )
    best = {r.owner_id: r for r in session.execute(select(graded).where(graded.c.nth == 1))}
    counts: dict[int, int] = {
        owner_id: n
        for owner_id, n in session.execute(
            select(Submission.owner_id, func.count(Submission.id))
            .where(Submission.assignment_id == assignment.id)
            .group_by(Submission.owner_id)
        )
    }
    students = session.scalars(select(User).where(User.role == Role.student).order_by(User.student_number))
    rows = []
    for user in students:
        b = best.get(user.id)
        rows.append(
            (
                excel_text(user.student_number),
                excel_text(user.display_name),
                _number(b.score if b else None),
                _flag(bool(b and b.passed)),
                counts.get(user.id, 0),
                b.submission_id if b else "",
                _local(b.submitted_at, settings) if b else "",
                _flag(bool(b and b.late)) if b else "",
            )
        )
    return to_csv_bytes(SCORES_HEADER, rows)


def _local(value: datetime, settings: Settings) -> str:
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return aware.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S")


def gradebook_csv(session: Session) -> bytes:
    """One row per student; per assignment a score, a passed and a "passed late" column (1: passed
    only by submissions made after the deadline); then passed count and eligible."""
    slugs, rows = gradebook_rows(session)
    header = ["student_number", "display_name"]
    for slug in slugs:
        header += [f"{slug} score", f"{slug} passed", f"{slug} passed late"]
    header += ["passed", "total", "eligible"]
    out = []
    for row in rows:
        line: list[Any] = [excel_text(row["student_number"]), excel_text(row["display_name"])]
        for slug in slugs:
            line += [_number(row["scores"][slug]), _flag(row["passed"][slug]), _flag(row["late"][slug])]
        line += [row["passed_count"], row["total"], _flag(row["eligible"])]
        out.append(line)
    return to_csv_bytes(header, out)
