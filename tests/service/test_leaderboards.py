"""Leaderboards: best per student, ties to the earlier submission, public/private boards and when
students may see them, pseudonyms, top N, a student's own scores, and the same query on SQLite."""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from grader.report import GradeReport
from service.assignments.models import Assignment
from service.config import Settings
from service.db import create_db_engine, upgrade_db
from service.leaderboards import service as boards
from service.leaderboards.models import BoardEntry
from service.submissions import service as submissions
from service.submissions.models import Submission
from service.users import service as users_service
from service.users.models import Role, User
from service.users.schemas import UserCreate
from tests.service.factories import auth, create_assignment, create_instructor, create_user
from tests.service.helpers import fresh_database, make_zip

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Beijing


@contextmanager
def sqlite_course(tmp_path: Path, name: str) -> Iterator[tuple[Session, Settings]]:
    """A session on a fresh, migrated SQLite database (the embedded default), and settings for it."""
    url = f"sqlite:///{tmp_path / name}.sqlite3"
    upgrade_db(url)
    engine = create_db_engine(url)
    try:
        with Session(engine) as db:
            yield db, Settings(env="test", home=tmp_path / "home", database_url=url)
    finally:
        engine.dispose()


def submit(db: Session, settings: Settings, owner: User, assignment: Assignment, at: datetime) -> Submission:
    """A queued submission uploaded at `at` (through the real upload path)."""
    return submissions.create_submission(
        db,
        owner=owner,
        assignment=assignment,
        filename="hw.zip",
        stream=io.BytesIO(make_zip({"activations.py": f"# {at.isoformat()} {owner.id}"})),
        settings=settings,
        now=at,
    )


def grade(
    db: Session,
    submission: Submission,
    score: float,
    *,
    public: float | None = None,
    private: float | None = None,
    passed: bool | None = None,
    error: str | None = None,
) -> Submission:
    """Claim and record a report: graded with `score` (and a public/private split if given), or an error."""
    claim = submissions.claim(db, submission.id, lease_s=60, max_attempts=3, worker="test")
    assert claim is not None
    report: dict[str, Any] = {"status": "graded", "assignment": submission.assignment.slug, "score": score}
    if error is not None:
        report = {
            **report,
            "status": "error",
            "score": 0.0,
            "error": {"code": error, "message": "x", "message_zh": "x"},
        }
    else:
        report["passed"] = score >= submission.assignment.pass_threshold if passed is None else passed
        if public is not None:
            report["metrics"] = {"accuracy": score, "public_accuracy": public, "private_accuracy": private}
    assert submissions.record_report(db, submission.id, claim.attempt, GradeReport.model_validate(report))
    return submission


def graded(
    db: Session,
    settings: Settings,
    owner: User,
    assignment: Assignment,
    score: float,
    minutes: int,
    **kw: Any,
) -> Submission:
    return grade(db, submit(db, settings, owner, assignment, T0 + timedelta(minutes=minutes)), score, **kw)


def board(client: TestClient, token: str, slug: str = "activations", **params: Any) -> Any:
    resp = client.get(f"/api/v1/assignments/{slug}/leaderboard", params=params, headers=auth(token))
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def course(db: Session, settings: Settings) -> dict[str, Any]:
    """activations (no split): A's best is a 0.9 at minute 3 (a later 0.9 and an earlier 0.8 lose),
    B has 0.9 at minute 1, C 0.95; D only errored, E is still queued, the instructor scored 1.0."""
    a = create_assignment(db, "activations", daily_limit=100)
    (sa, ta), (sb, tb), (sc, tc), (sd, _), (se, _) = (create_user(db) for _ in range(5))
    teacher, tt = create_instructor(db)
    subs = {
        "a0": graded(db, settings, sa, a, 0.8, 0),
        "a3": graded(db, settings, sa, a, 0.9, 3),
        "a4": graded(db, settings, sa, a, 0.9, 4),
        "b1": graded(db, settings, sb, a, 0.9, 1),
        "c2": graded(db, settings, sc, a, 0.95, 2),
        "d5": graded(db, settings, sd, a, 0.0, 5, error="crashed"),
        "e6": submit(db, settings, se, a, T0 + timedelta(minutes=6)),
        "t7": graded(db, settings, teacher, a, 1.0, 7),
    }
    db.commit()
    return {
        "assignment": a,
        "users": (sa, sb, sc, sd, se),
        "tokens": (ta, tb, tc),
        "teacher": tt,
        "subs": subs,
    }


