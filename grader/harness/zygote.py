"""Warm fork-server ("zygote") for sandboxed evaluations, the pattern of sandbox2's fork-server and
Android's zygote.

Started once per worker process as `python -I -u zygote.py`; it imports numpy, torch and pandas (the
expensive part of every evaluation) and then serves one request at a time on its stdin socket. Each
request gets a fresh sandbox of two processes, whose evaluation enters its isolation *before* it
touches any student file:

  init (PID 1 of a new PID namespace)  `cat` reading a pipe that only the zygote holds open,
                                       spawned between unshare(CLONE_NEWPID) and a setns back to the
                                       zygote's own PID namespace
  the evaluation (PID 2 there)         forked right after init, into its namespace; unshare(mount,
                                       net, IPC, UTS); mounts a new root: read-only runtime and
                                       harness; private size-limited /tmp; fresh /proc (hidepid); a
                                       few device nodes; waits for its job; binds the job and the
                                       submission (read-only); pivot_root; drops to the slot uid,
                                       no_new_privs, seccomp filter; runs the harness (rlimits are
                                       set by the harness itself)

Both are the zygote's children; a new sandbox is made ahead of each request (a spare), so the fork and
most of the mounts are off the critical path (and, while the machine has CPU to spare, a rehearsal of
the harness's model path: see _rehearse_until_job). When the evaluation has been reaped, the zygote
kills init; when init dies (so killed, or by the runner's SIGKILL when the time is up or a finished
tree outstays its grace, or when the zygote dies and the pipe closes) the kernel kills everything
left in its namespace, and the zygote can reap init only once all of it is gone. So the zygote
reports a sandbox's status only when it is gone, and nothing of it outlives the zygote.

Standalone like the harness (stdlib, numpy, torch): the project's packages are never loaded into this
process, so no child can find them in memory either.

Protocol on the socket (fd 0): the runner sends one JSON line plus four fds (SCM_RIGHTS: stdout,
stderr, result, done), or five (and "go", see _run_evaluation), the zygote answers {"pid": init's pid
here} and later {"status": the evaluation's wait status} or {"error": ...}. A line of only
{"preload": {path inside: path here}} (a held evaluation's inputs) gets no answer.
"""

from __future__ import annotations

import array
import base64
import contextlib
import ctypes
import fcntl
import importlib.util
import io
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 1, 15, 38, 22, 2
# What ps, top and perf show for these processes (their command line stays `python ... zygote.py`):
# an operator can tell the pool and the students' code from the worker's own Python processes.
ZYGOTE_NAME, EVALUATION_NAME = b"hwgrade-zygote", b"hwgrade-eval"  # at most 15 bytes
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
EXIT_NOT_NEEDED = 73  # an evaluation made ahead of its job, whose job never came (see _run_evaluation)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt(3) parameters
# An evaluation's malloc: blocks under 32 MiB come from the heap, whose freed top is kept up to 32 MiB.
EVAL_MMAP_THRESHOLD = EVAL_TRIM_THRESHOLD = 32 << 20
# A spare rehearses before its job (_rehearse_until_job) only if, since the zygote made the spare
# before it, tasks waited for a CPU less than this share of the time (see _CpuStall). Measured here
# from one spare to the next: median 0.03 (90th percentile 0.07) while one submission at a time was
# graded; median 0.48 (10th percentile 0.39) in a queue of 60 graded two at once.
REHEARSE_MAX_CPU_STALL = 0.2
PSI_CPU = "/proc/pressure/cpu"

HERE = Path(__file__).resolve().parent
libc = ctypes.CDLL(None, use_errno=True)


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return s.encode() if s is not None else None


def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(_b(src), _b(dst), _b(fstype), ctypes.c_ulong(flags), _b(data)), f"mount {dst}")


