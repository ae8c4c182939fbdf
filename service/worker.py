"""The Celery app. Messages carry submission ids only; Postgres (or SQLite) holds all state.

`celery -A service.worker worker` (or `hwgrade worker`) configures the app from HWGRADE_* on first
use; the API builds its own producer with `create_celery(settings)`.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready
from kombu import Queue
from sqlalchemy.orm import Session, sessionmaker

from service import folder_broker
from service.config import Settings, get_settings
from service.db import create_db_engine, create_session_factory, unit_of_work
from service.submissions import service

log = logging.getLogger(__name__)

GRADE_TASK = "submissions.grade"
SWEEP_TASK = "submissions.sweep"
QUEUES = ("grading", "gpu")


# The worker's bound on one Redis command (an ack, a sweep's wake-up): far above any answer from a
# live Redis, so only a hung one hits it.
WORKER_SOCKET_TIMEOUT_S = 30.0


def celery_config(settings: Settings, *, producer: bool = False) -> dict[str, Any]:
    """Celery's settings; `producer` for a process that only sends wake-ups (the API, the CLI), whose
    every Redis command is bounded by HWGRADE_BROKER_PUBLISH_TIMEOUT_S."""
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": "grading",
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        # A grading message is acknowledged only when it is done, and returned to the queue if the
        # worker process dies; the lease makes a second delivery harmless.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "beat_schedule": {
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_s, "options": {"expires": 600}},
        },
        "timezone": "UTC",
    }
    if settings.broker_url.startswith("filesystem"):
        folder = str(settings.broker_dir / "queue")
        conf["broker_transport"] = folder_broker.TRANSPORT  # atomic writes: see service/folder_broker.py
        conf["broker_transport_options"] = {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "processed_folder": str(settings.broker_dir / "processed"),
            "control_folder": str(settings.broker_dir / "control"),
            "store_processed": False,
        }
        conf["worker_enable_remote_control"] = False
    elif settings.broker_url.startswith(("redis", "rediss")):
        conf["broker_transport_options"] = {
            # Longer than any grading, or a message would be handed to a second worker mid-grading.
            "visibility_timeout": int(settings.task_time_limit_s + 60),
            "socket_connect_timeout": settings.broker_publish_timeout_s,
            # A Redis that holds the connection open and never answers (stopped, a dead link) held
            # an upload with no limit: connecting was bounded, waiting for the reply was not.
            "socket_timeout": settings.broker_publish_timeout_s if producer else WORKER_SOCKET_TIMEOUT_S,
        }
    return conf


def create_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for `settings`, or one configured lazily from HWGRADE_* (the worker's)."""
    app = Celery("hwgrade", include=["service.submissions.tasks"], set_as_current=settings is None)
    if settings is not None:
        app.config_from_object(celery_config(settings, producer=True))
    else:

        def _configure(sender: Celery, **_: Any) -> None:
            sender.config_from_object(celery_config(get_settings()))

        app.on_configure.connect(_configure, weak=False)
    return app


celery_app = create_celery()


def send_grade(celery: Celery, submission_id: int, queue: str) -> bool:
    """Wake a worker for `submission_id`; False if the broker is unreachable (the sweeper retries)."""
    try:
        celery.send_task(
            GRADE_TASK,
            args=[submission_id],
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        )
    except Exception as exc:  # any broker failure: the row is committed, the sweeper will resend
        log.warning(
            "submission %s: could not reach the broker (%s); the sweeper will retry", submission_id, exc
        )
        return False
    return True


def send_wakeups(factory: sessionmaker[Session], celery: Celery, wakeups: list[service.Wakeup]) -> int:
    """Send committed wake-ups; one the broker does not take is marked for the next sweep (its row is
    committed, so nothing is lost). Returns how many were not sent."""
    unsent = 0
    for wakeup in wakeups:
        if not send_grade(celery, wakeup.submission_id, wakeup.queue):
            unsent += 1
            with unit_of_work(factory) as session:
                service.mark_not_enqueued(session, wakeup.submission_id)
    return unsent


@cache
def worker_session_factory() -> sessionmaker[Session]:
    """This worker process's session factory (created after fork, on first use)."""
    return create_session_factory(create_db_engine(get_settings().database_url))


@worker_process_init.connect
def _fresh_engine_after_fork(**_: Any) -> None:
    worker_session_factory.cache_clear()


@worker_process_shutdown.connect
def _stop_the_sandbox_pool(**_: Any) -> None:
    # A pool process ends with os._exit, so atexit hooks do not run: stop its zygote here, which
    # also releases the uid slots (and removes the run directories) of its last evaluations.
    from grader import sandbox

    sandbox.shutdown_pool()


@worker_ready.connect
def _sweep_on_start(sender: Any, **_: Any) -> None:
    # A restarted worker picks up whatever its predecessor left behind without waiting for beat.
    sender.app.send_task(SWEEP_TASK)