def test_best_submission_per_student_and_ties_go_to_the_earlier(
    client: TestClient, course: dict[str, Any]
) -> None:
    sa, sb, sc, *_ = course["users"]
    subs = course["subs"]
    body = board(client, course["teacher"], board="public")
    entries = body["entries"]
    assert [(e["rank"], e["student_number"], e["score"]) for e in entries] == [
        (1, sc.student_number, 0.95),
        (2, sb.student_number, 0.9),  # 0.9 at minute 1 beats A's 0.9 at minute 3
        (3, sa.student_number, 0.9),
    ]
    # A's best is the earlier of two equal 0.9s; errored, queued and instructor submissions are absent.
    assert [e["submission_id"] for e in entries] == [subs["c2"].id, subs["b1"].id, subs["a3"].id]
    assert entries[2]["submitted_at"].startswith("2026-03-02T02:03:00")
    assert (
        body["rule"].startswith("Each student's best graded submission")
        and "提交较早者在前" in body["rule_zh"]
    )
    # No split: both boards rank the whole score the same way.
    private = board(client, course["teacher"], board="private")["entries"]
    assert [e["submission_id"] for e in private] == [e["submission_id"] for e in entries]


def test_ranking_rule_is_in_the_api_docs(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/api/v1/assignments/{slug}/leaderboard"]["get"]
    assert "equal scores go to the earlier submission" in " ".join(op["description"].split())


def test_limit_gives_the_top_n(client: TestClient, course: dict[str, Any]) -> None:
    top = board(client, course["teacher"], limit=2)["entries"]
    assert [e["rank"] for e in top] == [1, 2]
    resp = client.get("/api/v1/assignments/activations/leaderboard?limit=0", headers=auth(course["teacher"]))
    assert resp.status_code == 422
    assert (
        client.get("/api/v1/assignments/nope/leaderboard", headers=auth(course["teacher"])).status_code == 404
    )


def test_top_three_of_many(client: TestClient, db: Session, settings: Settings) -> None:
    a = create_assignment(db, "activations")
    _, teacher = create_instructor(db)
    for i, score in enumerate([0.5, 0.7, 0.9, 0.6, 0.8]):
        graded(db, settings, create_user(db)[0], a, score, i)
    db.commit()
    assert [e["score"] for e in board(client, teacher, limit=3)["entries"]] == [0.9, 0.8, 0.7]


@pytest.fixture
def split(db: Session, settings: Settings) -> dict[str, Any]:
    """phone-price with a public/private split where the two boards disagree, both on who leads and
    on which of Y's submissions is Y's best."""
    a = create_assignment(db, "phone-price", daily_limit=100)
    (x, tx), (y, ty) = create_user(db), create_user(db)
    _, teacher = create_instructor(db)
    subs = {
        "x": graded(db, settings, x, a, 0.875, 0, public=0.95, private=0.80),
        "y1": graded(db, settings, y, a, 0.91, 1, public=0.90, private=0.92),
        "y2": graded(db, settings, y, a, 0.89, 2, public=0.93, private=0.85),
    }
    db.commit()
    return {"assignment": a, "x": (x, tx), "y": (y, ty), "teacher": teacher, "subs": subs}


def test_public_and_private_boards_rank_differently(client: TestClient, split: dict[str, Any]) -> None:
    (x, _), (y, _), subs = split["x"], split["y"], split["subs"]
    public = board(client, split["teacher"], "phone-price", board="public")["entries"]
    private = board(client, split["teacher"], "phone-price", board="private")["entries"]
    assert [(e["student_number"], e["submission_id"], e["score"]) for e in public] == [
        (x.student_number, subs["x"].id, 0.95),
        (y.student_number, subs["y2"].id, 0.93),
    ]
    assert [(e["student_number"], e["submission_id"], e["score"]) for e in private] == [
        (y.student_number, subs["y1"].id, 0.92),
        (x.student_number, subs["x"].id, 0.80),
    ]
    assert public[0]["public_score"] == 0.95 and public[0]["private_score"] == 0.80  # instructors see both


def test_private_board_opens_to_students_after_the_deadline(
    client: TestClient, db: Session, split: dict[str, Any], settings: Settings
) -> None:
    a: Assignment = split["assignment"]
    _, student = split["x"]
    url = "/api/v1/assignments/phone-price/leaderboard"

    # No deadline: the private board stays hidden from students; the public one is open.
    resp = client.get(url, params={"board": "private"}, headers=auth(student))
    assert resp.status_code == 403 and resp.json()["error"] == "board_hidden"
    assert "no deadline" in resp.json()["detail"] and resp.json()["detail_zh"]
    body = board(client, student, "phone-price")
    assert body["board"] == "public" and body["final"] is False
    assert all(e["private_score"] is None for e in body["entries"])  # nothing of the private part leaks

    a.deadline = datetime.now(UTC) + timedelta(days=1)
    db.commit()
    resp = client.get(url, params={"board": "private"}, headers=auth(student))
    assert resp.status_code == 403
    local = a.deadline.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    assert local in resp.json()["detail"] and local in resp.json()["detail_zh"]
    assert (
        board(client, split["teacher"], "phone-price", board="private")["final"] is False
    )  # instructors: always

    a.deadline = datetime.now(UTC) - timedelta(minutes=1)
    db.commit()
    body = board(client, student, "phone-price")  # the default is now the final ranking
    assert body["board"] == "private" and body["final"] is True
    assert [e["score"] for e in body["entries"]] == [0.92, 0.80]
    assert body["entries"][1]["private_score"] == 0.80


def test_board_visible_rules(db: Session) -> None:
    a = create_assignment(db, "mnist")
    student, _ = create_user(db)
    teacher, _ = create_instructor(db)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert boards.board_visible(a, "public", student, now)
    assert not boards.board_visible(a, "private", student, now)  # no deadline
    assert boards.board_visible(a, "private", teacher, now)
    a.deadline = now
    assert boards.board_visible(a, "private", student, now)  # at the deadline it opens
    assert not boards.board_visible(a, "private", student, now - timedelta(seconds=1))
    with pytest.raises(boards.BoardHidden):
        boards.leaderboard(db, a, board="private", limit=None, viewer=student, now=now - timedelta(seconds=1))


def test_students_see_pseudonyms_of_others_and_instructors_real_names(
    client: TestClient, course: dict[str, Any], settings: Settings
) -> None:
    sa, sb, sc, *_ = course["users"]
    ta, _, _ = course["tokens"]
    seen = board(client, ta)["entries"]
    by_rank = {e["rank"]: e for e in seen}
    assert by_rank[3]["display_name"] == sa.display_name and by_rank[3]["is_you"] is True
    for rank, other in ((1, sc), (2, sb)):
        name = by_rank[rank]["display_name"]
        assert other.display_name not in name and name.startswith("匿名同学 ") and "/ Student " in name
        assert by_rank[rank]["is_you"] is False
    assert all(e["student_number"] is None for e in seen)
    # Stable: the same pseudonym on every request and on both boards (after the deadline).
    assert board(client, ta)["entries"][0]["display_name"] == by_rank[1]["display_name"]
    assert by_rank[1]["display_name"] == boards.pseudonym(sc.id, settings.secret_key.get_secret_value())
    assert boards.pseudonym(sc.id, "another key") != boards.pseudonym(sc.id, "key")
    assert boards.pseudonym(sc.id, "key") != boards.pseudonym(sb.id, "key")

    teacher = board(client, course["teacher"])["entries"]
    assert [e["display_name"] for e in teacher] == [sc.display_name, sb.display_name, sa.display_name]
    assert [e["student_number"] for e in teacher] == [sc.student_number, sb.student_number, sa.student_number]


def test_pseudonyms_can_be_turned_off(client: TestClient, course: dict[str, Any], settings: Settings) -> None:
    settings.pseudonyms = False
    sa, sb, sc, *_ = course["users"]
    entries = board(client, course["tokens"][0])["entries"]
    assert [e["display_name"] for e in entries] == [sc.display_name, sb.display_name, sa.display_name]
    assert all(e["student_number"] is None for e in entries)


def test_me_scores(client: TestClient, db: Session, course: dict[str, Any]) -> None:
    create_assignment(db, "backprop")
    db.commit()
    ta, tb, _ = course["tokens"]
    mine = {s["assignment"]: s for s in client.get("/api/v1/me/scores", headers=auth(ta)).json()}
    assert mine["activations"] == {
        "assignment": "activations",
        "title": course["assignment"].title,
        "title_zh": course["assignment"].title_zh,
        "deadline": None,
        "best_score": 0.9,
        "passed": False,
        "public_rank": 3,
        "submissions": 3,
    }
    assert mine["backprop"]["best_score"] is None and mine["backprop"]["public_rank"] is None
    assert mine["backprop"]["submissions"] == 0 and mine["backprop"]["passed"] is False
    assert client.get("/api/v1/me/scores", headers=auth(tb)).json()[0]["public_rank"] == 2
    # The student whose only submission errored has a count but no score and no rank.
    _, _, _, sd, _ = course["users"]
    row = boards.student_scores(db, sd)[0]
    assert row["submissions"] == 1 and row["best_score"] is None and row["public_rank"] is None


def test_assignment_stats(db: Session, course: dict[str, Any]) -> None:
    stats = boards.assignment_stats(db, course["assignment"])
    # Students only: A 3, B 1, C 1, D 1 (error), E 1 (queued); the instructor's upload is left out.
    assert (stats.submissions, stats.students, stats.graded, stats.errors) == (7, 5, 5, 1)
    assert stats.passed_students == 0 and stats.scores == [0.95, 0.9, 0.9]


def test_the_leaderboard_query_on_sqlite(tmp_path: Path) -> None:
    with sqlite_course(tmp_path, "lb") as (db, settings):
        a = create_assignment(db, "phone-price", daily_limit=100)
        (x, _), (y, _), (z, _) = create_user(db), create_user(db), create_user(db)
        teacher, _ = create_instructor(db)
        sx = graded(db, settings, x, a, 0.875, 0, public=0.95, private=0.80)
        y1 = graded(db, settings, y, a, 0.91, 1, public=0.90, private=0.92)
        y2 = graded(db, settings, y, a, 0.89, 2, public=0.93, private=0.85)
        z3 = graded(db, settings, z, a, 0.875, 3, public=0.95, private=0.80)  # ties with x, later
        graded(db, settings, z, a, 0.0, 4, error="crashed")
        db.commit()

        public = boards.leaderboard(db, a, board="public", limit=None, viewer=teacher, settings=settings)
        assert [(r.rank, r.submission_id) for r in public] == [(1, sx.id), (2, z3.id), (3, y2.id)]
        assert public[0].submitted_at == T0 and public[0].submitted_at.tzinfo is not None
        private = boards.leaderboard(db, a, board="private", limit=2, viewer=teacher, settings=settings)
        assert [(r.rank, r.submission_id) for r in private] == [(1, y1.id), (2, sx.id)]
        assert [r["public_rank"] for r in boards.student_scores(db, y)] == [3]

        plan = db.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT owner_id FROM board_entry WHERE assignment_id = 1 "
                "AND board = 'public' ORDER BY score DESC, submitted_at, submission_id"
            )
        ).all()
        # The board is read in rank order straight off its index: no sort step.
        assert any("ix_board_entry_rank" in str(step) for step in plan), plan
        assert not any("TEMP B-TREE" in str(step) for step in plan), plan


