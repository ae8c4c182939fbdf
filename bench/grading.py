"""Grading cost vs the model's own cost: `python -m bench.grading [--quick]` (see bench/README.md).

For the MNIST MLP and the tuned phone-price example submissions, side by side in one run:
  (a) raw       the model's own work in this process: import model.py, torch.load the weights, the
                scaler if any, inference over the same hidden set the grader uses; no sandbox;
                a_fork is the same work in a fresh process forked from this warm one, still no
                sandbox: the least that any design with a fresh process per evaluation pays;
  (b) grade     grader.grade() end to end on the example's zip, in the warm `zygote` mode and in the
                cold `bwrap` mode (one fresh sandboxed Python per submission: the naive design);
                a, a_fork and the warm b run in turn, run by run, so that their ratios compare runs
                made seconds apart on a host whose speed drifts;
  (c) service   upload over HTTP to a real uvicorn API, one real `celery worker` process grades it,
                timed until the row is final in a fresh Postgres database;
  throughput    N MNIST submissions queued at once (uploaded while the worker's consumer is paused),
                then graded by worker --concurrency = cores: graded per minute against the
                pure-inference bound cores x 60 / a, with a measured just before and after that run
                (three runs, the median taken); then N uploaded while it grades (the uploads' CPU in
                the window too);
  memory        the worker's RSS and PSS (main, pool children, zygotes, spares; from /proc) when warm and
                after 1,000 gradings through the same Celery worker (--quick: fewer, and says so).
Prints a table with PASS/MISS per target and appends it to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import itertools
import os
import pickle
import socket
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # `python bench/grading.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

if TYPE_CHECKING:
    import httpx

EXAMPLES = (("mnist-mlp", "mnist"), ("phone-price-tuned", "phone-price"))
FINAL = ("graded", "error")
BENCH_STUDENT = "bench-s001"
TARGET_B_OVER_A = 1.5
TARGET_THROUGHPUT = 0.5
TARGET_RSS_GROWTH = 0.10


@dataclass
class Plan:
    quick: bool
    repeats: int  # measured runs per figure (after the cold run and one warm-up)
    throughput_n: int
    throughput_rounds: int  # queued runs, each with a measured beside it; the target takes the median
    rss_gradings: int
    rss_time_cap_s: float
    skip_service: bool = False

    # The cold bubblewrap mode takes 1-2 s a run: fewer runs there. The warm figures take tens of
    # milliseconds; with 7 runs their medians moved by 2-3 ms from one full run to the next.
    COLD_REPEATS_MAX = 7

    @property
    def cold_repeats(self) -> int:
        return min(self.repeats, self.COLD_REPEATS_MAX)

    @classmethod
    def make(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            plan = cls(True, 3, 12, 1, 40, 90.0)
        else:
            plan = cls(False, 21, 60, 3, 1000, 540.0)
        if args.repeats:
            plan.repeats = args.repeats
        if args.throughput_n:
            plan.throughput_n = args.throughput_n
        if args.throughput_rounds:
            plan.throughput_rounds = args.throughput_rounds
        if args.rss_gradings is not None:
            plan.rss_gradings = args.rss_gradings
        plan.skip_service = args.skip_service
        return plan


@dataclass
class Series:
    """One figure: the first (cold) run, then warm runs whose median is the figure."""

    first: float | None = None
    runs: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    note: str = ""

    @property
    def med(self) -> float:
        return common.median(self.runs) if self.runs else float("nan")

    @property
    def best(self) -> float:
        return min(self.runs) if self.runs else float("nan")


# --- (a) raw -------------------------------------------------------------------------------------


class RawModel:
    """The example's own work, as its author would run it: model.py, weights, scaler, inference."""

    counter = itertools.count()

    def __init__(self, folder: Path, kind: str, data_dir: Path) -> None:
        import numpy as np

        from grader.datasets import load_hidden
        from grader.evaluators.models import inference_batch_size

        self.folder = folder
        manifest = tomllib.loads((folder / "homework.toml").read_text(encoding="utf-8"))
        self.model_spec = manifest["model"]
        self.transformer = (manifest.get("preprocess") or {}).get("transformer")
        hidden = load_hidden(kind, data_dir)
        # A writable array of its own, as a student's script has (the cached hidden set is read-only).
        self.x, self.y, self.columns = np.array(hidden.x), hidden.y, hidden.columns
        self.batch = inference_batch_size(hidden.x)  # the batches the grader's harness runs

    def run_once(self) -> tuple[float, float]:
        import numpy as np
        import torch

        t0 = time.perf_counter()
        m = self.model_spec
        name = f"_bench_raw_{next(self.counter)}"
        spec = importlib.util.spec_from_file_location(name, self.folder / m["file"])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = getattr(module, m["name"])(**m.get("kwargs", {}))
        state = torch.load(self.folder / m["weights"], map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.eval()
        x = self.x
        if self.transformer:
            import pandas as pd

            with open(self.folder / self.transformer, "rb") as f:
                scaler = pickle.load(f)  # noqa: S301 - our own example's scaler
            x = np.asarray(scaler.transform(pd.DataFrame(x, columns=self.columns)), dtype=np.float32)
        outs = []
        batch = self.batch
        with torch.no_grad():
            for i in range(0, len(x), batch):
                outs.append(model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))))
        pred = torch.cat(outs).argmax(1).numpy()
        elapsed = time.perf_counter() - t0
        return elapsed, float((pred == self.y).mean())


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """This process's torch intra-op threads set to n, and put back after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_raw(raw: RawModel, repeats: int, threads: int) -> tuple[Series, float]:
    with torch_threads(threads):
        s = Series()
        s.first, acc = raw.run_once()
        raw.run_once()  # warm-up, excluded
        for _ in range(max(repeats, 5)):
            t, acc = raw.run_once()
            s.runs.append(t)
        return s, acc


def forked_run(raw: RawModel) -> float:
    """One run of a's work (whatever torch threads are set) in a fresh process forked from this warm
    one, with no sandbox: what any design that gives every evaluation a fresh process pays at least
    (the copy-on-write and first-touch page faults of a new process; the fork itself is not counted)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            elapsed, _ = raw.run_once()
            os.write(w, repr(elapsed).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise SystemExit("(a) in a fresh fork: the child reported nothing")
    return float(data)


A_BESIDE_RUNS = 5  # a's runs just before and just after each queued throughput run


def measure_a_beside(raw: RawModel, runs: int = A_BESIDE_RUNS) -> list[float]:
    """a (one torch thread) measured beside a throughput run, while its worker is idle (paused with
    the queue loaded, or done): the bound of that run compares runs made seconds apart, as b/a does,
    not with an a measured minutes earlier on a host whose speed drifts. One untimed run first: the
    gradings left this process's caches cold."""
    with torch_threads(1):
        raw.run_once()
        return [raw.run_once()[0] for _ in range(runs)]


def measure_side_by_side(
    raw: RawModel, zip_path: Path, slug: str, data_dir: Path, repeats: int
) -> tuple[Series, float, Series, Series]:
    """a (one torch thread), a_fork and b_zygote, run by run in turn: a (after an untimed run of
    its own, so that it is as warm as back to back), a_fork, then grade(), so that the host's drift
    (its speed moved by a third within one session here) weighs on all three alike and b/a compares
    runs made seconds apart. -> (a, a's accuracy, a_fork, b_zygote)."""
    a, a_fork = Series(), Series()
    accuracy = 0.0

    def before_grading(i: int) -> None:
        nonlocal accuracy
        if i > 0:
            raw.run_once()  # a stays warm, as back to back: the grading before left the caches cold
        t, accuracy = raw.run_once()
        t_fork = forked_run(raw)
        if i == 0:
            a.first, a_fork.first = t, t_fork
        elif i >= 2:  # i == 1 is the warm-up, as for b
            a.runs.append(t)
            a_fork.runs.append(t_fork)

    with torch_threads(1):
        b = measure_grade(zip_path, slug, data_dir, "zygote", repeats, None, before_each=before_grading)
    return a, accuracy, a_fork, b


# --- (b) grader.grade ----------------------------------------------------------------------------


@contextlib.contextmanager
def harness_threads(n: int | None) -> Iterator[None]:
    """What-if: the harness's torch threads forced to n (grade() has no parameter for it)."""
    from grader import sandbox

    if n is None:
        yield
        return
    original = sandbox.run_job
    sandbox.run_job = functools.partial(original, threads=n)  # type: ignore[assignment]
    try:
        yield
    finally:
        sandbox.run_job = original  # type: ignore[assignment]


def measure_grade(
    zip_path: Path,
    slug: str,
    data_dir: Path,
    mode: str,
    repeats: int,
    threads: int | None,
    before_each: Callable[[int], None] | None = None,
) -> Series:
    """grade() of `zip_path`, repeats + 2 times (the first reported apart, the second a warm-up);
    `before_each(i)` runs before grading i (see measure_side_by_side)."""
    import grader
    from grader import sandbox
    from grader.assignments import BUILTIN_ASSIGNMENTS

    spec = BUILTIN_ASSIGNMENTS[slug]
    s = Series()
    with sandbox.use_mode(mode), harness_threads(threads):
        for i in range(repeats + 2):
            if before_each is not None:
                before_each(i)
            t0 = time.perf_counter()
            report = grader.grade(zip_path, spec, data_dir=data_dir)
            elapsed = time.perf_counter() - t0
            if report.status != "graded":
                raise SystemExit(
                    f"{mode}: {zip_path.name} was not graded: {report.error} {report.logs_tail[-800:]}"
                )
            if i == 0:
                s.first = elapsed
                s.note = f"score {report.score:.4f}; {report.sandbox.split(':')[0]}"
            elif i >= 2:  # i == 1 is the warm-up
                s.runs.append(elapsed)
                s.phases.append({**report.timings, "wall_s": elapsed})
    return s


def phase_breakdown(s: Series) -> dict[str, float]:
    keys = sorted({k for p in s.phases for k in p})
    med = {k: common.median([p.get(k, 0.0) for p in s.phases]) for k in keys}
    harness = sum(med.get(k, 0.0) for k in ("harness_load_s", "harness_preprocess_s", "harness_inference_s"))
    med["sandbox_overhead_s"] = med.get("sandbox_s", 0.0) - harness
    return med


# --- (c) the service path ------------------------------------------------------------------------


class Deployment:
    """A fresh Postgres database, a dedicated Redis db, a uvicorn API and celery workers on loopback."""

    def __init__(self, workdir: Path, db_url: str, broker_url: str, redis_db: int, data_dir: Path) -> None:
        self.workdir = workdir
        self.db_url = db_url
        self.broker_url = broker_url
        self.redis_db = redis_db
        self.env = common.repo_env(
            {
                "HWGRADE_ENV": "test",
                "HWGRADE_HOME": str(workdir / "home"),
                "HWGRADE_DATABASE_URL": db_url,
                "HWGRADE_BROKER_URL": broker_url,
                "HWGRADE_DATA_DIR": str(data_dir),
                "HWGRADE_DEVICE": "cpu",
            }
        )
        self.port = common.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api: common.Process | None = None
        self.worker: common.Process | None = None
        self.workers_started = 0
        self.token = ""

    def seed(self) -> None:
        from sqlalchemy import update

        from grader.assignments import BUILTIN_ASSIGNMENTS
        from service.assignments.models import Assignment
        from service.assignments.service import sync_specs
        from service.db import create_db_engine, create_session_factory, unit_of_work
        from service.users.schemas import UserCreate
        from service.users.service import create_user

        engine = create_db_engine(self.db_url)
        with unit_of_work(create_session_factory(engine)) as session:
            sync_specs(session, BUILTIN_ASSIGNMENTS.values())
            # One benchmark student uploads thousands of times a day: lift the daily limit.
            session.execute(update(Assignment).values(daily_limit=1_000_000))
            _, self.token = create_user(
                session, UserCreate(student_number=BENCH_STUDENT, display_name="Bench")
            )
        engine.dispose()

    def start_api(self) -> None:
        from service.config import API_KEEP_ALIVE_S

        cmd = [sys.executable, "-m", "uvicorn", "service.main:create_app", "--factory"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        cmd += ["--timeout-keep-alive", str(API_KEEP_ALIVE_S)]  # as compose runs it
        self.api = common.Process(cmd, self.env, self.workdir / "api.log")
        import httpx

        def up() -> bool:
            assert self.api is not None
            if not self.api.alive():
                raise SystemExit(f"the API died:\n{self.api.log_tail()}")
            try:
                return httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        common.wait_for(up, 60, "the API", interval=0.2)

    def start_worker(self, concurrency: int) -> common.Process:
        self.workers_started += 1
        log_path = self.workdir / f"worker-{self.workers_started}.log"
        cmd = [
            sys.executable,
            "-m",
            "service",
            "worker",
            "--queues",
            "grading",
            "--concurrency",
            str(concurrency),
        ]
        cmd += ["--loglevel", "INFO", f"--hostname=bench{self.workers_started}@%h"]
        self.worker_node = f"bench{self.workers_started}@{socket.gethostname()}"
        self.worker = common.Process(cmd, self.env, log_path)

        def ready() -> bool:
            assert self.worker is not None
            if not self.worker.alive():
                raise SystemExit(f"the worker died:\n{self.worker.log_tail()}")
            return " ready." in log_path.read_text(errors="replace")

        common.wait_for(ready, 120, "the celery worker", interval=0.2)
        return self.worker

    def control(self) -> Any:
        """A Celery app on the broker, to send the worker remote-control commands."""
        from celery import Celery

        return Celery("hwgrade-bench-control", broker=self.broker_url, set_as_current=False)

    def _consumer_command(self, control: Any, command: str, expect: str) -> None:
        replies = getattr(control.control, command)(
            "grading", destination=[self.worker_node], reply=True, timeout=10
        )
        answer = next((r[self.worker_node] for r in replies if self.worker_node in r), None)
        if not answer or expect not in str(answer.get("ok", "")):
            raise SystemExit(f"the worker did not confirm {command}('grading'): {replies}")

    def pause_consuming(self, control: Any) -> None:
        self._consumer_command(control, "cancel_consumer", "no longer consuming")

    def resume_consuming(self, control: Any) -> None:
        self._consumer_command(control, "add_consumer", "add consumer")

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def stop(self) -> None:
        self.stop_worker()
        if self.api is not None:
            self.api.stop()
            self.api = None


class Uploader:
    def __init__(self, dep: Deployment) -> None:
        import psycopg

        self.dep = dep
        self.lock = threading.Lock()
        self.conn = psycopg.connect(common.psycopg_dsn(dep.db_url), autocommit=True)
        # One HTTP client per uploading thread (post_many): threads sharing one httpx.Client's pool
        # once had a read fail with EBADF, its connection closed under it (2026-11-29 19:10 run).
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    @property
    def client(self) -> httpx.Client:
        import httpx

        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                base_url=self.dep.base_url, timeout=60, headers={"Authorization": f"Bearer {self.dep.token}"}
            )
            self._local.client = client
            with self.lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.conn.close()

    def post(self, slug: str, name: str, data: bytes) -> int:
        resp = self.client.post(
            f"/api/v1/assignments/{slug}/submissions",
            files={"file": (f"{name}.zip", data, "application/zip")},
        )
        if resp.status_code != 202:
            raise SystemExit(f"upload refused: {resp.status_code} {resp.text[:500]}")
        return int(resp.json()["id"])

    def status(self, sid: int) -> str:
        with self.lock:
            row = self.conn.execute("SELECT status FROM submission WHERE id = %s", (sid,)).fetchone()
        return str(row[0]) if row else "?"

    def count_final(self, ids: list[int]) -> int:
        with self.lock:
            row = self.conn.execute(
                "SELECT count(*) FROM submission WHERE id = ANY(%s) AND status IN ('graded', 'error')", (ids,)
            ).fetchone()
        return int(row[0]) if row else 0

    def outcome(self, ids: list[int]) -> dict[str, Any]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT s.status, r.error_code, extract(epoch FROM min(s.created_at) OVER ()), "
                "extract(epoch FROM max(s.finished_at) OVER ()) "
                "FROM submission s LEFT JOIN result r ON r.submission_id = s.id WHERE s.id = ANY(%s)",
                (ids,),
            ).fetchall()
        bad = [(st, code) for st, code, _, _ in rows if st != "graded" or code]
        last = float(rows[0][3]) if rows and rows[0][3] is not None else float("nan")
        span = last - float(rows[0][2]) if rows else float("nan")
        return {"n": len(rows), "bad": bad, "db_span_s": span, "last_finished": last}

    def grade_one(self, slug: str, name: str, data: bytes, timeout: float = 120) -> float:
        """Upload and wait until the row is final (polled in the DB every 5 ms); the latency."""
        t0 = time.perf_counter()
        sid = self.post(slug, name, data)
        deadline = t0 + timeout
        while True:
            st = self.status(sid)
            if st in FINAL:
                elapsed = time.perf_counter() - t0
                break
            if time.perf_counter() > deadline:
                raise SystemExit(f"submission {sid} not graded within {timeout:g}s (status {st})")
            time.sleep(0.005)
        info = self.outcome([sid])
        if info["bad"]:
            raise SystemExit(f"submission {sid} ({name}) was not graded cleanly: {info['bad']}")
        return elapsed

    def post_many(self, items: list[tuple[str, str, bytes]], parallel: int = 4) -> list[int]:
        with ThreadPoolExecutor(parallel) as pool:
            return list(pool.map(lambda it: self.post(*it), items))

    def wait_all(self, ids: list[int], timeout: float) -> None:
        """Until every row of `ids` is final (polled every 50 ms; the throughput figures take their end
        from the rows' finished_at, not from this poll)."""
        t0 = time.perf_counter()
        while self.count_final(ids) < len(ids):
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{self.count_final(ids)}/{len(ids)} graded after {timeout:g}s")
            time.sleep(0.05)