def bind(src: str, dst: str, *, readonly: bool = True) -> None:
    mount(src, dst, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _touch(path: str) -> None:
    _mkdirs(os.path.dirname(path))
    with open(path, "a"):
        pass


# What a request says about the filesystem view that every evaluation of its worker shares (all but
# the job's own directories, "job_binds"): a spare mounts the last request's view ahead of its job.
VIEW_KEYS = ("symlinks", "ro_dirs", "ro_files", "masked", "binds", "tmpfs_mb", "extra_devices")


def view_of(req: dict[str, Any]) -> dict[str, Any]:
    return {key: req.get(key) for key in VIEW_KEYS}


def mount_view(view: dict[str, Any], root: str) -> None:
    """Mount under `root` (inside our private mount namespace) the sandbox's filesystem view, all but
    the job's own directories."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    r = root.rstrip("/")
    _mkdirs(r + "/usr")
    bind("/usr", r + "/usr")
    for link, target in view["symlinks"].items():
        os.symlink(target, r + link)
    # /tmp first: a runtime that lives under /tmp (a venv in a clone there) is bound on top of it.
    _mkdirs(r + "/tmp")
    mount("tmpfs", r + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={int(view['tmpfs_mb'])}m")
    for d in view["ro_dirs"]:
        _mkdirs(r + d)
        bind(d, r + d)
    for f in view["ro_files"]:
        _touch(r + f)
        bind(f, r + f)
    for hidden in view["masked"]:
        if os.path.isdir(r + hidden):
            mount("tmpfs", r + hidden, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k")
    for src, dst in view["binds"]:
        _mkdirs(r + dst)
        bind(src, r + dst)
    _mkdirs(r + "/proc")
    # hidepid=2: the evaluation sees only its own uid's processes, not its namespace's init (root,
    # in the host's mount namespace: its /proc entries would show the host's mounts).
    mount("proc", r + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    _mkdirs(r + "/dev")
    mount("tmpfs", r + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for dev in ("null", "zero", "full", "random", "urandom", "tty", *(view["extra_devices"] or [])):
        if os.path.exists("/dev/" + dev):
            _touch(r + "/dev/" + dev)
            mount("/dev/" + dev, r + "/dev/" + dev, None, MS_BIND)
    os.symlink("/proc/self/fd", r + "/dev/fd")
    os.makedirs(r + "/dev/shm", mode=0o1777)
    os.chmod(r + "/dev/shm", 0o1777)


def enter_root(req: dict[str, Any], root: str) -> None:
    """Bind the job's own directories into the view under `root`, and make that this process's root,
    read-only but for /tmp and /dev/shm."""
    r = root.rstrip("/")
    for src, dst in req["job_binds"]:
        _mkdirs(r + dst)
        bind(src, r + dst)
    _mkdirs(r + "/.oldroot")
    _check(libc.syscall(SYS_PIVOT_ROOT[platform.machine()], _b(root), _b(r + "/.oldroot")), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.oldroot", MNT_DETACH), "umount old root")
    os.rmdir("/.oldroot")
    # The root itself read-only: nothing can be created outside /tmp and /dev/shm.
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _mount_view_ahead(view: dict[str, Any] | None, root: str) -> bool:
    """In a spare, before its job: mount the view the last request had (~30 of the ~35 mounts of a
    sandbox, ~1.3 ms here), off the critical path. False (nothing left mounted) if there is no view
    yet or it cannot be mounted: the job's view is then mounted when the job comes, as it must be
    when it differs from this one."""
    if view is None:
        return False
    try:
        mount_view(view, root)
        return True
    except OSError:
        libc.umount2(_b(root), MNT_DETACH)  # whatever part of it was mounted (fails if none was)
        return False


def enter_sandbox(req: dict[str, Any]) -> None:
    """In the evaluation: become the unprivileged slot uid under the seccomp filter."""
    uid = int(req["uid"])
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    prog = base64.b64decode(req["seccomp"]) if req.get("seccomp") else b""
    if prog:
        n = len(prog) // 8
        buf = (_SockFilter * n).from_buffer_copy(prog)
        fprog = _SockFprog(n, ctypes.cast(buf, ctypes.POINTER(_SockFilter)))
        _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def _spare_evaluation(
    conn: socket.socket, root: str, harness_main: Any, view: dict[str, Any] | None, rehearse: bool
) -> None:
    """The evaluation, PID 2 of its sandbox's PID namespace: never returns. Forked ahead of its
    request (the fork of this large process is off the critical path), it mounts the filesystem view
    of the last request, rehearses the model path if the machine has CPU to spare (`rehearse`, see
    _rehearse_until_job) and waits until the zygote hands it a job; then it binds the job's own
    directories (or first mounts the job's view, if it differs), pivots into that root and enters the
    sandbox before it touches any student file.

    PR_SET_PDEATHSIG kills it if the zygote dies while it is still root; once it has dropped to the
    slot uid (which clears that setting) the zygote's death still ends it: init then reads the end
    of its lifeline, exits, and the kernel kills the rest of the namespace. If the zygote dies before
    the prctl, the job never comes: recv sees the socket closed, and this process exits."""
    fds: list[int] = []
    try:
        os.setsid()
        libc.prctl(PR_SET_NAME, EVALUATION_NAME, 0, 0, 0)
        _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        _tune_malloc()
        _rehearse_result(harness_main)
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
        ahead = _mount_view_ahead(view, root)
        if rehearse:
            _rehearse_until_job(conn)
        job = _Lines(conn)
        req = job.recv()
        fds = job.take_fds()
        if req is None:
            os._exit(72)  # the zygote went away before using this spare
        if "go_fd" not in req:
            conn.close()  # else once the job is here: the zygote then makes the next spare
        if not ahead or view_of(req) != view:
            if ahead:
                _check(libc.umount2(_b(root), MNT_DETACH), "umount the view mounted ahead")
            mount_view(view_of(req), root)
        enter_root(req, root)
    except BaseException as e:  # noqa: BLE001 - a child must never return into the server loop
        if fds:
            _report_setup_failure(fds, e)
        os._exit(70)
    _run_evaluation(req, fds, harness_main, conn)


def _rehearse_until_job(conn: socket.socket) -> None:
    """In a spare, before its job, when the machine has had CPU to spare: the harness's paths for a
    model and for a scaler, once each on tiny ones of our own (_rehearse_model, _rehearse_scaler), so
    that most of the copy-on-write faults of those paths (the reference counts and allocator state of
    the objects they touch) are taken now, off the critical path. Measured here, grade() back to back
    with the pool idle between gradings: MNIST MLP ~49 -> ~43 ms (its model load ~8.3 -> ~5.5 ms),
    phone price ~32 -> ~24 ms, for ~9-12 ms more CPU per evaluation (see bench/RESULTS.md).

    That CPU is why it runs at SCHED_IDLE (only on a core nothing else wants), stops as soon as the
    job is here (checked before each step), and is only asked for when tasks have seldom waited for a
    CPU (see serve): in a queue of submissions, a rehearsal at idle priority in every spare still
    cost ~10% of the graded per minute. The zygote puts the spare back to the normal policy as it
    sends the job, so a job never waits on an idle-priority process (at most for the step under
    way); this process does so too before it goes on."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        return  # no idle policy here: no rehearsal either
    try:
        for step in (_rehearse_model, _rehearse_scaler):  # a job never waits for more than one step
            if select.select([conn], [], [], 0)[0]:
                break
            with contextlib.suppress(Exception):
                step()
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _idle_priority_reversible() -> bool:
    """Whether a thread of this process can go to SCHED_IDLE and back to SCHED_OTHER. Leaving
    SCHED_IDLE needs CAP_SYS_NICE (or an RLIMIT_NICE that allows nice 0), which a container may not
    grant: a spare that could not leave it would take its job at idle priority. Tried in a thread of
    its own, so no other thread's policy changes."""
    reversible: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            return
        reversible.append(True)

    thread = threading.Thread(target=probe, name="hwgrade-probe")
    thread.start()
    thread.join()
    return bool(reversible)


class _CpuStall:
    """The share of wall time, between two readings, in which some task waited for a CPU: Linux's
    pressure stall information (PSI_CPU's "some" total, in microseconds). None for the first reading,
    or where the kernel has no PSI."""

    def __init__(self, path: str = PSI_CPU) -> None:
        self.path = path
        self.last: tuple[int, int] | None = None

    def share(self) -> float | None:
        try:
            with open(self.path) as f:
                total = int(f.readline().split("total=")[1])
        except (OSError, IndexError, ValueError):
            return None
        now = time.monotonic_ns() // 1000
        last, self.last = self.last, (total, now)
        if last is None or now <= last[1]:
            return None
        return (total - last[0]) / (now - last[1])


def _tune_malloc() -> None:
    """In a spare: fewer fresh-page faults for the evaluation (each costs ~2.4 us here; the MNIST
    MLP's evaluation took ~3,300, ~2,300 of them while it ran the model).

    glibc's mmap threshold starts at 128 KiB and rises only once a mapped block is freed, so the
    first large blocks of a fresh process (a layer's activations over the test set: 5 MB for the
    MNIST MLP) are each mapped, faulted in page by page, and unmapped again when freed. With the
    threshold fixed at 32 MiB they come from the heap, and a freed block's pages, kept (up to 32 MiB
    of freed heap top), serve the next one. Measured for the MNIST MLP: faults per evaluation
    ~3,370 -> ~2,580, its CPU 37.8-39.3 -> 35.3-35.6 ms; the phone-price model is unchanged.

    Only the evaluation is tuned, never the zygote (tried there: the CPU per grading rose, see
    bench/RESULTS.md). A libc without mallopt is left as it is."""
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, EVAL_MMAP_THRESHOLD)
        mallopt(M_TRIM_THRESHOLD, EVAL_TRIM_THRESHOLD)


def _rehearse_result(harness_main: Any) -> None:
    """In a spare, before its job: write a tiny result the way the harness writes the real one
    (to a memfd of its own), so that the copy-on-write faults of that code path are taken now, off
    the critical path. Measured when results were .npz files: the harness's result write 1.20 ->
    0.80 ms (MNIST MLP), 0.74 -> 0.39 ms (phone price), the evaluation's CPU unchanged. Its failure
    changes nothing."""
    with contextlib.suppress(Exception):
        import numpy as np

        harness_main._write_result(
            os.memfd_create("hwgrade-rehearsal"), {"pred": np.zeros((4, 10), np.float32)}, {"ok": True}
        )


class _Cgroup:
    """One memory cgroup for this zygote and everything it forks (its spare and its evaluations),
    under the runner's HWGRADE_ZYGOTE_CGROUP (see grader/cgroup.py). The zygote moves itself in once,
    after its warm-up (so its own imports stay charged where they were); every evaluation is forked
    inside it and never moves. Moving a process between cgroups waits for an RCU grace period and
    holds up every fork and exit of the machine meanwhile (5-20 ms each here; a cgroup per
    evaluation, joined as its spare was forked, made b/a 1.3x -> 2.2x). A worker process grades one
    submission at a time, so a limit on this cgroup is a limit on that evaluation: each request sets
    it to what the cgroup holds now plus the job's limit (a write, ~0.1 ms). The zygote itself is
    never the OOM killer's choice where it may say so (oom_score_adj -1000); its evaluations start from 0."""

    def __init__(self, parent: str | None, version: int) -> None:
        self.path: str | None = None
        self.version = version
        if not parent:
            return
        path = f"{parent}/z{os.getpid()}"
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
            with open(f"{path}/cgroup.procs", "w") as f:
                f.write("0")
        except OSError as e:
            sys.stderr.write(f"zygote: no memory cgroup ({e}); each process has its own limit only\n")
            return
        self.path = path
        # Lowering it needs CAP_SYS_RESOURCE; without, the evaluation that went over is still the
        # largest process here, which the OOM killer picks.
        with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")

    @property
    def unlimited(self) -> str:
        return "-1" if self.version == 1 else "max"

    def _write(self, limit: str) -> None:
        """Set the limit, in an order the kernel accepts (v1: memsw, memory plus swap, must stay >= the
        memory limit; so it is raised first and lowered last)."""
        assert self.path is not None
        if self.version == 2:
            files = [("memory.max", limit), ("memory.swap.max", "0" if limit != "max" else "max")]
        else:
            files = [("memory.limit_in_bytes", limit)]
            if os.path.exists(f"{self.path}/memory.memsw.limit_in_bytes"):
                current = _read_int(f"{self.path}/memory.limit_in_bytes")
                memsw = ("memory.memsw.limit_in_bytes", limit)
                grows = limit == "-1" or current is None or int(limit) > current
                files = [memsw, *files] if grows else [*files, memsw]
        for name, value in files:
            try:
                with open(f"{self.path}/{name}", "w") as f:
                    f.write(value)
            except FileNotFoundError:
                if name != "memory.swap.max":
                    raise

    def limit(self, limit_bytes: int | None) -> dict[str, Any]:
        """Limit the cgroup for the job about to start; what the answer to the runner says of it."""
        if self.path is None or limit_bytes is None:
            if self.path is not None:
                with contextlib.suppress(OSError):
                    self._write(self.unlimited)
            return {"cgroup": None}
        usage = _read_int(f"{self.path}/{'memory.usage_in_bytes' if self.version == 1 else 'memory.current'}")
        try:
            self._write(str((usage or 0) + int(limit_bytes)))
        except OSError as e:
            sys.stderr.write(f"zygote: could not limit {self.path}: {e}\n")
            with contextlib.suppress(OSError):  # no stale, tighter limit on this job
                self._write(self.unlimited)
            return {"cgroup": None}
        return {"cgroup": self.path, "oom_base": _oom_kills(self.path, self.version)}


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _oom_kills(path: str, version: int) -> int:
    try:
        with open(f"{path}/{'memory.oom_control' if version == 1 else 'memory.events'}") as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except OSError:
        pass
    return 0


def _send_fds(sock: socket.socket, obj: dict[str, Any], fds: list[int]) -> None:
    sock.sendmsg(
        [json.dumps(obj).encode() + b"\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
    )


class _Sandbox:
    """One sandbox's two processes, both children of the zygote:

    - init, PID 1 of the sandbox's own PID namespace: `cat` reading a pipe (its lifeline) that only
      the zygote holds open. It runs none of our code and forks nothing (spawned, not forked: a few
      hundred microseconds, where a fork and exit of this large process costs milliseconds), and it
      exits when the zygote closes the pipe or dies, or when it is killed; then the kernel kills
      everything else in the namespace, and init can be reaped only once all of that is reaped.
    - the evaluation, PID 2 there: forked ahead of its request (a spare), see _spare_evaluation.

    When the evaluation has been reaped, the zygote ends init; once init is reaped too, the sandbox
    is gone, and only then is its status reported."""

    def __init__(
        self,
        root: str,
        harness_main: Any,
        close_in_child: list[int],
        own_pid_ns: int,
        cat: str,
        view: dict[str, Any] | None,
        rehearse: bool = False,
    ) -> None:
        self.sock, conn = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        lifeline_r, self.lifeline = os.pipe()  # both close-on-exec; init gets the read end as fd 0
        self.init_pidfd = self.eval_pidfd = -1
        self.eval_status: int | None = None
        try:
            # unshare(CLONE_NEWPID) moves this process's next child (init) into a new PID namespace,
            # and the ones after it into the same namespace while init lives (the evaluation); the
            # setns after them puts later children back into our own, so that the next sandbox's
            # unshare can make another (the kernel refuses one while the two differ).
            _check(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
            try:
                self.init = os.posix_spawn(
                    cat,
                    [cat],
                    {},
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, lifeline_r, 0),
                        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                    ],
                )
                self.init_pidfd = os.pidfd_open(self.init)
                self.eval = os.fork()
                if self.eval == 0:
                    try:
                        self.sock.close()
                        for fd in (self.lifeline, lifeline_r, self.init_pidfd, own_pid_ns, *close_in_child):
                            os.close(fd)
                        # The OOM killer's choice again, unlike the zygote (see _Cgroup).
                        with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
                            f.write("0")
                    except BaseException:  # noqa: BLE001 - a child must never return into the server loop
                        os._exit(70)
                    _spare_evaluation(conn, root, harness_main, view, rehearse)
                self.eval_pidfd = os.pidfd_open(self.eval)
            finally:
                _check(libc.setns(own_pid_ns, CLONE_NEWPID), "setns(own PID namespace)")
        except BaseException:
            self.close()
            raise
        finally:
            os.close(lifeline_r)
            conn.close()

    def fds(self) -> list[int]:
        return [fd for fd in (self.sock.fileno(), self.lifeline, self.init_pidfd, self.eval_pidfd) if fd >= 0]

    def reap(self, pidfd: int) -> bool:
        """Reap the process of `pidfd` (init's or the evaluation's) if it has ended; True once both
        are reaped. The evaluation ends first (init's exit waits until everything else in its
        namespace is reaped); reaping it ends init."""
        evaluation = pidfd == self.eval_pidfd
        pid, status = os.waitpid(self.eval if evaluation else self.init, os.WNOHANG)
        if pid:
            if evaluation:
                self.eval_status, self.eval_pidfd = status, -1
            else:
                self.init_pidfd = -1
            os.close(pidfd)
            self.end()
        return self.init_pidfd < 0 and self.eval_pidfd < 0

    def end(self) -> None:
        """Kill init, so the kernel kills the rest of the namespace (the caller reaps them)."""
        if self.init_pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1

    def close(self) -> None:
        """Give up on a sandbox that was never used: kill it (init, and with it the evaluation) and
        reap both processes, the evaluation first."""
        self.end()
        for pidfd in (self.eval_pidfd, self.init_pidfd):
            if pidfd >= 0:
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
                os.close(pidfd)
        self.eval_pidfd = self.init_pidfd = -1
        self.sock.close()


def _run_evaluation(req: dict[str, Any], fds: list[int], harness_main: Any, conn: socket.socket) -> None:
    """The evaluation itself; never returns (the harness ends with os._exit).

    A request with a fifth fd (the read end of the runner's "go" pipe, placed at req["go_fd"]) was
    sent before its job existed: the sandbox is made while the runner still unpacks the submission
    into the bound (empty) directories and writes the job; the harness starts on the runner's byte.
    If the pipe closes without it (the submission could not be unpacked), this process just exits.
    Meanwhile the zygote makes no new spare (the fork of its large image would take a core from the
    unpacking): it waits until this process closes `conn`, its socket to it, once the job is here."""
    try:
        # Move the received fds out of the way first, so no dup2 below overwrites one not yet placed.
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
        out_w, err_w, result_fd, done_w = moved[:4]
        go_fd = int(req.get("go_fd", -1))
        to_zygote = -1
        if go_fd >= 0:
            to_zygote = fcntl.fcntl(conn.fileno(), fcntl.F_DUPFD, 100)
            conn.close()
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(result_fd, int(req["out_fd"]))
        os.dup2(done_w, int(req["done_fd"]))
        keep = {0, 1, 2, int(req["out_fd"]), int(req["done_fd"])}
        if go_fd >= 0:
            os.dup2(moved[4], go_fd)
            keep |= {go_fd, to_zygote}
        _close_fds_except(keep)
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir("/tmp")
        enter_sandbox(req)
        if req.get("probe"):
            os._exit(0 if os.getuid() != 0 else 72)
        if go_fd >= 0:
            if os.read(go_fd, 1) != b"1":
                os._exit(EXIT_NOT_NEEDED)
            os.close(go_fd)
            os.close(to_zygote)
        harness_main.main(req["job_json"])
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, f"sandbox setup failed: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(70)
    os._exit(0)


def _close_fds_except(keep: set[int]) -> None:
    """Close every other descriptor: one close_range(2) per gap, not a close() per possible fd."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 0
    for fd in sorted(keep):
        if low < fd:  # never an empty range: closerange(0, 0) reaches close_range(0, ~0U) and closes all
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(1024, soft))


def _report_setup_failure(fds: list[int], e: BaseException) -> None:
    try:
        os.write(fds[1], f"sandbox setup failed: {type(e).__name__}: {e}\n".encode())
    except OSError:
        pass


class _Lines:
    """One end of a socket of JSON lines (the zygote's to the runner, a spare's to the zygote): one
    line at a time, however the lines arrive (a held evaluation's inputs may follow its request
    closely). The fds that come with a request are kept apart from the lines, for the request that
    takes them (only requests carry fds, and the runner sends the next one only after the zygote
    has answered the last)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.fds = array.array("i")

    def recv(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            data, ancdata, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(16 * self.fds.itemsize))
            if not data:
                return None
            self.buf += data
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    self.fds.frombytes(payload[: len(payload) - (len(payload) % self.fds.itemsize)])
        line, _, self.buf = self.buf.partition(b"\n")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def take_fds(self) -> list[int]:
        fds, self.fds = list(self.fds), array.array("i")
        return fds

    def buffered(self) -> bool:
        return b"\n" in self.buf


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


def _warm_up() -> None:
    """Pay once here what every evaluation would otherwise pay in its fresh fork: the imports course
    scripts make at module level (sklearn's model_selection alone is ~40 ms), and pandas/sklearn's
    first-call set-up. No torch computation: it stays single-threaded, so forking stays safe."""
    import joblib
    import numpy as np
    import pandas as pd
    import sklearn.model_selection  # noqa: F401
    import sklearn.preprocessing
    import torch  # noqa: F401
    import torch.nn  # noqa: F401
    import torch.optim  # noqa: F401
    import torch.utils.data  # noqa: F401

    global _REHEARSAL_SCALER
    frame = pd.DataFrame(np.arange(8, dtype=np.float32).reshape(4, 2), columns=["a", "b"])
    scaler = sklearn.preprocessing.StandardScaler().fit(frame)
    scaler.transform(frame)
    buf = io.BytesIO()
    joblib.dump(scaler, buf)
    _REHEARSAL_SCALER = buf.getvalue()
    _rehearse_torch()


def _rehearse_torch() -> None:
    """What every model evaluation does, once, on a tiny model of our own: build a module, torch.save
    and torch.load (weights_only) its state_dict, load_state_dict, one forward pass. The lazy imports
    and caches of those paths are then inherited by every fork (a fresh fork's load went 8.5 -> 4.8 ms
    for the MNIST MLP). Single-threaded (one intra-op thread here, OMP_NUM_THREADS=1 in the zygote's
    environment), so no thread pool exists when it forks; the harness sets each job's own count.
    The tiny model and its saved weights are kept for the spares' own rehearsal (_rehearse_until_job)."""
    import torch

    torch.set_num_threads(1)

    class Rehearsal(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)
            self.fc = torch.nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).flatten(1)[:, :8])

    global _REHEARSAL
    buf = io.BytesIO()
    torch.save(Rehearsal().state_dict(), buf)
    _REHEARSAL = (Rehearsal, buf.getvalue())
    _rehearse_model()