def tie_course(db: Session, settings: Settings) -> tuple[list[tuple[User, str]], User]:
    """phone-price with a public/private split and every kind of tie: equal score at the same time
    (the lower submission id wins), equal score at different times, a student's own repeated best,
    a student who only errored, and an instructor above everyone; activations ranks a few of them."""
    pp = create_assignment(db, "phone-price", daily_limit=100)
    act = create_assignment(db, "activations", daily_limit=100)
    students = [create_user(db) for _ in range(7)]
    teacher, _ = create_instructor(db)
    u = [s for s, _ in students]
    for owner, public, minute in [
        (u[0], 0.90, 0),
        (u[1], 0.90, 0),  # same score, same time as u0: u0's lower id ranks first
        (u[2], 0.90, 1),
        (u[2], 0.95, 5),
        (u[3], 0.80, 3),
        (u[3], 0.80, 2),  # u3's best is this earlier one
        (u[4], 0.95, 5),  # ties u2's best exactly; u2 uploaded first
        (u[5], 0.70, 9),
        (u[5], 0.95, 4),  # beats u2 and u4 by time
        (teacher, 1.0, 0),
    ]:
        graded(db, settings, owner, pp, 0.9, minute, public=public, private=1.0 - public)
    graded(db, settings, u[6], pp, 0.0, 1, error="crashed")
    for owner, score, minute in [(u[1], 1.0, 0), (u[0], 1.0, 0), (u[3], 0.5, 2)]:
        graded(db, settings, owner, act, score, minute)
    db.commit()
    return students, teacher


