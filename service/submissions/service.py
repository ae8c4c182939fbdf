"""Submissions: accept an upload, and the lease protocol that lets exactly one grading write a result.

Lease protocol (Postgres is the source of truth; the broker only carries wake-ups):
- `claim` atomically moves a submission from queued (or running with an expired lease) to running,
  bumping `attempt`; the caller holds the lease for that attempt.
- `renew_lease` extends it while grading goes on; a dead worker stops renewing and the lease runs out.
- `record_report` writes the result only if the caller's attempt still holds the lease, in the same
  transaction as the final status; the unique constraint on result.submission_id backs this up.
- `sweep` re-queues submissions whose lease ran out or whose wake-up may have been lost, and gives up
  (status error, code internal) after max_attempts.
- `regrade` (an instructor's command) puts finished submissions back in the queue with a fresh count
  of attempts, their results removed.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import PurePath
from typing import Any, BinaryIO

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Row,
    Select,
    Update,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, joinedload

from grader.intake import sniff_archive_kind
from grader.report import ErrorCode, GradeReport
from service.assignments.models import Assignment, LatePolicy
from service.config import Settings
from service.db import ID_MAX, is_row_id, utcnow
from service.errors import (
    DailyLimitReached,
    DeadlinePassed,
    EmptyFile,
    NotAZip,
    TooLarge,
    Unavailable,
    WrongArchiveKind,
)
from service.leaderboards.service import enter_result, rebuild_boards
from service.storage import BlobStore, BlobTooLarge
from service.submissions.models import Result, Submission, SubmissionStatus
from service.users.models import User

log = logging.getLogger(__name__)

_REPACK = (
    "Re-pack your files as a .zip (Windows: right-click the folder > Send to > Compressed (zipped) folder; "
    "macOS: right-click > Compress) and upload again.",
    "请把文件重新打包为 .zip（Windows：右键文件夹 →“发送到”→“压缩(zipped)文件夹”；macOS：右键 →“压缩”）后重新上传。",
)


def get(session: Session, submission_id: int) -> Submission | None:
    """One submission with its owner, assignment and result in one query (the result's default
    selectin load, right for lists, would take a second round trip for a single row)."""
    if not is_row_id(submission_id):
        return None
    return session.scalar(_get_statement(), {"submission_id": submission_id})


@functools.cache
def _get_statement() -> Select[Submission]:
    """get()'s query, built once: each GET of a submission runs it (~0.1 ms of CPU less than
    session.get, which composes its query anew)."""
    return (
        select(Submission)
        .options(joinedload(Submission.result))
        .where(Submission.id == bindparam("submission_id", type_=Integer))
    )


def queued_ahead(session: Session, submission: Submission) -> int:
    """How many queued submissions were uploaded before `submission` and wait for the same queue
    (`grading` or `gpu`): what a student waiting in a deadline rush wants to know."""
    stmt = (
        select(func.count(Submission.id))
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .where(
            Submission.status == SubmissionStatus.queued,
            Submission.id < submission.id,
            Assignment.queue == submission.assignment.queue,
        )
    )
    return session.scalar(stmt) or 0


def list_for_owner(session: Session, owner: User, assignment: Assignment | None = None) -> list[Submission]:
    stmt = select(Submission).where(Submission.owner_id == owner.id)
    if assignment is not None:
        stmt = stmt.where(Submission.assignment_id == assignment.id)
    return list(session.scalars(stmt.order_by(Submission.id.desc()).limit(200)))


# GET /me/submissions pages: the default and the largest page.
PAGE_DEFAULT, PAGE_MAX = 50, 200


def list_summaries_for_owner(
    session: Session,
    owner: User,
    assignment: Assignment | None = None,
    *,
    limit: int = PAGE_DEFAULT,
    before_id: int | None = None,
) -> list[Row[Any]]:
    """One page of `owner`'s submissions, newest (highest id) first, starting below `before_id`:
    only the columns of SubmissionSummary (no report JSON, no assignment spec)."""
    stmt = (
        select(
            Submission.id,
            Assignment.slug.label("assignment"),
            Submission.status,
            Submission.late,
            Submission.created_at,
            Submission.finished_at,
            Result.score,
            Result.passed,
            Result.error_code,
        )
        .join(Assignment, Assignment.id == Submission.assignment_id)
        .outerjoin(Result, Result.submission_id == Submission.id)
        .where(Submission.owner_id == owner.id)
    )
    if assignment is not None:
        stmt = stmt.where(Submission.assignment_id == assignment.id)
    if before_id is not None and before_id <= ID_MAX:  # every id is below a larger one
        stmt = stmt.where(Submission.id < before_id)
    return list(session.execute(stmt.order_by(Submission.id.desc()).limit(limit)))


def list_for_assignment(
    session: Session, assignment: Assignment, *, limit: int = PAGE_DEFAULT, before_id: int | None = None
) -> list[Submission]:
    """One page of an assignment's submissions, newest (highest id) first, starting below `before_id`."""
    stmt = select(Submission).where(Submission.assignment_id == assignment.id)
    if before_id is not None:
        stmt = stmt.where(Submission.id < before_id)
    return list(session.scalars(stmt.order_by(Submission.id.desc()).limit(limit)))


