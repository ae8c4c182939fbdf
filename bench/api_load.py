"""API latency under load: `python -m bench.api_load [--quick]` (see bench/README.md).

Fills a fresh Postgres database with 100,000 submissions (300 students, the 5 built-in assignments,
results for the finished ones; bulk COPY), starts the API (uvicorn, 2 processes by default, as in
docker-compose.yml) on loopback with the broker on a dedicated Redis database, and drives 50
concurrent clients (aiohttp, or httpx with --client httpx; asyncio, one process) against:
  GET  /api/v1/submissions/{id}                a student reading one of their own submissions
  GET  /api/v1/me/submissions                  a student's list (summaries, the latest 50)
  GET  /api/v1/assignments/{slug}/leaderboard  if the API has it (else skipped, with a note)
  GET  /api/v1/me/scores                       if the API has it (else skipped, with a note)
  POST /api/v1/assignments/{slug}/submissions  a 1 MB zip, until the 202 (no worker runs)
Each endpoint is measured twice: `saturated` (50 clients back to back: latency includes queueing at
a server that is at its capacity) and `paced` (the 50 clients together offer a fixed request rate,
each with random gaps: latency is the service time at that load). Every loop is bounded by a request
count; the script stops everything it started and drops its database.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import hashlib
import io
import json
import random
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/api_load.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

N_STUDENTS = 300
N_SUBMISSIONS = 100_000
CLIENTS = 50
TARGET_READ_P99_S = 0.020
TARGET_UPLOAD_P99_S = 0.150
SEED = 20240601
# The load client's HTTP library. aiohttp parses HTTP in C: ~0.8 ms of CPU a request on the 2-core
# machine of 2026-11-29, against ~2.1 ms for httpx (pure Python) on the same server and load. The
# client shares the cores with the API and Postgres, and its one event loop parses the responses one
# after another, so its own cost was part of every latency measured (bench/RESULTS.md, notes of the
# eighth session). httpx stays selectable, to compare with the runs made with it.
CLIENT_LIBS = ("aiohttp", "httpx")


@dataclass
class Plan:
    quick: bool
    requests: int  # per endpoint, saturated
    paced_requests: int  # per endpoint, paced
    uploads: int
    paced_uploads: int
    rate: float  # req/s offered by all clients together in the paced runs
    upload_rate: float
    workers: int = 2  # uvicorn processes
    client: str = CLIENT_LIBS[0]

    @classmethod
    def make(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            plan = cls(True, 400, 300, 100, 60, args.rate, args.upload_rate)
        else:
            plan = cls(False, 3000, 1500, 500, 300, args.rate, args.upload_rate)
        if args.requests:
            plan.requests = args.requests
        plan.workers = max(1, args.workers)
        plan.client = args.client
        return plan


# --- data ----------------------------------------------------------------------------------------

SANDBOX_TEXT = (
    "zygote: warm fork-server, mount/pid/net/ipc/uts namespaces, pivot_root to a read-only runtime, "
    "dedicated uid, seccomp, rlimits"
)


def _result_payload(rng: random.Random, kind: str, score: float, passed: bool) -> dict[str, str]:
    checks = [
        {
            "name": "accuracy",
            "passed": passed,
            "expected": ">= 0.9",
            "got": round(score, 4),
            "message": {
                "en": f"Accuracy on the hidden set: {score:.4f}",
                "zh": f"隐藏测试集上的准确率：{score:.4f}",
            },
        },
        {
            "name": "output_shape",
            "passed": True,
            "expected": "(n, classes)",
            "got": "(n, classes)",
            "message": None,
        },
        {"name": "finite", "passed": True, "expected": "finite", "got": "finite", "message": None},
    ]
    metrics = {
        "accuracy": round(score, 4),
        "n": 10000 if kind == "mnist" else 400,
        "per_class": [round(rng.random(), 3) for _ in range(10)],
    }
    timings = {
        "intake_s": 0.003,
        "prepare_s": 0.0004,
        "sandbox_s": round(rng.uniform(0.1, 0.5), 3),
        "score_s": 0.001,
    }
    logs = "".join(
        f"epoch: {i:4d} loss: {rng.random():.2f}, time: 0.{rng.randint(10, 99)}s\n" for i in range(12)
    )
    hints = (
        []
        if passed
        else [{"en": "Check that the model is in eval() mode.", "zh": "请确认模型处于 eval() 模式。"}]
    )
    details = {"dataset": {"name": f"{kind}/hidden", "sha256": "ab" * 32}, "attachments": [], "grader": "0.1"}
    return {
        "metrics": json.dumps(metrics),
        "checks": json.dumps(checks, ensure_ascii=False),
        "hints": json.dumps(hints, ensure_ascii=False),
        "logs_tail": logs,
        "timings": json.dumps(timings),
        "details": json.dumps(details),
    }


@dataclass
class Seeded:
    tokens: list[str]  # per student, index = student index
    instructor_token: str
    own_ids: list[list[int]]  # per student, their submission ids
    slugs: list[str]
    seconds: float = 0.0


def seed(db_url: str) -> Seeded:
    """Bulk-load users, 100,000 submissions and their results with COPY (realistic shapes)."""
    import psycopg

    from grader.assignments import BUILTIN_ASSIGNMENTS
    from service.assignments.service import sync_specs
    from service.db import create_db_engine, create_session_factory, unit_of_work
    from service.leaderboards.service import rebuild_boards
    from service.users.service import hash_token, new_token

    t0 = time.perf_counter()
    engine = create_db_engine(db_url)
    with unit_of_work(create_session_factory(engine)) as session:
        sync_specs(session, BUILTIN_ASSIGNMENTS.values())
    engine.dispose()
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    tokens = [new_token() for _ in range(N_STUDENTS)]
    instructor_token = new_token()
    own_ids: list[list[int]] = [[] for _ in range(N_STUDENTS)]
    with psycopg.connect(common.psycopg_dsn(db_url)) as conn:
        # Uploads in the benchmark must never hit the daily limit.
        conn.execute("UPDATE assignment SET daily_limit = 1000000")
        assignments = conn.execute("SELECT id, slug, kind FROM assignment ORDER BY id").fetchall()
        with conn.cursor().copy(
            'COPY "user" (id, role, student_number, display_name, token_hash, created_at) FROM STDIN'
        ) as copy:
            for i, tok in enumerate(tokens):
                copy.write_row(
                    (i + 1, "student", f"2024{i + 1:05d}", f"学生 Student {i + 1}", hash_token(tok), now)
                )
            copy.write_row(
                (N_STUDENTS + 1, "instructor", "T0001", "李老师 Teacher", hash_token(instructor_token), now)
            )
        # The schema grows (other engineers add columns): write the columns this database has.
        have = {
            t: {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (t,)
            )}
            for t in ("submission", "result")
        }  # fmt: skip
        sub_rows: list[dict[str, Any]] = []
        res_rows: list[dict[str, Any]] = []
        for sid in range(1, N_SUBMISSIONS + 1):
            student = rng.randrange(N_STUDENTS)
            a_id, slug, kind = assignments[rng.randrange(len(assignments))]
            created = now - timedelta(seconds=rng.uniform(0, 60 * 86400))
            r = rng.random()
            status = "graded" if r < 0.96 else ("error" if r < 0.99 else "queued")
            sha = hashlib.sha256(f"{sid}".encode()).hexdigest()
            started = created + timedelta(seconds=rng.uniform(0.05, 5)) if status != "queued" else None
            finished = started + timedelta(seconds=rng.uniform(0.1, 3)) if started else None
            sub_rows.append(
                {
                    "id": sid,
                    "owner_id": student + 1,
                    "assignment_id": a_id,
                    "original_filename": "homework.zip",
                    "sha256": sha,
                    "size_bytes": rng.randint(2_000, 2_000_000),
                    "stored_path": f"{sha[:2]}/{sha[2:4]}/{sha}.zip",
                    "status": status,
                    "attempt": 0 if status == "queued" else 1,
                    "lease_expires_at": None,
                    "worker": None if status == "queued" else "celery@grader-1",
                    "enqueued_at": created,
                    "late": False,
                    "created_at": created,
                    "started_at": started,
                    "finished_at": finished,
                }  # fmt: skip
            )
            own_ids[student].append(sid)
            if status == "queued":
                continue
            if status == "graded":
                score = min(1.0, max(0.0, rng.gauss(0.85, 0.12)))
                passed = score >= 0.8
                err: tuple[str | None, ...] = (None, None, None)
            else:
                score, passed = 0.0, False
                err = (
                    "load_failed",
                    "Could not load the weights: the file is not a state_dict.",
                    "无法加载权重。",
                )
            res_rows.append(
                {
                    "submission_id": sid,
                    "assignment_id": a_id,
                    "owner_id": student + 1,
                    "submitted_at": created,
                    "score": score,
                    "passed": passed,
                    "public_score": score,
                    "private_score": score,
                    "error_code": err[0],
                    "error_message": err[1],
                    "error_message_zh": err[2],
                    "sandbox": SANDBOX_TEXT,
                    "attempt": 1,
                    "created_at": finished,
                    **_result_payload(rng, kind, score, passed),
                }  # fmt: skip
            )
        for table, rows in (("submission", sub_rows), ("result", res_rows)):
            cols = [c for c in rows[0] if c in have[table]]
            with conn.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(tuple(row[c] for c in cols))
        for table in ("user", "submission", "result"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT max(id) FROM \"{table}\"))"
            )
        conn.commit()
    # COPY bypassed the result path that keeps the boards, so derive them as `hwgrade db
    # rebuild-boards` does after a restore.
    engine = create_db_engine(db_url)
    with unit_of_work(create_session_factory(engine)) as session:
        rebuild_boards(session)
    engine.dispose()
    with psycopg.connect(common.psycopg_dsn(db_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return Seeded(tokens, instructor_token, own_ids, [a[1] for a in assignments], time.perf_counter() - t0)


def make_zip(size: int, salt: int) -> bytes:
    """A zip of about `size` bytes that does not compress (random weights), plus a tiny model.py."""
    rng = random.Random(salt)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.py", "import torch\n# upload benchmark\n")
        zf.writestr(zipfile.ZipInfo("model.pth"), rng.randbytes(size - 400), compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


# --- load ----------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    mode: str
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, str] = field(default_factory=dict)  # the first of each kind, with its timing
    wall_s: float = 0.0
    note: str = ""
    # CPU seconds spent during the phase by the API processes, this load client, and Postgres.
    cpu: dict[str, float] = field(default_factory=dict)

    def cpu_ms_per_request(self, who: str) -> str:
        n = len(self.latencies) + sum(self.errors.values())
        return f"{self.cpu[who] / n * 1000:.1f}" if n and who in self.cpu else "-"

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else float("nan")


class TransportError(Exception):
    """A request that got no HTTP response (refused, reset, timed out); wraps the library's error."""