def assert_my_ranks_match_the_boards(
    db: Session, settings: Settings, students: list[tuple[User, str]]
) -> None:
    teacher = db.scalars(select(User).where(User.role == Role.instructor)).first()
    assert teacher is not None
    expected: dict[tuple[int, str], int] = {}
    for a in db.scalars(select(Assignment)):
        for row in boards.leaderboard(db, a, board="public", limit=None, viewer=teacher, settings=settings):
            expected[(row.user_id, a.slug)] = row.rank
    for user, _ in students:
        got = {r["assignment"]: r["public_rank"] for r in boards.student_scores(db, user)}
        assert got == {slug: expected.get((user.id, slug)) for slug in got}, user
    assert all(r["public_rank"] is None for r in boards.student_scores(db, teacher))


def test_my_rank_is_the_boards_rank_with_ties(client: TestClient, db: Session, settings: Settings) -> None:
    students, _ = tie_course(db, settings)
    u = [s for s, _ in students]
    assert_my_ranks_match_the_boards(db, settings, students)
    # The ranks spelled out: 0.95 u5 (minute 4), u2 and u4 (minute 5, u2 uploaded first), 0.90 u0 and
    # u1 (same minute, u0 first), 0.80 u3; u6 only errored.
    expected = {0: 4, 1: 5, 2: 2, 3: 6, 4: 3, 5: 1, 6: None}
    for i, (_, token) in enumerate(students):
        mine = {s["assignment"]: s for s in client.get("/api/v1/me/scores", headers=auth(token)).json()}
        assert mine["phone-price"]["public_rank"] == expected[i], i
        entries = board(client, token, "phone-price", board="public")["entries"]
        me = [e["rank"] for e in entries if e["is_you"]]
        assert me == ([] if expected[i] is None else [expected[i]]), i
    assert boards.student_scores(db, u[1])[1]["public_rank"] == 1  # activations: 1.0 at minute 0, first id
    assert boards.student_scores(db, u[0])[1]["public_rank"] == 2


