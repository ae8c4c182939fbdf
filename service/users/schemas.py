from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.users.models import Role


class UserCreate(BaseModel):
    # Stripped first: " 2023021 " typed on a command line is the student 2023021.
    model_config = ConfigDict(str_strip_whitespace=True)

    student_number: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    role: Role = Role.student

    @field_validator("student_number", "display_name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError(
                "must be one line of text, without tabs or control characters / 应为单行文本，不含制表符或控制字符"
            )
        return value


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    student_number: str
    display_name: str
    role: Role
    created_at: datetime
