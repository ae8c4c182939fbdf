"""Warm fork-server ("zygote") for sandboxed evaluations, the pattern of sandbox2's fork-server and
Android's zygote.

Started once per worker process as `python -I -u zygote.py`; it imports numpy, torch and pandas (the
expensive part of every evaluation) and then serves one request at a time on its stdin socket. For
each request it forks a fresh child that enters its isolation *before* it touches any student file:

  C1 (monitor, in the host PID namespace)  unshare(mount, PID, net, IPC, UTS); fork C2; exit with C3's status
  C2 (PID 1 of the new PID namespace)      build a new root: read-only runtime, harness, job and
                                           submission; private size-limited /tmp; fresh /proc; a few
                                           device nodes; pivot_root; fork C3; reap orphans
  C3 (the evaluation)                      drop to the slot uid, no_new_privs, seccomp filter, then run
                                           the harness (rlimits are set by the harness itself)

Killing C1 (the runner does, on timeout) kills C2 through PR_SET_PDEATHSIG, and with PID 1 gone the
kernel kills everything left in the namespace. Standalone like the harness (stdlib, numpy, torch): the
project's packages are never loaded into this process, so no child can find them in memory either.

Protocol on the socket (fd 0): the runner sends one JSON line plus four fds (SCM_RIGHTS: stdout,
stderr, result, done), the zygote answers {"pid": C1} and later {"status": wait status} or {"error": ...}.
"""

from __future__ import annotations

import array
import base64
import ctypes
import fcntl
import importlib.util
import json
import os
import platform
import signal
import socket
import sys
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
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 1, 38, 22, 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

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


def build_root(req: dict[str, Any], root: str) -> None:
    """Mount the sandbox's whole filesystem view under `root` (inside our private mount namespace)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    r = root.rstrip("/")
    _mkdirs(r + "/usr")
    bind("/usr", r + "/usr")
    for link, target in req["symlinks"].items():
        os.symlink(target, r + link)
    # /tmp first: a runtime that lives under /tmp (a venv in a clone there) is bound on top of it.
    _mkdirs(r + "/tmp")
    mount("tmpfs", r + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={int(req['tmpfs_mb'])}m")
    for d in req["ro_dirs"]:
        _mkdirs(r + d)
        bind(d, r + d)
    for f in req["ro_files"]:
        _touch(r + f)
        bind(f, r + f)
    for hidden in req["masked"]:
        if os.path.isdir(r + hidden):
            mount("tmpfs", r + hidden, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k")
    for src, dst in req["binds"]:
        _mkdirs(r + dst)
        bind(src, r + dst)
    _mkdirs(r + "/proc")
    mount("proc", r + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mkdirs(r + "/dev")
    mount("tmpfs", r + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for dev in ("null", "zero", "full", "random", "urandom", "tty", *req.get("extra_devices", [])):
        if os.path.exists("/dev/" + dev):
            _touch(r + "/dev/" + dev)
            mount("/dev/" + dev, r + "/dev/" + dev, None, MS_BIND)
    os.symlink("/proc/self/fd", r + "/dev/fd")
    os.makedirs(r + "/dev/shm", mode=0o1777)
    os.chmod(r + "/dev/shm", 0o1777)
    _mkdirs(r + "/.oldroot")
    _check(libc.syscall(SYS_PIVOT_ROOT[platform.machine()], _b(root), _b(r + "/.oldroot")), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(b"/.oldroot", MNT_DETACH), "umount old root")
    os.rmdir("/.oldroot")
    # The root itself read-only: nothing can be created outside /tmp and /dev/shm.
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def enter_sandbox(req: dict[str, Any]) -> None:
    """In C3: become the unprivileged slot uid under the seccomp filter."""
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


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def run_child(req: dict[str, Any], fds: list[int], root: str, harness_main: Any) -> None:
    """C1: never returns."""
    try:
        os.setsid()
        _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        _check(
            libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare"
        )
        c2 = os.fork()
        if c2 == 0:
            _run_init(req, fds, root, harness_main)
        _, status = os.waitpid(c2, 0)
        os._exit(_exit_code(status))
    except BaseException as e:  # noqa: BLE001 - a child must never return into the server loop
        _report_setup_failure(fds, e)
        os._exit(70)


def _run_init(req: dict[str, Any], fds: list[int], root: str, harness_main: Any) -> None:
    """C2, PID 1 of the sandbox's PID namespace: never returns."""
    try:
        _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        build_root(req, root)
        c3 = os.fork()
        if c3 == 0:
            _run_evaluation(req, fds, harness_main)
        for fd in fds:
            os.close(fd)
        while True:
            pid, status = os.wait()
            if pid == c3:
                os._exit(_exit_code(status))
    except ChildProcessError:
        os._exit(71)
    except BaseException as e:  # noqa: BLE001
        _report_setup_failure(fds, e)
        os._exit(70)


