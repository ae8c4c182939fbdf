"""Leaderboards, assignment statistics, exam eligibility and the grade book: read-only queries.

Ranking rule: each student's best graded submission ranks, by the board's score, highest first; equal
scores go to the earlier submission. Students without a graded result are absent, and so are
instructors. Late submissions (accepted after the deadline) rank too and are marked.

Boards (as Kaggle does): the grader splits the hidden test set once, deterministically, into a public
half and a private part. The public board (public part) is visible to everyone at any time; the
private board, the final ranking, is visible to students only after the deadline (never when the
assignment has no deadline), and to instructors always. Assignments without a split (functions) rank
by the whole score on both boards.

The boards are a table (`BoardEntry`: each student's best result per assignment and board), kept
up to date in the transaction that writes each result (`enter_result`), so a board is one range
scan of its index in rank order and a rank is one count; `rebuild_boards` derives the table from the
results again with the same rule as a window query, and the tests check that the two agree.

Every change to an assignment's boards also writes a new random `Assignment.board_tag` in the same
transaction. The API keeps the boards it has read in memory (`BoardCache`) and serves one again while
the assignment it has just loaded still carries the tag the board was read under: a full board of
300 students costs one dictionary lookup instead of a 300-row join. Names, pseudonyms and what the
viewer may see are still applied per request.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    SQLColumnExpression,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    distinct,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from service.assignments.models import Assignment, new_board_tag
from service.config import Settings, get_settings
from service.db import utcnow
from service.errors import Forbidden
from service.leaderboards.models import BOARDS, Board, BoardEntry
from service.submissions.models import Result, Submission, SubmissionStatus
from service.users.models import Role, User

RANKING_RULE = (
    "Each student's best graded submission ranks, highest score first; equal scores go to the earlier "
    "submission. Students without a graded result are not listed. The public board scores the public half "
    "of the hidden test set; the private board (the final ranking) scores the rest and opens to students "
    "after the deadline."
)
RANKING_RULE_ZH = (
    "每位同学以其得分最高的一次已评分提交参与排名，分数高者在前；分数相同时，提交较早者在前。"
    "没有已评分提交的同学不列入榜单。公开榜按隐藏测试集的公开部分计分；私有榜（最终排名）按其余部分计分，"
    "截止时间过后向学生开放。"
)

# A student may sit the exam after passing at least 4/5 of the assignments (compared in integers,
# so 4/5 is exactly on the line and 7/9 = 0.777... is below it).
ELIGIBLE_NUMERATOR, ELIGIBLE_DENOMINATOR = 4, 5


class BoardHidden(Forbidden):
    code = "board_hidden"


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    user_id: int
    # Already pseudonymised for the viewer (see `display_name_for`).
    display_name: str
    # None unless the viewer is an instructor.
    student_number: str | None
    # The board's score (public_score on the public board, private_score on the private one).
    score: float
    public_score: float | None
    # None where the viewer may not see the private board yet.
    private_score: float | None
    submission_id: int
    submitted_at: datetime
    is_viewer: bool
    late: bool


@dataclass(frozen=True)
class AssignmentStats:
    submissions: int
    students: int
    graded: int
    errors: int
    passed_students: int
    # The best graded score of each student (for a histogram), highest first.
    scores: list[float]


@dataclass(frozen=True)
class EligibilityRow:
    user_id: int
    student_number: str
    display_name: str
    passed: int
    total: int
    ratio: float
    eligible: bool


def is_eligible(passed: int, total: int) -> bool:
    """True when passed/total reaches 80% (4 of 5 does; no assignments at all does not)."""
    return total > 0 and passed * ELIGIBLE_DENOMINATOR >= total * ELIGIBLE_NUMERATOR


@functools.lru_cache(maxsize=65536)
def pseudonym(user_id: int, secret: str) -> str:
    """A stable, bilingual pseudonym for a user: an HMAC of the id under the service's secret key
    (cached per (user id, secret): a board shows the same few hundred students on every request)."""
    tag = hmac.new(secret.encode(), f"pseudonym:{user_id}".encode(), hashlib.sha256).hexdigest()[:6].upper()
    return f"匿名同学 {tag} / Student {tag}"


def display_name_for(user_id: int, real_name: str, viewer: User, settings: Settings) -> str:
    """The name `viewer` sees for a user: real for instructors and for oneself, else a pseudonym."""
    if viewer.is_instructor or viewer.id == user_id or not settings.pseudonyms:
        return real_name
    return pseudonym(user_id, settings.secret_key.get_secret_value())


def deadline_passed(assignment: Assignment, now: datetime) -> bool:
    return assignment.deadline is not None and now >= assignment.deadline


def board_visible(assignment: Assignment, board: Board, viewer: User, now: datetime) -> bool:
    """Whether `viewer` may see `board`: the private board is hidden from students until the deadline."""
    if board == "public" or viewer.is_instructor:
        return True
    return deadline_passed(assignment, now)


def default_board(assignment: Assignment, viewer: User, now: datetime) -> Board:
    """The board to show when none is asked for: the final (private) one once the viewer may see it."""
    if deadline_passed(assignment, now) and board_visible(assignment, "private", viewer, now):
        return "private"
    return "public"


def board_hidden_error(assignment: Assignment, settings: Settings | None = None) -> BoardHidden:
    """The 403 a student gets for the private board before the deadline."""
    settings = settings or get_settings()
    if assignment.deadline is None:
        return BoardHidden(
            f"The private leaderboard of {assignment.slug!r} is not published: the assignment has no deadline.",
            f"作业 {assignment.slug} 没有截止时间，私有榜不公开。",
        )
    when = assignment.deadline.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    return BoardHidden(
        f"The private leaderboard of {assignment.slug!r} opens after the deadline ({when}, "
        f"{settings.day_timezone}).",
        f"作业 {assignment.slug} 的私有榜在截止时间（{when}，{settings.day_timezone}）之后公开。",
    )


def _board_column(board: Board) -> InstrumentedAttribute[float | None]:
    return Result.public_score if board == "public" else Result.private_score


def _ahead(
    score: SQLColumnExpression[Any],
    at: SQLColumnExpression[Any],
    sid: SQLColumnExpression[Any],
    *than: SQLColumnExpression[Any],
) -> ColumnElement[bool]:
    """(score, at, sid) ranks ahead of `than` = (score, at, sid): a higher score, or the same score
    submitted earlier (the submission id breaks equal times, so no two entries tie)."""
    t_score, t_at, t_sid = than
    return or_(
        score > t_score,
        and_(score == t_score, or_(at < t_at, and_(at == t_at, sid < t_sid))),
    )


def enter_result(session: Session, result: Result) -> None:
    """Put a just-written result on its assignment's boards where it ranks ahead of the student's
    entry there (or the student has none yet). One upsert, atomic against a concurrent worker
    entering another result of the same student: the conflict's WHERE compares with the row as
    committed, so the best of the two stays whichever commits first."""
    values = [
        {
            "owner_id": result.owner_id,
            "assignment_id": result.assignment_id,
            "board": board,
            "submission_id": result.submission_id,
            "score": score,
            "submitted_at": result.submitted_at,
        }
        for board, score in zip(BOARDS, (result.public_score, result.private_score), strict=True)
        if score is not None
    ]
    if not values:
        return
    # One statement all the same: with several parameter sets and RETURNING, SQLAlchemy sends one
    # INSERT ... VALUES (...), (...) ("insertmanyvalues"), and a statement of one row, unlike one
    # built with several, has a cache key: it is compiled once, not on every grading.
    entered = session.execute(_upsert_statement(session.get_bind().dialect.name), values).all()
    if entered:  # a board changed (a result behind the student's best changes none)
        renew_board_tags(session, result.assignment_id)


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """enter_result's upsert, built once per dialect: composing it took more CPU than running it."""
    entry = BoardEntry.__table__.c
    # On the table, not the mapped class: an ORM insert would read the parameters as rows to insert.
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
        cast(Table, BoardEntry.__table__)
    )
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[entry.owner_id, entry.assignment_id, entry.board],
        set_={"submission_id": new.submission_id, "score": new.score, "submitted_at": new.submitted_at},
        where=_ahead(
            new.score,
            new.submitted_at,
            new.submission_id,
            entry.score,
            entry.submitted_at,
            entry.submission_id,
        ),
    ).returning(entry.board)