Send = Callable[[str, str, dict[str, Any]], Awaitable[int]]


@asynccontextmanager
async def http_client(lib: str, base_url: str) -> AsyncIterator[Send]:
    """`send(method, url, kw)`: one request on a pool of CLIENTS keep-alive connections, its status
    once the whole body is read; `kw` as httpx takes it (`headers`, `files`). TransportError when no
    response came."""
    if lib == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

            async def send_httpx(method: str, url: str, kw: dict[str, Any]) -> int:
                try:
                    resp = await client.request(method, url, **kw)
                    await resp.aread()
                except httpx.HTTPError as e:
                    raise TransportError(e) from e
                return resp.status_code

            yield send_httpx
        return
    import aiohttp

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def send_aiohttp(method: str, url: str, kw: dict[str, Any]) -> int:
            form = None
            if "files" in kw:
                form = aiohttp.FormData()
                for name, (filename, content, content_type) in kw["files"].items():
                    form.add_field(name, content, filename=filename, content_type=content_type)
            try:
                async with session.request(method, url, headers=kw.get("headers"), data=form) as resp:
                    await resp.read()
                    return resp.status
            except (aiohttp.ClientError, TimeoutError) as e:
                raise TransportError(e) from e

        yield send_aiohttp


async def run_phase(
    name: str,
    mode: str,
    total: int,
    make_request: Any,
    expect: int,
    base_url: str,
    rate: float | None,
    cpu_probe: Any = None,
    client_lib: str = CLIENT_LIBS[0],
) -> Phase:
    """`total` requests from CLIENTS concurrent clients; back to back, or paced to `rate` req/s overall.
    `cpu_probe()` -> {who: CPU seconds so far}, read before and after (the phase's CPU per request)."""
    phase = Phase(name, mode)
    counter = iter(range(total))
    rng = random.Random(hash((name, mode)))
    async with http_client(client_lib, base_url) as send:
        # The last response's time: the phase's wall ends there, not after a client's final pause.
        last_done = 0.0

        async def one_client(cid: int) -> None:
            nonlocal last_done
            if rate:
                await asyncio.sleep(rng.uniform(0, CLIENTS / rate))
            for i in counter:
                method, url, kw = make_request(i)
                t0 = time.perf_counter()
                status: int | str
                try:
                    status = await send(method, url, kw)
                except TransportError as e:
                    cause = e.args[0]
                    status = type(cause).__name__
                    phase.error_samples.setdefault(
                        status, f"{cause!r} after {(time.perf_counter() - t0) * 1000:.0f} ms"
                    )
                last_done = time.perf_counter()
                elapsed = last_done - t0
                if status == expect:
                    phase.latencies.append(elapsed)
                else:
                    phase.errors[str(status)] = phase.errors.get(str(status), 0) + 1
                if rate:
                    # exponential gaps: the clients together offer `rate` requests per second
                    await asyncio.sleep(max(0.0, rng.expovariate(rate / CLIENTS) - elapsed))

        before = cpu_probe() if cpu_probe else {}
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(CLIENTS)))
        phase.wall_s = (last_done or time.perf_counter()) - t0
        after = cpu_probe() if cpu_probe else {}
        phase.cpu = {who: after[who] - before[who] for who in after}
    return phase


