from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, utcnow


class Role(StrEnum):
    student = "student"
    instructor = "instructor"


class User(Base):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, name="role", native_enum=False, create_constraint=True, length=16)
    )
    # The login id: a student number, or a staff number for instructors.
    student_number: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    # sha256 hex of the bearer token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_instructor(self) -> bool:
        return self.role == Role.instructor

    def __repr__(self) -> str:
        return f"<User {self.id} {self.student_number} {self.role}>"
