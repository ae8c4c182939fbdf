"""The `hwgrade` command: run the service, manage users and assignments, submit and self-check.

Every subcommand reads its configuration from HWGRADE_* (see service.config.Settings).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.config import Settings, get_settings

log = logging.getLogger("hwgrade")


def _session_factory(settings: Settings) -> Any:
    from service.db import create_db_engine, create_session_factory

    return create_session_factory(create_db_engine(settings.database_url))


# --- serve / worker / db -------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from service.demo import serve

    return serve(
        get_settings(),
        host=args.host,
        port=args.port,
        demo=not args.no_demo,
        exit_after_demo=args.exit_after_demo,
        demo_timeout=args.demo_timeout,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from service.submissions.tasks import resolve_device
    from service.worker import celery_app

    settings = get_settings()
    settings.prepare_dirs()
    device = resolve_device(settings.device)
    queues = args.queues or ("gpu,grading" if device == "cuda" else "grading")
    argv = [
        "worker",
        f"--queues={queues}",
        f"--concurrency={args.concurrency}",
        f"--loglevel={args.loglevel}",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    if args.beat:
        # Beat keeps its schedule under the home, which prepare_dirs makes only for SQLite (Postgres
        # with HWGRADE_STORAGE_DIR elsewhere, as in production, left none, and beat died at start).
        settings.home.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={settings.home / 'celerybeat-schedule'}"]
    if settings.broker_url.startswith("filesystem"):
        # The filesystem transport has no broadcast worth paying for with one local worker.
        argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    print(f"hwgrade worker: device={device} queues={queues}", flush=True)
    celery_app.worker_main(argv)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from alembic import command

    from service.db import alembic_config, upgrade_db

    settings = get_settings()
    settings.prepare_dirs()
    if args.db_command == "upgrade":
        upgrade_db(settings.database_url, args.revision)
    elif args.db_command == "check":
        command.check(alembic_config(settings.database_url))
    elif args.db_command == "revision":
        command.revision(alembic_config(settings.database_url), message=args.message, autogenerate=True)
    elif args.db_command == "current":
        command.current(alembic_config(settings.database_url), verbose=True)
    elif args.db_command == "rebuild-boards":
        from service.db import unit_of_work
        from service.leaderboards.service import rebuild_boards

        with unit_of_work(_session_factory(settings)) as session:
            print(f"{rebuild_boards(session)} board entries derived from the results")
    return 0


# --- users / assignments -------------------------------------------------------------------------


ROSTER_COLUMNS = {
    "student_number": ("student_number", "number", "id", "学号", "工号"),
    "display_name": ("display_name", "name", "姓名", "名字"),
    "role": ("role", "角色"),
}


ROLE_NAMES = {
    "student": "student",
    "学生": "student",
    "instructor": "instructor",
    "teacher": "instructor",
    "ta": "instructor",
    "教师": "instructor",
    "老师": "instructor",
    "助教": "instructor",
}


class RosterError(SystemExit):
    """A roster that cannot be imported as it is: every problem found, in English and Chinese, and
    nothing imported."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        lines = [f"{path}: nothing was imported / 未导入任何用户:"]
        lines += [f"  - {en}\n    {zh}" for en, zh in problems[:20]]
        if len(problems) > 20:
            lines.append(f"  ... and {len(problems) - 20} more / 另有 {len(problems) - 20} 处")
        super().__init__("\n".join(lines))