def day_start(now: datetime, settings: Settings) -> datetime:
    """Midnight of `now`'s day in the course timezone (the daily limit resets then)."""
    local = now.astimezone(settings.tz)
    return datetime.combine(local.date(), time(), tzinfo=settings.tz)


# Gradings that never use up a student's daily submissions: those that failed on our side, and zips
# that intake refused before any code ran (nothing was learnt about the hidden set; re-packing a
# broken zip should not cost one of the day's tries).
PLATFORM_FAILURES = (ErrorCode.internal.value, ErrorCode.sandbox_unavailable.value)
INTAKE_REFUSALS = (ErrorCode.not_a_zip.value, ErrorCode.unsafe_archive.value, ErrorCode.too_large.value)
NOT_COUNTED = PLATFORM_FAILURES + INTAKE_REFUSALS


def count_today(
    session: Session, owner: User, assignment: Assignment, settings: Settings, now: datetime | None = None
) -> int:
    """`owner`'s submissions to `assignment` since midnight in the course timezone, leaving out those
    whose grading failed because of the platform or whose zip intake refused (pending ones count)."""
    since = day_start(now or utcnow(), settings)
    until = since + timedelta(days=1)
    stmt = (
        select(func.count(Submission.id))
        .outerjoin(Result, Result.submission_id == Submission.id)
        .where(
            Submission.owner_id == owner.id,
            Submission.assignment_id == assignment.id,
            Submission.created_at >= since,
            Submission.created_at < until,
            or_(Result.error_code.is_(None), Result.error_code.not_in(NOT_COUNTED)),
        )
    )
    return session.scalar(stmt) or 0


def daily_limit_error(assignment: Assignment, settings: Settings) -> DailyLimitReached:
    """The refusal of an upload over the daily limit, naming the day's time zone (HWGRADE_DAY_TIMEZONE)."""
    tz = settings.day_timezone
    where, where_zh = ("China time", "北京时间") if tz == "Asia/Shanghai" else (tz, f"{tz} 时间")
    if assignment.daily_limit == 0:
        return DailyLimitReached(
            f"{assignment.slug!r} is not taking submissions at the moment (its daily limit is 0). "
            "Ask your instructor when it opens.",
            f"作业 {assignment.slug} 目前不接受提交（每日提交上限为 0）。请向教师询问何时开放。",
        )
    return DailyLimitReached(
        f"You have used all {assignment.daily_limit} submissions for {assignment.slug!r} today; "
        f"the limit resets at midnight ({where}). Use `hwgrade check` to test your zip locally meanwhile.",
        f"你今天在作业 {assignment.slug} 上的 {assignment.daily_limit} 次提交已用完，{where_zh}零点重置。"
        "在此之前可以用 `hwgrade check` 在本地检查你的 zip。",
    )


def check_deadline(assignment: Assignment, owner: User, now: datetime, settings: Settings) -> bool:
    """Whether an upload at `now` is late; raises DeadlinePassed where the late policy refuses it.

    Instructors are never refused (their uploads are still marked late).
    """
    if assignment.deadline is None or now <= assignment.deadline:
        return False
    if assignment.late_policy == LatePolicy.refuse and not owner.is_instructor:
        local = assignment.deadline.astimezone(settings.tz)
        when = local.strftime("%Y-%m-%d %H:%M" if local.second == 0 else "%Y-%m-%d %H:%M:%S")
        raise DeadlinePassed(
            f"The deadline of {assignment.slug!r} was {when} ({settings.day_timezone}); this assignment no "
            "longer accepts submissions, and this upload was not kept. If you have a reason for a late "
            "submission, ask your instructor.",
            f"作业 {assignment.slug} 的截止时间为 {when}（{settings.day_timezone}），已不再接受提交，本次上传未被保存。"
            "如有迟交的理由，请联系教师。",
        )
    return True