# The tiny model of _rehearse_torch, and its state_dict as torch.save wrote it; a fitted scaler, as
# joblib.dump wrote it (_warm_up).
_REHEARSAL: tuple[Any, bytes] | None = None
_REHEARSAL_SCALER = b""


def _rehearse_model() -> None:
    """The harness's path for a model, on the tiny one: torch.load (weights_only) of a saved
    state_dict, a new module, load_state_dict, eval, a forward pass, argmax in numpy. torch's random
    state is left as it was (building a module draws its initial weights from it): every evaluation
    of a zygote draws the same random numbers, whether or not its spare rehearsed."""
    import numpy as np
    import torch

    assert _REHEARSAL is not None
    cls, weights = _REHEARSAL
    rng = torch.get_rng_state()
    try:
        model = cls()
        model.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
        model.eval()
        with torch.no_grad():
            out = model(torch.from_numpy(np.zeros((2, 1, 5, 5), np.float32)))
        np.asarray(out.numpy()).argmax(1)
    finally:
        torch.set_rng_state(rng)


def _rehearse_scaler() -> None:
    """The harness's path for a scikit-learn transformer shipped with a model (the phone-price
    course's scaler): joblib.load of a fitted StandardScaler, transform() of a named DataFrame."""
    import warnings

    import joblib
    import numpy as np
    import pandas as pd

    scaler = joblib.load(io.BytesIO(_REHEARSAL_SCALER))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler.transform(pd.DataFrame(np.zeros((2, 2), np.float32), columns=["a", "b"]))


