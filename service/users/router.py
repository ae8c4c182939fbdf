from __future__ import annotations

from fastapi import APIRouter

from service.deps import CurrentUser, RequireInstructor, SessionDep
from service.users import service
from service.users.models import Role, User
from service.users.schemas import UserRead

router = APIRouter(prefix="/api/v1", tags=["users"])


@router.get("/me", response_model=UserRead)
async def read_me(user: CurrentUser) -> User:
    """The user the bearer token belongs to."""
    return user


@router.get("/users", response_model=list[UserRead])
def list_users(session: SessionDep, _instructor: RequireInstructor, role: Role | None = None) -> list[User]:
    """All users, optionally one role (instructors only)."""
    return service.list_users(session, role)