CPU_PARTS = (
    ("evaluations", "the evaluations (each one's init and evaluation process)"),
    ("zygotes", "the zygotes themselves"),
    ("pool", "the worker's pool processes (Celery tasks, grade() around the sandbox)"),
    ("worker_main", "the worker's main process"),
    ("api", "the API"),
    ("postgres", "Postgres"),
    ("bench", "this benchmark's uploaders"),
)


def cpu_split(dep: Deployment, worker_pid: int) -> dict[str, float]:
    """CPU seconds so far of the machine and of each part of the service (see CPU_PARTS). An
    evaluation's CPU reaches its zygote's children's count once the zygote has reaped it (and its
    init, the sandbox's PID 1): take the difference of two of these around a batch of gradings."""
    parts = dict.fromkeys([key for key, _ in CPU_PARTS], 0.0)
    parts["machine"] = common.machine_cpu_seconds()
    parts["worker_main"] = common.process_cpu_seconds(worker_pid)[0]
    children = common._ppid_map()
    for pool in children.get(worker_pid, []):
        parts["pool"] += common.process_cpu_seconds(pool)[0]
        for child in children.get(pool, []):
            if "zygote.py" in common._cmd(child):
                own, reaped = common.process_cpu_seconds(child)
                parts["zygotes"] += own
                parts["evaluations"] += reaped
    if dep.api is not None:
        parts["api"] = common.cpu_seconds([dep.api.pid, *common.descendants(dep.api.pid)])
    parts["postgres"] = common.cpu_seconds(common.pids_named("postgres"))
    parts["bench"] = time.process_time()
    return parts


