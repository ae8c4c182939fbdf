"""Assignments: the built-in specs copied into the database, plus the course's rules."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Select, String, bindparam, select
from sqlalchemy.orm import Session

from grader.assignments import AssignmentSpec
from service.assignments.models import Assignment
from service.assignments.schemas import AssignmentUpdate
from service.errors import ServiceError

DEFAULT_DAILY_LIMIT = 10


def get_by_slug(session: Session, slug: str) -> Assignment | None:
    return session.scalar(_by_slug_statement(), {"slug": slug})


@functools.cache
def _by_slug_statement() -> Select[Assignment]:
    """Built once: every request under /assignments/{slug} runs it (see users.service._by_token_statement)."""
    return select(Assignment).where(Assignment.slug == bindparam("slug", type_=String))


def list_assignments(session: Session) -> list[Assignment]:
    return list(session.scalars(select(Assignment).order_by(Assignment.id)))


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
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is None and field != "deadline":
            continue
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
        setattr(assignment, field, value)
    session.flush()
    return assignment
