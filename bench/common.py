"""Shared helpers of the benchmarks: machine facts, hidden-set data dir, Postgres and Redis scratch
space, child processes, process-tree memory from /proc, percentiles and the RESULTS.md writer.

Self-contained on purpose (no imports from tests/): the benchmarks are run as a command, not by pytest.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PG_ADMIN_URL = os.environ.get("HWGRADE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Where the real hidden sets come from (see /work/shared/data/README.md); imported into a scratch
# HWGRADE_DATA_DIR with the project's own importer, exactly as an operator would.
DATA_SOURCE = Path(os.environ.get("HWGRADE_BENCH_DATA_SOURCE", "/work/shared/data"))

T = TypeVar("T")


# --- machine -------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        import torch

        torch_version = str(torch.__version__)
        torch_threads = str(torch.get_num_threads())
    except ImportError:
        torch_version = torch_threads = "?"
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "speed (one thread, median of 7)": cpu_speed(),
        "ram": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": torch_version,
        "torch default threads": torch_threads,
        "load average at start": load,
        "user": "root" if os.geteuid() == 0 else f"uid {os.geteuid()}",
    }


def cpu_speed() -> str:
    """Two fixed single-threaded workloads, so runs on different machines of the same kind can be
    compared (their model names match while their speed does not): interpreter work like an API
    request's (a JSON round trip of a 300-row board), and a float32 matrix product like a model's."""
    import json

    board = [
        {
            "rank": i,
            "display_name": f"Student {i:06X}",
            "score": i / 300,
            "submitted_at": "2026-11-29T02:00:00Z",
        }
        for i in range(300)
    ]

    def python_work() -> None:
        for _ in range(20):
            json.loads(json.dumps(board))

    def timed(fn: Callable[[], object]) -> float:
        fn()
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    out = f"python (JSON, 300-row board x 20) {timed(python_work) * 1000:.1f} ms"
    try:
        import torch
    except ImportError:
        return out
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.ones(512, 512)
        out += f", torch (512x512 matmul x 20) {timed(lambda: [a @ a for _ in range(20)]) * 1000:.1f} ms"
    finally:
        torch.set_num_threads(before)
    return out


def now_stamp() -> str:
    return dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def command_line() -> str:
    args = " ".join(sys.argv[1:])
    return f"python -m bench.{Path(sys.argv[0]).stem}" + (f" {args}" if args else "")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# --- hidden sets ---------------------------------------------------------------------------------


def prepare_data_dir(dest: Path) -> Path:
    """A HWGRADE_DATA_DIR with both hidden sets: $HWGRADE_DATA_DIR if it has them, else imported
    from DATA_SOURCE (phone-price: the course split's 400-row holdout; MNIST: t10k, 10,000 images)."""
    env = os.environ.get("HWGRADE_DATA_DIR")
    if env:
        d = Path(env)
        if (d / "phone-price" / "hidden.csv").is_file() and (
            d / "mnist" / "t10k-images-idx3-ubyte.gz"
        ).is_file():
            return d
    from grader.datasets.loader import import_dataset

    train_csv = DATA_SOURCE / "phone-price" / "train.csv"
    if not train_csv.is_file() or not (DATA_SOURCE / "mnist").is_dir():
        raise SystemExit(
            f"no hidden sets: set HWGRADE_DATA_DIR (phone-price/hidden.csv, mnist/t10k-*) or "
            f"HWGRADE_BENCH_DATA_SOURCE (phone-price/train.csv, mnist/t10k-*); {DATA_SOURCE} has neither"
        )
    dest.mkdir(parents=True, exist_ok=True)
    import_dataset("phone-price", train_csv, dest)
    import_dataset("mnist", DATA_SOURCE / "mnist", dest)
    return dest


# --- Postgres and Redis --------------------------------------------------------------------------


def _admin_connection() -> Any:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
        connect_timeout=3,
    )