def _throughput(
    dep: Deployment,
    up: Uploader,
    worker_pid: int,
    ids: list[int],
    t0: float,
    cpu0: dict[str, float],
) -> Throughput:
    """The figures of N gradings that started at `t0` (wall clock, time.time()) and are final now.
    They end at the last row's finished_at (set by the worker as it records the result; same host,
    same clock): wait_all polls every 50 ms, which added 0-50 ms to a window of a few seconds."""
    time.sleep(0.5)  # the last evaluations' trees are reaped after their results are in
    cpu1 = cpu_split(dep, worker_pid)
    info = up.outcome(ids)
    if info["bad"]:
        raise SystemExit(f"throughput run: not all graded cleanly: {info['bad'][:5]}")
    n = len(ids)
    return Throughput(
        n=n,
        per_min=n / (info["last_finished"] - t0) * 60,
        db_per_min=n / info["db_span_s"] * 60,
        cpu_per_grading={k: (cpu1[k] - cpu0[k]) / n for k in cpu1},
    )


def measure_queued(
    dep: Deployment, up: Uploader, worker_pid: int, slug: str, data: bytes, n: int, raw: RawModel
) -> Throughput:
    """N submissions uploaded while the worker's consumer is paused (Celery's cancel_consumer, over
    the real broker), checked to be all in the queue and none graded, then the consumer resumed:
    graded per minute from the resume to the last row's finished_at. a (`raw`, the model's own work) is
    measured just before the resume and just after the last grading, with the worker idle."""
    control = dep.control()
    try:
        dep.pause_consuming(control)
        try:
            ids = up.post_many([(slug, "mnist-mlp", data)] * n)
            time.sleep(0.5)
            queued = common.redis_llen(dep.redis_db, "grading")
            final = up.count_final(ids)
            if queued != n or final:
                raise SystemExit(
                    f"throughput run: {queued} of {n} queued, {final} final before the worker resumed"
                )
            a_before = measure_a_beside(raw)
            cpu0 = cpu_split(dep, worker_pid)
            t0 = time.time()
        finally:
            dep.resume_consuming(control)
        up.wait_all(ids, 600)
    finally:
        control.close()
    run = _throughput(dep, up, worker_pid, ids, t0, cpu0)
    run.a_beside = a_before + measure_a_beside(raw)
    return run