def _clean_filename(name: str | None) -> str:
    base = PurePath((name or "").replace("\\", "/")).name.strip()
    return (base or "submission.zip")[:255]


def create_submission(
    session: Session,
    *,
    owner: User,
    assignment: Assignment,
    filename: str | None,
    stream: BinaryIO,
    settings: Settings,
    now: datetime | None = None,
) -> Submission:
    """Check and store an upload and add its queued submission row (flushed, not committed)."""
    return accept_upload(
        session,
        owner=owner,
        assignment=assignment,
        filename=filename,
        stream=stream,
        settings=settings,
        now=now,
    )[0]


def accept_upload(
    session: Session,
    *,
    owner: User,
    assignment: Assignment,
    filename: str | None,
    stream: BinaryIO,
    settings: Settings,
    now: datetime | None = None,
) -> tuple[Submission, int | None]:
    """create_submission, and the owner's submissions today that count against the daily limit, this
    one included (None for an instructor, who has no limit): counted under the lock that checks it."""
    now = now or utcnow()
    used: int | None = None
    # Before reading the body: a refused late upload costs nothing.
    late = check_deadline(assignment, owner, now, settings)
    store = BlobStore(settings.blob_dir)
    limit_mb = f"{settings.max_upload_mb:g}"
    try:
        staged = store.stage(stream, settings.max_upload_bytes)
    except OSError as e:
        raise _storage_failed(e) from None
    except BlobTooLarge:
        raise TooLarge(
            f"The file is larger than the {limit_mb} MB limit. Leave datasets and checkpoints you do not need "
            "out of the zip.",
            f"文件超过 {limit_mb} MB 的上限。请不要把用不到的数据集和多余的模型文件放进压缩包。",
        ) from None
    try:
        _check_upload(staged.size, staged.head)
        if not owner.is_instructor:
            # Serialise one student's concurrent uploads so two cannot both pass the limit: a row lock
            # on Postgres; on SQLite (the embedded default), which ignores FOR UPDATE, a write that
            # takes the database's write lock until this transaction ends (8 parallel uploads against
            # a limit of 1 were three 202s).
            if session.get_bind().dialect.name == "sqlite":
                session.execute(update(User).where(User.id == owner.id).values(id=User.id))
            else:
                session.execute(select(User.id).where(User.id == owner.id).with_for_update())
            used = count_today(session, owner, assignment, settings, now)
            if used >= assignment.daily_limit:
                raise daily_limit_error(assignment, settings)
        relpath = store.commit(staged)
    except OSError as e:
        staged.discard()
        raise _storage_failed(e) from None
    except BaseException:
        staged.discard()
        raise
    submission = Submission(
        owner=owner,
        assignment=assignment,
        original_filename=_clean_filename(filename),
        sha256=staged.sha256,
        size_bytes=staged.size,
        stored_path=relpath,
        status=SubmissionStatus.queued,
        enqueued_at=now,
        created_at=now,
        late=late,
        result=None,  # none yet: set, so reading it (the 202's body) asks the database nothing
    )
    session.add(submission)
    session.flush()
    return submission, None if used is None else used + 1


def _storage_failed(e: OSError) -> Unavailable:
    """The refusal of an upload the server could not store (its disk full, read-only, gone)."""
    log.error("could not store an upload: %s", e)
    return Unavailable(
        "The server could not save your upload (its storage is full or not writable). Nothing was saved and "
        "it does not count against today's submissions. Try again in a few minutes; if it keeps happening, "
        "tell your instructor.",
        "服务器无法保存你上传的文件（存储空间已满或不可写）。本次上传没有保存，也不计入今天的提交次数。"
        "请过几分钟再试；如果一直失败，请告诉教师。",
    )


def _check_upload(size: int, head: bytes) -> None:
    if size == 0:
        raise EmptyFile(
            "The uploaded file is empty (0 bytes). Check that you picked the right file, then upload it again.",
            "上传的文件是空的（0 字节）。请确认选对了文件后重新上传。",
        )
    kind = sniff_archive_kind(head)
    if kind == "zip":
        return
    if kind is not None:
        raise WrongArchiveKind(
            f"This is a {kind} archive; only .zip is accepted. {_REPACK[0]}",
            f"这是 {kind} 格式的压缩包，只接受 .zip。{_REPACK[1]}",
        )
    raise NotAZip(f"This file is not a zip archive. {_REPACK[0]}", f"这个文件不是 zip 压缩包。{_REPACK[1]}")