@contextmanager
def fresh_database(prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """A new migrated Postgres database of our own, dropped afterwards (others share the server)."""
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{secrets.token_hex(4)}"
    with _admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            from service.db import upgrade_db

            upgrade_db(url)
        yield url
    finally:
        with _admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def psycopg_dsn(sqlalchemy_url: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url)
    parts = [f"host={url.host}", f"port={url.port or 5432}", f"dbname={url.database}", f"user={url.username}"]
    if url.password:
        parts.append(f"password={url.password}")
    return " ".join(parts)


@contextmanager
def _redis_client(db: int) -> Iterator[Any]:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=3, socket_connect_timeout=3)
    try:
        yield client
    finally:
        client.close()


def redis_llen(db: int, key: str) -> int:
    """Length of the list `key` (a Celery queue on the Redis transport) in database `db`."""
    with _redis_client(db) as client:
        return int(client.llen(key))


@contextmanager
def redis_db(db: int) -> Iterator[str]:
    """The shared Redis on 127.0.0.1:6379, database number `db` (dedicated to the benchmark: emptied
    before and after)."""
    import redis

    try:
        with _redis_client(db) as client:
            client.flushdb()
    except redis.RedisError as e:
        raise SystemExit(f"Redis at {REDIS_HOST}:{REDIS_PORT} is not reachable: {e}") from None
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        try:
            with _redis_client(db) as client:
                client.flushdb()
        except redis.RedisError:
            pass


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Process:
    """A child in its own process group, output to a log file; stop() ends the whole group."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.cmd = cmd
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        tree = descendants(self.popen.pid)
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # Zygotes run in sessions of their own: end the ones this process started, by pid.
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.popen.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def repo_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# --- memory of a process tree (/proc) ------------------------------------------------------------


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (fields 3 onwards), or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    return stat[stat.rfind(")") + 2 :].split()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of `pids` (those still alive), and of their children that ended (a
    Postgres backend that exits is counted by the postmaster that reaped it), from /proc."""
    return sum(sum(process_cpu_seconds(pid)) for pid in pids)


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """(its own user + system CPU, that of its children it has reaped) of `pid`, from /proc; (0, 0)
    if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (every state but idle and iowait), /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def pids_named(name: str) -> list[int]:
    """PIDs whose command name is `name` (e.g. every Postgres backend on this machine)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    out.append(int(entry))
            except OSError:
                continue
    return out


def descendants(pid: int) -> list[int]:
    children = _ppid_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmd(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    return raw.strip()


def tree_memory(pid: int) -> dict[str, Any]:
    """RSS (sum over processes: counts shared pages once per process) and PSS (shared pages split
    between their users: the honest total) of `pid` and all its descendants, in MiB."""
    children = _ppid_map()
    roles = {pid: "main"}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for p in children.get(parent, []):
            # A zygote's children are its sandboxes (the spare's evaluation, a forked copy of the
            # zygote, and each sandbox's init), not zygotes of their own.
            if roles[parent] in ("zygote", "sandbox"):
                roles[p] = "sandbox"
            else:
                roles[p] = "zygote" if "zygote.py" in _cmd(p) else "child"
            todo.append(p)
    procs = []
    for p, role in roles.items():
        rss = _status_kb(p, "VmRSS")
        if rss == 0:
            continue
        procs.append({"pid": p, "role": role, "rss_mib": rss / 1024, "pss_mib": _pss_kb(p) / 1024})
    return {
        "rss_mib": sum(x["rss_mib"] for x in procs),
        "pss_mib": sum(x["pss_mib"] for x in procs),
        "processes": procs,
    }


# --- numbers and output --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(out)


def append_results(section: str) -> None:
    """Append one run's section to bench/RESULTS.md (newest last; the file is the benchmark's log)."""
    if not RESULTS.exists():
        RESULTS.write_text(
            "# hwgrade benchmark results\n\nOne section per run, newest last; written by `bench/grading.py` "
            "and `bench/api_load.py` (see bench/README.md for what each figure means).\n",
            encoding="utf-8",
        )
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write("\n" + section.rstrip() + "\n")


def machine_block(info: dict[str, str]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in info.items())


def which(name: str) -> str | None:
    return shutil.which(name)
