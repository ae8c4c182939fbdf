from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.users.models import Role


class UserCreate(BaseModel):
    student_number: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    role: Role = Role.student


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    student_number: str
    display_name: str
    role: Role
    created_at: datetime