def test_my_rank_is_the_boards_rank_on_sqlite(tmp_path: Path) -> None:
    with sqlite_course(tmp_path, "ranks") as (db, settings):
        students, _ = tie_course(db, settings)
        assert_my_ranks_match_the_boards(db, settings, students)
        ranks = [boards.student_scores(db, s)[0]["public_rank"] for s, _ in students]
        assert ranks == [4, 5, 2, 6, 3, 1, None]


def board_entries(db: Session) -> set[tuple[Any, ...]]:
    rows = db.execute(
        select(
            BoardEntry.assignment_id,
            BoardEntry.board,
            BoardEntry.owner_id,
            BoardEntry.submission_id,
            BoardEntry.score,
            BoardEntry.submitted_at,
        )
    )
    return {tuple(r) for r in rows}


def random_course(db: Session, settings: Settings, seed: int) -> dict[tuple[int, str, int], int]:
    """phone-price with 12 students and 80 submissions at colliding minutes and scores, graded in a
    shuffled order (as parallel workers finish them), some erroring; returns the expected board
    entries {(assignment, board, owner): submission} by the ranking rule, computed in Python."""
    rng = random.Random(seed)
    a = create_assignment(db, "phone-price", daily_limit=1000)
    owners = [create_user(db)[0] for _ in range(12)]
    subs = []
    for _ in range(80):
        sub = submit(db, settings, rng.choice(owners), a, T0 + timedelta(minutes=rng.randrange(6)))
        subs.append((sub, rng.choice([0.5, 0.75, 0.9]), rng.choice([0.5, 0.75, 0.9]), rng.random() < 0.15))
    rng.shuffle(subs)
    best: dict[tuple[int, str, int], tuple[Any, ...]] = {}
    for sub, public, private, errored in subs:
        if errored:
            grade(db, sub, 0.0, error="crashed")
            continue
        grade(db, sub, (public + private) / 2, public=public, private=private)
        for name, score in (("public", public), ("private", private)):
            key = (a.id, name, sub.owner_id)
            rank_key = (-score, sub.created_at, sub.id)
            if key not in best or rank_key < best[key]:
                best[key] = rank_key
    db.commit()
    return {key: rank_key[2] for key, rank_key in best.items()}


