"""The instructor's browser session: a signed, expiring cookie made from a verified API token.

The cookie holds the user id and a fingerprint of the user's token hash, signed with
`settings.secret_key` (itsdangerous). Rotating a token therefore ends every session made from the
old one. The cookie is HttpOnly and SameSite=Lax (Secure in prod); with Lax, other sites cannot make
the browser send it on a cross-site POST, and the only state-changing forms (login, logout) are POSTs
that also check the Origin header. Nothing else in the HTML pages changes state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from service.config import Settings
from service.users.models import User

COOKIE_NAME = "hwgrade_session"
MAX_AGE_S = 12 * 3600
_SALT = "hwgrade.web.session.v1"
# A prefix of the sha256 token hash is enough to notice a rotated token; the hash itself stays server-side.
_FINGERPRINT_CHARS = 16


@dataclass(frozen=True)
class SessionData:
    user_id: int
    fingerprint: str


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt=_SALT)


def _fingerprint(user: User) -> str:
    return user.token_hash[:_FINGERPRINT_CHARS]


def encode(settings: Settings, user: User) -> str:
    """The signed cookie value for `user`."""
    return _serializer(settings).dumps({"uid": user.id, "fp": _fingerprint(user)})


def decode(settings: Settings, value: str, max_age_s: int = MAX_AGE_S) -> SessionData | None:
    """The session in a cookie value, or None if it is forged, malformed or expired."""
    try:
        data: Any = _serializer(settings).loads(value, max_age=max_age_s)
    except BadSignature:  # SignatureExpired is a BadSignature too
        return None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("uid"), int)
        or not isinstance(data.get("fp"), str)
    ):
        return None
    return SessionData(user_id=data["uid"], fingerprint=data["fp"])


def session_user(request: Request, session: Session, settings: Settings) -> User | None:
    """The instructor this request's cookie names, if the cookie is valid and still matches the user."""
    value = request.cookies.get(COOKIE_NAME)
    if not value:
        return None
    data = decode(settings, value)
    if data is None:
        return None
    user = session.get(User, data.user_id)
    if user is None or not user.is_instructor or _fingerprint(user) != data.fingerprint:
        return None
    return user


def set_cookie(response: Response, settings: Settings, user: User) -> None:
    response.set_cookie(
        COOKIE_NAME,
        encode(settings, user),
        max_age=MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.env == "prod",
    )


def clear_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=settings.env == "prod"
    )
