"""The FastAPI application: `uvicorn --factory service.main:create_app`."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from celery import Celery
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from service import __version__
from service.assignments.router import router as assignments_router
from service.config import Settings, get_settings
from service.db import create_db_engine, create_session_factory, read_only_factory, schema_problem
from service.errors import API_ERRORS, install_error_handlers
from service.exports.router import router as exports_router
from service.leaderboards.router import router as leaderboards_router
from service.middleware import UploadSizeLimit
from service.submissions.router import router as submissions_router
from service.users.router import router as users_router
from service.web.router import router as web_router
from service.worker import create_celery

log = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Everything imported and built at start-up lives as long as the process: move it out of the
    # collector's reach. Otherwise every full collection walks those ~130,000 objects again, a 70 ms
    # stall of every request in flight (measured here; it showed as clusters of 150-200 ms requests
    # at the leaderboard's p99 under load). Later garbage is collected as usual, and at shutdown the
    # frozen objects become collectable again (tests start and stop many apps in one process).
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(
    settings: Settings | None = None,
    *,
    session_factory: sessionmaker[Session] | None = None,
    celery: Celery | None = None,
) -> FastAPI:
    """Build the API; settings default to HWGRADE_*, the database and broker to those settings."""
    settings = settings or get_settings()
    settings.prepare_dirs()
    app = FastAPI(
        title="hwgrade",
        version=__version__,
        description="Automated, sandboxed grading of PyTorch deep-learning homework. "
        "Authenticate with `Authorization: Bearer <token>`.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory or create_session_factory(
        create_db_engine(
            settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
    )
    app.state.read_session_factory = read_only_factory(app.state.session_factory)
    app.state.celery = celery or create_celery(settings)
    install_error_handlers(app)
    app.add_middleware(UploadSizeLimit, max_bytes=settings.max_upload_bytes)
    app.include_router(assignments_router, responses=API_ERRORS)
    app.include_router(submissions_router, responses=API_ERRORS)
    app.include_router(users_router, responses=API_ERRORS)
    app.include_router(web_router)
    app.include_router(leaderboards_router, responses=API_ERRORS)
    app.include_router(exports_router, responses=API_ERRORS)

    @app.get(
        "/healthz",
        tags=["health"],
        response_model=None,
        responses={
            503: {
                "description": "`schema_outdated`: run `hwgrade db upgrade` (the revision found and the one expected in `detail`)"
            }
        },
    )
    def healthz() -> dict[str, str] | JSONResponse:
        """Liveness, database reachability, and a schema at this code's migration head (503 if not:
        every request would fail on a missing table or column)."""
        with app.state.session_factory() as session:
            problem = schema_problem(session)
        if problem is not None:
            log.error("healthz: %s", problem[0])
            return JSONResponse(
                {
                    "status": "schema_outdated",
                    "detail": problem[0],
                    "detail_zh": problem[1],
                    "version": __version__,
                },
                status_code=503,
            )
        return {"status": "ok", "version": __version__}

    return app