def _decode_roster(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    lines = raw.splitlines()
    utf8 = [i for i, line in enumerate(lines, 1) if not line.isascii() and _is_utf8(line)]
    other = [i for i, line in enumerate(lines, 1) if not _is_utf8(line)]
    if len(utf8) >= len(other):
        # Mostly UTF-8, with lines added in another editor: decoding all of it as GBK would garble
        # the UTF-8 lines. (In a GBK file a short line can be valid UTF-8 by chance, so a few such
        # lines among GBK ones are read as GBK.)
        where = ", ".join(str(i) for i in other[:5])
        raise RosterError(
            path,
            [
                (
                    f"the file mixes encodings: line(s) {where} are not UTF-8 (GBK?) while the others are. "
                    "Save the whole file again as UTF-8 (Excel: CSV UTF-8).",
                    f"文件混用了编码：第 {where} 行不是 UTF-8（可能是 GBK），其余行是。"
                    "请把整个文件重新保存为 UTF-8（Excel：CSV UTF-8）。",
                )
            ],
        )
    try:
        return raw.decode("gb18030")  # Excel in China often saves CSV as GBK
    except UnicodeDecodeError:
        raise RosterError(
            path, [("the file is neither UTF-8 nor GBK text", "文件既不是 UTF-8 也不是 GBK 文本")]
        ) from None


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_roster(path: Path, default_role: str) -> list[dict[str, str]]:
    """The roster's rows (student_number, display_name, role), checked: a row without a name, an
    unknown role or a student number given twice stops the import, with every such row named."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RosterError(path, [(f"cannot read it: {e.strerror}", f"无法读取：{e.strerror}")]) from None
    text = _decode_roster(path, raw)
    reader = csv.DictReader(io.StringIO(text))
    header = {name.strip().lower(): name for name in reader.fieldnames or []}
    column: dict[str, str] = {}
    for field, aliases in ROSTER_COLUMNS.items():
        found = next((header[a] for a in aliases if a in header), None)
        if found is not None:
            column[field] = found
    missing = [
        name for field, name in (("student_number", "学号"), ("display_name", "姓名")) if field not in column
    ]
    if missing:
        have = ", ".join(reader.fieldnames or []) or "(none)"
        hint_en = (
            " (is it separated by tabs or semicolons? save it as CSV, comma-separated)"
            if "\t" in have or ";" in have
            else ""
        )
        hint_zh = "（是否用制表符或分号分隔？请另存为逗号分隔的 CSV）" if hint_en else ""
        raise RosterError(
            path,
            [
                (
                    f"the header has no {' or '.join(missing)} column; it has: {have}{hint_en}. "
                    "The columns are 学号 (or student_number) and 姓名 (or display_name), 角色 (role) optional.",
                    f"表头缺少 {'、'.join(missing)} 列；现有：{have}{hint_zh}。"
                    "需要 学号（或 student_number）和 姓名（或 display_name）列，角色（role）列可选。",
                )
            ],
        )
    rows: list[dict[str, str]] = []
    problems: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        row = {field: (record.get(src) or "").strip() for field, src in column.items()}
        number = row["student_number"]
        if not number:
            continue
        if not row["display_name"]:
            problems.append((f"line {line}: {number} has no name", f"第 {line} 行：{number} 没有姓名"))
        role = ROLE_NAMES.get((row.get("role") or default_role).strip().lower())
        if role is None:
            problems.append(
                (
                    f"line {line}: role {row['role']!r} is not one of student/学生, instructor/教师",
                    f"第 {line} 行：角色 {row['role']!r} 无效，应为 student/学生 或 instructor/教师",
                )
            )
        if any(ord(ch) < 32 for ch in number + row["display_name"]):
            problems.append(
                (
                    f"line {line}: {number}'s student number or name holds a line break, tab or control character",
                    f"第 {line} 行：{number} 的学号或姓名中有换行、制表符或控制字符",
                )
            )
        if len(number) > 64 or len(row["display_name"]) > 200:
            problems.append(
                (
                    f"line {line}: a student number has at most 64 characters, a name at most 200",
                    f"第 {line} 行：学号最多 64 个字符，姓名最多 200 个字符",
                )
            )
        if number in first_line:
            problems.append(
                (
                    f"line {line}: student number {number} is also on line {first_line[number]}",
                    f"第 {line} 行：学号 {number} 与第 {first_line[number]} 行重复",
                )
            )
        first_line.setdefault(number, line)
        rows.append({**row, "role": role or default_role})
    if problems:
        raise RosterError(path, problems)
    return rows


def _token_file_exists(out: Path) -> SystemExit:
    return SystemExit(
        f"{out} exists: it may hold the only copy of tokens printed before, so it is not overwritten. "
        "Give another --out file (nothing was changed).\n"
        f"{out} 已存在：其中可能有之前生成的唯一一份令牌，因此不会覆盖。请换一个 --out 文件名（未做任何修改）。"
    )


def _print_tokens(pairs: Sequence[tuple[Any, str | None]], out: Path | None) -> None:
    """The users and their new tokens: to stdout, or to a new file `out` as Excel opens it (UTF-8
    with a BOM; a name that Excel would run as a formula is quoted). An existing file is never
    overwritten: it may hold the only copy of tokens printed before."""
    from service.exports.service import excel_text, to_csv_bytes

    rows = [
        [user.student_number, user.display_name, user.role.value, token or "(unchanged)"]
        for user, token in pairs
    ]
    header = ["student_number", "display_name", "role", "token"]
    if out is None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
        print("# Tokens are shown once; only their hashes are stored.", file=sys.stderr)
        return
    data = to_csv_bytes(header, ([excel_text(n), excel_text(name), role, t] for n, name, role, t in rows))
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _token_file_exists(out) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    print(f"Wrote {len(pairs)} user(s) and their tokens to {out} (mode 600).", file=sys.stderr)


def cmd_users(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from service.db import unit_of_work
    from service.errors import ServiceError
    from service.users import service
    from service.users.models import Role
    from service.users.schemas import UserCreate

    out: Path | None = getattr(args, "out", None)
    if out is not None and out.exists():
        raise _token_file_exists(out)  # before any user is added or any token replaced
    settings = get_settings()
    factory = _session_factory(settings)
    try:
        with unit_of_work(factory) as session:
            if args.users_command == "add":
                pair = service.create_user(
                    session,
                    UserCreate(
                        student_number=args.number.strip(),
                        display_name=args.name.strip(),
                        role=Role(args.role),
                    ),
                )
                _print_tokens([pair], args.out)
            elif args.users_command == "import-roster":
                rows = [
                    UserCreate(
                        student_number=r["student_number"],
                        display_name=r["display_name"],
                        role=Role(r["role"]),
                    )
                    for r in _read_roster(args.csv, args.role)
                ]
                imported = service.import_roster(session, rows, rotate_existing=args.rotate_existing)
                for user, _, old_name in imported:
                    if old_name is not None:
                        print(
                            f"{user.student_number}: renamed {old_name} -> {user.display_name}",
                            file=sys.stderr,
                        )
                _print_tokens([(user, token) for user, token, _ in imported], args.out)
            elif args.users_command == "token":
                found = service.get_by_number(session, args.number.strip())
                if found is None:
                    raise SystemExit(f"no user {args.number!r} / 没有学号为 {args.number!r} 的用户")
                _print_tokens([(found, service.rotate_token(session, found))], args.out)
            elif args.users_command == "list":
                for user in service.list_users(session):
                    print(f"{user.student_number:<16} {user.role.value:<10} {user.display_name}")
    except ServiceError as err:
        print(f"error: {err.detail}" + (f"\n{err.detail_zh}" if err.detail_zh else ""), file=sys.stderr)
        return 1
    except ValidationError as err:
        for e in err.errors():
            field = {"student_number": "student number / 学号", "display_name": "name / 姓名"}.get(
                str(e["loc"][0]) if e["loc"] else "", "value"
            )
            print(f"error: {field}: {e['msg']}", file=sys.stderr)
        return 1
    return 0


def cmd_assignments(args: argparse.Namespace) -> int:
    from grader.assignments import BUILTIN_ASSIGNMENTS
    from service.assignments import service
    from service.db import unit_of_work

    factory = _session_factory(get_settings())
    with unit_of_work(factory) as session:
        if args.assignments_command == "sync":
            for assignment, created in service.sync_specs(session, BUILTIN_ASSIGNMENTS.values()):
                print(f"{'created' if created else 'updated'}  {assignment.slug:<14} {assignment.title}")
        else:
            for assignment in service.list_assignments(session):
                deadline = assignment.deadline.isoformat() if assignment.deadline else "-"
                print(
                    f"{assignment.slug:<14} {assignment.kind:<12} pass>={assignment.pass_threshold:<7g} "
                    f"limit/day={assignment.daily_limit:<4} deadline={deadline}  {assignment.title}"
                )
    return 0


def cmd_regrade(args: argparse.Namespace) -> int:
    """Queue finished submissions to be graded again: after a fault on our side (a full disk, a
    missing data dir, a worker that kept dying), or, with --all, after a hidden set was replaced."""
    from sqlalchemy import select

    from service.assignments.service import get_by_slug
    from service.db import unit_of_work
    from service.submissions import service
    from service.submissions.models import Submission
    from service.worker import create_celery, send_wakeups

    settings = get_settings()
    factory = _session_factory(settings)
    with unit_of_work(factory) as session:
        assignment = None
        if args.assignment:
            assignment = get_by_slug(session, args.assignment)
            if assignment is None:
                print(
                    f"error: no assignment {args.assignment!r}\n    没有作业 {args.assignment!r}",
                    file=sys.stderr,
                )
                return 1
        if args.ids:
            ids = list(args.ids)
        elif args.failed:
            ids = service.failed_on_our_side(session, assignment)
        elif args.all and assignment is not None:
            ids = list(
                session.scalars(select(Submission.id).where(Submission.assignment_id == assignment.id))
            )
        else:
            print(
                "error: give submission ids, --failed (gradings that failed on our side), or --assignment SLUG --all\n"
                "    请指定提交编号、--failed（因平台原因失败的评测），或 --assignment 作业 --all",
                file=sys.stderr,
            )
            return 2
        regraded = service.regrade(session, ids)
    for sub_id, why in regraded.skipped.items():
        print(f"skipped {sub_id}: {why}")
    unsent = send_wakeups(factory, create_celery(settings), regraded.wakeups)
    print(f"{len(regraded.wakeups)} submission(s) queued to be graded again")
    if unsent:
        print(f"{unsent} could not be handed to the broker now; the sweeper will send them")
    return 0


# --- student side: submit / check ----------------------------------------------------------------


def _zip_file_problem(path: Path) -> str | None:
    """Why `path` cannot be the zip a student submits or checks (a mistyped path, a folder), in
    English and Chinese; None if it is a readable file (whether it is a zip is the grader's call)."""
    if path.is_dir():
        return (
            f"error: {path} is a folder; zip it first and give the .zip file\n"
            f"    {path} 是一个文件夹；请先把它压缩成 .zip，再指定该 .zip 文件"
        )
    if not path.is_file():
        return (
            f"error: no file {path}; check the path and the name\n    找不到文件 {path}；请检查路径和文件名"
        )
    if not os.access(path, os.R_OK):
        return f"error: {path} cannot be read (permissions)\n    无法读取 {path}（没有读取权限）"
    return None


def cmd_submit(args: argparse.Namespace) -> int:
    import httpx

    from service.report_text import format_result

    token = args.token or os.environ.get("HWGRADE_TOKEN")
    if not token:
        print("error: give --token or set HWGRADE_TOKEN", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}"}
    zip_path: Path = args.zip
    if problem := _zip_file_problem(zip_path):
        print(problem, file=sys.stderr)
        return 2
    with httpx.Client(base_url=args.server.rstrip("/"), timeout=120.0, headers=headers) as client:
        try:
            with zip_path.open("rb") as fh:
                resp = client.post(
                    f"/api/v1/assignments/{args.assignment}/submissions",
                    files={"file": (zip_path.name, fh, "application/zip")},
                )
        except httpx.HTTPError as exc:
            print(f"error: cannot reach {args.server}: {exc}", file=sys.stderr)
            return 2
        if resp.status_code != 202:
            _print_api_error(resp)
            return 2
        body = resp.json()
        location = resp.headers["Location"]
        print(
            f"Submitted #{body['id']} ({body['size_bytes']} bytes); waiting for the grade 等待评分...",
            flush=True,
        )
        left = resp.headers.get("X-Submissions-Left-Today")
        if left is not None:
            print(
                f"Submissions left today for {args.assignment}: {left} (the daily limit resets at midnight). "
                f"今天在该作业上还可提交 {left} 次（每日零点重置）。",
                flush=True,
            )
        if body.get("late"):
            print(
                "LATE 迟交: this submission came after the deadline and is marked late; your instructor decides "
                "how late work counts. 本次提交晚于截止时间，已标记为迟交；迟交如何计分由教师决定。",
                flush=True,
            )
        deadline = time.monotonic() + args.timeout
        # The queue position, printed when it changes, at most every 15 s.
        shown_ahead, next_ahead_at = None, 0.0
        while body["status"] not in ("graded", "error"):
            if time.monotonic() > deadline:
                url = f"{args.server.rstrip('/')}{location}"
                print(
                    f"Still {body['status']} after {args.timeout:g}s: it is kept and will be graded; the graders may "
                    f"be busy. Check later at {url} (or GET /api/v1/me/submissions); no need to submit again.\n"
                    f"等待 {args.timeout:g} 秒后仍为 {body['status']}：提交已保存，稍后会评分，评测机可能正忙。"
                    f"请稍后查看 {url}（或 GET /api/v1/me/submissions），无需重新提交。"
                )
                return 2
            time.sleep(args.poll)
            resp = client.get(location)
            if resp.status_code != 200:
                _print_api_error(resp)
                return 2
            body = resp.json()
            ahead = body.get("queue_ahead")
            if ahead and ahead != shown_ahead and time.monotonic() >= next_ahead_at:
                print(
                    f"  {ahead} submission(s) ahead of yours in the queue 前面还有 {ahead} 份提交在排队",
                    flush=True,
                )
                shown_ahead, next_ahead_at = ahead, time.monotonic() + 15.0
    if args.json:
        print(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        print(format_result(body["result"], title=f"Submission #{body['id']} to {args.assignment}:"))
    return 0 if body["result"]["passed"] else 1


def _print_api_error(resp: Any) -> None:
    try:
        body = resp.json()
    except ValueError:
        body = {"error": "http_error", "detail": resp.text[:500]}
    print(f"error {resp.status_code} [{body.get('error')}]: {body.get('detail')}", file=sys.stderr)
    if body.get("detail_zh"):
        print(f"    {body['detail_zh']}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    import grader
    from grader.assignments import get_assignment
    from service.report_text import format_result
    from service.submissions.tasks import resolve_device

    settings = get_settings()
    try:
        spec = get_assignment(args.assignment)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    if problem := _zip_file_problem(args.zip):
        print(problem, file=sys.stderr)
        return 2
    report = grader.grade(args.zip, spec, data_dir=settings.data_dir, device=resolve_device(settings.device))
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(
            format_result(report.model_dump(mode="json"), title=f"Self-check of {args.zip} for {spec.slug}:")
        )
        if report.sandbox:
            print(f"(sandbox: {report.sandbox})")
        if report.dataset is not None and report.dataset.name.startswith("embedded:") and spec.is_model:
            # A student's own machine has no hidden set: the practice set scores differently.
            print(
                f"Note: scored on the grader's embedded practice set ({report.dataset.name}), not the course's "
                "hidden test set, so the score and the pass flag can differ from the server's (the course's "
                "tuned phone-price model scores 0.9570 here and 0.9625 there). Upload to get the real grade.\n"
                f"说明：本次使用评测程序自带的练习数据集（{report.dataset.name}）计分，而不是课程的隐藏测试集，"
                "因此分数和是否通过可能与服务器不同（课程调优的手机价格模型在这里得 0.9570，在服务器上得 0.9625）。"
                "正式成绩以上传后的评分为准。"
            )
    size = args.zip.stat().st_size
    if size > settings.max_upload_bytes:
        # The grader itself takes larger zips than the service's upload limit: say so before the
        # student uploads it and gets a 413.
        mb, limit = f"{size / 2**20:.1f} MB", f"{settings.max_upload_mb:g} MB"
        print(
            f"warning: {args.zip} is {mb}; the server refuses uploads over {limit} (HWGRADE_MAX_UPLOAD_MB). "
            f"Leave out datasets and checkpoints you do not need, then zip again.\n"
            f"    警告：{args.zip} 大小为 {mb}；服务器拒绝超过 {limit} 的上传。请去掉不需要的数据集和检查点后重新压缩。",
            file=sys.stderr,
        )
        return 1
    return 0 if report.passed else 1


# --- datasets ------------------------------------------------------------------------------------


def cmd_datasets(args: argparse.Namespace) -> int:
    """Import the course's phone-price CSV. Every refusal is one message (English and Chinese), not
    a traceback; an existing hidden set is replaced only with --replace (results were scored on it)."""
    from grader.datasets import import_phone_price
    from grader.datasets.phone_price import N_CLASSES, check_split, read_phone_price_csv

    settings = get_settings()
    out_dir = args.out or settings.data_dir or settings.home / "data"
    source: Path = args.source

    def refuse(en: str, zh: str) -> int:
        print(f"error: {en}\n{zh}", file=sys.stderr)
        return 1

    if not source.is_file():
        what = "is a folder" if source.is_dir() else "does not exist"
        return refuse(
            f"{source} {what}; give the course's train CSV file.",
            f"{source} 不是文件；请指定课程的训练集 CSV 文件。",
        )
    try:
        frame = read_phone_price_csv(source)
        check_split(frame, args.holdout, args.stratify)
    except ValueError as e:
        return refuse(str(e), f"无法导入：{e}")
    hidden = Path(out_dir) / "phone-price" / "hidden.csv"
    if hidden.exists() and not args.replace:
        return refuse(
            f"{hidden} exists: results already graded were scored against it, and a new split would change it. "
            "Pass --replace to replace it anyway (then `hwgrade regrade --assignment phone-price --all`), or --out "
            "another data dir.",
            f"{hidden} 已存在：已评测的结果基于它计分，重新划分会改变测试集。如确需替换请加 --replace（之后运行 `hwgrade regrade --assignment phone-price --all` 重新评测），"
            "或用 --out 指定另一个数据目录。",
        )
    duplicates = int(frame.duplicated().sum())
    present = sorted(int(c) for c in frame["price_range"].unique())
    summary = import_phone_price(source, out_dir, args.holdout, args.seed, args.stratify)
    print(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
    if duplicates:
        print(
            f"warning: {duplicates} row(s) of {source} repeat an earlier row; a repeated row can land in both "
            f"the handout and the hidden set.\n警告：{source} 中有 {duplicates} 行与前面的行完全相同，"
            "重复的行可能同时出现在训练集和隐藏测试集中。",
            file=sys.stderr,
        )
    if len(present) < N_CLASSES:
        print(
            f"warning: only classes {present} of 0..{N_CLASSES - 1} occur in {source}.\n"
            f"警告：{source} 中只出现了类别 {present}（应为 0..{N_CLASSES - 1}）。",
            file=sys.stderr,
        )
    if settings.data_dir is None and args.out is None:
        print(f"# Workers use it once HWGRADE_DATA_DIR={Path(out_dir).resolve()} is set.", file=sys.stderr)
    return 0


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwgrade", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="embedded service: API + worker + demo on SQLite, no servers needed")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--no-demo", action="store_true", help="no demo users and no example submissions")
    p.add_argument("--exit-after-demo", action="store_true", help="stop once the demo has been graded")
    p.add_argument("--demo-timeout", type=float, default=900.0, help="seconds to wait for each example")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="a Celery grading worker")
    p.add_argument("--queues", help="comma-separated; default grading, plus gpu when CUDA is available")
    p.add_argument("--concurrency", type=int, default=1, help="parallel gradings (each uses its own cores)")
    p.add_argument("--beat", action="store_true", help="also run the scheduler for the sweeper (run one)")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--hostname", help="Celery node name, e.g. gpu1@%%h")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("db", help="database migrations (Alembic)")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="migrate to the latest (or given) revision")
    up.add_argument("revision", nargs="?", default="head")
    dbsub.add_parser("check", help="fail if the models and the migrations disagree")
    dbsub.add_parser("current", help="show the database's revision")
    dbsub.add_parser(
        "rebuild-boards",
        help="derive the leaderboards from the results again and renew the API's cached boards (after a bulk "
        "load, a restore or an edit by hand that bypassed the API)",
    )
    rev = dbsub.add_parser("revision", help="autogenerate a new migration (development)")
    rev.add_argument("-m", "--message", required=True)
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("users", help="students and instructors")
    usub = p.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help="add one user and print their token")
    add.add_argument("number", help="student (or staff) number, the login id")
    add.add_argument("name", help="display name")
    add.add_argument("--role", choices=["student", "instructor"], default="student")
    add.add_argument("--out", type=Path, help="write the token CSV here (mode 600) instead of stdout")
    imp = usub.add_parser(
        "import-roster", help="add users from a CSV (student_number/学号, display_name/姓名)"
    )
    imp.add_argument("csv", type=Path)
    imp.add_argument(
        "--role", choices=["student", "instructor"], default="student", help="when no role column"
    )
    imp.add_argument("--rotate-existing", action="store_true", help="new tokens for users already present")
    imp.add_argument("--out", type=Path, help="write the token CSV here (mode 600) instead of stdout")
    tok = usub.add_parser("token", help="issue a new token for a user (the old one stops working)")
    tok.add_argument("number")
    tok.add_argument("--out", type=Path)
    usub.add_parser("list", help="list users")
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("assignments", help="course assignments")
    asub = p.add_subparsers(dest="assignments_command", required=True)
    asub.add_parser("sync", help="create or refresh the built-in assignments")
    asub.add_parser("list", help="list assignments")
    p.set_defaults(func=cmd_assignments)

    p = sub.add_parser(
        "regrade",
        help="queue finished submissions to be graded again from their stored zips (results removed, "
        "a new set of attempts)",
    )
    p.add_argument("ids", nargs="*", type=int, help="submission ids")
    p.add_argument(
        "--failed",
        action="store_true",
        help="every grading that failed on our side (internal, sandbox_unavailable)",
    )
    p.add_argument("--assignment", "-a", help="only this assignment (with --failed or --all)")
    p.add_argument(
        "--all",
        action="store_true",
        help="every finished submission of --assignment (after a hidden set changed)",
    )
    p.set_defaults(func=cmd_regrade)

    p = sub.add_parser("submit", help="upload a zip to a server, wait, print the result")
    p.add_argument("zip", type=Path)
    p.add_argument("--assignment", "-a", required=True)
    p.add_argument("--server", default=os.environ.get("HWGRADE_SERVER", "http://127.0.0.1:8000"))
    p.add_argument("--token", help="your API token (or HWGRADE_TOKEN)")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the submission as JSON")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("check", help="grade a zip locally (no server) and print the report")
    p.add_argument("zip", type=Path)
    p.add_argument("--assignment", "-a", required=True)
    p.add_argument("--json", action="store_true", help="print the GradeReport as JSON")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("datasets", help="hidden test sets")
    dsub = p.add_subparsers(dest="datasets_command", required=True)
    imp = dsub.add_parser("import", help="split a course CSV into handout and hidden test set")
    imp.add_argument("kind", choices=["phone-price"])
    imp.add_argument("--from", dest="source", type=Path, required=True, help="the course's train.csv")
    imp.add_argument("--holdout", type=float, default=0.2)
    imp.add_argument("--seed", type=int, default=88)
    imp.add_argument("--stratify", action=argparse.BooleanOptionalAction, default=True)
    imp.add_argument("--out", type=Path, help="data dir (default HWGRADE_DATA_DIR, else <home>/data)")
    imp.add_argument(
        "--replace",
        action="store_true",
        help="replace an existing hidden set (results graded on it change meaning)",
    )
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "worker":  # Celery configures logging in the worker
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        result: int = args.func(args)
    except (ProgrammingError, OperationalError) as e:
        text = str(e.orig if e.orig is not None else e)
        if args.command == "db" or not (
            "does not exist" in text or "no such table" in text or "no such column" in text
        ):
            raise
        # A table or column the code expects is missing: the schema is older than the code.
        print(
            f"error: the database's schema is missing what this command needs ({text.splitlines()[0]}). Run "
            "`hwgrade db upgrade`, then the command again.\n"
            "    数据库结构缺少此命令需要的表或列。请先运行 `hwgrade db upgrade`，再重新运行此命令。",
            file=sys.stderr,
        )
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