def renew_board_tags(session: Session, assignment_id: int | None = None) -> None:
    """Write a new board tag for one assignment (all of them when None), in the caller's
    transaction: call it with every change to board entries, so no cache serves the old boards.
    (One new value serves every assignment: a cache keys its boards by assignment id and tag.
    `updated_at` is kept: it dates the assignment's settings, not its results.)"""
    if assignment_id is not None:
        session.execute(_renew_tag_statement(), {"tag": new_board_tag(), "assignment_id": assignment_id})
        return
    stmt = update(Assignment).values(board_tag=new_board_tag(), updated_at=Assignment.updated_at)
    session.execute(stmt.execution_options(synchronize_session=False))


@functools.cache
def _renew_tag_statement() -> Any:
    """renew_board_tags for one assignment (`:tag`, `:assignment_id`), built once: it runs with
    every result that enters a board."""
    return (
        update(Assignment)
        .where(Assignment.id == bindparam("assignment_id"))
        .values(
            board_tag=bindparam("tag", type_=Assignment.__table__.c.board_tag.type),
            updated_at=Assignment.updated_at,
        )
        .execution_options(synchronize_session=False)
    )


def rebuild_boards(session: Session) -> int:
    """Derive every board entry from the results again (after a bulk load or restore that bypassed
    `enter_result`); returns the number of entries. The same rule, as one window query per board:
    each student's best result, by the board's score, then the earliest."""
    session.execute(delete(BoardEntry))
    for board in BOARDS:
        score = _board_column(board)
        nth = (
            func.row_number()
            .over(
                partition_by=(Result.assignment_id, Result.owner_id),
                order_by=(score.desc(), Result.submitted_at.asc(), Result.submission_id.asc()),
            )
            .label("nth")
        )
        best = (
            select(
                Result.owner_id,
                Result.assignment_id,
                literal(board).label("board"),
                Result.submission_id,
                score.label("score"),
                Result.submitted_at,
                nth,
            )
            # NULL board score = not graded (errors never rank).
            .where(score.is_not(None))
            .subquery("best")
        )
        columns = ("owner_id", "assignment_id", "board", "submission_id", "score", "submitted_at")
        session.execute(
            insert(BoardEntry).from_select(
                list(columns), select(*(best.c[c] for c in columns)).where(best.c.nth == 1)
            )
        )
    renew_board_tags(session)
    return session.scalar(select(func.count()).select_from(BoardEntry)) or 0