def mark_not_enqueued(session: Session, submission_id: int) -> None:
    """The wake-up could not be sent: let the next sweep send it."""
    session.execute(
        update(Submission)
        .where(Submission.id == submission_id, Submission.status == SubmissionStatus.queued)
        .values(enqueued_at=None)
    )


@dataclass(frozen=True)
class Claim:
    submission_id: int
    attempt: int
    stored_path: str
    assignment_slug: str
    spec: dict[str, Any]


def _claimable(
    now: datetime | BindParameter[Any], max_attempts: int | BindParameter[Any]
) -> ColumnElement[bool]:
    return and_(
        Submission.attempt - Submission.attempts_before < max_attempts,
        or_(
            Submission.status == SubmissionStatus.queued,
            and_(Submission.status == SubmissionStatus.running, Submission.lease_expires_at < now),
        ),
    )


@functools.cache
def _claim_statement() -> Update:
    """The claim as one UPDATE ... RETURNING of what the grading needs, built once (composing it cost
    more CPU than Postgres spends running it)."""
    c = Submission.__table__.c
    # No parameter is named like a column: SQLAlchemy would add it to the SET clause.
    now = bindparam("now", type_=c.started_at.type)
    return (
        update(Submission)
        .where(Submission.id == bindparam("submission_id"), _claimable(now, bindparam("max_attempts")))
        .values(
            status=SubmissionStatus.running,
            attempt=Submission.attempt + 1,
            lease_expires_at=bindparam("lease_until", type_=c.lease_expires_at.type),
            started_at=now,
            worker=bindparam("worker_name", type_=c.worker.type),
        )
        .returning(Submission.attempt, Submission.stored_path, Submission.assignment_id)
        .execution_options(synchronize_session=False)
    )


def claim(
    session: Session, submission_id: int, *, lease_s: float, max_attempts: int, worker: str
) -> Claim | None:
    """Take the lease on a submission for a new attempt, or None if it is not ours to grade."""
    now = utcnow()
    row = session.execute(
        _claim_statement(),
        {
            "submission_id": submission_id,
            "now": now,
            "max_attempts": max_attempts,
            "lease_until": now + timedelta(seconds=lease_s),
            "worker_name": worker[:255],
        },
    ).one_or_none()
    if row is None:
        return None
    attempt, stored_path, assignment_id = row
    assignment = session.get_one(Assignment, assignment_id)
    return Claim(
        submission_id=submission_id,
        attempt=attempt,
        stored_path=stored_path,
        assignment_slug=assignment.slug,
        spec=assignment.grading_spec().model_dump(mode="json"),
    )


def _holds_lease(
    submission_id: int | BindParameter[Any], attempt: int | BindParameter[Any]
) -> ColumnElement[bool]:
    return and_(
        Submission.id == submission_id,
        Submission.status == SubmissionStatus.running,
        Submission.attempt == attempt,
    )


def renew_lease(session: Session, submission_id: int, attempt: int, lease_s: float) -> bool:
    """Extend the lease of `attempt`; False if it no longer holds it."""
    row = session.execute(
        update(Submission)
        .where(_holds_lease(submission_id, attempt))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        .returning(Submission.id)
    ).scalar_one_or_none()
    return row is not None


def record_report(session: Session, submission_id: int, attempt: int, report: GradeReport) -> bool:
    """Store the result of `attempt` if it still holds the lease; False (nothing written) otherwise."""
    status = SubmissionStatus.graded if report.status == "graded" else SubmissionStatus.error
    params = {"submission_id": submission_id, "held_attempt": attempt}
    return _finish(session, _record_statement(), params, submission_id, attempt, status, report)


@functools.cache
def _record_statement() -> Update:
    """record_report's UPDATE under the lease (`:submission_id`, `:held_attempt`), built once: it runs
    with every grading."""
    return _finish_statement(_holds_lease(bindparam("submission_id"), bindparam("held_attempt")))


def _finish_statement(condition: ColumnElement[bool]) -> Update:
    """The UPDATE that gives a submission its final status (`:final_status`, `:now`) where `condition`
    holds, returning what its result row copies from it."""
    c = Submission.__table__.c
    # No parameter is named like a column: SQLAlchemy would add it to the SET clause.
    return (
        update(Submission)
        .where(condition)
        .values(
            status=bindparam("final_status", type_=c.status.type),
            finished_at=bindparam("now", type_=c.finished_at.type),
            lease_expires_at=None,
        )
        .returning(Submission.assignment_id, Submission.owner_id, Submission.created_at)
        .execution_options(synchronize_session=False)
    )