def measure_uploading(
    dep: Deployment, up: Uploader, worker_pid: int, slug: str, data: bytes, n: int
) -> Throughput:
    """N submissions uploaded (4 parallel uploaders) while the worker grades them: graded per minute
    from the first POST to the last row's finished_at; the API's and the uploaders' CPU are in the
    window."""
    cpu0 = cpu_split(dep, worker_pid)
    t0 = time.time()
    ids = up.post_many([(slug, "mnist-mlp", data)] * n)
    up.wait_all(ids, 600)
    return _throughput(dep, up, worker_pid, ids, t0, cpu0)


def zygotes_of(pid: int) -> int:
    return sum(1 for p in common.tree_memory(pid)["processes"] if p["role"] == "zygote")


@dataclass
class Throughput:
    """N MNIST gradings by the worker at --concurrency = cores: graded per minute, CPU per grading."""

    n: int
    per_min: float  # from the start (see measure_queued / measure_uploading) to the last finished_at
    db_per_min: float  # from the first row's created_at to the last row's finished_at
    cpu_per_grading: dict[str, float]  # seconds, from cpu_split
    a_beside: list[float] = field(default_factory=list)  # a's runs just before and after (queued runs)

    @property
    def a(self) -> float:
        return common.median(self.a_beside) if self.a_beside else float("nan")


