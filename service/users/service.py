"""Users and their bearer tokens. Tokens are random (32 bytes); only their sha256 is stored."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterable

from sqlalchemy import Select, String, bindparam, select
from sqlalchemy.orm import Session

from service.errors import Conflict
from service.users.models import Role, User
from service.users.schemas import UserCreate

TOKEN_PREFIX = "hwg_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_by_token(session: Session, token: str) -> User | None:
    return session.scalar(_by_token_statement(), {"token_hash": hash_token(token)})


@functools.cache
def _by_token_statement() -> Select[User]:
    """Every API request runs it: built once (composing it cost ~0.15 ms of CPU a request, ~5%)."""
    return select(User).where(User.token_hash == bindparam("token_hash", type_=String))


def get_by_number(session: Session, student_number: str) -> User | None:
    return session.scalar(select(User).where(User.student_number == student_number))


def create_user(session: Session, data: UserCreate) -> tuple[User, str]:
    """Add a user; return it with its token (the only time the token exists in clear)."""
    if get_by_number(session, data.student_number) is not None:
        raise Conflict(f"user {data.student_number!r} already exists", f"用户 {data.student_number} 已存在")
    token = new_token()
    user = User(
        student_number=data.student_number,
        display_name=data.display_name,
        role=data.role,
        token_hash=hash_token(token),
    )
    session.add(user)
    session.flush()
    return user, token


def rotate_token(session: Session, user: User) -> str:
    """Give `user` a new token; the old one stops working."""
    token = new_token()
    user.token_hash = hash_token(token)
    session.flush()
    return token


def import_roster(
    session: Session, rows: Iterable[UserCreate], *, rotate_existing: bool = False
) -> list[tuple[User, str | None, str | None]]:
    """Add each roster row: (user, new token or None, the name it had before or None). Existing
    users keep their token unless rotate_existing; the roster's name wins over the stored one (a
    corrected spelling), and their role is kept."""
    out: list[tuple[User, str | None, str | None]] = []
    for row in rows:
        user = get_by_number(session, row.student_number)
        if user is None:
            out.append((*create_user(session, row), None))
            continue
        old_name = None
        if user.display_name != row.display_name:
            old_name, user.display_name = user.display_name, row.display_name
        out.append((user, rotate_token(session, user) if rotate_existing else None, old_name))
    session.flush()
    if any(old_name is not None for *_, old_name in out):
        # The boards show names: no cache may serve them with the old ones.
        from service.leaderboards.service import renew_board_tags  # leaderboards imports users

        renew_board_tags(session)
    return out


def list_users(session: Session, role: Role | None = None) -> list[User]:
    stmt = select(User).order_by(User.role, User.student_number)
    if role is not None:
        stmt = stmt.where(User.role == role)
    return list(session.scalars(stmt))