def _run_evaluation(req: dict[str, Any], fds: list[int], harness_main: Any) -> None:
    """C3: the evaluation itself; never returns (the harness ends with os._exit)."""
    try:
        # Move the received fds out of the way first, so no dup2 below overwrites one not yet placed.
        out_w, err_w, result_fd, done_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(result_fd, int(req["out_fd"]))
        os.dup2(done_w, int(req["done_fd"]))
        keep = {0, 1, 2, int(req["out_fd"]), int(req["done_fd"])}
        for fd in range(3, 1024):
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir("/tmp")
        enter_sandbox(req)
        if req.get("probe"):
            os._exit(0 if os.getuid() != 0 else 72)
        harness_main.main(req["job_json"])
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, f"sandbox setup failed: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(70)
    os._exit(0)


def _report_setup_failure(fds: list[int], e: BaseException) -> None:
    try:
        os.write(fds[1], f"sandbox setup failed: {type(e).__name__}: {e}\n".encode())
    except OSError:
        pass


def _recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        msg, ancdata, _, _ = sock.recvmsg(1 << 20, socket.CMSG_SPACE(16 * fds.itemsize))
        if not msg:
            return None, []
        data += msg
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return json.loads(data), list(fds)


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


def _warm_up() -> None:
    """Pay once here what every evaluation would otherwise pay in its fresh fork: the imports course
    scripts make at module level (sklearn's model_selection alone is ~40 ms), and pandas/sklearn's
    first-call set-up. No torch computation: it stays single-threaded, so forking stays safe."""
    import numpy as np
    import pandas as pd
    import sklearn.model_selection  # noqa: F401
    import sklearn.preprocessing
    import torch  # noqa: F401
    import torch.nn  # noqa: F401
    import torch.optim  # noqa: F401
    import torch.utils.data  # noqa: F401

    frame = pd.DataFrame(np.arange(8, dtype=np.float32).reshape(4, 2), columns=["a", "b"])
    sklearn.preprocessing.StandardScaler().fit(frame).transform(frame)


def serve(sock: socket.socket, root: str) -> None:
    spec = importlib.util.spec_from_file_location("_hwgrade_harness_main", HERE / "main.py")
    assert spec is not None and spec.loader is not None
    harness_main = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = harness_main
    spec.loader.exec_module(harness_main)
    # The expensive imports every evaluation needs, paid once here.
    _warm_up()

    for name in ("models", "functions"):
        harness_main._load_sibling(name)
    os.makedirs(root, mode=0o700, exist_ok=True)
    _send(sock, {"ready": True, "pid": os.getpid()})
    while True:
        req, fds = _recv(sock)
        if req is None:
            return
        try:
            pid = os.fork()
        except OSError as e:
            _send(sock, {"error": f"fork failed: {e}"})
            for fd in fds:
                os.close(fd)
            continue
        if pid == 0:
            sock.close()
            run_child(req, fds, root, harness_main)
        for fd in fds:
            os.close(fd)
        del req
        _send(sock, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _send(sock, {"status": status})


if __name__ == "__main__":
    serve(socket.socket(fileno=0), sys.argv[1])
