"""The `hwgrade` command, run in-process against a fresh SQLite home."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import delete

from grader.datasets import generate_phone_price_frame
from reference.examples import EXAMPLES_DIR, zip_folder
from service.cli import main
from service.config import Settings, get_settings
from service.db import create_db_engine, create_session_factory, unit_of_work
from service.leaderboards.models import BoardEntry
from service.users import service as users_service
from tests.service.factories import create_assignment, create_user
from tests.service.test_leaderboards import board_entries, graded


def _tokens(out: str) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(out))
    return {row["student_number"]: row["token"] for row in rows}


def _user_for(home: Path, token: str) -> str | None:
    engine = create_db_engine(Settings(home=home).database_url)
    with unit_of_work(create_session_factory(engine)) as session:
        user = users_service.get_by_token(session, token)
        number = user.student_number if user else None
    engine.dispose()
    return number


def test_db_check_passes_after_upgrade(home: Path) -> None:
    assert main(["db", "check"]) == 0


def test_db_rebuild_boards_restores_a_board_a_bulk_load_left_empty(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_db_engine(Settings(home=home).database_url)
    try:
        with unit_of_work(create_session_factory(engine)) as session:
            a = create_assignment(session, "activations", daily_limit=10)
            student, _ = create_user(session)
            graded(session, Settings(home=home), student, a, 0.8, 0)
            graded(session, Settings(home=home), student, a, 0.9, 1)
            session.flush()
            kept = board_entries(session)
            # What a restore from a dump of the other tables (or a bulk COPY) leaves behind.
            session.execute(delete(BoardEntry))
        assert main(["db", "rebuild-boards"]) == 0
        assert capsys.readouterr().out.startswith("2 board entries")
        with unit_of_work(create_session_factory(engine)) as session:
            assert board_entries(session) == kept and {e[4] for e in kept} == {0.9}
    finally:
        engine.dispose()


def test_users_add_prints_a_working_token_once(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "add", "T001", "李老师", "--role", "instructor"]) == 0
    tokens = _tokens(capsys.readouterr().out)
    assert _user_for(home, tokens["T001"]) == "T001"
    assert main(["users", "add", "T001", "again"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_import_roster_gbk_with_chinese_headers(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    roster = home / "roster.csv"
    roster.write_bytes("学号,姓名\n2024001,张三\n2024002,李四\n".encode("gbk"))
    assert main(["users", "import-roster", str(roster)]) == 0
    tokens = _tokens(capsys.readouterr().out)
    assert set(tokens) == {"2024001", "2024002"}
    assert _user_for(home, tokens["2024002"]) == "2024002"

    assert main(["users", "import-roster", str(roster)]) == 0  # again: existing tokens untouched
    assert set(_tokens(capsys.readouterr().out).values()) == {"(unchanged)"}
    assert _user_for(home, tokens["2024001"]) == "2024001"

    out_file = home / "tokens.csv"
    assert main(["users", "import-roster", str(roster), "--rotate-existing", "--out", str(out_file)]) == 0
    assert out_file.stat().st_mode & 0o777 == 0o600
    assert _user_for(home, tokens["2024001"]) is None  # rotated: the old token is dead


def test_roster_without_the_needed_columns_is_refused(home: Path) -> None:
    roster = home / "roster.csv"
    roster.write_text("email\na@b.c\n")
    with pytest.raises(SystemExit, match="no 学号 or 姓名 column; it has: email"):
        main(["users", "import-roster", str(roster)])


def test_a_roster_with_bad_rows_is_refused_whole_with_every_row_named(home: Path) -> None:
    roster = home / "roster.csv"
    roster.write_text(
        "学号,姓名,角色\n2024001,张三,学生\n2024002,,student\n2024003,王五,学长\n2024001,孙八,\n"
        '2024004,"赵\n六",\n',
        encoding="utf-8",
    )
    with pytest.raises(SystemExit) as e:
        main(["users", "import-roster", str(roster)])
    text = str(e.value)
    assert "nothing was imported" in text and "未导入任何用户" in text
    assert "line 3: 2024002 has no name" in text and "第 3 行" in text
    assert "line 4: role '学长'" in text
    assert "line 5: student number 2024001 is also on line 2" in text
    assert "2024004's student number or name holds a line break" in text
    assert main(["users", "list"]) == 0  # nothing of it was imported


def test_a_roster_takes_chinese_roles_and_corrected_names(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = home / "roster.csv"
    roster.write_text("学号,姓名,角色\n2024001,张三,学生\nT01,王老师,教师\n", encoding="utf-8")
    assert main(["users", "import-roster", str(roster)]) == 0
    capsys.readouterr()
    roster.write_text("学号,姓名\n2024001,张三丰\n", encoding="utf-8")
    assert main(["users", "import-roster", str(roster)]) == 0
    assert "2024001: renamed 张三 -> 张三丰" in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    listed = capsys.readouterr().out
    assert "张三丰" in listed and re.search(r"T01\s+instructor\s+王老师", listed)


def test_a_roster_that_mixes_utf8_and_gbk_lines_is_refused(home: Path) -> None:
    roster = home / "roster.csv"
    roster.write_bytes("学号,姓名\n2024001,张三\n".encode() + "2024002,李四\n".encode("gbk"))
    with pytest.raises(SystemExit, match=r"line\(s\) 3 are not UTF-8"):
        main(["users", "import-roster", str(roster)])


def test_the_token_file_is_never_overwritten_and_opens_in_excel(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = home / "roster.csv"
    roster.write_text("学号,姓名\n2024001,=HYPERLINK(1)\n", encoding="utf-8")
    out_file = home / "tokens.csv"
    assert main(["users", "import-roster", str(roster), "--out", str(out_file)]) == 0
    first = out_file.read_bytes()
    assert first.startswith(b"\xef\xbb\xbf") and b"'=HYPERLINK(1)" in first
    token = _tokens(first.decode("utf-8-sig"))["2024001"]
    with pytest.raises(SystemExit, match="is not overwritten"):
        main(["users", "import-roster", str(roster), "--rotate-existing", "--out", str(out_file)])
    with pytest.raises(SystemExit, match="is not overwritten"):
        main(["users", "token", "2024001", "--out", str(out_file)])
    assert out_file.read_bytes() == first
    assert _user_for(home, token) == "2024001"  # not rotated


def test_users_add_strips_what_was_typed_around_the_number(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "add", " 2024009 ", "  钱七  "]) == 0
    token = _tokens(capsys.readouterr().out)["2024009"]
    assert _user_for(home, token) == "2024009"
    assert main(["users", "token", "2024009"]) == 0
    assert main(["users", "add", "2024010", "   "]) == 1
    assert "name / 姓名" in capsys.readouterr().err


def test_assignments_sync_is_idempotent(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assignments", "sync"]) == 0
    first = capsys.readouterr().out
    assert first.count("created") == 5 and "phone-price" in first
    assert main(["assignments", "sync"]) == 0
    assert capsys.readouterr().out.count("updated") == 5
    assert main(["assignments", "list"]) == 0
    assert "pass>=0.9625" in capsys.readouterr().out


def test_datasets_import_phone_price(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = home / "train.csv"
    generate_phone_price_frame(400, seed=1).to_csv(train, index=False)
    out = home / "data"
    args = ["datasets", "import", "phone-price", "--from", str(train), "--holdout", "0.2", "--seed", "88"]
    assert main([*args, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["seed"] == 88 and summary["stratify"] is True
    assert (out / "phone-price" / "hidden.csv").is_file() and (out / "phone-price" / "handout.csv").is_file()


def test_datasets_import_refuses_with_a_message_not_a_traceback(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = home / "train.csv"
    frame = generate_phone_price_frame(400, seed=1)
    frame.to_csv(train, index=False)
    base = ["datasets", "import", "phone-price", "--out", str(home / "data")]
    cases = {
        str(home / "missing.csv"): "does not exist",
        str(home): "is a folder",
    }
    for source, expected in cases.items():
        assert main([*base, "--from", source]) == 1
        assert expected in capsys.readouterr().err
    for holdout, expected in (
        ("0", "between 0 and 1"),
        ("1.5", "between 0 and 1"),
        ("nan", "between 0 and 1"),
        ("0.0001", "leaves 1 for the hidden set"),
        ("0.999", "leaves 400 for the hidden set"),
    ):
        assert main([*base, "--from", str(train), "--holdout", holdout]) == 1
        err = capsys.readouterr().err
        assert expected in err and "无法导入" in err and "Traceback" not in err
    frame.drop(columns=["price_range"]).to_csv(home / "nolabel.csv", index=False)
    assert main([*base, "--from", str(home / "nolabel.csv")]) == 1
    assert "missing column(s) price_range" in capsys.readouterr().err
    assert not (home / "data").exists()


def test_datasets_import_keeps_an_existing_hidden_set_and_warns_of_duplicates(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = home / "train.csv"
    frame = generate_phone_price_frame(400, seed=1)
    frame.to_csv(train, index=False)
    base = ["datasets", "import", "phone-price", "--from", str(train), "--out", str(home / "data")]
    assert main(base) == 0
    hidden = home / "data" / "phone-price" / "hidden.csv"
    first = hidden.read_bytes()
    capsys.readouterr()
    assert main([*base, "--seed", "1"]) == 1
    assert "--replace" in capsys.readouterr().err and hidden.read_bytes() == first
    pd.concat([frame, frame.head(7)]).to_csv(train, index=False)
    assert main([*base, "--seed", "1", "--replace"]) == 0
    assert "7 row(s)" in capsys.readouterr().err and hidden.read_bytes() != first


@pytest.mark.slow
def test_check_grades_locally(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zip_path = home / "activations.zip"
    zip_path.write_bytes(zip_folder(EXAMPLES_DIR / "activations"))
    assert main(["check", str(zip_path), "--assignment", "activations"]) == 0
    out = capsys.readouterr().out
    assert "Score 得分: 1.0000" in out and "PASSED" in out
    assert "practice set" not in out  # a function homework has no hidden set to differ from
    assert main(["check", str(zip_path), "-a", "activations", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "graded" and report["score"] == 1.0
    # The course's passing model fails the pass mark on the embedded practice set: say why.
    tuned = home / "tuned.zip"
    tuned.write_bytes(zip_folder(EXAMPLES_DIR / "phone-price-tuned"))
    assert main(["check", str(tuned), "-a", "phone-price"]) == 1
    out = capsys.readouterr().out
    assert "Score 得分: 0.9570" in out and "embedded practice set" in out and "练习数据集" in out


def test_check_of_a_zip_over_the_upload_limit_warns(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # It passes the grader (whose own limit is 100 MB) but the server would refuse it with a 413.
    zip_path = home / "activations.zip"
    zip_path.write_bytes(zip_folder(EXAMPLES_DIR / "activations"))
    monkeypatch.setenv("HWGRADE_MAX_UPLOAD_MB", "0.0001")
    get_settings.cache_clear()
    assert main(["check", str(zip_path), "-a", "activations"]) == 1
    captured = capsys.readouterr()
    assert "PASSED" in captured.out
    assert "the server refuses uploads over 0.0001 MB" in captured.err and "服务器拒绝超过" in captured.err


def test_check_unknown_assignment(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "x.zip", "--assignment", "nope"]) == 2
    assert "unknown assignment" in capsys.readouterr().err


def test_check_and_submit_of_a_path_that_is_no_file_say_so(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped path is the student's to fix, not "The grader failed on its own side" with a traceback.
    missing, folder = home / "hw2.zip", home / "hw2"
    folder.mkdir()
    for command in (["check"], ["submit", "--token", "hwg_x", "--server", "http://127.0.0.1:9"]):
        assert main([*command, str(missing), "-a", "activations"]) == 2
        err = capsys.readouterr().err
        assert f"no file {missing}" in err and "找不到文件" in err and "Traceback" not in err
        assert main([*command, str(folder), "-a", "activations"]) == 2
        err = capsys.readouterr().err
        assert "is a folder; zip it first" in err and "请先把它压缩成 .zip" in err


_HTTPX_CLIENT = httpx.Client


def _canned_server(monkeypatch: pytest.MonkeyPatch, bodies: list[dict[str, Any]]) -> None:
    """What `hwgrade submit` reads from the API, canned (this is about the CLI's output; the e2e test
    runs it against the real service): the upload's 202, then each poll's body in turn."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        status = 202 if request.method == "POST" else 200
        return httpx.Response(status, json=body, headers={"Location": "/api/v1/submissions/7"})

    monkeypatch.setattr(
        httpx, "Client", lambda **kw: _HTTPX_CLIENT(**kw, transport=httpx.MockTransport(handler))
    )