def _finish(
    session: Session,
    statement: Update,
    params: dict[str, Any],
    submission_id: int,
    attempt: int,
    status: SubmissionStatus,
    report: GradeReport,
) -> bool:
    """Run `statement` (a _finish_statement) and, if its condition held, write the result row and
    its board entries; False (nothing written) otherwise."""
    now = utcnow()
    row = session.execute(statement, {**params, "final_status": status, "now": now}).one_or_none()
    if row is None:
        return False
    result = result_from_report(submission_id, attempt, report, now)
    result.assignment_id, result.owner_id, result.submitted_at = row
    session.add(result)
    session.flush()
    enter_result(session, result)
    return True


def board_scores(report: GradeReport) -> tuple[float | None, float | None]:
    """The (public, private) leaderboard scores of a report: the grader's split of the hidden set
    where it made one, else the score for both; None for both unless graded (errors never rank)."""
    if report.status != "graded":
        return None, None

    def metric(key: str) -> float:
        value = report.metrics.get(key)
        return float(value) if isinstance(value, int | float) else report.score

    return metric("public_accuracy"), metric("private_accuracy")


def result_from_report(submission_id: int, attempt: int, report: GradeReport, now: datetime) -> Result:
    """The result row for `report` (the submission's copied columns default to the submission's)."""
    data = report.model_dump(mode="json")
    error = report.error
    public_score, private_score = board_scores(report)
    return Result(
        submission_id=submission_id,
        attempt=attempt,
        score=report.score,
        passed=report.passed,
        public_score=public_score,
        private_score=private_score,
        metrics=data["metrics"],
        checks=data["checks"],
        hints=data["hints"],
        error_code=error.code.value if error else None,
        error_message=_with_daily_note(error.code.value, error.message, "en") if error else None,
        error_message_zh=_with_daily_note(error.code.value, error.message_zh, "zh") if error else None,
        logs_tail=report.logs_tail,
        timings=data["timings"],
        sandbox=report.sandbox,
        details={
            "discovery": data["discovery"],
            "attachments": data["attachments"],
            "attachments_root": data["attachments_root"],
            "dataset": data["dataset"],
            "grader_version": report.grader_version,
            **({"grader_traceback": report.grader_traceback} if report.grader_traceback else {}),
        },
        created_at=now,
    )


def _with_daily_note(code: str, message: str, lang: str) -> str:
    """A refused zip's message (the grader's, which knows no daily limit) says that this upload is
    given back, as the README promises."""
    if code not in INTAKE_REFUSALS:
        return message
    if lang == "en":
        return f"{message} This upload does not count against today's submissions."
    return f"{message}本次上传不计入今天的提交次数。"


def internal_error_report(assignment_slug: str, message: str, message_zh: str) -> GradeReport:
    """A report for a grading that failed on our side (not the student's)."""
    return GradeReport.model_validate(
        {
            "status": "error",
            "assignment": assignment_slug,
            "error": {"code": ErrorCode.internal, "message": message, "message_zh": message_zh},
        }
    )


@dataclass(frozen=True)
class Wakeup:
    submission_id: int
    queue: str