class _Preloaded:
    """Hidden-set inputs kept in this process's memory, so every forked evaluation inherits them
    (copy-on-write) instead of reading and mapping the file again. Inputs only, never labels."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.arrays: dict[str, tuple[str, tuple[int, int], Any]] = {}  # inside path -> host, stamp, array

    def add(self, inside: str, host: str) -> None:
        import numpy as np

        st = os.stat(host)
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self.arrays.pop(inside, None)
        if hit is None or hit[:2] != (host, stamp):
            hit = (host, stamp, np.load(host, allow_pickle=False))
        self.arrays[inside] = hit  # most recently used last
        while sum(a.nbytes for *_, a in self.arrays.values()) > self.max_bytes and len(self.arrays) > 1:
            self.arrays.pop(next(iter(self.arrays)))

    def inside(self) -> dict[str, Any]:
        return {inside: arr for inside, (_, _, arr) in self.arrays.items()}


def serve(sock: socket.socket, root: str) -> None:
    spec = importlib.util.spec_from_file_location("_hwgrade_harness_main", HERE / "main.py")
    assert spec is not None and spec.loader is not None
    harness_main: Any = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = harness_main
    spec.loader.exec_module(harness_main)
    # The expensive imports every evaluation needs, paid once here.
    _warm_up()

    for name in ("models", "functions"):
        harness_main._load_sibling(name)
    os.makedirs(root, mode=0o700, exist_ok=True)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SystemExit(f"zygote: {root} is not a directory of our own, closed to others")
    preloaded = _Preloaded()
    libc.prctl(PR_SET_NAME, ZYGOTE_NAME, 0, 0, 0)
    cat = shutil.which("cat", path="/usr/bin:/bin")
    if cat is None:
        raise SystemExit("zygote: no cat(1) in /usr/bin or /bin to serve as the sandboxes' init")
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    # Sandboxes in use, by the pidfds of their init and evaluation: each process is reaped as it ends,
    # not in turn, so the next evaluation can start while the last one's tree is still torn down.
    running: dict[int, _Sandbox] = {}
    # Held evaluations (made ahead of their job) that have not got it yet, by their socket's fd: no
    # new spare is made while there is one (see _run_evaluation).
    awaiting_job: dict[int, _Sandbox] = {}
    spare: _Sandbox | None = None
    view: dict[str, Any] | None = None  # the last request's, for the next spares to mount ahead
    # When spares rehearse (HWGRADE_SANDBOX_REHEARSAL, from the runner: auto, always or off): never
    # where a spare could not leave the idle priority it rehearses at.
    rehearsal = os.environ.get("HWGRADE_SANDBOX_REHEARSAL", "auto")
    if rehearsal != "off" and not _idle_priority_reversible():
        rehearsal = "off"
    stall = _CpuStall()
    cgroup = _Cgroup(
        os.environ.get("HWGRADE_ZYGOTE_CGROUP"), int(os.environ.get("HWGRADE_ZYGOTE_CGROUP_VERSION", "1"))
    )

    def spare_rehearses() -> bool:
        if rehearsal != "auto":
            return rehearsal == "always"  # and PSI is not read for every spare
        share = stall.share()  # since the last spare was made
        return share is not None and share < REHEARSE_MAX_CPU_STALL

    def new_spare() -> _Sandbox:
        # What the spare inherits: the inputs in memory (copy-on-write), by their path inside.
        harness_main.PRELOADED = preloaded.inside()
        rehearse = spare_rehearses()
        try:
            theirs = {fd for sandbox in running.values() for fd in sandbox.fds()}
            return _Sandbox(root, harness_main, [sock.fileno(), *theirs], own_pid_ns, cat, view, rehearse)
        finally:
            harness_main.PRELOADED = {}

    runner = _Lines(sock)
    _send(sock, {"ready": True, "pid": os.getpid()})
    while True:
        if spare is None and not awaiting_job:
            spare = new_spare()
        spare_fds = [spare.init_pidfd, spare.eval_pidfd] if spare is not None else []
        readable, _, _ = select.select([*spare_fds, *running, *awaiting_job, sock.fileno()], [], [])
        for fd in readable:  # the socket last: a request opens new fds, maybe under numbers just closed
            if fd in awaiting_job:  # it has its job (or has ended): its socket is closed at its end
                awaiting_job.pop(fd).sock.close()
            elif fd in running:
                sandbox = running[fd]
                gone = sandbox.reap(fd)
                if fd not in sandbox.fds():
                    del running[fd]
                if gone:
                    status = sandbox.eval_status if sandbox.eval_status is not None else signal.SIGKILL
                    _send(sock, {"status": status, "pid": sandbox.init})
            elif spare is not None and fd in (spare.init_pidfd, spare.eval_pidfd):
                # The spare died unused (it should not): reap it and make another.
                spare.close()
                spare = None
            elif fd == sock.fileno():
                while True:  # every line already received: select() would not wake for them again
                    req = runner.recv()
                    if req is None:
                        return
                    preload = req.pop("preload", {})
                    if req:  # a request (else inputs to hold only: those of a held evaluation's job)
                        fds = runner.take_fds()
                        view = view_of(req)
                        limit_bytes = req.pop("memory_limit_bytes", None)
                        for attempt in (1, 2):
                            if spare is None:
                                spare = new_spare()
                            try:
                                with contextlib.suppress(OSError):  # from a rehearsal's SCHED_IDLE
                                    os.sched_setscheduler(spare.eval, os.SCHED_OTHER, os.sched_param(0))
                                # Its memory limit before its job, so before any of its code runs.
                                memory = cgroup.limit(limit_bytes)
                                _send_fds(spare.sock, req, fds)
                                break
                            except OSError:
                                spare.close()
                                spare = None
                                if attempt == 2:
                                    raise
                        assert spare is not None
                        if "go_fd" in req:
                            awaiting_job[spare.sock.fileno()] = spare
                        else:
                            spare.sock.close()
                        running[spare.init_pidfd] = running[spare.eval_pidfd] = spare
                        _send(sock, {"pid": spare.init, **memory})
                        spare = None
                        for fd_ in fds:
                            os.close(fd_)
                        del req
                    # Off the critical path (the evaluation is already running): load new inputs for
                    # the next spares to inherit.
                    for inside, host in preload.items():
                        preloaded.add(inside, host)
                    if not runner.buffered():
                        break


if __name__ == "__main__":
    try:
        serve(socket.socket(fileno=0), sys.argv[1])
    except (ConnectionResetError, BrokenPipeError):
        # The worker went away (exited or was killed with our messages unread): so do we, quietly;
        # every sandbox's init sees its lifeline closed and exits, the spare's evaluation dies with
        # us (PR_SET_PDEATHSIG), and a worker that lives on starts a new pool.
        pass