def api_paths(base_url: str) -> set[str]:
    import httpx

    try:
        return set(httpx.get(base_url + "/openapi.json", timeout=10).json().get("paths", {}))
    except (httpx.HTTPError, ValueError):
        return set()


async def drive(
    plan: Plan, seeded: Seeded, base_url: str, cpu_probe: Any = None
) -> tuple[list[Phase], list[str]]:
    rng = random.Random(SEED + 1)
    notes: list[str] = []
    paths = api_paths(base_url)
    students = [i for i in range(N_STUDENTS) if seeded.own_ids[i]]

    def auth(i: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {seeded.tokens[i]}"}

    def read_one(_: int) -> tuple[str, str, dict[str, Any]]:
        s = rng.choice(students)
        return "GET", f"/api/v1/submissions/{rng.choice(seeded.own_ids[s])}", {"headers": auth(s)}

    def my_list(_: int) -> tuple[str, str, dict[str, Any]]:
        s = rng.choice(students)
        return "GET", "/api/v1/me/submissions", {"headers": auth(s)}

    def leaderboard(_: int) -> tuple[str, str, dict[str, Any]]:
        s = rng.choice(students)
        return (
            "GET",
            f"/api/v1/assignments/{rng.choice(['mnist', 'phone-price'])}/leaderboard",
            {"headers": auth(s)},
        )

    def podium(_: int) -> tuple[str, str, dict[str, Any]]:
        # The course's top three (the instructor's podium): the same ranking, three rows out.
        s = rng.choice(students)
        return (
            "GET",
            f"/api/v1/assignments/{rng.choice(['mnist', 'phone-price'])}/leaderboard?limit=3",
            {"headers": auth(s)},
        )

    def my_scores(_: int) -> tuple[str, str, dict[str, Any]]:
        s = rng.choice(students)
        return "GET", "/api/v1/me/scores", {"headers": auth(s)}

    zips = [make_zip(1024 * 1024, salt) for salt in range(20)]

    def upload(i: int) -> tuple[str, str, dict[str, Any]]:
        s = rng.choice(students)
        files = {"file": ("homework.zip", zips[i % len(zips)], "application/zip")}
        return "POST", "/api/v1/assignments/mnist/submissions", {"headers": auth(s), "files": files}

    reads = [("GET /api/v1/submissions/{id}", read_one), ("GET /api/v1/me/submissions", my_list)]
    for path, label, fn in (
        ("/api/v1/assignments/{slug}/leaderboard", "GET /api/v1/assignments/{slug}/leaderboard", leaderboard),
        (
            "/api/v1/assignments/{slug}/leaderboard",
            "GET /api/v1/assignments/{slug}/leaderboard?limit=3",
            podium,
        ),
        ("/api/v1/me/scores", "GET /api/v1/me/scores", my_scores),
    ):
        if path in paths:
            reads.append((label, fn))
        else:
            notes.append(f"{label}: not in this API's openapi.json (not built yet); skipped")

    measure = functools.partial(run_phase, client_lib=plan.client)

    phases: list[Phase] = []
    for label, fn in reads:
        # a short unmeasured warm-up: connection pools, first queries, code paths
        await measure(label, "warm-up", 2 * CLIENTS, fn, 200, base_url, None)
        print(f"  {label} ...", flush=True)
        phases.append(await measure(label, "saturated", plan.requests, fn, 200, base_url, None, cpu_probe))
        phases.append(
            await measure(label, "paced", plan.paced_requests, fn, 200, base_url, plan.rate, cpu_probe)
        )
    label = "POST 1 MB zip (202 ack)"
    print(f"  {label} ...", flush=True)
    await measure(label, "warm-up", CLIENTS, upload, 202, base_url, None)
    phases.append(await measure(label, "saturated", plan.uploads, upload, 202, base_url, None, cpu_probe))
    phases.append(
        await measure(label, "paced", plan.paced_uploads, upload, 202, base_url, plan.upload_rate, cpu_probe)
    )
    for ph in phases:
        if ph.mode == "paced":
            r = plan.upload_rate if ph.name.startswith("POST") else plan.rate
            ph.note = f"offered {r:g}/s"
    return phases, notes


# --- main ----------------------------------------------------------------------------------------


def report(phases: list[Phase], notes: list[str]) -> tuple[str, str, list[tuple[str, bool]]]:
    header = ["endpoint", "mode", "n", "req/s", "p50", "p90", "p99", "max", "errors"]
    header += ["CPU ms/req: API", "client", "Postgres", "target", "verdict"]
    rows = []
    checks: list[tuple[str, bool]] = []
    for ph in phases:
        if not ph.latencies:
            rows.append([ph.name, ph.mode, "0", "-", "-", "-", "-", "-", json.dumps(ph.errors), *"-----"])
            continue
        p99 = common.percentile(ph.latencies, 99)
        upload = ph.name.startswith("POST")
        target = TARGET_UPLOAD_P99_S if upload else TARGET_READ_P99_S
        ok = p99 <= target and not ph.errors
        checks.append((f"{ph.name} [{ph.mode}] p99 {common.ms(p99)} <= {common.ms(target)}", ok))
        rows.append(
            [
                ph.name,
                ph.mode + (f" ({ph.note})" if ph.note else ""),
                str(len(ph.latencies)),
                f"{ph.rps:.0f}",
                common.ms(common.percentile(ph.latencies, 50)),
                common.ms(common.percentile(ph.latencies, 90)),
                common.ms(p99),
                common.ms(max(ph.latencies)),
                json.dumps(ph.errors) if ph.errors else "0",
                ph.cpu_ms_per_request("api"),
                ph.cpu_ms_per_request("client"),
                ph.cpu_ms_per_request("postgres"),
                f"p99 <= {common.ms(target)}",
                common.verdict(ok),
            ]
        )
    text = common.text_table(header, rows)
    md = common.markdown_table(header, rows)
    if notes:
        text += "\n" + "\n".join(f"note: {n}" for n in notes)
        md += "\n\n" + "\n".join(f"- note: {n}" for n in notes)
    return text, md, checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api_load", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer requests per endpoint (~1-2 min)")
    p.add_argument(
        "--requests", type=int, help="saturated requests per read endpoint (default 3000, --quick 400)"
    )
    p.add_argument("--rate", type=float, default=100.0, help="paced reads: requests/s offered by all clients")
    p.add_argument("--upload-rate", type=float, default=10.0, help="paced uploads: uploads/s offered")
    p.add_argument(
        "--redis-db", type=int, default=14, help="Redis database number on 127.0.0.1:6379 (emptied)"
    )
    p.add_argument("--workers", type=int, default=2, help="uvicorn processes (compose's default is 2)")
    p.add_argument(
        "--client",
        choices=CLIENT_LIBS,
        default=CLIENT_LIBS[0],
        help="the load client's HTTP library (httpx: as the runs before 2026-11-29 18:38 UTC)",
    )
    p.add_argument("--no-write", action="store_true", help="do not append to bench/RESULTS.md")
    args = p.parse_args(argv)
    plan = Plan.make(args)

    info = common.machine_info()
    stamp = common.now_stamp()
    started = time.perf_counter()
    print(f"hwgrade API load benchmark {'(quick) ' if plan.quick else ''}{stamp}")
    print(common.machine_block(info), flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="hwgrade-bench-api-") as tmpname,
        common.fresh_database("hwgrade_bench_api") as db_url,
        common.redis_db(args.redis_db) as broker_url,
    ):
        tmp = Path(tmpname)
        print(f"seeding {N_SUBMISSIONS} submissions, {N_STUDENTS} students ...", flush=True)
        seeded = seed(db_url)
        print(f"  seeded in {seeded.seconds:.1f} s", flush=True)
        env = common.repo_env(
            {
                "HWGRADE_ENV": "test",
                "HWGRADE_HOME": str(tmp / "home"),
                "HWGRADE_DATABASE_URL": db_url,
                "HWGRADE_BROKER_URL": broker_url,
                "HWGRADE_MAX_UPLOAD_MB": "5",
            }
        )
        from service.config import API_KEEP_ALIVE_S

        port = common.free_port()
        base_url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory", "--host", "127.0.0.1"]
        cmd += [
            "--port",
            str(port),
            "--log-level",
            "info",  # uvicorn's supervisor logs a worker it restarts (missed health check) at info
            "--no-access-log",
            "--workers",
            str(plan.workers),
            "--timeout-keep-alive",  # as compose runs it
            str(API_KEEP_ALIVE_S),
        ]
        api = common.Process(cmd, env, tmp / "api.log")
        try:
            import httpx

            def up() -> bool:
                if not api.alive():
                    raise SystemExit(f"the API died:\n{api.log_tail()}")
                try:
                    return httpx.get(base_url + "/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            common.wait_for(up, 60, "the API", interval=0.2)

            def cpu_probe() -> dict[str, float]:
                return {
                    "api": common.cpu_seconds([api.pid, *common.descendants(api.pid)]),
                    "client": time.process_time(),
                    "postgres": common.cpu_seconds(common.pids_named("postgres")),
                }

            # The load client's own garbage collector: seeding left ~100,000 long-lived objects here,
            # and a full collection over them paused every request in flight by 20-95 ms (measured),
            # which the latencies would have blamed on the API.
            gc.collect()
            gc.freeze()
            workers = set(common.descendants(api.pid))
            phases, notes = asyncio.run(drive(plan, seeded, base_url, cpu_probe))
            workers_changed = set(common.descendants(api.pid)) != workers
            if workers_changed:
                notes.append(
                    "the API's processes changed during the run (uvicorn's supervisor replaces a worker that "
                    "died or missed its health check); see the API log tail"
                )
            for ph in phases:
                for kind, sample in ph.error_samples.items():
                    notes.append(f"{ph.name} [{ph.mode}]: {ph.errors.get(kind, 0)} x {sample}")
            api_mem = common.tree_memory(api.pid)
        finally:
            api.stop()
            api_log = api.log_tail(20)
    text, md, checks = report(phases, notes)
    took = time.perf_counter() - started
    print()
    print(text)
    print(
        f"\nAPI process: RSS {api_mem['rss_mib']:.0f} MiB at the end; took {took:.0f} s; load average now {common.load_average()}"
    )
    if any(ph.errors for ph in phases) or workers_changed:
        print("API log tail:\n" + api_log)
    print("\n".join(f"{common.verdict(ok)}  {what}" for what, ok in checks))
    if not args.no_write:
        section = [
            f"## API load benchmark{' (--quick)' if plan.quick else ''}: {stamp}",
            "",
            f"Command: `{common.command_line()}` (took {took:.0f} s; load average at the end {common.load_average()}).",
            "",
            "Machine:",
            "",
            common.machine_block(info),
            "",
            f"Database: {N_SUBMISSIONS:,} submissions of {N_STUDENTS} students over 5 assignments (96% graded, 3% "
            f"error, 1% queued; results with checks, metrics and a log tail), seeded by COPY in {seeded.seconds:.0f} s. "
            f"API: {plan.workers} uvicorn process(es) on loopback (as compose's HWGRADE_API_WORKERS); {CLIENTS} concurrent {plan.client} clients (asyncio, one process) on "
            "the same shared 2-core machine, so client, server and Postgres share the cores with other people's work. "
            "`saturated`: back-to-back requests (latency includes queueing at a server at capacity); `paced`: the "
            "clients together offer the stated rate with exponential gaps. `CPU ms/req`: CPU time of the API "
            "processes, of this load client and of every Postgres process during the phase, per request: where "
            "the 2 cores went, independent of queueing.",
            "",
            md,
            "",
            "Targets:",
            "",
            *[f"- **{common.verdict(ok)}** {what}" for what, ok in checks],
        ]
        common.append_results("\n".join(section))
        print(f"appended to {common.RESULTS}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
