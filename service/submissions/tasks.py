"""Celery tasks: grade one submission under a lease, and sweep stuck submissions."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import cache
from types import TracebackType

from celery import Celery, Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import grader
from grader.assignments import AssignmentSpec
from grader.report import ErrorCode, GradeReport
from service.config import Device, Settings, get_settings
from service.db import unit_of_work
from service.storage import BlobStore
from service.submissions import service
from service.worker import GRADE_TASK, SWEEP_TASK, send_wakeups, worker_session_factory

log = logging.getLogger(__name__)


@cache
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(preference: Device) -> str:
    """HWGRADE_DEVICE: auto picks CUDA when this machine has it; cuda without a GPU is an error."""
    if preference == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if preference == "cuda":
        raise RuntimeError("HWGRADE_DEVICE=cuda but torch sees no CUDA device")
    return "cpu"


class LeaseKeeper:
    """Renews a grading's lease until the grading ends: lease_s / 3 to lease_s / 2 after its last
    renewal (or the claim).

    The renewals run on one daemon thread per process (_LeaseRenewer), started with the first
    grading and shared by every grading after it: entering and leaving a keeper only registers it.
    A thread of its own per grading, started and joined around each one, cost ~0.5 ms of CPU and wall
    per grading (measured), most gradings being far shorter than a lease."""

    def __init__(
        self, factory: sessionmaker[Session], submission_id: int, attempt: int, lease_s: float
    ) -> None:
        self.factory = factory
        self.submission_id = submission_id
        self.attempt = attempt
        self.lease_s = lease_s
        self.renewed_at = time.monotonic()  # the claim has just set the lease
        self.lost = False

    def due(self, now: float) -> bool:
        return not self.lost and now - self.renewed_at >= self.lease_s / 3

    def renew(self) -> None:
        """One renewal (on the renewer's thread); a failed one is retried at its next tick."""
        try:
            with unit_of_work(self.factory) as session:
                held = service.renew_lease(session, self.submission_id, self.attempt, self.lease_s)
        except Exception:
            log.exception("submission %s: lease renewal failed", self.submission_id)
            return
        self.renewed_at = time.monotonic()
        if not held:
            log.warning("submission %s: attempt %s lost its lease", self.submission_id, self.attempt)
            self.lost = True

    def __enter__(self) -> LeaseKeeper:
        _renewer().add(self)
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        _renewer().discard(self)


class _LeaseRenewer:
    """The thread that renews the leases of this process's gradings in progress. It wakes every
    lease_s / 6 of the shortest lease it has seen, so a lease is renewed at most lease_s / 2 after
    its last renewal. It is woken only when a keeper's lease shortens that tick (it would otherwise
    sleep out the longer tick first), so a grading pays only for two lock operations."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tick_shrank = threading.Condition(self.lock)
        self.keepers: set[LeaseKeeper] = set()
        self.tick_s = 10.0
        self.thread: threading.Thread | None = None

    def add(self, keeper: LeaseKeeper) -> None:
        with self.lock:
            self.keepers.add(keeper)
            if keeper.lease_s / 6 < self.tick_s:
                self.tick_s = keeper.lease_s / 6
                self.tick_shrank.notify()
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="lease-renewer", daemon=True)
                self.thread.start()

    def discard(self, keeper: LeaseKeeper) -> None:
        with self.lock:
            self.keepers.discard(keeper)

    def _run(self) -> None:
        while True:
            with self.lock:
                self.tick_shrank.wait(self.tick_s)
                now = time.monotonic()
                due = [k for k in self.keepers if k.due(now)]
            for keeper in due:  # outside the lock: a renewal is a database round trip
                with self.lock:
                    if keeper not in self.keepers:  # its grading ended meanwhile
                        continue
                keeper.renew()


@cache
def _renewer() -> _LeaseRenewer:
    return _LeaseRenewer()


# A forked child has no renewer thread (and maybe a lock its parent held): it starts its own.
os.register_at_fork(after_in_child=_renewer.cache_clear)


def run_grader(claim: service.Claim, settings: Settings) -> GradeReport:
    """Call the grader on the stored zip; every failure of ours becomes an `internal` error report."""
    slug = claim.assignment_slug
    zip_path = BlobStore(settings.blob_dir).path(claim.stored_path)
    if not zip_path.is_file():
        log.error("submission %s: stored zip %s is missing", claim.submission_id, zip_path)
        return service.internal_error_report(
            slug,
            "The stored upload is missing on the grading machine; please contact the course staff.",
            "评分服务器上找不到已保存的上传文件，请联系助教。",
        )
    try:
        return grader.grade(
            zip_path,
            AssignmentSpec.model_validate(claim.spec),
            data_dir=settings.data_dir,
            device=resolve_device(settings.device),
        )
    except SoftTimeLimitExceeded:
        log.error("submission %s: grading exceeded the task time limit", claim.submission_id)
        return GradeReport.model_validate(
            {
                "status": "error",
                "assignment": slug,
                "error": {
                    "code": ErrorCode.timeout,
                    "message": "Grading took longer than the service allows and was stopped.",
                    "message_zh": "评分时间超过了服务允许的上限，已被终止。",
                },
            }
        )
    except Exception as exc:
        log.exception("submission %s: grader raised", claim.submission_id)
        return service.internal_error_report(
            slug,
            f"The grader failed on our side ({type(exc).__name__}); this is not your fault. The staff can "
            "see the details in the logs.",
            f"评分程序在服务器端出错（{type(exc).__name__}），不是你的问题。助教可以在日志中查看详情。",
        )


# Waits before each new try to write a result while the database is unreachable: 15.5 s in all, well
# inside the lease (HWGRADE_LEASE_S, 60 s by default), which this attempt still holds meanwhile.
RECORD_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)


def _record(factory: sessionmaker[Session], submission_id: int, attempt: int, report: GradeReport) -> bool:
    """record_report, tried again while the database blinks. Retrying the whole task instead (its
    autoretry) found the lease still held by this very attempt, skipped, and left the row to the
    sweeper: the grading was thrown away, done again later, and cost the submission an attempt."""
    for delay in (*RECORD_RETRY_DELAYS_S, None):
        try:
            with unit_of_work(factory) as session:
                return service.record_report(session, submission_id, attempt, report)
        except OperationalError as e:
            if delay is None:
                raise
            log.warning(
                "submission %s: could not write the result (%s); again in %.1f s", submission_id, e, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def grade_one(factory: sessionmaker[Session], settings: Settings, submission_id: int, worker: str) -> str:
    """Grade one submission if we can take its lease; write the result exactly once.

    Three short transactions, not one: the claim must be visible to other workers while the grading
    (minutes, no transaction open) runs, and the result is written under the lease it took.
    """
    with unit_of_work(factory) as session:
        claim = service.claim(
            session,
            submission_id,
            lease_s=settings.lease_s,
            max_attempts=settings.max_attempts,
            worker=worker,
        )
    if claim is None:
        log.info("submission %s: not claimable (done, or held by a live attempt); skipping", submission_id)
        return "skipped"
    log.info("submission %s: attempt %s grading %s", submission_id, claim.attempt, claim.assignment_slug)
    with LeaseKeeper(factory, submission_id, claim.attempt, settings.lease_s):
        report = run_grader(claim, settings)
    if report.error is not None and report.error.code == ErrorCode.sandbox_unavailable:
        # This worker cannot isolate student code right now: not the student's result. Leave the row
        # to its lease; the sweeper hands it to another attempt (up to max_attempts).
        log.error(
            "submission %s: sandbox unavailable on this worker (%s)", submission_id, report.error.message
        )
        return "retry"
    written = _record(factory, submission_id, claim.attempt, report)
    if not written:
        log.warning(
            "submission %s: attempt %s lost its lease; result discarded", submission_id, claim.attempt
        )
        return "stale"
    log.info("submission %s: %s score=%.4f", submission_id, report.status, report.score)
    return report.status


def sweep_once(factory: sessionmaker[Session], settings: Settings, celery: Celery) -> int:
    """Re-queue stuck submissions and send their wake-ups; return how many were woken."""
    with unit_of_work(factory) as session:
        wakeups = service.sweep(session, settings)
    send_wakeups(factory, celery, wakeups)
    return len(wakeups)


@shared_task(
    name=GRADE_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # The database blinked: try again shortly (the sweeper would, but later).
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def grade_submission(self: Task, submission_id: int) -> str:
    """Grade one submission (see grade_one); a redelivered message finds the lease taken and skips."""
    worker = self.request.hostname or socket.gethostname()
    return grade_one(worker_session_factory(), get_settings(), submission_id, worker)


@shared_task(name=SWEEP_TASK, bind=True, ignore_result=True, acks_late=False)
def sweep_submissions(self: Task) -> int:
    """Re-queue submissions stuck queued or running past their lease (run by beat)."""
    return sweep_once(worker_session_factory(), get_settings(), self.app)