def test_submit_says_a_late_submission_is_late_its_place_in_the_queue_and_a_slow_queue_loses_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    zip_path = home / "hw.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    queued = {"id": 7, "size_bytes": 22, "status": "queued", "late": True}
    _canned_server(monkeypatch, [queued, {**queued, "queue_ahead": 3}])
    argv = ["submit", str(zip_path), "-a", "activations", "--token", "hwg_x", "--server", "http://x/"]
    assert main([*argv, "--timeout", "0.2", "--poll", "0.05"]) == 2
    out = capsys.readouterr().out
    assert "LATE 迟交" in out and "marked late" in out
    # The queue position, once for several polls that give the same one.
    assert out.count("3 submission(s) ahead of yours in the queue 前面还有 3 份提交在排队") == 1
    assert (
        "it is kept and will be graded" in out
        and "http://x/api/v1/submissions/7" in out
        and "无需重新提交" in out
    )
    _canned_server(monkeypatch, [{**queued, "late": False}])
    assert main([*argv, "--timeout", "0.1", "--poll", "0.05"]) == 2
    assert "LATE" not in capsys.readouterr().out


FIXTURES = Path(__file__).resolve().parents[1] / "grader" / "fixtures" / "functions"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("folder", "slug", "passes", "failed_check"),
    [
        (EXAMPLES_DIR / "backprop", "backprop", True, None),
        (EXAMPLES_DIR / "optimizers", "optimizers", True, None),
        (FIXTURES / "activations_naive_softmax", "activations", False, "softmax: ±1000 stays finite"),
        (FIXTURES / "optimizers_torch_momentum", "optimizers", False, "Momentum: 50-step trajectory"),
        (FIXTURES / "backprop_transposed", "backprop", False, "forward_backward: worked example, dW1"),
    ],
)
def test_check_on_function_homework(
    home: Path,
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    slug: str,
    passes: bool,
    failed_check: str | None,
) -> None:
    zip_path = home / f"{folder.name}.zip"
    zip_path.write_bytes(zip_folder(folder))
    assert main(["check", str(zip_path), "-a", slug, "--json"]) == (0 if passes else 1)
    report = json.loads(capsys.readouterr().out)
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    if passes:
        assert report["score"] == 1.0 and not failed
    else:
        assert failed_check in failed and 0 < report["score"] < 1


def test_a_command_on_a_database_never_migrated_says_to_run_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HWGRADE_HOME", str(tmp_path))
    monkeypatch.delenv("HWGRADE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["users", "list"]) == 1  # was a traceback ending in "no such table: user"
        err = capsys.readouterr().err
        assert (
            "Run `hwgrade db upgrade`, then the command again" in err
            and "hwgrade db upgrade" in err.splitlines()[-1]
        )
        assert main(["db", "upgrade"]) == 0
        assert main(["users", "list"]) == 0
    finally:
        get_settings.cache_clear()