def sweep(session: Session, settings: Settings, *, limit: int = 500) -> list[Wakeup]:
    """Re-queue stuck submissions; return the wake-ups to send once this transaction commits."""
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.requeue_after_s)
    stuck = session.execute(
        select(
            Submission.id,
            Submission.status,
            Submission.attempt,
            Submission.attempts_before,
            Assignment.queue,
            Assignment.slug,
        )
        .join(Assignment, Submission.assignment_id == Assignment.id)
        .where(
            or_(
                and_(Submission.status == SubmissionStatus.running, Submission.lease_expires_at < now),
                and_(
                    Submission.status == SubmissionStatus.queued,
                    or_(Submission.enqueued_at.is_(None), Submission.enqueued_at < stale_before),
                ),
            )
        )
        .order_by(Submission.id)
        .limit(limit)
    ).all()
    wakeups: list[Wakeup] = []
    for sub_id, status, attempt, attempts_before, queue, slug in stuck:
        # Each change is conditional on what we saw, so a worker that claims or finishes the row
        # in between wins and we leave it alone.
        seen = and_(Submission.id == sub_id, Submission.status == status, Submission.attempt == attempt)
        if status == SubmissionStatus.running:
            seen = and_(seen, Submission.lease_expires_at < now)
        tried = attempt - attempts_before
        if tried >= settings.max_attempts:
            tries = "once" if tried == 1 else f"on each of {tried} tries"
            report = internal_error_report(
                slug,
                f"The grading process stopped before it finished, {tries}, so the grader gave up. Your "
                "submission is kept, does not count against today's submissions, and your instructor can "
                "have it graded again. A worker also stops when code uses far more memory than the limit "
                "or starts many processes at import time: if yours might, fix that and upload again.",
                f"评测进程在完成之前中断了（共尝试 {tried} 次），评测已放弃。你的提交已保存，不计入今天的提交次数，"
                "教师可以让它重新评测。如果代码使用的内存远超限制，或在导入时启动了很多进程，评测进程也会中断："
                "如果你的代码可能如此，请修改后重新上传。",
            )
            if _finish(session, _finish_statement(seen), {}, sub_id, attempt, SubmissionStatus.error, report):
                log.error("submission %s: giving up after %s attempts", sub_id, tried)
            continue
        changed = session.execute(
            update(Submission)
            .where(seen)
            .values(status=SubmissionStatus.queued, lease_expires_at=None, enqueued_at=now)
            .returning(Submission.id)
        ).scalar_one_or_none()
        if changed is not None:
            log.warning("submission %s: re-queued (was %s, attempt %s)", sub_id, status, attempt)
            wakeups.append(Wakeup(sub_id, queue))
    session.flush()
    return wakeups


@dataclass(frozen=True)
class Regraded:
    wakeups: list[Wakeup]  # what to send once the transaction commits
    skipped: dict[int, str]  # submission id -> why it was left alone


def failed_on_our_side(session: Session, assignment: Assignment | None = None) -> list[int]:
    """The submissions whose grading failed on the platform's side (internal, sandbox_unavailable),
    oldest first: what `hwgrade regrade --failed` takes."""
    stmt = select(Result.submission_id).where(Result.error_code.in_(PLATFORM_FAILURES))
    if assignment is not None:
        stmt = stmt.where(Result.assignment_id == assignment.id)
    return list(session.scalars(stmt.order_by(Result.submission_id)))


def regrade(session: Session, submission_ids: list[int]) -> Regraded:
    """Queue finished submissions (graded or error) to be graded again from their stored zip: the
    result is removed, the grading gets max_attempts new tries, and where a removed result was on a board the
    boards are derived again from the results left. Queued or running submissions, and ids that do
    not exist, are skipped with the reason."""
    skipped: dict[int, str] = {}
    rows = session.execute(
        select(Submission.id, Submission.status, Assignment.queue)
        .join(Assignment, Submission.assignment_id == Assignment.id)
        .where(Submission.id.in_(submission_ids))
        .with_for_update(of=Submission)
    ).all()
    found = {row.id: row for row in rows}
    for sub_id in submission_ids:
        if sub_id not in found:
            skipped[sub_id] = "no such submission"
        elif found[sub_id].status not in (SubmissionStatus.graded, SubmissionStatus.error):
            skipped[sub_id] = f"still {found[sub_id].status.value}: it will be graded anyway"
    chosen = [i for i in dict.fromkeys(submission_ids) if i in found and i not in skipped]
    if not chosen:
        return Regraded([], skipped)
    ranked = session.scalar(
        select(func.count(Result.id)).where(
            Result.submission_id.in_(chosen),
            or_(Result.public_score.is_not(None), Result.private_score.is_not(None)),
        )
    )
    session.execute(
        delete(Result).where(Result.submission_id.in_(chosen)).execution_options(synchronize_session=False)
    )
    session.execute(
        update(Submission)
        .where(Submission.id.in_(chosen))
        .values(
            status=SubmissionStatus.queued,
            # Not attempt=0: a worker still running an old attempt (its lease long lost) would hold
            # the lease again once a new claim counted up to its number, and could write the result.
            attempts_before=Submission.attempt,
            lease_expires_at=None,
            started_at=None,
            finished_at=None,
            worker=None,
            enqueued_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if ranked:
        rebuild_boards(session)
    session.flush()
    session.expire_all()
    for sub_id in chosen:
        log.warning("submission %s: queued to be graded again (regrade)", sub_id)
    return Regraded([Wakeup(i, found[i].queue) for i in chosen], skipped)
