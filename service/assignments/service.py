"""Assignments: the built-in specs copied into the database, plus the course's rules."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Select, String, bindparam, false, select
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session

from grader.assignments import FUNCTION_KINDS, AssignmentSpec
from service.assignments.models import Assignment
from service.assignments.schemas import AssignmentUpdate
from service.errors import Invalid, NotFound, ServiceError

DEFAULT_DAILY_LIMIT = 10


def get_by_slug(session: Session, slug: str) -> Assignment | None:
    return session.scalar(_by_slug_statement(), {"slug": slug})


@functools.cache
def _by_slug_statement() -> Select[Assignment]:
    """Built once: every request under /assignments/{slug} runs it (see users.service._by_token_statement)."""
    return select(Assignment).where(Assignment.slug == bindparam("slug", type_=String))


def list_assignments(session: Session) -> list[Assignment]:
    return list(session.scalars(select(Assignment).order_by(Assignment.id)))


def no_such_assignment(session: Session, slug: str) -> NotFound:
    """The 404 for an unknown slug, naming the course's assignments (a typo is the usual cause)."""
    slugs = ", ".join(session.scalars(select(Assignment.slug).order_by(Assignment.id)))
    return NotFound(
        f"No assignment {slug!r}. The course's assignments are: {slugs or '(none yet)'} "
        "(GET /api/v1/assignments lists them).",
        f"没有名为 {slug} 的作业。本课程的作业有：{slugs or '（暂无）'}（GET /api/v1/assignments 可列出）。",
    )


def create_from_spec(
    session: Session, spec: AssignmentSpec, *, daily_limit: int = DEFAULT_DAILY_LIMIT
) -> Assignment:
    assignment = Assignment(
        slug=spec.slug,
        title=spec.title,
        title_zh=spec.title_zh,
        kind=spec.kind,
        spec=spec.model_dump(mode="json"),
        pass_threshold=spec.pass_threshold,
        daily_limit=daily_limit,
    )
    session.add(assignment)
    session.flush()
    return assignment


def sync_specs(session: Session, specs: Iterable[AssignmentSpec]) -> list[tuple[Assignment, bool]]:
    """Create missing assignments and refresh the stored spec of existing ones.

    The course's own settings (deadline, daily limit, pass threshold, queue) are never overwritten.
    Returns each assignment with whether it was created.
    """
    out: list[tuple[Assignment, bool]] = []
    for spec in specs:
        existing = get_by_slug(session, spec.slug)
        if existing is None:
            out.append((create_from_spec(session, spec), True))
            continue
        if existing.kind != spec.kind:
            raise ServiceError(
                f"assignment {spec.slug!r} exists with kind {existing.kind!r}, not {spec.kind!r}",
                f"作业 {spec.slug} 已存在，类型为 {existing.kind}",
            )
        existing.spec = spec.model_dump(mode="json")
        existing.title, existing.title_zh = spec.title, spec.title_zh
        out.append((existing, False))
    session.flush()
    return out


def update(session: Session, assignment: Assignment, data: AssignmentUpdate) -> Assignment:
    """Apply an instructor's change. Results and submissions follow the new rules in the same
    transaction: a new pass mark judges every graded result again (its pass flag and its check's
    text; no code runs), a new deadline marks every submission late or not by it again."""
    old_threshold, old_deadline = assignment.pass_threshold, assignment.deadline
    threshold = data.pass_threshold
    if threshold is not None and threshold != 1.0 and assignment.kind in FUNCTION_KINDS:
        # HOMEWORK.md: "Passing means all checks pass". A lower mark was stored and shown to students,
        # and changed nobody's pass flag.
        raise Invalid(
            f"{assignment.slug} is a function assignment: it is passed when every check passes (the "
            f"homework contract), so its pass_threshold stays 1.0. Only model assignments take another mark.",
            f"{assignment.slug} 是函数作业：所有检查都通过才算及格（作业约定），因此 pass_threshold 固定为 1.0。"
            f"只有模型作业可以设置其他及格线。",
        )
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is None and field != "deadline":
            continue
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
        setattr(assignment, field, value)
    session.flush()
    rejudge = assignment.pass_threshold != old_threshold
    remark = assignment.deadline != old_deadline
    if rejudge:
        rejudge_results(session, assignment)
    if remark:
        remark_late(session, assignment)
    if rejudge or remark:  # the boards show pass flags and late marks
        from service.leaderboards.service import renew_board_tags

        renew_board_tags(session, assignment.id)
    session.flush()
    return assignment


def rejudge_results(session: Session, assignment: Assignment) -> int:
    """Judge every graded result of `assignment` again under its current pass mark (grader.verdict);
    returns how many changed."""
    from grader.grade import verdict
    from grader.report import CheckResult
    from service.submissions.models import Result, Submission, SubmissionStatus

    spec = assignment.grading_spec()
    rows = session.scalars(
        select(Result)
        .join(Submission, Submission.id == Result.submission_id)
        .where(Result.assignment_id == assignment.id, Submission.status == SubmissionStatus.graded)
    )
    changed = 0
    for result in rows:
        checks = [CheckResult.model_validate(c) for c in result.checks or []]
        passed, checks = verdict(spec, result.score, result.metrics or {}, checks)
        new_checks = [c.model_dump(mode="json") for c in checks]
        if passed != result.passed or new_checks != result.checks:
            changed += passed != result.passed
            result.passed, result.checks = passed, new_checks
    session.flush()
    return changed


def remark_late(session: Session, assignment: Assignment) -> int:
    """Mark each submission of `assignment` late or not by its current deadline (as an upload is
    marked: late when made after it); returns how many rows the update touched."""
    from service.submissions.models import Submission

    late = false() if assignment.deadline is None else Submission.created_at > assignment.deadline
    stmt = (
        sa_update(Submission)
        .where(Submission.assignment_id == assignment.id, Submission.late.is_distinct_from(late))
        .values(late=late)
        .execution_options(synchronize_session="fetch")
    )
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]