@functools.cache
def _board_statement() -> Select[*tuple[Any, ...]]:
    """One board (`:assignment_id`, `:board`) in rank order, straight off ix_board_entry_rank.
    Students only, so an instructor's own test submissions never take a place. Built once: composing
    the statement costs more than running it."""
    return (
        select(
            BoardEntry.owner_id,
            BoardEntry.score,
            BoardEntry.submission_id,
            BoardEntry.submitted_at,
            User.display_name,
            User.student_number,
            Result.public_score,
            Result.private_score,
            Submission.late,
        )
        .join(User, User.id == BoardEntry.owner_id)
        .join(Result, Result.submission_id == BoardEntry.submission_id)
        .join(Submission, Submission.id == BoardEntry.submission_id)
        .where(
            BoardEntry.assignment_id == bindparam("assignment_id", type_=Integer),
            BoardEntry.board == bindparam("board", type_=String),
            User.role == Role.student,
        )
        .order_by(BoardEntry.score.desc(), BoardEntry.submitted_at.asc(), BoardEntry.submission_id.asc())
    )


_T = TypeVar("_T")


@dataclass(frozen=True)
class _BoardView:
    """One board as everyone of a kind of viewer sees it (the same names, numbers and scores), with
    nobody marked as the viewer; `position` finds a student's own row to personalise."""

    rows: list[LeaderboardRow]
    position: dict[int, int]
    real_names: dict[int, str]
    # The rows as each converter of leaderboard_as() made them, on its first request for this view.
    _converted: dict[Callable[[LeaderboardRow], Any], list[Any]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def converted(self, convert: Callable[[LeaderboardRow], _T]) -> list[_T]:
        rows = self._converted.get(convert)
        if rows is None:  # two threads may both convert: the same rows, the last one kept
            rows = self._converted[convert] = [convert(row) for row in self.rows]
        return rows


# (instructor, private scores shown, pseudonym key or None): what a kind of viewer sees.
_ViewKey = tuple[bool, bool, str | None]


class BoardCache:
    """The boards this process has read, each under the board tag its assignment carried when it
    was read: (assignment id, board) -> (tag, the board as each kind of viewer sees it).

    A board is served again only to a request whose freshly loaded assignment carries the same tag;
    every change to a board writes a new tag in the change's own transaction, so a request never gets
    a board older than the assignment row it loaded. (Read under the tag, the rows may be newer than
    it: harmless, the next tag replaces them.) One entry per assignment and board, and a handful of
    views in each, so its size is bounded by the course; a change made behind the service's back (SQL
    by hand) is picked up after `hwgrade db rebuild-boards`, which renews every tag."""

    def __init__(self) -> None:
        # (assignment id, board) -> (tag, the rows as read, the views built from them so far)
        self._boards: dict[tuple[int, str], tuple[int, Sequence[Row[Any]], dict[_ViewKey, _BoardView]]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def view(self, session: Session, assignment: Assignment, board: Board, key: _ViewKey) -> _BoardView:
        where, tag = (assignment.id, board), assignment.board_tag
        with self._lock:
            cached = self._boards.get(where)
            if cached is not None and cached[0] == tag and key in cached[2]:
                self.hits += 1
                return cached[2][key]
            self.misses += 1
        if cached is not None and cached[0] == tag:
            rows, views = cached[1], cached[2]  # another kind of viewer: the rows are here already
        else:
            rows = session.execute(_board_statement(), {"assignment_id": assignment.id, "board": board}).all()
            views = {}
        built = _build_view(rows, key)
        with self._lock:
            views[key] = built
            self._boards[where] = (tag, rows, views)
        return built


def _build_view(result: Sequence[Row[Any]], key: _ViewKey) -> _BoardView:
    instructor, show_private, secret = key
    rows, position, real_names = [], {}, {}
    for rank, r in enumerate(result, start=1):
        owner_id = r.owner_id
        position[owner_id] = rank - 1
        real_names[owner_id] = r.display_name
        rows.append(
            LeaderboardRow(
                rank=rank,
                user_id=owner_id,
                display_name=r.display_name if secret is None else pseudonym(owner_id, secret),
                student_number=r.student_number if instructor else None,
                score=r.score,
                public_score=r.public_score,
                private_score=r.private_score if show_private else None,
                submission_id=r.submission_id,
                submitted_at=r.submitted_at,
                is_viewer=False,
                late=r.late,
            )
        )
    return _BoardView(rows, position, real_names)


board_cache = BoardCache()


def _as_is(row: LeaderboardRow) -> LeaderboardRow:
    return row


def leaderboard_as(
    convert: Callable[[LeaderboardRow], _T],
    session: Session,
    assignment: Assignment,
    *,
    board: Board,
    limit: int | None,
    viewer: User,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> list[_T]:
    """The ranked board as `viewer` may see it (names pseudonymised), each row converted by `convert`
    (the API converts to its response schema; `leaderboard` keeps the rows as they are); raises
    BoardHidden (403) when the viewer may not see this board (check `board_visible` first to avoid it).
    `settings` gives the pseudonym setting and key (defaults to the process settings).

    A cached board's rows are converted once per converter, so a request converts only its viewer's
    own row: validating the ~300 rows of a full board took ~0.85 ms of each request's ~6 ms. The
    converter keys the cache: pass one module-level function, never a new closure per call."""
    settings = settings or get_settings()
    now = now or utcnow()
    if not board_visible(assignment, board, viewer, now):
        raise board_hidden_error(assignment, settings)
    instructor = viewer.is_instructor
    secret = settings.secret_key.get_secret_value() if settings.pseudonyms and not instructor else None
    view = board_cache.view(
        session, assignment, board, (instructor, board_visible(assignment, "private", viewer, now), secret)
    )
    converted = view.converted(convert)
    rows = converted[:limit] if limit is not None else list(converted)
    # The viewer's own row (if on the board and shown): marked, and under their real name.
    mine = view.position.get(viewer.id)
    if mine is not None and mine < len(rows):
        rows[mine] = convert(
            replace(view.rows[mine], display_name=view.real_names[viewer.id], is_viewer=True)
        )
    return rows


# The board's rows as they are (the pages, the CLI, the tests).
leaderboard = functools.partial(leaderboard_as, _as_is)


def _graded() -> ColumnElement[bool]:
    return Submission.status == SubmissionStatus.graded


def _passed_graded() -> ColumnElement[bool]:
    return _graded() & Result.passed.is_(True)


def assignment_stats(session: Session, assignment: Assignment) -> AssignmentStats:
    """Counts over the students' submissions to `assignment`, and each student's best graded score."""
    counts = session.execute(
        select(
            func.count(Submission.id),
            func.count(distinct(Submission.owner_id)),
            func.count(case((Submission.status == SubmissionStatus.graded, 1))),
            func.count(case((Submission.status == SubmissionStatus.error, 1))),
        )
        .join(User, User.id == Submission.owner_id)
        .where(Submission.assignment_id == assignment.id, User.role == Role.student)
    ).one()
    best = session.execute(
        select(
            func.max(Result.score).label("best"),
            func.max(case((Result.passed, 1), else_=0)).label("passed"),
        )
        .join(Submission, Submission.id == Result.submission_id)
        .join(User, User.id == Result.owner_id)
        .where(Result.assignment_id == assignment.id, User.role == Role.student, _graded())
        .group_by(Result.owner_id)
    ).all()
    return AssignmentStats(
        submissions=counts[0],
        students=counts[1],
        graded=counts[2],
        errors=counts[3],
        passed_students=sum(1 for b in best if b.passed),
        scores=sorted((float(b.best) for b in best), reverse=True),
    )


def _passed_counts(session: Session) -> dict[int, int]:
    """Per student id: how many assignments they passed (any graded submission with passed)."""
    rows = session.execute(
        select(Result.owner_id, func.count(distinct(Result.assignment_id)))
        .join(Submission, Submission.id == Result.submission_id)
        .where(Result.passed.is_(True), _graded())
        .group_by(Result.owner_id)
    ).all()
    return {owner_id: n for owner_id, n in rows}


def _students(session: Session) -> list[User]:
    return list(session.scalars(select(User).where(User.role == Role.student).order_by(User.student_number)))


def eligibility(session: Session) -> list[EligibilityRow]:
    """Every student with assignments passed / total; eligible = at least 80% (4/5 is eligible)."""
    total = session.scalar(select(func.count(Assignment.id))) or 0
    passed = _passed_counts(session)
    out = []
    for user in _students(session):
        n = passed.get(user.id, 0)
        out.append(
            EligibilityRow(
                user_id=user.id,
                student_number=user.student_number,
                display_name=user.display_name,
                passed=n,
                total=total,
                ratio=n / total if total else 0.0,
                eligible=is_eligible(n, total),
            )
        )
    return out


def _best_per_assignment() -> Select[*tuple[Any, ...]]:
    """Per (owner, assignment): best graded score, passed (0/1), passed on time (0/1: by a
    submission made before the deadline) and number of submissions."""
    return (
        select(
            Submission.owner_id,
            Submission.assignment_id,
            func.max(case((_graded(), Result.score))).label("best"),
            func.max(case((_passed_graded(), 1), else_=0)).label("passed"),
            func.max(case((_passed_graded() & Submission.late.is_(False), 1), else_=0)).label(
                "passed_on_time"
            ),
            func.count(Submission.id).label("submissions"),
        )
        .outerjoin(Result, Result.submission_id == Submission.id)
        .group_by(Submission.owner_id, Submission.assignment_id)
    )


def _best_by_student_assignment(session: Session) -> dict[tuple[int, int], Any]:
    """(owner_id, assignment_id) -> row(best, passed, submissions) over all submissions."""
    return {(r.owner_id, r.assignment_id): r for r in session.execute(_best_per_assignment())}


def gradebook_rows(session: Session) -> tuple[list[str], list[dict[str, Any]]]:
    """The course grade book: assignment slugs, and per student (by student number) a dict with
    user_id, student_number, display_name, scores {slug: best graded score or None},
    passed {slug: bool}, late {slug: bool, passed only by late submissions}, passed_count, total,
    eligible (late passes count: the late policy decides whether a late upload is accepted)."""
    assignments = list(session.scalars(select(Assignment).order_by(Assignment.id)))
    slugs = [a.slug for a in assignments]
    best = _best_by_student_assignment(session)
    rows: list[dict[str, Any]] = []
    for user in _students(session):
        scores: dict[str, float | None] = {}
        passed: dict[str, bool] = {}
        late: dict[str, bool] = {}
        for a in assignments:
            r = best.get((user.id, a.id))
            scores[a.slug] = float(r.best) if r is not None and r.best is not None else None
            passed[a.slug] = bool(r is not None and r.passed)
            late[a.slug] = passed[a.slug] and not (r is not None and r.passed_on_time)
        n = sum(passed.values())
        rows.append(
            {
                "user_id": user.id,
                "student_number": user.student_number,
                "display_name": user.display_name,
                "scores": scores,
                "passed": passed,
                "late": late,
                "passed_count": n,
                "total": len(assignments),
                "eligible": is_eligible(n, len(assignments)),
            }
        )
    return slugs, rows


@functools.cache
def _my_scores_statement() -> Select[*tuple[Any, ...]]:
    """Every assignment with the viewer's (`:owner_id`) best score, passed flag, submission count and
    public rank, in one round trip. Built once: composing it costs more than running it.

    The rank is 1 + the students whose entry ranks ahead of the viewer's: a count over the part of
    ix_board_entry_rank above their score (at most one row per student)."""
    owner_id = bindparam("owner_id", type_=Integer)
    # Two index-only scans of the viewer's rows (ix_submission_owner_assignment_created and
    # ix_result_owner): a join of their few hundred submissions to their results would read that many
    # result rows from the heap. A result has board scores exactly when it was graded
    # (`submissions.service.board_scores`), so `public_score IS NOT NULL` is "graded" here.
    counts = (
        select(Submission.assignment_id, func.count().label("submissions"))
        .where(Submission.owner_id == owner_id)
        .group_by(Submission.assignment_id)
        .subquery("counts")
    )
    graded = Result.public_score.is_not(None)
    best = (
        select(
            Result.assignment_id,
            func.max(Result.score).label("best"),
            func.max(case((Result.passed.is_(True), 1), else_=0)).label("passed"),
        )
        .where(Result.owner_id == owner_id, graded)
        .group_by(Result.assignment_id)
        .subquery("best")
    )
    mine = aliased(BoardEntry, name="mine")
    other = aliased(BoardEntry, name="other")
    ahead = (
        select(func.count())
        .select_from(other)
        .join(User, User.id == other.owner_id)
        .where(
            other.assignment_id == mine.assignment_id,
            other.board == mine.board,
            User.role == Role.student,
            # The index range; `_ahead` then keeps exactly the entries ordered before the viewer's.
            other.score >= mine.score,
            _ahead(
                other.score,
                other.submitted_at,
                other.submission_id,
                mine.score,
                mine.submitted_at,
                mine.submission_id,
            ),
        )
        .correlate(mine)
        .scalar_subquery()
    )
    return (
        select(
            Assignment.slug,
            Assignment.title,
            Assignment.title_zh,
            Assignment.deadline,
            best.c.best,
            best.c.passed,
            counts.c.submissions,
            case((mine.owner_id.is_not(None), ahead + 1)).label("public_rank"),
        )
        .outerjoin(counts, counts.c.assignment_id == Assignment.id)
        .outerjoin(best, best.c.assignment_id == Assignment.id)
        .outerjoin(
            mine,
            and_(mine.assignment_id == Assignment.id, mine.owner_id == owner_id, mine.board == "public"),
        )
        .order_by(Assignment.id)
    )


def student_scores(session: Session, user: User) -> list[dict[str, Any]]:
    """`user`'s standing per assignment: a dict with assignment (slug), title, title_zh, deadline,
    best_score (best graded, or None), passed, public_rank (None when not on the board; never for
    instructors), submissions."""
    student = user.role == Role.student
    return [
        {
            "assignment": r.slug,
            "title": r.title,
            "title_zh": r.title_zh,
            "deadline": r.deadline,
            "best_score": float(r.best) if r.best is not None else None,
            "passed": bool(r.passed),
            "public_rank": r.public_rank if student else None,
            "submissions": r.submissions or 0,
        }
        for r in session.execute(_my_scores_statement(), {"owner_id": user.id})
    ]
