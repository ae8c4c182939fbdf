"""Plain factory functions for service tests."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from grader.assignments import BUILTIN_ASSIGNMENTS
from service.assignments.models import Assignment
from service.assignments.service import create_from_spec
from service.users.models import Role, User
from service.users.schemas import UserCreate
from service.users.service import create_user as _create_user

_numbers = itertools.count(1)


def create_user(session: Session, role: Role = Role.student, **kw: Any) -> tuple[User, str]:
    n = next(_numbers)
    data = UserCreate(
        student_number=kw.pop("student_number", f"2024{n:05d}"),
        display_name=kw.pop("display_name", f"学生 {n}"),
        role=role,
    )
    return _create_user(session, data)


def create_instructor(session: Session) -> tuple[User, str]:
    return create_user(session, Role.instructor)


def create_assignment(session: Session, slug: str = "activations", **overrides: Any) -> Assignment:
    assignment = create_from_spec(session, BUILTIN_ASSIGNMENTS[slug])
    for key, value in overrides.items():
        setattr(assignment, key, value)
    session.flush()
    return assignment


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