@dataclass
class ServiceFigures:
    c: dict[str, Series] = field(default_factory=dict)
    # All N queued before the worker takes any (the target's figure), Plan.throughput_rounds times.
    queued_rounds: list[Throughput] = field(default_factory=list)
    uploading: Throughput | None = None  # the N uploaded while the worker grades them
    concurrency: int = 0
    mem_cold: dict[str, Any] = field(default_factory=dict)
    mem_start: dict[str, Any] = field(default_factory=dict)
    mem_after: dict[str, Any] = field(default_factory=dict)
    mem_trend: list[tuple[int, float, float]] = field(default_factory=list)
    gradings: int = 0
    gradings_note: str = ""

    def bound(self, a: float) -> float:
        """The pure-inference bound for a model whose own work takes `a`: cores x 60 / a per minute."""
        return self.concurrency * 60 / a

    def fraction(self, run: Throughput, a: float | None = None) -> float:
        """`run`'s graded per minute as a share of the bound, by default with the a measured beside it."""
        return run.per_min / self.bound(run.a if a is None else a)

    @property
    def queued(self) -> Throughput:
        """The queued round whose fraction of its bound is the median (the target's figure)."""
        ranked = sorted(self.queued_rounds, key=self.fraction)
        return ranked[(len(ranked) - 1) // 2]

    @property
    def median_a_beside(self) -> float:
        """The median of every queued round's a."""
        return common.median([t for run in self.queued_rounds for t in run.a_beside])


def measure_service(
    plan: Plan,
    zips: dict[str, tuple[str, bytes]],
    data_dir: Path,
    workdir: Path,
    redis_db: int,
    raw_mnist: RawModel,
) -> ServiceFigures:
    out = ServiceFigures()
    cores = os.cpu_count() or 1
    with common.fresh_database("hwgrade_bench") as db_url, common.redis_db(redis_db) as broker_url:
        dep = Deployment(workdir, db_url, broker_url, redis_db, data_dir)
        dep.seed()
        up: Uploader | None = None
        try:
            dep.start_api()
            up = Uploader(dep)
            # (c) latency: one worker process, one grading at a time.
            print("  (c) one worker, --concurrency 1 ...", flush=True)
            dep.start_worker(1)
            for name, (slug, data) in zips.items():
                s = Series()
                s.first = up.grade_one(slug, name, data)
                up.grade_one(slug, name, data)  # warm-up
                for _ in range(plan.repeats):
                    s.runs.append(up.grade_one(slug, name, data))
                out.c[name] = s
            dep.stop_worker()

            # Throughput and memory: one worker with a pool process per core.
            out.concurrency = cores
            print(f"  throughput: worker --concurrency {cores} ...", flush=True)
            worker = dep.start_worker(cores)
            time.sleep(1.0)
            out.mem_cold = common.tree_memory(worker.pid)
            mnist_slug, mnist_zip = zips["mnist-mlp"]
            warm = 0
            for _ in range(6):  # until every pool process has its zygote (bounded)
                ids = up.post_many([(mnist_slug, "mnist-mlp", mnist_zip)] * (2 * cores))
                up.wait_all(ids, 180)
                warm += len(ids)
                if zygotes_of(worker.pid) >= cores:
                    break
            time.sleep(1.0)
            out.mem_start = common.tree_memory(worker.pid)
            gradings = warm

            # The figure: N queued at once, then graded. The worker's consumer is paused while
            # they are uploaded, so that the queue holds all N when it starts (and the uploads' CPU is
            # not in the window); then the same N uploaded while it grades, the deadline-rush case.
            for _ in range(plan.throughput_rounds):
                out.queued_rounds.append(
                    measure_queued(dep, up, worker.pid, mnist_slug, mnist_zip, plan.throughput_n, raw_mnist)
                )
                gradings += plan.throughput_n
            out.uploading = measure_uploading(dep, up, worker.pid, mnist_slug, mnist_zip, plan.throughput_n)
            gradings += plan.throughput_n
            out.mem_trend.append(
                (
                    gradings,
                    common.tree_memory(worker.pid)["rss_mib"],
                    common.tree_memory(worker.pid)["pss_mib"],
                )
            )

            # Memory after many gradings through the same worker (both examples, alternating).
            target = plan.rss_gradings
            print(f"  memory: grading until the worker has done {target} ...", flush=True)
            names = list(zips)
            t_cap = time.perf_counter() + plan.rss_time_cap_s
            batch = 10 * cores
            next_mark = 200
            while gradings < target and time.perf_counter() < t_cap:
                k = min(batch, target - gradings)
                items = [(zips[names[i % 2]][0], names[i % 2], zips[names[i % 2]][1]) for i in range(k)]
                ids = up.post_many(items)
                up.wait_all(ids, 600)
                bad = up.outcome(ids)["bad"]
                if bad:
                    raise SystemExit(f"memory run: not all graded cleanly: {bad[:5]}")
                gradings += k
                if gradings >= next_mark:
                    mem = common.tree_memory(worker.pid)
                    out.mem_trend.append((gradings, mem["rss_mib"], mem["pss_mib"]))
                    next_mark += 200
            time.sleep(1.0)
            out.mem_after = common.tree_memory(worker.pid)
            out.gradings = gradings
            if gradings < target:
                out.gradings_note = (
                    f"stopped at the time cap ({plan.rss_time_cap_s:g} s) after {gradings} of {target}"
                )
            elif plan.quick:
                out.gradings_note = f"--quick: {gradings} gradings, not 1,000"
        finally:
            if up is not None:
                up.close()
            dep.stop()
    return out


# --- report --------------------------------------------------------------------------------------


def fmt_s(x: float | None) -> str:
    if x is None or x != x:
        return "-"
    return f"{x * 1000:.0f} ms" if x >= 0.1 else f"{x * 1000:.1f} ms"


def ratio(x: float, a: float) -> str:
    return f"{x / a:.2f}x" if a == a and a > 0 and x == x else "-"


def cpu_line(t: Throughput, a: float) -> str:
    cpu = t.cpu_per_grading
    parts = ", ".join(f"{label} {fmt_s(cpu[key])}" for key, label in CPU_PARTS)
    other = cpu["machine"] - sum(cpu[key] for key, _ in CPU_PARTS)
    return (
        f"{fmt_s(cpu['machine'])} (/proc, whole machine), against a = {fmt_s(a)} of the model's own work; of it "
        f"{parts}, and {fmt_s(other)} other (the kernel's own work, Redis, the rest of the machine)."
    )


def build_report(
    plan: Plan,
    raw1: dict[str, Series],
    rawd: dict[str, Series],
    rawf: dict[str, Series],
    acc: dict[str, float],
    b: dict[tuple[str, str, str], Series],
    svc: ServiceFigures | None,
    torch_default_threads: int,
    harness_threads_default: int,
) -> tuple[str, str, list[tuple[str, bool]]]:
    """(terminal text, markdown, [(target, ok)])."""
    names = [n for n, _ in EXAMPLES]
    # a is single-threaded: the throughput bound (cores x 60 / a) assumes one inference per core, and the
    # worker runs one grading per core; the torch-default row is shown for comparison.
    a = {n: raw1[n].med for n in names}
    rows: list[list[str]] = []

    def row(label: str, vals: dict[str, str], note: str = "") -> None:
        rows.append([label, *[vals.get(n, "-") for n in names], note])

    row("a raw, torch 1 thread (median) = a", {n: fmt_s(raw1[n].med) for n in names}, "in-process, warm")
    row(
        f"a raw, torch {torch_default_threads} threads (median)",
        {n: fmt_s(rawd[n].med) for n in names},
        "torch default",
    )
    row(
        "a best run",
        {n: fmt_s(raw1[n].best) for n in names},
        f"accuracy {', '.join(f'{acc[n]:.4f}' for n in names)}",
    )
    row("a first call (cold: imports)", {n: fmt_s(raw1[n].first) for n in names})
    row(
        "a in a fresh fork (median) = a_fork",
        {n: fmt_s(rawf[n].med) for n in names},
        "same work, new process, no sandbox",
    )
    row("a_fork / a", {n: ratio(rawf[n].med, a[n]) for n in names}, "any process-per-evaluation design")
    for mode, th, label in (
        ("zygote", None, f"b_zygote (harness threads={harness_threads_default})"),
        ("bwrap", None, f"b_bwrap, naive cold (threads={harness_threads_default})"),
        ("zygote", os.cpu_count() or 2, f"b_zygote, what-if harness threads={os.cpu_count() or 2}"),
    ):
        key = (mode, "default" if th is None else str(th))
        if all((mode, key[1], n) in b for n in names):
            row(label + " median", {n: fmt_s(b[(mode, key[1], n)].med) for n in names})
            row(label + " first (cold)", {n: fmt_s(b[(mode, key[1], n)].first) for n in names})
            row(label + " / a", {n: ratio(b[(mode, key[1], n)].med, a[n]) for n in names})
            if mode == "zygote" and th is None:
                row(label + " / a_fork", {n: ratio(b[(mode, key[1], n)].med, rawf[n].med) for n in names})
    if svc is not None:
        row(
            "c service: POST -> graded row (median)",
            {n: fmt_s(svc.c[n].med) for n in names},
            "worker --concurrency 1",
        )
        row("c first (cold worker)", {n: fmt_s(svc.c[n].first) for n in names})
        row("c / a", {n: ratio(svc.c[n].med, a[n]) for n in names})
        row("c / b_zygote", {n: ratio(svc.c[n].med, b[("zygote", "default", n)].med) for n in names})

    header = ["figure", *names, "note"]
    checks: list[tuple[str, bool]] = []
    b_over_a = b[("zygote", "default", "mnist-mlp")].med / a["mnist-mlp"]
    checks.append(
        (f"b_zygote/a <= {TARGET_B_OVER_A} for the MNIST MLP: {b_over_a:.2f}x", b_over_a <= TARGET_B_OVER_A)
    )
    summary: list[str] = []
    if svc is not None:
        assert svc.uploading is not None
        queued = svc.queued
        bound = svc.bound(queued.a)
        frac = svc.fraction(queued)
        rounds = len(svc.queued_rounds)
        checks.append(
            (
                f"throughput >= {TARGET_THROUGHPUT:.0%} of the pure-inference bound: {queued.per_min:.0f}/min of "
                f"{bound:.0f}/min = {frac:.1%} ({queued.n} queued at once"
                + (f"; the median of {rounds} runs" if rounds > 1 else "")
                + ")",
                frac >= TARGET_THROUGHPUT,
            )
        )
        round_text = "; ".join(
            f"{run.per_min:.0f}/min, a {fmt_s(run.a)}, bound {svc.bound(run.a):.0f}/min, {svc.fraction(run):.1%}"
            for run in svc.queued_rounds
        )
        growth = svc.mem_after["rss_mib"] / svc.mem_start["rss_mib"] - 1
        checks.append(
            (
                f"worker RSS after {svc.gradings} gradings within {TARGET_RSS_GROWTH:.0%} of its start: "
                f"{svc.mem_start['rss_mib']:.0f} -> {svc.mem_after['rss_mib']:.0f} MiB ({growth:+.1%})",
                growth <= TARGET_RSS_GROWTH,
            )
        )
        summary += [
            f"Throughput, queued at once (the target's figure): {queued.n} MNIST MLP submissions uploaded while "
            f"the worker's consumer was paused (all {queued.n} checked in the Redis queue, none graded), then "
            f"worker --concurrency {svc.concurrency} resumed: {queued.per_min:.0f} graded/min from the resume to "
            f"the last row's finished_at ({queued.db_per_min:.0f}/min by the rows' created_at..finished_at, which "
            f"counts the uploads); pure-inference bound {svc.concurrency} x 60 / {fmt_s(queued.a)} = {bound:.0f}/min, "
            f"with a measured beside this run ({len(queued.a_beside)} runs just before the resume and just after the "
            f"last grading, the worker idle); fraction {frac:.1%}. "
            + (f"All {rounds} runs, in order: {round_text}. " if rounds > 1 else "")
            + f"Against the a of the (a) phase ({fmt_s(a['mnist-mlp'])}, minutes earlier): "
            f"{svc.bound(a['mnist-mlp']):.0f}/min, {svc.fraction(queued, a['mnist-mlp']):.1%}.",
            "CPU per grading, queued at once: " + cpu_line(queued, queued.a),
            f"Throughput while uploading (the deadline rush: uploads and gradings share the cores): "
            f"{svc.uploading.n} submissions uploaded at once (4 parallel uploaders) as the worker grades: "
            f"{svc.uploading.per_min:.0f} graded/min from the first POST to the last row's finished_at "
            f"({svc.uploading.db_per_min:.0f}/min by the rows' times); fraction "
            f"{svc.fraction(svc.uploading, svc.median_a_beside):.1%} of the bound (with the median a of the queued runs, "
            f"{fmt_s(svc.median_a_beside)}).",
            "CPU per grading, while uploading: " + cpu_line(svc.uploading, svc.median_a_beside),
            f"Worker memory (main + pool children + zygotes + their spare sandboxes, /proc): just started (no zygote yet) RSS "
            f"{svc.mem_cold['rss_mib']:.0f} MiB / PSS {svc.mem_cold['pss_mib']:.0f} MiB; warm (every pool process has "
            f"its zygote) RSS {svc.mem_start['rss_mib']:.0f} MiB / PSS {svc.mem_start['pss_mib']:.0f} MiB; after "
            f"{svc.gradings} gradings RSS {svc.mem_after['rss_mib']:.0f} MiB / PSS {svc.mem_after['pss_mib']:.0f} MiB"
            + (f" ({svc.gradings_note})" if svc.gradings_note else "")
            + ". The gradings went through the Celery route (HTTP upload -> worker -> Postgres), alternating the two "
            "examples after the throughput run.",
            "Trend (gradings: RSS / PSS MiB): "
            + ", ".join(f"{g}: {r:.0f} / {p:.0f}" for g, r, p in svc.mem_trend),
            "Processes at the end: "
            + ", ".join(
                f"{p['role']} {p['rss_mib']:.0f}/{p['pss_mib']:.0f}" for p in svc.mem_after["processes"]
            )
            + " (RSS/PSS MiB).",
        ]

    # Where the time of b goes (medians of grade()'s own timings).
    phase_rows = []
    phase_keys = [
        ("intake_s", "intake (unzip)"),
        ("prepare_s", "prepare (discover, hidden set)"),
        ("sandbox_s", "sandbox run, total"),
        ("harness_load_s", "  harness: load model + weights"),
        ("harness_preprocess_s", "  harness: preprocess"),
        ("harness_inference_s", "  harness: inference"),
        ("sandbox_overhead_s", "  sandbox overhead (run - harness)"),
        ("score_s", "score"),
        ("wall_s", "grade() wall"),
    ]
    bd = {(m, t, n): phase_breakdown(s) for (m, t, n), s in b.items()}
    cols = [
        (m, t, n)
        for (m, t) in (("zygote", "default"), ("zygote", str(os.cpu_count() or 2)), ("bwrap", "default"))
        for n in names
        if (m, t, n) in bd
    ]
    for phase, label in phase_keys:
        phase_rows.append([label, *[fmt_s(bd[c].get(phase)) for c in cols]])
    phase_header = ["phase (median)", *[f"{m}{'' if t == 'default' else ' t=' + t} {n}" for m, t, n in cols]]

    lines_txt = [common.text_table(header, rows), "", common.text_table(phase_header, phase_rows), ""]
    lines_txt += summary
    lines_txt += [""] + [f"{common.verdict(ok)}  {what}" for what, ok in checks]

    md = [
        common.markdown_table(header, rows),
        "",
        "Where the time of (b) goes:",
        "",
        common.markdown_table(phase_header, phase_rows),
        "",
    ]
    md += [f"- {s}" for s in summary]
    md += ["", "Targets:", ""] + [f"- **{common.verdict(ok)}** {what}" for what, ok in checks]
    return "\n".join(lines_txt), "\n".join(md), checks


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.grading", description=__doc__.split("\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="fewer repeats, 12 queued, 40 gradings for memory (~3 min)"
    )
    p.add_argument(
        "--repeats", type=int, help="measured runs per figure (default 21, at most 7 for b_bwrap; --quick 3)"
    )
    p.add_argument("--throughput-n", type=int, help="submissions queued at once (default 60, --quick 12)")
    p.add_argument(
        "--throughput-rounds", type=int, help="queued runs, each with a beside it (default 3, --quick 1)"
    )
    p.add_argument(
        "--rss-gradings", type=int, help="gradings before the second memory reading (default 1000)"
    )
    p.add_argument(
        "--skip-service", action="store_true", help="only (a) and (b): no Postgres, Redis, API, worker"
    )
    p.add_argument(
        "--redis-db", type=int, default=13, help="Redis database number on 127.0.0.1:6379 (emptied)"
    )
    p.add_argument("--no-write", action="store_true", help="do not append to bench/RESULTS.md")
    args = p.parse_args(argv)
    plan = Plan.make(args)

    import torch

    from grader import sandbox
    from reference.examples import EXAMPLES_DIR, zip_folder

    info = common.machine_info()
    started = time.perf_counter()
    stamp = common.now_stamp()
    print(f"hwgrade grading benchmark {'(quick) ' if plan.quick else ''}{stamp}")
    print(common.machine_block(info), flush=True)
    torch_default_threads = torch.get_num_threads()

    harness_threads_default = sandbox.default_threads()
    what_if_threads = os.cpu_count() or 2

    with tempfile.TemporaryDirectory(prefix="hwgrade-bench-") as tmpname:
        tmp = Path(tmpname)
        tmp.chmod(0o755)
        data_dir = common.prepare_data_dir(tmp / "data")
        zips: dict[str, tuple[str, bytes]] = {}
        zip_paths: dict[str, Path] = {}
        for name, slug in EXAMPLES:
            data = zip_folder(EXAMPLES_DIR / name)
            zips[name] = (slug, data)
            zip_paths[name] = tmp / f"{name}.zip"
            zip_paths[name].write_bytes(data)

        print("(a) raw in-process ...", flush=True)
        raw1: dict[str, Series] = {}
        rawf: dict[str, Series] = {}
        rawd: dict[str, Series] = {}
        acc: dict[str, float] = {}
        b: dict[tuple[str, str, str], Series] = {}
        raws: dict[str, RawModel] = {}
        for name, slug in EXAMPLES:
            raw = raws[name] = RawModel(EXAMPLES_DIR / name, slug, data_dir)
            print(f"  a, a_fork and b_zygote in turn: {name}", flush=True)
            # First: a's first run is the "first call (cold: imports)" row.
            raw1[name], acc[name], rawf[name], b[("zygote", "default", name)] = measure_side_by_side(
                raw, zip_paths[name], slug, data_dir, plan.repeats
            )
            rawd[name], _ = measure_raw(raw, plan.repeats, torch_default_threads)

        print("(b) grader.grade, the other modes ...", flush=True)
        for mode, th in (("bwrap", None), ("zygote", what_if_threads)):
            for name, slug in EXAMPLES:
                print(f"  {mode} threads={th or 'default'} {name}", flush=True)
                b[(mode, "default" if th is None else str(th), name)] = measure_grade(
                    zip_paths[name],
                    slug,
                    data_dir,
                    mode,
                    plan.cold_repeats if mode == "bwrap" else plan.repeats,
                    th,
                )
        sandbox.shutdown_pool()

        svc = None
        if not plan.skip_service:
            print("(c) service path, throughput, memory ...", flush=True)
            svc = measure_service(plan, zips, data_dir, tmp, args.redis_db, raws["mnist-mlp"])

    text, md, checks = build_report(
        plan, raw1, rawd, rawf, acc, b, svc, torch_default_threads, harness_threads_default
    )
    took = time.perf_counter() - started
    print()
    print(text)
    print(f"\n(took {took:.0f} s; load average now {common.load_average()})")
    if not args.no_write:
        section = [
            f"## Grading benchmark{' (--quick)' if plan.quick else ''}: {stamp}",
            "",
            f"Command: `{common.command_line()}` (took {took:.0f} s; load average at the end {common.load_average()}).",
            "",
            "Machine:",
            "",
            common.machine_block(info),
            "",
            "Caveat: a shared 2-core machine (several people worked on it during the run), so every figure "
            "includes their load; medians of "
            f"{plan.repeats} warm runs ({plan.cold_repeats} for b_bwrap) after one excluded warm-up, the first "
            "(cold) run reported separately; a, a_fork and b_zygote ran in turn, run by run.",
            "",
            md,
        ]
        common.append_results("\n".join(section))
        print(f"appended to {common.RESULTS}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