def assert_the_board_table_is_each_students_best_result(db: Session, settings: Settings, seed: int) -> None:
    expected = random_course(db, settings, seed)
    kept = board_entries(db)
    assert {(a, b, o): s for a, b, o, s, *_ in kept} == expected
    # Derived again from the results with the window query: the same rows, to the timestamp.
    assert boards.rebuild_boards(db) == len(expected)
    assert board_entries(db) == kept


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_board_table_is_each_students_best_result(db: Session, settings: Settings, seed: int) -> None:
    assert_the_board_table_is_each_students_best_result(db, settings, seed)


def test_the_board_table_on_sqlite(tmp_path: Path) -> None:
    with sqlite_course(tmp_path, "entries") as (db, settings):
        assert_the_board_table_is_each_students_best_result(db, settings, 4)


def test_a_result_enters_both_boards_in_one_statement_compiled_once(db: Session, settings: Settings) -> None:
    # Both boards' entries in one INSERT ... VALUES (...), (...), from a statement SQLAlchemy can cache
    # (one built with several VALUES rows has no cache key: it was compiled again on every grading).
    assert boards._upsert_statement("postgresql")._generate_cache_key() is not None
    a = create_assignment(db, "phone-price", daily_limit=100)
    student, _ = create_user(db)
    subs = [submit(db, settings, student, a, T0 + timedelta(minutes=i)) for i in range(2)]
    db.commit()
    inserts: list[tuple[str, Any]] = []

    def seen(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO BOARD_ENTRY "):
            inserts.append((statement, context.compiled))

    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        grade(db, subs[0], 0.8, public=0.7, private=0.9)
        grade(db, subs[1], 0.9, public=0.8, private=0.95)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(inserts) == 2, [s for s, _ in inserts]
    assert all(s.upper().count("ON CONFLICT") == 1 for s, _ in inserts)
    assert inserts[0][1] is inserts[1][1], "the upsert was compiled again"
    assert {(b, s) for _, b, _, s, *_ in board_entries(db)} == {
        ("public", subs[1].id),
        ("private", subs[1].id),
    }


@pytest.mark.parametrize("first, second", [(0.7, 0.9), (0.9, 0.7)])
def test_two_workers_finishing_one_students_results_at_once_keep_the_best(
    first: float, second: float, tmp_path: Path
) -> None:
    """Worker 1 has written its result but not committed when worker 2 writes a result of the same
    student: worker 2's upsert waits on the entry's row and then compares with what worker 1
    committed, so the better of the two is on the board whichever order they finish in."""
    with fresh_database() as url:
        engine = create_db_engine(url)
        settings = Settings(env="test", home=tmp_path / "home", database_url=url)
        try:
            with Session(engine) as setup:
                a = create_assignment(setup, "activations", daily_limit=100)
                student, _ = create_user(setup)
                one = submit(setup, settings, student, a, T0)
                two = submit(setup, settings, student, a, T0 + timedelta(minutes=1))
                setup.commit()
                ids = (one.id, two.id)
            with Session(engine) as w1, Session(engine) as w2:
                grade(w1, w1.get_one(Submission, ids[0]), first)  # not committed yet
                done = threading.Event()

                def worker_2() -> None:
                    grade(w2, w2.get_one(Submission, ids[1]), second)
                    w2.commit()
                    done.set()

                thread = threading.Thread(target=worker_2)
                thread.start()
                assert not done.wait(1.0), "worker 2 should wait for worker 1's entry"
                w1.commit()
                thread.join(30)
                assert done.is_set()
            with Session(engine) as check:
                best = ids[0] if first > second else ids[1]
                assert {(b, s, sc) for _, b, _, s, sc, _ in board_entries(check)} == {
                    ("public", best, max(first, second)),
                    ("private", best, max(first, second)),
                }
        finally:
            engine.dispose()


def board_tag(db: Session, assignment: Assignment) -> int:
    return db.execute(select(Assignment.board_tag).where(Assignment.id == assignment.id)).scalar_one()


def test_the_api_serves_a_cached_board_until_a_result_enters_it(
    client: TestClient, db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    a, (sa, *_), subs, teacher = course["assignment"], course["users"], course["subs"], course["teacher"]
    first = board(client, teacher)
    hits = boards.board_cache.hits
    assert board(client, teacher) == first
    assert boards.board_cache.hits == hits + 1  # the second read was served from memory
    tag = board_tag(db, a)

    # A result behind A's best enters no board: the tag stays and the cache keeps serving.
    graded(db, settings, sa, a, 0.5, 8)
    db.commit()
    assert board_tag(db, a) == tag
    assert board(client, teacher) == first
    assert boards.board_cache.hits == hits + 2

    # E's queued submission is graded at the top: a new tag, and the very next read shows it.
    grade(db, subs["e6"], 0.99)
    db.commit()
    assert board_tag(db, a) != tag
    misses = boards.board_cache.misses
    entries = board(client, teacher)["entries"]
    assert boards.board_cache.misses == misses + 1
    assert [e["submission_id"] for e in entries] == [
        subs["e6"].id,
        subs["c2"].id,
        subs["b1"].id,
        subs["a3"].id,
    ]
    # ... on the podium (top 3 of the same cached board) and in every student's own view
    _, _, tc = course["tokens"]
    assert [e["submission_id"] for e in board(client, tc, limit=3)["entries"]] == [
        subs["e6"].id,
        subs["c2"].id,
        subs["b1"].id,
    ]
    mine = [e for e in board(client, tc)["entries"] if e["is_you"]]
    assert [e["submission_id"] for e in mine] == [subs["c2"].id]


def test_the_cache_serves_each_viewer_their_own_view(client: TestClient, course: dict[str, Any]) -> None:
    """One cached board, three viewers: names, student numbers and `is_you` are still per viewer."""
    sa, sb, sc, *_ = course["users"]
    ta, tb, _ = course["tokens"]
    teacher = board(client, course["teacher"])["entries"]
    as_a, as_b = board(client, ta)["entries"], board(client, tb)["entries"]
    assert [e["student_number"] for e in teacher] == [sc.student_number, sb.student_number, sa.student_number]
    assert all(e["student_number"] is None for e in as_a + as_b)
    assert [e["display_name"] for e in as_a if e["is_you"]] == [sa.display_name]
    assert [e["display_name"] for e in as_b if e["is_you"]] == [sb.display_name]
    assert sa.display_name not in {e["display_name"] for e in as_b}
    # B's view left no trace in A's: A, third, is the only row marked
    assert [e["is_you"] for e in board(client, ta)["entries"]] == [False, False, True]
    assert not any(e["is_you"] for e in board(client, ta, limit=2)["entries"])  # A is 3rd: not in the top 2


def test_a_cached_board_converts_its_rows_once_and_each_request_only_its_viewers_row(
    db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    a, (sa, sb, sc, *_) = course["assignment"], course["users"]
    converted: list[int] = []

    def convert(row: boards.LeaderboardRow) -> tuple[str, bool]:
        converted.append(row.user_id)
        return row.display_name, row.is_viewer

    as_a = boards.leaderboard_as(convert, db, a, board="public", limit=None, viewer=sa, settings=settings)
    assert converted == [sc.id, sb.id, sa.id, sa.id]  # the board's rows, then A's own, marked
    converted.clear()
    as_b = boards.leaderboard_as(convert, db, a, board="public", limit=None, viewer=sb, settings=settings)
    assert converted == [sb.id]
    assert as_a[2] == (sa.display_name, True) and as_b[1] == (sb.display_name, True)
    assert as_b[2] != (sa.display_name, True) and as_a[1] != (sb.display_name, True)  # nothing shared leaks
    assert as_a[0] == as_b[0]  # C's row, as converted once


def test_rebuilding_the_boards_renews_every_tag(db: Session, course: dict[str, Any]) -> None:
    other = create_assignment(db, "mnist")
    db.commit()
    before = (board_tag(db, course["assignment"]), board_tag(db, other))
    boards.rebuild_boards(db)
    db.commit()
    after = (board_tag(db, course["assignment"]), board_tag(db, other))
    assert after[0] != before[0] and after[1] != before[1]


def test_a_name_corrected_in_the_roster_is_on_the_next_board_read(
    client: TestClient, db: Session, course: dict[str, Any]
) -> None:
    """import_roster renames a user; the cached board kept the old name (the grade book had the new)."""
    _, sb, *_ = course["users"]
    old = sb.display_name
    names = {e["display_name"] for e in board(client, course["teacher"])["entries"]}
    assert old in names
    board(client, course["teacher"])  # cached now
    tag = board_tag(db, course["assignment"])
    users_service.import_roster(db, [UserCreate(student_number=sb.student_number, display_name="改名后")])
    db.commit()
    names = {e["display_name"] for e in board(client, course["teacher"])["entries"]}
    assert "改名后" in names and old not in names
    changed = board_tag(db, course["assignment"])
    assert changed != tag
    # A roster that renames nobody leaves the boards' caches alone.
    users_service.import_roster(db, [UserCreate(student_number=sb.student_number, display_name="改名后")])
    db.commit()
    assert board_tag(db, course["assignment"]) == changed
